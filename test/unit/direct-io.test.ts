/** lib/direct-io.ts: files written with O_DIRECT through aligned buffers. */
import { afterAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alignedBuffers } from '../../lib/aligned.js';
import { AlignedPool, DirectFile, directWorksIn } from '../../lib/direct-io.js';
import { cachedBytes as cached } from '../helpers/page-cache.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
const temp = async () => {
  const d = await mkdtemp(join(tmpdir(), 'lockstep-direct-'));
  dirs.push(d);
  return d;
};

describe('direct writes', () => {
  it('the test machine takes O_DIRECT in its temp dir, and the probe leaves nothing behind', async () => {
    const dir = await temp();
    expect(await directWorksIn(dir)).toBe(true);
    expect(await readdir(dir)).toEqual([]);
  });

  it('appends of every size, across many buffer flushes, make exactly the bytes appended', async () => {
    const dir = await temp();
    const pool = new AlignedPool(16 * 1024, 2);
    for (const sizes of [[], [1], [4096], [16 * 1024], [16 * 1024 + 1], [5000, 20000, 1, 4095, 70000], [3 * 16 * 1024]]) {
      const parts = sizes.map((n) => randomBytes(n));
      const path = join(dir, `f-${sizes.join('-')}`);
      const f = (await DirectFile.open(path, 0o600, pool))!;
      expect(f, 'opened direct').toBeDefined();
      let n = 0;
      try {
        for (const p of parts) n += await f.append([p]);
        await f.end();
      } finally {
        await f.close();
      }
      const want = Buffer.concat(parts);
      expect(n).toBe(want.length);
      expect((await stat(path)).size, path).toBe(want.length);
      expect(Buffer.compare(await readFile(path), want), path).toBe(0);
    }
  });

  it('a whole file from an aligned buffer (padded, cut back) or a plain one; neither stays in the page cache', async () => {
    const dir = await temp();
    const pool = new AlignedPool(64 * 1024, 1);
    const [a] = alignedBuffers(300_000, 1);
    a!.fill(7);
    const plain = randomBytes(200_001);
    for (const [name, body] of [['aligned', a!], ['plain', plain]] as const) {
      const path = join(dir, name);
      const f = (await DirectFile.open(path, 0o644, pool))!;
      try {
        await f.writeWhole(body);
      } finally {
        await f.close();
      }
      expect(cached(path), name).toBe(0);
      expect(Buffer.compare(await readFile(path), body), name).toBe(0);
    }
  });

  it('a pool hands out its buffers, waits while all are out, and takes only whole blocks', async () => {
    const pool = new AlignedPool(4096, 1);
    const first = await pool.acquire();
    let second: Buffer | undefined;
    const waiting = pool.acquire().then((b) => (second = b));
    await new Promise((r) => setTimeout(r, 10));
    expect(second).toBeUndefined();
    pool.release(first);
    await waiting;
    expect(second).toBe(first);
    expect(() => new AlignedPool(5000, 1)).toThrow(/whole blocks/);
  });
});
