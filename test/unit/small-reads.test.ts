/**
 * Small files are read inline while their reads come from the page cache, with a turn of
 * the event loop every few files; one slow read sends the next files through the thread
 * pool, then inline is tried again. Either way the bytes are the file's.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { SLOW_SKIP, SMALL_TURN, SmallReads } from '../../lib/fd.js';
import { tempFolders } from '../helpers/temp.js';

const temp = tempFolders();
const MAX = 64 * 1024;

afterEach(() => {
  vi.restoreAllMocks();
});

/** every inline read takes no time: none is taken for a slow one, however busy the machine running the tests */
const frozenClock = () => vi.spyOn(performance, 'now').mockReturnValue(0);

async function files(sizes: number[]): Promise<{ path: string; data: Buffer }[]> {
  const dir = await temp('small');
  return Promise.all(
    sizes.map(async (n, i) => {
      const path = join(dir, `f${i}`);
      const data = randomBytes(n);
      await writeFile(path, data);
      return { path, data };
    }),
  );
}

describe('small-file reads', () => {
  it('reads whole files inline, and at most `max` bytes of a bigger one', async () => {
    frozenClock();
    const reads = new SmallReads();
    const buf = Buffer.alloc(MAX);
    for (const f of await files([0, 1, 4096, 60 * 1024, MAX + 10])) {
      const n = await reads.read(f.path, buf, MAX);
      expect(n).toBe(Math.min(f.data.length, MAX));
      expect(buf.subarray(0, n).equals(f.data.subarray(0, n))).toBe(true);
    }
    expect(reads.throughPool).toBe(0);
  });

  it('lets the event loop turn every few files', async () => {
    frozenClock();
    const reads = new SmallReads();
    const buf = Buffer.alloc(MAX);
    const [f] = await files([2048]);
    let turned = false;
    setImmediate(() => (turned = true));
    for (let i = 0; i < SMALL_TURN - 1; i++) await reads.read(f!.path, buf, MAX);
    expect(turned).toBe(false);
    await reads.read(f!.path, buf, MAX);
    expect(turned).toBe(true);
  });

  it('reads through the thread pool for a while after a slow read, then inline again', async () => {
    const reads = new SmallReads();
    const buf = Buffer.alloc(MAX);
    const list = await files([3000, 5000]);
    // the clock jumps 5 ms during the next inline read: it came from the disk
    const now = performance.now.bind(performance);
    let skew = 0;
    const clock = vi.spyOn(performance, 'now').mockImplementation(() => now() + (skew += 5));
    expect(await reads.read(list[0]!.path, buf, MAX)).toBe(3000);
    clock.mockRestore();
    expect(reads.throughPool).toBe(SLOW_SKIP);
    for (let i = 0; i < SLOW_SKIP; i++) {
      const f = list[i % 2]!;
      const n = await reads.read(f.path, buf, MAX);
      expect(buf.subarray(0, n).equals(f.data)).toBe(true);
    }
    expect(reads.throughPool).toBe(0);
    frozenClock();
    expect(await reads.read(list[1]!.path, buf, MAX)).toBe(5000);
    expect(reads.throughPool).toBe(0);
  });

  it('fails on a file that is gone, inline or not', async () => {
    const reads = new SmallReads();
    const buf = Buffer.alloc(MAX);
    const gone = join(await temp('gone'), 'nothing');
    await expect(reads.read(gone, buf, MAX)).rejects.toMatchObject({ code: 'ENOENT' });
    const now = performance.now.bind(performance);
    let skew = 0;
    const [f] = await files([100]);
    vi.spyOn(performance, 'now').mockImplementation(() => now() + (skew += 5));
    await reads.read(f!.path, buf, MAX);
    vi.restoreAllMocks();
    expect(reads.throughPool).toBe(SLOW_SKIP);
    await expect(reads.read(gone, buf, MAX)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
