/**
 * Where a restore finds the blocks of a file cut by its content in local files, by hash
 * (agent/transfer/stage.ts): what a Map of them would say, held compactly, past the room
 * it was sized for too.
 */
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { CutLocalBlocks } from '../../agent/transfer/stage.js';

const hex = (s: string) => createHash('sha256').update(s).digest('hex');

describe('local blocks of a file cut by its content', () => {
  it('answers as a Map of the same blocks would, sized short or not', () => {
    for (const room of [0, 10, 5000]) {
      const compact = new CutLocalBlocks(room);
      const map = new Map<string, { path: string; offset: number; length: number; kept: boolean }>();
      for (let i = 0; i < 3000; i++) {
        const c = { path: i % 3 === 0 ? '/data/kept/dump.rdb' : '/data/live/dump.rdb', offset: i * 2048 + 0.0, length: 512 + (i % 700), kept: i % 3 === 0 };
        compact.set(hex(`${i}`), c);
        map.set(hex(`${i}`), c);
      }
      // set again: the last place stands
      const moved = { path: '/data/live/dump.rdb', offset: 2 ** 40, length: 16384, kept: false };
      compact.set(hex('7'), moved);
      map.set(hex('7'), moved);
      for (let i = 0; i < 3100; i++) {
        expect(compact.has(hex(`${i}`))).toBe(map.has(hex(`${i}`)));
        expect(compact.get(hex(`${i}`))).toEqual(map.get(hex(`${i}`)));
      }
      expect(compact.get('not a hash')).toBeUndefined();
    }
  });
});
