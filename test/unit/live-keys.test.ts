/**
 * LiveKeys: the set of keys prune keeps, by 64 bits of each name. What was added is always
 * found (a needed object is never taken for a dead one); names that are not hex are held
 * whole; a pack and a chunk object of the same name are told apart.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { LiveKeys } from '../../lib/repo/live-keys.js';

const key = (kind: 'packs' | 'chunks') => {
  const name = randomBytes(32).toString('hex');
  return `${kind}/${name.slice(0, 2)}/${name}`;
};

describe('LiveKeys', () => {
  it('finds every key added, through its growth, and none of 100k others', () => {
    const live = new LiveKeys();
    const added = Array.from({ length: 200_000 }, (_, i) => key(i % 2 ? 'packs' : 'chunks'));
    for (const k of added) live.add(k);
    for (const k of added.slice(0, 1000)) live.add(k); // twice: counted once
    expect(live.size).toBe(200_000);
    expect(added.every((k) => live.has(k))).toBe(true);
    let found = 0;
    for (let i = 0; i < 100_000; i++) if (live.has(key(i % 2 ? 'packs' : 'chunks'))) found++;
    expect(found).toBe(0);
  });

  it('tells a pack from a chunk object of the same name; holds other names whole; a name of zero bits too', () => {
    const live = new LiveKeys();
    const name = randomBytes(32).toString('hex');
    live.add(`packs/${name.slice(0, 2)}/${name}`);
    expect(live.has(`chunks/${name.slice(0, 2)}/${name}`)).toBe(false);
    live.add('packs/zz/not-hex');
    expect(live.has('packs/zz/not-hex')).toBe(true);
    expect(live.has('packs/zz/not-hex-either')).toBe(false);
    const zeros = `chunks/00/${'0'.repeat(64)}`;
    expect(live.has(zeros)).toBe(false);
    live.add(zeros);
    expect(live.has(zeros)).toBe(true);
    expect(live.size).toBe(3);
  });
});
