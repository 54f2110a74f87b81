/**
 * The restore's record of what it staged (agent/transfer/restored.ts): the signatures it
 * hands the next upload, and the cases where it must hand none.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lstat, mkdir, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { OldFiles } from '../../agent/transfer/known.js';
import { applyRestored, forgetRestored, recordStaged, recordSwapped, untilSettled } from '../../agent/transfer/restored.js';
import { RACY_MS } from '../../lib/tree.js';
import { tempDir } from '../helpers/cluster.js';

const FROM = { repositoryId: 'repo-1', backupId: '20261205-010203-full', indexKey: 'indexes/x', indexSha256: 'a'.repeat(64) };
const MTIME = 1_700_000_000;

describe('what a restore records for the backup after it', () => {
  let root: string;
  let staging: string;
  let dir: string;
  const paths = ['data/a.db', 'data/sub/b.db', 'data/c.db'];

  /** the previous backup's files as an upload holds them: these paths, 4 bytes each, no signature */
  const before = () => {
    const b = new OldFiles();
    for (const p of [...paths, 'data/not-restored.db']) b.add(p, { size: 4, mtimeMs: MTIME * 1000, sha256: '0'.repeat(64) }, 0, 0);
    return b;
  };
  const sigOf = async (rel: string) => {
    const st = await lstat(join(staging, rel));
    return { ino: st.ino, ctimeMs: st.ctimeMs };
  };

  beforeAll(async () => {
    root = await tempDir();
    staging = join(root, 'staging');
    dir = join(root, 'state', 'restored', 'data');
    await mkdir(join(staging, 'sub'), { recursive: true });
    for (const p of paths) {
      const f = join(staging, p.slice('data/'.length));
      await writeFile(f, 'rows');
      await utimes(f, MTIME, MTIME);
    }
    const recorded = await recordStaged(dir, { restoreId: 'r20261205-010500-aaaaaa', ...FROM }, { data: staging });
    expect(recorded.files).toBe(3);
    // the service may write only once the staged data is in place: staging ends once the last staged file has settled
    const wait = untilSettled(recorded.lastChangeMs);
    expect(wait).toBeGreaterThan(RACY_MS - 1000);
    expect(wait).toBeLessThanOrEqual(RACY_MS + 20);
    await sleep(wait);
    await recordSwapped(dir, 'r20261205-010500-aaaaaa');
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('gives the previous index the staged files their signatures, only for the index restored', async () => {
    const b = before();
    expect(await applyRestored(dir, FROM, b)).toEqual({ applied: 3, restoreId: 'r20261205-010500-aaaaaa' });
    for (const p of paths) {
      const { ino, ctimeMs } = await sigOf(p.slice('data/'.length));
      expect(b.cols.seenAs(b.row(p), ino, ctimeMs, false)).toBe(true);
    }
    expect(b.cols.isSeen(b.row('data/not-restored.db'))).toBe(false);
    // the entry's mtime had more than milliseconds (a restore sets only those): the staged file's is taken
    const finer = new OldFiles();
    finer.add('data/a.db', { size: 4, mtimeMs: MTIME * 1000 + 0.9722, sha256: '0'.repeat(64) }, 0, 0);
    finer.add('data/c.db', { size: 4, mtimeMs: MTIME * 1000 + 1, sha256: '0'.repeat(64) }, 0, 0);
    expect((await applyRestored(dir, FROM, finer)).applied).toBe(1);
    expect(finer.cols.mtimeMs(finer.row('data/a.db'))).toBe(MTIME * 1000);
    // another millisecond: not the file the restore made of that entry
    expect(finer.cols.isSeen(finer.row('data/c.db'))).toBe(false);
    // another backup, another copy of the index, another repository: nothing
    for (const other of [{ backupId: '20261205-020000-later' }, { indexSha256: 'b'.repeat(64) }, { repositoryId: 'repo-2' }, { indexKey: 'indexes/y' }]) {
      const c = before();
      expect((await applyRestored(dir, { ...FROM, ...other }, c)).applied).toBe(0);
      expect(paths.some((p) => c.cols.isSeen(c.row(p)))).toBe(false);
    }
  });

  it('a file rewritten since, same size and mtime, no longer matches its signature', async () => {
    const f = join(staging, 'c.db');
    await writeFile(f, 'ROWS');
    await utimes(f, MTIME, MTIME);
    const b = before();
    await applyRestored(dir, FROM, b);
    const now = await lstat(f);
    expect(now.size).toBe(4);
    expect(now.mtimeMs).toBe(MTIME * 1000);
    expect(b.cols.seenAs(b.row('data/c.db'), now.ino, now.ctimeMs, false)).toBe(false);
  });

  it('gives nothing for a restore never swapped in, or swapped in within a clock tick of its last write', async () => {
    const soon = join(root, 'state', 'restored', 'soon');
    await recordStaged(soon, { restoreId: 'r20261205-011000-bbbbbb', ...FROM }, { data: staging });
    expect((await applyRestored(soon, FROM, before())).applied).toBe(0);
    await writeFile(join(staging, 'a.db'), 'rows');
    await recordStaged(soon, { restoreId: 'r20261205-011100-cccccc', ...FROM }, { data: staging });
    await recordSwapped(soon, 'r20261205-011100-cccccc');
    // a.db was written just now (and c.db by the test before): their signatures could hide a
    // write in the same tick; sub/b.db has not changed since well before
    const b = before();
    expect((await applyRestored(soon, FROM, b)).applied).toBe(1);
    expect(b.cols.isSeen(b.row('data/sub/b.db'))).toBe(true);
    expect(b.cols.isSeen(b.row('data/a.db'))).toBe(false);
  });

  it('a new restore clears the records of the last one; the upload that used a record removes only that one', async () => {
    const d = join(root, 'state', 'restored', 'again');
    await recordStaged(d, { restoreId: 'r20261205-012000-dddddd', ...FROM }, { data: staging });
    await recordSwapped(d, 'r20261205-012000-dddddd');
    await recordStaged(d, { restoreId: 'r20261205-012100-eeeeee', ...FROM }, { data: staging });
    expect((await readdir(d)).sort()).toEqual(['r20261205-012100-eeeeee.json']);
    await forgetRestored(d, 'r20261205-012000-dddddd');
    expect(await readdir(d)).toEqual(['r20261205-012100-eeeeee.json']);
    await forgetRestored(d, 'r20261205-012100-eeeeee');
    expect(await readdir(d)).toEqual([]);
  });
});

describe('how long staging waits for its files to settle', () => {
  it('until the last change is RACY_MS (and a little) old; not at all when nothing was recorded or it is older', () => {
    const now = 1_800_000_000_000;
    expect(untilSettled(-1, now)).toBe(0);
    expect(untilSettled(now - RACY_MS - 100, now)).toBe(0);
    expect(untilSettled(now - 500, now)).toBe(RACY_MS - 500 + 20);
    expect(untilSettled(now, now)).toBe(RACY_MS + 20);
  });
});
