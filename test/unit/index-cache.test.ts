/**
 * The agent's local copy of an index: what is written is read back exactly (blobs with
 * their packs, offsets, lengths and fingerprints; files with their content, signature and
 * chunks), and a copy of another index, or a damaged one, is refused.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Columns } from '../../agent/transfer/columns.js';
import { Known, OldFiles } from '../../agent/transfer/known.js';
import { readIndexCache, writeIndexCache, type CacheKey } from '../../agent/transfer/index-cache.js';
import { FP } from '../../lib/repo/fingerprint.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const hash = (s: string) => createHash('sha256').update(s).digest();
const key: CacheKey = { repositoryId: 'repo-1', node: 'node1', component: 'data', backupId: '20261203-101010-nightly', indexSha256: 'a'.repeat(64) };

/** an upload's state: 3000 files of 1–40 blocks, some blocks shared, a few chunk objects, a dir and a symlink */
function uploaded(): { rows: Columns; known: Known } {
  const known = new Known(10, 10);
  const rows = new Columns();
  rows.setMeta(rows.add('data', 'dir'), { mode: 0o755, uid: 0, gid: 0, mtimeMs: 1 });
  const fp = Buffer.alloc(FP);
  for (let f = 0; f < 3000; f++) {
    const refs: number[] = [];
    for (let b = 0; b < 1 + (f % 40); b++) {
      const h = hash(`block ${(f * 7 + b) % 20000}`);
      let r = known.table.find(h);
      if (r < 0) {
        r = f % 500 === 0 ? known.table.add(h, undefined) : known.table.add(h, hash(`pack ${f >> 4}`).toString('hex'), b * 40000, 30000 + b);
        if (b % 3 !== 0) {
          fp.fill(b + 1);
          fp.writeUInt32LE(f, 0);
          known.table.setFp(r, fp);
        }
      }
      refs.push(r);
    }
    const r = rows.add(f % 7 === 0 ? `data/fé-ü-${f}` : `data/f${f}`, 'file');
    rows.setMeta(r, { mode: 0o644, uid: 0, gid: 0, mtimeMs: 1_700_000_000_000 + f * 1.5 });
    const c = known.content(refs, refs.length * 32768 - (f % 100));
    rows.setContent(r, { ...c, block: c.count > 1 ? 32768 : undefined });
    rows.setSig(r, { ino: 1000 + f, ctimeMs: 1_700_000_000_001 + f }, f % 3 !== 0);
  }
  rows.setMeta(rows.add('data/link', 'symlink'), { mode: 0o777, uid: 0, gid: 0, mtimeMs: 2 });
  return { rows, known };
}

/** the path of a copy in a fresh folder */
async function copyPlace(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'lockstep-cache-'));
  dirs.push(dir);
  return join(dir, 'copy.idx');
}

describe('local copy of an index', () => {
  it('reads back every file and blob as written', async () => {
    const file = await copyPlace();
    const { rows, known } = uploaded();
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
  });

  it('refuses a copy of another index, a damaged copy and no copy', async () => {
    const file = await copyPlace();
    const { rows, known } = uploaded();
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
