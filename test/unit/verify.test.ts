/**
 * `backup verify` on a backup whose blobs are shared: a blob several files (or several
 * blocks of one file) reference is read back once, and a damaged one is reported once,
 * naming the first file that needs it and how many more do; a truncated pack and a
 * missing or damaged chunk object are named with their file and chunk.
 */
import { describe, expect, it } from 'vitest';
import { mkdir, readFile, readdir, truncate, unlink, writeFile } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { FsDriver } from '../../plugins/storage/fs.js';
import type { ByteRange } from '../../plugins/storage/types.js';
import { Repository } from '../../lib/repo/repository.js';
import { MANIFEST_VERSION, type Manifest } from '../../lib/repo/manifest.js';
import type { FileEntry, ChunkRef } from '../../lib/repo/index-file.js';
import { verifyBackup } from '../../lib/repo/verify.js';
import { prune } from '../../lib/repo/prune.js';
import { manifestKey } from '../../lib/repo/layout.js';
import { LockstepError } from '../../lib/errors.js';
import type { BackupReport } from '../../lib/report.js';
import { uploadSnapshot } from '../../agent/transfer/upload.js';
import { tempFolders } from '../helpers/temp.js';
import { commitUploads, PagedListingFs, SizedListingFs } from '../helpers/repo.js';
import { quietJobContext } from '../helpers/job.js';

const temp = tempFolders();
const backupId = '20261204-120000-verify';

/** a big file, five small files of the same content, a file of 32 equal blocks, an empty one */
async function makeData(root: string): Promise<void> {
  await mkdir(join(root, 'data', 'same'), { recursive: true });
  await writeFile(join(root, 'data', 'big.bin'), randomBytes(3 * 1024 * 1024));
  const same = randomBytes(20_000);
  for (let i = 0; i < 5; i++) await writeFile(join(root, 'data', 'same', `${i}.txt`), same);
  await writeFile(join(root, 'data', 'zeros.bin'), Buffer.alloc(1024 * 1024));
  await writeFile(join(root, 'data', 'empty'), '');
}

/** how the store finds the objects' sizes: a HEAD each, from a listing of all of them, from a listing around them (as S3) */
type Listing = 'head' | 'sized' | 'paged';

/** a repository holding one committed backup of `makeData`, and that backup's file entries by path */
async function backedUp(chunkSize?: number, listing: Listing = 'head'): Promise<{ repo: Repository; dir: string; files: Map<string, FileEntry> }> {
  const dir = await temp('repo');
  const driver = listing === 'sized' ? new SizedListingFs(dir) : listing === 'paged' ? new PagedListingFs(dir) : new FsDriver(dir);
  const repo = await Repository.init(driver, chunkSize ? { chunkSize } : {});
  const snap = await temp('snap');
  await makeData(snap);
  const up = await uploadSnapshot(repo, snap, ['data'], { backupId, node: 'n1', component: 'db' }, quietJobContext());
  const at = new Date().toISOString();
  const m: Manifest = {
    version: MANIFEST_VERSION,
    backupId,
    name: 'verify',
    cluster: 'test',
    repositoryId: repo.id,
    status: 'complete',
    startedAt: at,
    committedAt: at,
    topology: [],
    components: [{ node: 'n1', component: 'db', plugin: 'directory', shard: 's1', indexKey: up.indexKey, indexSha256: up.indexSha256, files: up.files, bytes: up.bytes }],
    report: {} as BackupReport,
  };
  await repo.commitManifest(m);
  const index = await repo.readIndex(up.indexKey, up.indexSha256);
  const files = new Map(index.entries.filter((e): e is FileEntry => e.type === 'file').map((e) => [e.path, e]));
  return { repo, dir, files };
}

const blobId = (r: ChunkRef) => (typeof r === 'string' ? r : `${r.pack}:${r.offset}`);

/** flip a byte in the middle of the blob `ref` where it is stored */
async function flip(dir: string, repo: Repository, ref: ChunkRef): Promise<void> {
  const path = join(dir, repo.objectKeyOf(ref));
  const body = await readFile(path);
  const at = typeof ref === 'string' ? body.length >> 1 : ref.offset + (ref.length >> 1);
  body[at] = body[at]! ^ 0x40;
  await writeFile(path, body);
}

/** 8000 packs of other backups (one byte each) in the fs repository at `dir` */
async function otherPacks(dir: string): Promise<void> {
  const other = (i: number) => createHash('sha256').update(`other ${i}`).digest('hex');
  for (let i = 0; i < 8000; i += 500) {
    await Promise.all(
      Array.from({ length: 500 }, async (_, j) => {
        const name = other(i + j);
        const folder = join(dir, 'packs', name.slice(0, 2));
        await mkdir(folder, { recursive: true });
        await writeFile(join(folder, name), 'x');
      }),
    );
  }
}

