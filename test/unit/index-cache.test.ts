/**
 * The agent's local copy of an index: what is written is read back exactly (blobs with
 * their packs, offsets, lengths and fingerprints; files with their content, signature,
 * chunks and, cut by their content, block lengths), and a copy of another index, or a
 * damaged one, is refused.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Known, OldFiles } from '../../agent/transfer/known.js';
import { uploaded } from '../helpers/uploaded.js';
import { readIndexCache, writeIndexCache, type CacheKey } from '../../agent/transfer/index-cache.js';
import { FP } from '../../lib/repo/fingerprint.js';
import { encodeCuts } from '../../lib/repo/cuts.js';
import { createHash } from 'node:crypto';

/** two files cut by their content added to `rows`: one of 3 blocks, one of 70k (its lengths longer than a piece of the copy's buffer) */
function withCutFiles({ rows, known }: ReturnType<typeof uploaded>): ReturnType<typeof uploaded> {
  for (const [name, count] of [['data/dump.rdb', 3], ['data/big.rdb', 70_000]] as const) {
    const refs: number[] = [];
    const lengths: number[] = [];
    for (let b = 0; b < count; b++) {
      const h = createHash('sha256').update(`${name} ${b}`).digest();
      refs.push(known.table.add(h, createHash('sha256').update(`pack of ${name}`).digest('hex'), b * 3000, 2000 + (b % 1000)));
      lengths.push(1000 + ((b * 7919) % 6000));
    }
    const r = rows.add(name, 'file');
    rows.setMeta(r, { mode: 0o600, uid: 0, gid: 0, mtimeMs: 1_700_000_000_000 });
    rows.setContent(r, known.content(refs, lengths.reduce((a, n) => a + n, 0)));
    rows.setCuts(r, encodeCuts(12, lengths));
  }
  return { rows, known };
}

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const key: CacheKey = { repositoryId: 'repo-1', node: 'node1', component: 'data', backupId: '20261203-101010-nightly', indexSha256: 'a'.repeat(64) };

/** the path of a copy in a fresh folder */
async function copyPlace(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'lockstep-cache-'));
  dirs.push(dir);
  return join(dir, 'copy.idx');
}

describe('local copy of an index', () => {
  it('reads back every file and blob as written', async () => {
    const file = await copyPlace();
    const { rows, known } = withCutFiles(uploaded());
    await writeIndexCache(file, key, rows, known);
    const back = new Known(10, 10);
    const files = new OldFiles();
    expect(await readIndexCache(file, key, back, files)).toEqual({ ok: true });
    const fpA = Buffer.alloc(FP);
    const fpB = Buffer.alloc(FP);
    for (let r = 0; r < rows.length; r++) {
      if (rows.type(r) !== 'file') continue;
      const o = files.row(rows.path(r));
      expect(o, rows.path(r)).toBeGreaterThanOrEqual(0);
      const old = files.file(o);
      const want = rows.content(r);
      expect({ size: old.size, block: old.block, sha256: old.sha256, count: old.count, mtimeMs: old.mtimeMs, seen: old.seen }).toEqual({
        size: want.size,
        block: want.block,
        sha256: want.sha256,
        count: want.count,
        mtimeMs: rows.mtimeMs(r),
        seen: rows.seenSig(r),
      });
      expect(files.cols.cutsOf(o), rows.path(r)).toBe(rows.cutsOf(r));
      for (let i = 0; i < want.count; i++) {
        const a = known.lists.at(want.first + i);
        const b = back.lists.at(old.first + i);
        expect(back.table.ref(b)).toEqual(known.table.ref(a));
        known.table.fpInto(a, fpA, 0);
        back.table.fpInto(b, fpB, 0);
        expect(fpB.equals(fpA)).toBe(true);
      }
    }
    expect(files.row('data/link')).toBe(-1);
    // the files cut by their content: their lengths and average
    expect(files.cutOf(files.row('data/big.rdb'), back)?.avgBits).toBe(12);
    expect(files.cutOf(files.row('data/dump.rdb'), back)?.avgBits).toBe(12);
    expect(files.cutOf(files.row('data/f1'), back)).toBeUndefined();
  });

  it('refuses a copy of another index, a damaged copy and no copy', async () => {
    const file = await copyPlace();
    const { rows, known } = withCutFiles(uploaded());
    await writeIndexCache(file, key, rows, known);
    const read = (k: CacheKey) => readIndexCache(file, k, new Known(10, 10), new OldFiles());
    expect(await read({ ...key, indexSha256: 'b'.repeat(64) })).toEqual({ ok: false, why: expect.stringContaining('indexSha256') });
    expect(await read({ ...key, backupId: 'other' })).toEqual({ ok: false, why: expect.stringContaining('backupId') });
    const good = await readFile(file);
    const flipped = Buffer.from(good);
    flipped[1000]! ^= 1;
    await writeFile(file, flipped);
    expect(await read(key)).toEqual({ ok: false, why: 'damaged (hash)' });
    await writeFile(file, good.subarray(0, good.length - 10));
    expect((await read(key)).ok).toBe(false);
    await rm(file);
    expect(await read(key)).toEqual({ ok: false, why: 'no local copy' });
  });
});
