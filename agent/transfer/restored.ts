/**
 * What a restore put in place, for the backup after it.
 *
 * An upload takes a file as unchanged, without reading it, when its size and mtime are
 * those of the previous backup's entry and its inode and change time are the signature
 * that backup saw (agent/transfer/upload.ts). A restore writes every file anew: new
 * inodes, new change times. So the first backup after a restore read every byte again
 * (a 5 GiB node: ~6.7 s, as long as a full backup, for 0 bytes written), and on a big
 * cluster that is hours of reads on a freshly restored service.
 *
 * The restore knows better: each file it staged holds, verified hash by hash, the content
 * of one entry of the index it restored. At the end of staging it records each staged
 * file's inode, change time and mtime (`recordStaged`), and the swap the moment it renamed
 * the staged data into place (`recordSwapped`). The next upload, when its previous backup's
 * index is the one restored, takes those as that index's own (`applyRestored`): a file
 * whose inode and change time are still the recorded ones was not written since. The mtime
 * too: a restore sets it to the millisecond of the entry's, the index's entry holds more.
 *
 * Only a signature older than the swap by `RACY_MS` counts: nothing but the service writes
 * the data once it is in place, after the swap, and a write in the same tick of the
 * kernel's coarse clock as the last one the restore made might not move the change time.
 * So staging ends only once its last file is that old (`untilSettled`: at most 2 s, while
 * the service still runs, not in its downtime).
 * A restore that rolls back leaves a record whose inodes are gone (harmless: a new file on
 * a freed inode has a later change time). A plugin that rebuilds the staged files
 * (`afterStage`: etcd, redis) records nothing: its files are not the index's.
 *
 * The records live in a folder of the component's (`dir`), named by restore, so that the
 * upload that used one removes that one and never a later restore's.
 */
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readHeaded, writeHeaded, writeLines } from '../../lib/lines.js';
import { RACY_MS, walkTree } from '../../lib/tree.js';
// (a name read back from the folder is only ever one of our restores')
import { RESTORE_ID_RE } from '../../lib/ids.js';
import type { OldFiles } from './known.js';

/** which index a restore staged, on which repository */
export interface RestoredFrom {
  restoreId: string;
  repositoryId: string;
  backupId: string;
  indexKey: string;
  indexSha256: string;
}

/** on disk, a line each (lib/lines.ts): the index (`RestoredFrom`), then every staged file */
type StagedFile = [path: string, ino: number, ctimeMs: number, mtimeMs: number];

interface SwappedRecord {
  swappedAt: number;
}

const STAGED = '.json';
const SWAPPED = '.swapped.json';

/**
 * Record the files staged for `from` in `dir`: `staging` maps each restored set to its
 * staging directory. The records of every earlier restore of the component go first.
 * Returns how many files it recorded, and the latest change time among them (-1: none).
 */
export async function recordStaged(dir: string, from: RestoredFrom, staging: Record<string, string>): Promise<{ files: number; lastChangeMs: number }> {
  await forgetRestored(dir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  let lastChangeMs = -1;
  async function* files(): AsyncGenerator<StagedFile> {
    for (const [set, root] of Object.entries(staging)) {
      for await (const e of walkTree(root)) {
        if (e.type !== 'file') continue;
        lastChangeMs = Math.max(lastChangeMs, e.stat.ctimeMs);
        yield [`${set}/${e.rel}`, e.stat.ino, e.stat.ctimeMs, e.stat.mtimeMs];
      }
    }
  }
  const count = await writeHeaded(join(dir, from.restoreId + STAGED), from, files());
  return { files: count, lastChangeMs };
}

/**
 * How long until the swap may begin with every recorded file counted (`applyRestored`: a
 * change time within `RACY_MS` of the swap is not trusted). A restore waits that out at
 * the end of staging, while the service still runs: otherwise the files staged last (a
 * database's big files, typically) were read whole again by the backup after it.
 */
export function untilSettled(lastChangeMs: number, now = Date.now()): number {
  return lastChangeMs < 0 ? 0 : Math.max(0, lastChangeMs + RACY_MS + SETTLE_MARGIN_MS - now);
}

/** beyond RACY_MS: the swap's own moment is taken a little after the stage job ends */
const SETTLE_MARGIN_MS = 20;

/** the staged data of `restoreId` goes into place now (called just before the first rename) */
export async function recordSwapped(dir: string, restoreId: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeLines(join(dir, restoreId + SWAPPED), (async function* () {
    yield { swappedAt: Date.now() } satisfies SwappedRecord;
  })());
}

/** the newest restore of the component whose staged data went into place, and when its swap began */
export async function lastSwap(dir: string): Promise<{ restoreId: string; swappedAt: number } | undefined> {
  const restoreId = (await swappedIds(dir)).at(-1);
  if (restoreId === undefined) return undefined;
  const swapped = await readJson<Partial<SwappedRecord>>(join(dir, restoreId + SWAPPED));
  return typeof swapped?.swappedAt === 'number' ? { restoreId, swappedAt: swapped.swappedAt } : undefined;
}

/** the restores with a swap recorded, oldest first (recordStaged leaves one at most) */
async function swappedIds(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names
    .filter((n) => n.endsWith(SWAPPED))
    .map((n) => n.slice(0, -SWAPPED.length))
    .filter((id) => RESTORE_ID_RE.test(id))
    .sort();
}

/** the records of restore `restoreId`, or of every restore, are done with */
export async function forgetRestored(dir: string, restoreId?: string): Promise<void> {
  if (restoreId !== undefined) {
    await rm(join(dir, restoreId + SWAPPED), { force: true });
    await rm(join(dir, restoreId + STAGED), { force: true });
    return;
  }
  await rm(dir, { recursive: true, force: true });
}

async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

const isSig = (f: unknown): f is StagedFile =>
  Array.isArray(f) && f.length === 4 && typeof f[0] === 'string' && Number.isFinite(f[1]) && Number.isFinite(f[2]) && Number.isFinite(f[3]);

/**
 * When the component's last restore staged exactly `index` (this repository's, this
 * backup's, its hash) and then swapped it into place, the recorded signatures become the
 * `before` files' own: those still untouched are not read again. Returns how many files
 * got one, and the restore whose record it read (to forget once the upload is done).
 */
export async function applyRestored(dir: string, index: Omit<RestoredFrom, 'restoreId'>, before: OldFiles): Promise<{ applied: number; restoreId?: string }> {
  const swap = await lastSwap(dir);
  if (!swap) return { applied: 0 };
  const { restoreId } = swap;
  const settledBefore = swap.swappedAt - RACY_MS;
  const same = (head: unknown) => {
    const staged = head as Partial<RestoredFrom> | null;
    return staged?.repositoryId === index.repositoryId && staged.backupId === index.backupId && staged.indexKey === index.indexKey && staged.indexSha256 === index.indexSha256;
  };
  let applied = 0;
  for await (const line of readHeaded(join(dir, restoreId + STAGED), same)) {
    if (!isSig(line) || line[2] >= settledBefore) continue;
    const o = before.row(line[0]);
    // a restore sets a file's mtime to the millisecond of its entry's (lib/tree.ts): not to the
    // nanosecond, which the index does not hold. The staged file's own is what a walk will see
    if (o < 0 || Math.floor(line[3]) !== Math.floor(before.cols.mtimeMs(o))) continue;
    before.cols.setMtime(o, line[3]);
    before.cols.setSigOf(o, line[1], line[2], true);
    applied++;
  }
  return { applied, restoreId };
}