describe('backup verify', () => {
  it('reads every blob back once, however many files and blocks use it', async () => {
    const { repo, files } = await backedUp();
    const zeros = files.get('data/zeros.bin')!;
    // the same block 32 times, and one blob for five files: stored once
    expect(new Set(zeros.chunks.map(blobId)).size).toBe(1);
    expect(new Set([0, 1, 2, 3, 4].map((i) => blobId(files.get(`data/same/${i}.txt`)!.chunks[0]!))).size).toBe(1);
    const unique = new Set([...files.values()].flatMap((f) => f.chunks.map(blobId)));

    const quick = await verifyBackup(repo, backupId);
    expect(quick).toMatchObject({ status: 'ok', files: 8, blobsRead: 0, problems: [] });
    const all = await verifyBackup(repo, backupId, { readDataPercent: 100 });
    expect(all).toMatchObject({ status: 'ok', files: 8, problems: [] });
    expect(all.blobsRead).toBe(unique.size);
    expect(all.bytesRead).toBe(3 * 1024 * 1024 + 20_000 + 32 * 1024);

    // a sample: the same seed reads the same blobs
    const a = await verifyBackup(repo, backupId, { readDataPercent: 40, seed: 's' });
    const b = await verifyBackup(repo, backupId, { readDataPercent: 40, seed: 's' });
    expect(a.blobsRead).toBeGreaterThan(unique.size * 0.2);
    expect(a.blobsRead).toBeLessThan(unique.size * 0.6);
    expect([b.blobsRead, b.bytesRead]).toEqual([a.blobsRead, a.bytesRead]);
  });

  for (const [how, listing] of [['a HEAD per object', 'head'], ['sizes from the listing', 'sized'], ['sizes from a listing around the objects', 'paged']] as const) {
    const sized = listing !== 'head';
    it(`names a damaged shared blob once, with its first file and how many more need it; a truncated pack with its file (${how})`, async () => {
      const { repo, dir, files } = await backedUp(undefined, listing);
      const same = files.get('data/same/0.txt')!.chunks[0]!;
      const zero = files.get('data/zeros.bin')!.chunks[0]!;
      await flip(dir, repo, same);
      await flip(dir, repo, zero);
      const big = files.get('data/big.bin')!.chunks;
      const last = big.at(-1)!;
      if (typeof last === 'string') throw new Error('expected packed blocks');

      // objects are all there, whole: only reading back finds the damage
      expect((await verifyBackup(repo, backupId)).status).toBe('ok');
      const full = await verifyBackup(repo, backupId, { readDataPercent: 100 });
      expect(full.status).toBe('damaged');
      expect(full.problems).toHaveLength(2);
      expect(full.problems).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ kind: 'corrupt', node: 'n1', component: 'db', file: 'data/same/0.txt', alsoIn: 4, chunk: typeof same === 'string' ? same : same.sha256, object: repo.objectKeyOf(same) }),
          expect.objectContaining({ kind: 'corrupt', file: 'data/zeros.bin', alsoIn: 31, chunk: typeof zero === 'string' ? zero : zero.sha256 }),
        ]),
      );

      // the pack holding big.bin's last block loses its end
      await truncate(join(dir, repo.objectKeyOf(last)), last.offset + 10);
      const quick = await verifyBackup(repo, backupId);
      expect(quick.problems).toEqual([expect.objectContaining({ kind: 'truncated', file: 'data/big.bin', object: repo.objectKeyOf(last) })]);
      const read = await verifyBackup(repo, backupId, { readDataPercent: 100 });
      expect(read.problems.filter((p) => p.file === 'data/big.bin')).toEqual([expect.objectContaining({ kind: 'truncated' }), expect.objectContaining({ kind: 'corrupt', chunk: last.sha256 })]);
    });

    it(`names a damaged and a missing chunk object (a repository of 32 KiB chunk objects; ${how})`, async () => {
      const { repo, dir, files } = await backedUp(32 * 1024, listing);
      const big = files.get('data/big.bin')!.chunks;
      expect(typeof big[0]).toBe('string');
      await flip(dir, repo, big[5]!);
      await unlink(join(dir, repo.objectKeyOf(big[9]!)));
      const zero = files.get('data/zeros.bin')!.chunks[0]!;
      await flip(dir, repo, zero);

      const heads = (repo.driver as Partial<SizedListingFs>).heads ?? 0;
      const quick = await verifyBackup(repo, backupId);
      // sizes from the listing: no HEAD per object (~100 objects; the one left asks whether the backup is still there)
      if (sized) expect((repo.driver as SizedListingFs).heads - heads).toBeLessThanOrEqual(1);
      expect(quick.problems).toEqual([expect.objectContaining({ kind: 'missing', file: 'data/big.bin', chunk: big[9], object: repo.objectKeyOf(big[9]!) })]);
      const full = await verifyBackup(repo, backupId, { readDataPercent: 100 });
      expect(full.problems).toHaveLength(3);
      expect(full.problems).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ kind: 'missing', chunk: big[9] }),
          expect.objectContaining({ kind: 'corrupt', file: 'data/big.bin', chunk: big[5], alsoIn: undefined }),
          expect.objectContaining({ kind: 'corrupt', file: 'data/zeros.bin', chunk: zero, alsoIn: 31 }),
        ]),
      );
      expect(full.blobsRead).toBe(new Set([...files.values()].flatMap((f) => f.chunks.map(blobId))).size - 3);
    });
  }

  it('in a repository of many more objects, lists only around the backup\'s own (a store that lists from any key, as S3)', async () => {
    const { repo, dir, files } = await backedUp(undefined, 'paged');
    // other backups' packs: 8000 around this backup's few
    await otherPacks(dir);
    const driver = repo.driver as PagedListingFs;
    const ok = await verifyBackup(repo, backupId);
    expect(ok).toMatchObject({ status: 'ok', problems: [] });
    const last = files.get('data/big.bin')!.chunks.at(-1)!;
    await unlink(join(dir, repo.objectKeyOf(last)));
    driver.pages = 0;
    const heads = driver.heads;
    const quick = await verifyBackup(repo, backupId);
    expect(quick.problems).toContainEqual(expect.objectContaining({ kind: 'missing', file: 'data/big.bin', object: repo.objectKeyOf(last) }));
    // a page for each of its objects at most, where a listing of every pack takes 9
    expect(quick.objectsChecked).toBeLessThan(5);
    expect(driver.pages).toBeLessThanOrEqual(quick.objectsChecked);
    expect(driver.heads - heads).toBeLessThanOrEqual(1);
  });

  it('prune in a repository of many objects lists them in lanes at once: the backup kept keeps every object, the others all go', async () => {
    const { repo, dir } = await backedUp(undefined, 'paged');
    await otherPacks(dir);
    const driver = repo.driver as PagedListingFs;
    // a dry run counts what a prune frees (deleted a thousand at a time while the listing goes on), deleting nothing
    const dry = await prune(repo, { keepLast: 1 }, { dryRun: true });
    expect(dry).toMatchObject({ objectsDeleted: 8000, bytesFreed: 8000 });
    expect((await readdir(join(dir, 'packs'), { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).length).toBe(8000 + dry.objectsKept);
    driver.pages = 0;
    const report = await prune(repo, { keepLast: 1 });
    expect(report).toMatchObject({ removed: [], objectsDeleted: 8000, bytesFreed: 8000 });
    expect(report.objectsKept).toBeGreaterThan(0);
    expect(driver.mostListing).toBeGreaterThan(1);
    // 9 pages of a thousand one after the other, or a first one and then a page or two in each of 16 lanes
    expect(driver.pages).toBeLessThanOrEqual(1 + 16 * 2 + 1);
    expect(await verifyBackup(repo, backupId, { readDataPercent: 100 })).toMatchObject({ status: 'ok', problems: [] });
    expect((await readdir(join(dir, 'packs'), { recursive: true, withFileTypes: true })).filter((e) => e.isFile())).toHaveLength(report.objectsKept);
  });

  it('a store whose listing turns out not to be in key order is listed again: a dry run counts each object once, a prune deletes the same', async () => {
    const { dir } = await backedUp();
    await otherPacks(dir);
    /** a listing from any key whose later pages come in reverse order (a store that does not sort) */
    class UnsortedPages extends PagedListingFs {
      override async listPage(prefix: string, after: string, max: number) {
        const page = await super.listPage(prefix, after, max);
        return after === '' ? page : { ...page, objects: [...page.objects].reverse() };
      }
    }
    const repo = await Repository.open(new UnsortedPages(dir));
    const dry = await prune(repo, { keepLast: 1 }, { dryRun: true });
    expect(dry).toMatchObject({ objectsDeleted: 8000, bytesFreed: 8000 });
    const report = await prune(repo, { keepLast: 1 });
    expect(report).toMatchObject({ objectsDeleted: 8000, bytesFreed: 8000, objectsKept: dry.objectsKept });
    expect(await verifyBackup(repo, backupId, { readDataPercent: 100 })).toMatchObject({ status: 'ok', problems: [] });
  });

  it('a prune stopped mid-sweep lets the lock go only once no delete runs; the next prune finishes the job', async () => {
    const { repo, dir } = await backedUp(undefined, 'paged');
    await otherPacks(dir);
    const driver = repo.driver as PagedListingFs & { delete(key: string): Promise<void> };
    const stop = new AbortController();
    let deleted = 0;
    const deleteOne = driver.delete.bind(driver);
    driver.delete = async (key: string) => {
      if (key.startsWith('packs/') && ++deleted === 1500) stop.abort(new Error('stopped by the test'));
      return deleteOne(key);
    };
    const err = await prune(repo, { keepLast: 1 }, { signal: stop.signal }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/stopped by the test/);
    // nothing is deleted once it has returned
    const atReturn = deleted;
    await new Promise((r) => setTimeout(r, 100));
    expect(deleted).toBe(atReturn);
    expect(atReturn).toBeLessThan(8000);
    // the lock is free again; the next prune frees the rest and keeps the backup whole
    const rest = await prune(repo, { keepLast: 1 });
    expect(rest.objectsDeleted).toBe(8000 - atReturn);
    expect(await verifyBackup(repo, backupId, { readDataPercent: 100 })).toMatchObject({ status: 'ok', problems: [] });
  });

  it('a backup pruned while it is checked is named as gone, not as damaged', async () => {
    const { dir } = await backedUp();
    /** what a prune running meanwhile does: the manifest goes first, then the data */
    class PrunedMidway extends FsDriver {
      fired = false;
      override async head(key: string) {
        if (!this.fired && key.startsWith('packs/')) {
          this.fired = true;
          await this.delete(manifestKey(backupId));
          await this.delete(key);
        }
        return super.head(key);
      }
    }
    const racing = await Repository.open(new PrunedMidway(dir));
    const gone = await verifyBackup(racing, backupId).catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(LockstepError);
    expect((gone as LockstepError).code).toBe('LOCKSTEP_E_BACKUP_NOT_FOUND');
    expect((gone as LockstepError).message).toContain(`backup ${backupId} was removed`);
  });

  it('reads the indexes of several components at once, and names what they share by the first in the manifest whatever came back first', async () => {
    const dir = await temp('repo');
    /** index reads take time, the first component's longest; how many are on their way at most */
    class SlowIndexes extends FsDriver {
      reading = 0;
      most = 0;
      override async getBuffer(key: string, range?: ByteRange, signal?: AbortSignal): Promise<Buffer> {
        if (!key.includes('/nodes/')) return super.getBuffer(key, range, signal);
        this.most = Math.max(this.most, ++this.reading);
        try {
          await new Promise((r) => setTimeout(r, key.includes('/nodes/n1/') ? 80 : 10));
          return await super.getBuffer(key, range, signal);
        } finally {
          this.reading--;
        }
      }
    }
    const driver = new SlowIndexes(dir);
    const repo = await Repository.init(driver);
    const snap = await temp('snap');
    await makeData(snap);
    // six nodes holding the same files: every object is shared by all six
    const ups = [];
    for (let i = 1; i <= 6; i++) ups.push({ node: `n${i}`, plugin: 'directory', up: await uploadSnapshot(repo, snap, ['data'], { backupId, node: `n${i}`, component: 'db' }, quietJobContext()) });
    await commitUploads(repo, backupId, ups);
    const index = await repo.readIndex(ups[0]!.up.indexKey, ups[0]!.up.indexSha256);
    const same = index.entries.find((e): e is FileEntry => e.path === 'data/same/0.txt')!.chunks[0]!;
    await unlink(join(dir, repo.objectKeyOf(same)));

    driver.most = 0;
    const r = await verifyBackup(repo, backupId);
    expect(driver.most).toBeGreaterThanOrEqual(4);
    expect(r.status).toBe('damaged');
    expect(r.files).toBe(6 * 8);
    // one problem for the pack, named by n1's first file in it (n2–n6 were read first) and counting the other uses
    const missing = r.problems.filter((p) => p.object === repo.objectKeyOf(same));
    expect(missing).toEqual([expect.objectContaining({ kind: 'missing', node: 'n1', component: 'db' })]);
    expect(missing[0]!.alsoIn).toBeGreaterThan(5);
    // the same report as one index after the other gives, where nothing is slow
    const plain = await verifyBackup(await Repository.open(new FsDriver(dir)), backupId);
    expect(r.problems).toEqual(plain.problems);
  });
});
