/**
 * Content-defined cuts (lib/repo/cuts.ts): blocks of the sizes promised, the same cuts for
 * the same bytes and key, cuts that survive bytes inserted or removed before them, block
 * lengths kept exactly, and an index whose lengths do not add up refused.
 */
import { describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Cutter, cutAverageFor, decodeCuts, encodeCuts, forEachCut } from '../../lib/repo/cuts.js';
import { closeFd, openFd } from '../../lib/fd.js';
import { tempDir } from '../helpers/cluster.js';
import { parseIndex } from '../../lib/repo/index-file.js';
import { LockstepError } from '../../lib/errors.js';

/** the block lengths of `data` cut in one buffer that holds it all */
function cutAll(cutter: Cutter, data: Buffer, avgBits: number): number[] {
  const lengths: number[] = [];
  for (let start = 0; start < data.length; ) {
    const cut = cutter.next(data, start, data.length, true, avgBits);
    lengths.push(cut - start);
    start = cut;
  }
  return lengths;
}

/** the block lengths of `data` cut as a file is, read a piece at a time (`forEachCut`), and the size it gave */
async function cutFile(cutter: Cutter, data: Buffer, avgBits: number): Promise<{ lengths: number[]; size: number }> {
  const dir = await tempDir();
  const path = join(dir, 'file');
  await writeFile(path, data);
  const fd = await openFd(path, 'r');
  const lengths: number[] = [];
  let offset = 0;
  try {
    const size = await forEachCut(fd, cutter, avgBits, (block, at) => {
      // in order, back to back
      expect(at).toBe(offset);
      offset += block.length;
      lengths.push(block.length);
    });
    return { lengths, size };
  } finally {
    await closeFd(fd);
    await rm(dir, { recursive: true, force: true });
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

/** `n` bytes that look random, the same for the same `seed` (SHA-256 in counter mode): a test whose outcome depends on where cuts fall gives the same outcome every run */
function seeded(n: number, seed: string): Buffer {
  const out = Buffer.allocUnsafe(Math.ceil(n / 32) * 32);
  for (let i = 0; i * 32 < n; i++) createHash('sha256').update(`${seed} ${i}`).digest().copy(out, i * 32);
  return out.subarray(0, n);
}

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

  it('the same bytes and key give the same cuts whether read whole or a piece at a time from a file; another key gives others', async () => {
    const data = randomBytes(3.5 * 2 ** 20);
    for (const bits of [13, 17]) {
      const a = cutAll(new Cutter(key), data, bits);
      expect(await cutFile(new Cutter(key), data, bits)).toEqual({ lengths: a, size: data.length });
      expect(cutAll(new Cutter(Buffer.from('another repository')), data, bits)).not.toEqual(a);
    }
    // an empty file is no block
    expect(await cutFile(new Cutter(key), Buffer.alloc(0), 13)).toEqual({ lengths: [], size: 0 });
  });

  it('bytes inserted or removed move only the blocks around them: the rest are the same blocks', () => {
    const cutter = new Cutter(key);
    // (the same bytes every run: with random ones 1 to 7 blocks around a change were new in 600 tries, 1 in ~20 of them over 1% of the blocks)
    const data = seeded(4 << 20, 'data');
    const before = new Set(blocks(data, cutAll(cutter, data, 13)));
    const inserted = Buffer.concat([data.subarray(0, 1_000_000), seeded(333, 'inserted'), data.subarray(1_000_000)]);
    const removed = Buffer.concat([data.subarray(0, 3_000_000), data.subarray(3_000_777)]);
    for (const changed of [inserted, removed]) {
      const after = blocks(changed, cutAll(cutter, changed, 13));
      const same = after.filter((b) => before.has(b)).length;
      // a fixed-size cut would share only the blocks before the change (~24% and ~72%)
      expect(same / after.length).toBeGreaterThan(0.99);
    }
  });

  it('a file over 512 MiB is cut into larger blocks: about 256k of them, at most 128 KiB on average', () => {
    expect(cutAverageFor(0)).toBe(11);
    expect(cutAverageFor(512 * 2 ** 20)).toBe(11);
    expect(cutAverageFor(512 * 2 ** 20 + 1)).toBe(12);
    expect(cutAverageFor(2 * 2 ** 30 + 1)).toBe(14);
    expect(cutAverageFor(16 * 2 ** 30)).toBe(16);
    expect(cutAverageFor(32 * 2 ** 30)).toBe(17);
    expect(cutAverageFor(2 ** 40)).toBe(17);
  });

  it('a file that shrank a little below where its previous average was chosen keeps that average; one that grew, or shrank to half, does not', () => {
    const MiB = 2 ** 20;
    // cut at 8 KiB on average when it was over 1 GiB, 1000 MiB now: still 8 KiB (its blocks the same)
    expect(cutAverageFor(1000 * MiB, 13)).toBe(13);
    expect(cutAverageFor(516 * MiB, 13)).toBe(13);
    expect(cutAverageFor(480 * MiB, 12)).toBe(12);
    // ... but at half that size or less, what the size calls for: it would be 128k blocks or fewer
    expect(cutAverageFor(256 * MiB, 12)).toBe(11);
    expect(cutAverageFor(512 * MiB, 13)).toBe(11);
    // an RDB cut at 8 KiB before averages went down to 2 KiB: cut at 2 KiB from now on
    expect(cutAverageFor(21 * MiB, 13)).toBe(11);
    expect(cutAverageFor(21 * MiB, 12)).toBe(11);
    // one cut at 8 KiB when a file was kept to about 64k blocks: at 2 KiB from now on
    expect(cutAverageFor(300 * MiB, 13)).toBe(11);
    // grew past 1 GiB: the larger average at once (it never goes far over 256k blocks)
    expect(cutAverageFor(1200 * MiB, 12)).toBe(13);
    // an average two steps off is not kept
    expect(cutAverageFor(1000 * MiB, 14)).toBe(12);
    expect(cutAverageFor(2400 * MiB, 14)).toBe(14);
    expect(cutAverageFor(2000 * MiB, 14)).toBe(14);
  });

  it('block lengths and their average are kept exactly; lengths that are not the blocks of the file are refused', () => {
    const lengths = [16_384, 1, 70_000, 2 ** 20];
    const size = lengths.reduce((a, b) => a + b, 0);
    expect(decodeCuts(encodeCuts(14, lengths), 4, size)).toEqual({ avgBits: 14, lengths });
    expect(decodeCuts(encodeCuts(14, lengths), 3, size)).toBeUndefined();
    expect(decodeCuts(encodeCuts(14, lengths), 4, size + 1)).toBeUndefined();
    expect(decodeCuts(encodeCuts(14, [0, size]), 2, size)).toBeUndefined();
    // an average out of bounds
    expect(decodeCuts(encodeCuts(10, lengths), 4, size)).toBeUndefined();
    expect(decodeCuts(encodeCuts(18, lengths), 4, size)).toBeUndefined();
    // an empty file cut: no block, its average kept
    expect(decodeCuts(encodeCuts(11, []), 0, 0)).toEqual({ avgBits: 11, lengths: [] });
  });

  it('lengths without their average (an index written before it was recorded) were cut at the average of then: 8 KiB, more over 512 MiB', () => {
    const lengthsOnly = (lengths: number[]) => {
      const b = Buffer.alloc(lengths.length * 4);
      lengths.forEach((n, i) => b.writeUInt32LE(n, i * 4));
      return b.toString('base64');
    };
    expect(decodeCuts(lengthsOnly([10, 20]), 2, 30)).toEqual({ avgBits: 13, lengths: [10, 20] });
    // a file of one block whose length looks like an average is still a length (the count says so)
    expect(decodeCuts(lengthsOnly([13]), 1, 13)).toEqual({ avgBits: 13, lengths: [13] });
    const big = 600 * 2 ** 20;
    expect(decodeCuts(lengthsOnly([big / 2, big / 2]), 2, big)?.avgBits).toBe(14);
    expect(decodeCuts(lengthsOnly([10, 21]), 2, 30)).toBeUndefined();
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
    expect(parseIndex(index(entry(encodeCuts(12, [10, 20]))), 'idx').entries).toHaveLength(1);
    for (const bad of [entry(encodeCuts(12, [10, 21])), entry(encodeCuts(12, [30])), entry(encodeCuts(12, [10, 20]), 32768), entry(encodeCuts(99, [10, 20]))]) {
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
