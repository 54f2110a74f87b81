/**
 * Content-defined cuts (lib/repo/cuts.ts): blocks of the sizes promised, the same cuts for
 * the same bytes and key, cuts that survive bytes inserted or removed before them, block
 * lengths kept exactly, and an index whose lengths do not add up refused.
 */
import { describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { Cutter, cutAverageFor, decodeCuts, encodeCuts } from '../../lib/repo/cuts.js';
import { parseIndex } from '../../lib/repo/index-file.js';
import { LockstepError } from '../../lib/errors.js';

/** the block lengths of `data` cut whole, fed in pieces of `piece` bytes as an upload reads */
function cutAll(cutter: Cutter, data: Buffer, avgBits: number, piece = 1 << 20): number[] {
  const lengths: number[] = [];
  const buf = Buffer.alloc(piece + (8 << avgBits));
  let start = 0;
  let end = 0;
  let read = 0;
  let last = false;
  for (;;) {
    while (start < end) {
      const cut = cutter.next(buf, start, end, last, avgBits);
      if (cut < 0) break;
      lengths.push(cut - start);
      start = cut;
    }
    if (last) return lengths;
    buf.copyWithin(0, start, end);
    end -= start;
    start = 0;
    const n = data.copy(buf, end, read, Math.min(data.length, read + buf.length - end));
    if (n === 0) last = true;
    end += n;
    read += n;
  }
}

/** the blocks' contents, by hash */
function blocks(data: Buffer, lengths: number[]): string[] {
  const out: string[] = [];
  let at = 0;
  for (const n of lengths) {
    out.push(createHash('sha256').update(data.subarray(at, at + n)).digest('hex'));
    at += n;
  }
  return out;
}

const key = Buffer.from('repository-id');

describe('content-defined cuts', () => {
  it('cuts into blocks of avg/4 to 8×avg bytes (but the last), about avg on average, covering every byte', () => {
    const data = randomBytes(8 << 20);
    for (const bits of [13, 16]) {
      const lengths = cutAll(new Cutter(key), data, bits);
      const avg = 2 ** bits;
      expect(lengths.reduce((a, b) => a + b, 0)).toBe(data.length);
      for (const n of lengths.slice(0, -1)) {
        expect(n).toBeGreaterThanOrEqual(avg / 4);
        expect(n).toBeLessThanOrEqual(avg * 8);
      }
      const mean = data.length / lengths.length;
      expect(mean).toBeGreaterThan(avg * 0.75);
      expect(mean).toBeLessThan(avg * 2);
    }
  });

  it('the same bytes and key give the same cuts whatever the reads; another key gives others', () => {
    const data = randomBytes(2 << 20);
    const a = cutAll(new Cutter(key), data, 13);
    expect(cutAll(new Cutter(key), data, 13, 64 * 1024)).toEqual(a);
    expect(cutAll(new Cutter(key), data, 13, 3 * 1024 * 1024)).toEqual(a);
    expect(cutAll(new Cutter(Buffer.from('another repository')), data, 13)).not.toEqual(a);
  });

  it('bytes inserted or removed move only the blocks around them: the rest are the same blocks', () => {
    const cutter = new Cutter(key);
    const data = randomBytes(4 << 20);
    const before = new Set(blocks(data, cutAll(cutter, data, 13)));
    const inserted = Buffer.concat([data.subarray(0, 1_000_000), randomBytes(333), data.subarray(1_000_000)]);
    const removed = Buffer.concat([data.subarray(0, 3_000_000), data.subarray(3_000_777)]);
    for (const changed of [inserted, removed]) {
      const after = blocks(changed, cutAll(cutter, changed, 13));
      const same = after.filter((b) => before.has(b)).length;
      // a fixed-size cut would share only the blocks before the change (~24% and ~72%)
      expect(same / after.length).toBeGreaterThan(0.99);
    }
  });

  it('a file over 512 MiB is cut into larger blocks: about 64k of them, at most 128 KiB on average', () => {
    expect(cutAverageFor(0)).toBe(13);
    expect(cutAverageFor(512 * 2 ** 20)).toBe(13);
    expect(cutAverageFor(512 * 2 ** 20 + 1)).toBe(14);
    expect(cutAverageFor(8 * 2 ** 30)).toBe(17);
    expect(cutAverageFor(2 ** 40)).toBe(17);
  });

  it('block lengths are kept exactly; lengths that are not the blocks of the file are refused', () => {
    const lengths = [16_384, 1, 70_000, 2 ** 20];
    const size = lengths.reduce((a, b) => a + b, 0);
    expect(decodeCuts(encodeCuts(lengths), 4, size)).toEqual(lengths);
    expect(decodeCuts(encodeCuts(lengths), 3, size)).toBeUndefined();
    expect(decodeCuts(encodeCuts(lengths), 4, size + 1)).toBeUndefined();
    expect(decodeCuts(encodeCuts([0, size]), 2, size)).toBeUndefined();
  });

  it('an index whose file has lengths that do not add up to its size is refused as damaged', () => {
    const entry = (cuts: string, block?: number) => ({
      type: 'file',
      path: 'data/dump.rdb',
      mode: 0o600,
      uid: 0,
      gid: 0,
      mtimeMs: 1,
      size: 30,
      sha256: 'a'.repeat(64),
      ...(block ? { block } : {}),
      cuts,
      chunks: ['b'.repeat(64), 'c'.repeat(64)],
    });
    const index = (e: object) => JSON.stringify({ version: 3, backupId: 'b', node: 'n', component: 'c', chunkSize: 4 << 20, sets: ['data'], entries: [e] });
    expect(parseIndex(index(entry(encodeCuts([10, 20]))), 'idx').entries).toHaveLength(1);
    for (const bad of [entry(encodeCuts([10, 21])), entry(encodeCuts([30])), entry(encodeCuts([10, 20]), 32768)]) {
      const err = (() => {
        try {
          parseIndex(index(bad), 'idx');
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(LockstepError);
      expect((err as LockstepError).code).toBe('LOCKSTEP_E_REPO_CORRUPT');
      expect((err as LockstepError).message).toContain('data/dump.rdb');
    }
  });
});
