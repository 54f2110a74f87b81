/**
 * An incremental whose previous index the agent kept in memory does not wait for its walk:
 * the files the walk found first (a database's big files, before thousands of small ones)
 * are read while it walks on. What it writes is what a walk-then-read upload wrote; a walk
 * that fails on the way fails the upload, whatever the file reads are doing.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FsDriver } from '../../plugins/storage/fs.js';
import { Repository } from '../../lib/repo/repository.js';
import type { FileEntry } from '../../lib/repo/index-file.js';
import { snapshotCleanedUp, uploadSnapshot, uploadsSettled, type UploadTarget } from '../../agent/transfer/upload.js';
import type { JobContext } from '../../agent/jobs/runner.js';
import type { JobProgress, UploadResult } from '../../lib/wire.js';
import { tempFolders } from '../helpers/temp.js';
import { quietJobContext } from '../helpers/job.js';
import { commitUploads } from '../helpers/repo.js';

const temp = tempFolders();
afterEach(() => uploadsSettled());

const BIG = 8 * 1024 * 1024;
const SMALL = 4000;

/** a big file first in name order, then 4000 empty files in 16 folders (a walk of some tens of ms) */
async function makeData(root: string): Promise<void> {
  await mkdir(join(root, 'data'), { recursive: true });
  await writeFile(join(root, 'data', 'a-table.db'), randomBytes(BIG));
  for (let d = 0; d < 16; d++) {
    const dir = join(root, 'data', 'sst', String(d).padStart(2, '0'));
    await mkdir(dir, { recursive: true });
    // (inline: through the thread pool, 4000 empty files took ~3 s to make here)
    for (let i = 0; i < SMALL / 16; i++) writeFileSync(join(dir, `${i}.sst`), '');
  }
}

/** a job context that keeps every progress update */
function recording(): { ctx: JobContext; seen: Partial<JobProgress>[] } {
  const seen: Partial<JobProgress>[] = [];
  return { ctx: { ...quietJobContext(), progress: (p: Partial<JobProgress>) => void seen.push({ ...p }) }, seen };
}

const component = 'db';
let repo: Repository;
let snap: string;
let first: UploadResult;
const target = (backupId: string): UploadTarget => ({ backupId, node: 'n1', component, cacheFile: join(snap, '..', `${component}.copy`), keepIndexBytes: 64 * 1024 * 1024 });

/** `up` committed as `backupId`, the backup's last step done: the upload keeps its index in memory for the next one */
async function committed(backupId: string, up: UploadResult): Promise<void> {
  await commitUploads(repo, backupId, [{ node: 'n1', plugin: 'directory', up }], component);
  snapshotCleanedUp(component);
  await uploadsSettled();
}

/** a page of the big file rewritten at `at` (its mtime moves: it is read whole) */
async function rewritePage(at: number): Promise<void> {
  const fh = await open(join(snap, 'data', 'a-table.db'), 'r+');
  await fh.write(randomBytes(8192), 0, 8192, at);
  await fh.close();
}

beforeAll(async () => {
  repo = await Repository.init(new FsDriver(await temp('repo')));
  snap = await temp('snap');
  await makeData(snap);
  // files changed in the last 2 s are read again whatever they look like (tree.ts RACY_MS)
  await sleep(2100);
  first = await uploadSnapshot(repo, snap, ['data'], target('20261205-100000-one'), quietJobContext());
  await committed('20261205-100000-one', first);
}, 60_000);

describe("an incremental's walk", () => {
  let second: UploadResult | undefined;

  it('goes on while the files it found first are read; the index is the same as ever', async () => {
    await rewritePage(4 * 1024 * 1024);
    const { ctx, seen } = recording();
    second = await uploadSnapshot(repo, snap, ['data'], target('20261205-110000-two'), ctx);
    expect(second.previousIndex).toBe('memory');
    // bytes of the big file were read before the walk had the totals
    const firstRead = seen.findIndex((p) => (p.bytesDone ?? 0) > 0);
    const totals = seen.findIndex((p) => p.bytesTotal !== undefined);
    expect(firstRead).toBeGreaterThanOrEqual(0);
    expect(totals).toBeGreaterThan(firstRead);
    expect(seen[totals]).toMatchObject({ bytesTotal: BIG, filesTotal: SMALL + 1 });
    // and what was written is what the walk found, every file
    expect(second).toMatchObject({ files: SMALL + 1, bytes: BIG, filesUnchanged: SMALL, bytesRead: BIG, dirs: first.dirs });
    const index = await repo.readIndex(second.indexKey, second.indexSha256);
    expect(index.entries.length).toBe(SMALL + 1 + first.dirs);
    const table = index.entries.find((e): e is FileEntry => e.path === 'data/a-table.db')!;
    const before = (await repo.readIndex(first.indexKey, first.indexSha256)).entries.find((e): e is FileEntry => e.path === 'data/a-table.db')!;
    expect(table.sha256).not.toBe(before.sha256);
    expect(second.bytesNew).toBeLessThan(64 * 1024);
  });

  it('that fails after the reads began fails the upload with its own error', async () => {
    await committed('20261205-110000-two', second!);
    await rewritePage(0);
    const { ctx, seen } = recording();
    await expect(uploadSnapshot(repo, snap, ['data', 'gone'], target('20261205-120000-three'), ctx)).rejects.toThrow(/gone/);
    expect(seen.some((p) => (p.bytesDone ?? 0) > 0)).toBe(true);
  });
});
