/**
 * Giving one backup up (`lockstep backup delete`): its manifest and indexes go, under the
 * repository's lock; nothing of any other backup is touched.
 */
import { describe, expect, it } from 'vitest';
import { readdir } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { FsDriver } from '../../plugins/storage/fs.js';
import { Repository } from '../../lib/repo/repository.js';
import { MANIFEST_VERSION, type Manifest } from '../../lib/repo/manifest.js';
import { deleteBackup, prune } from '../../lib/repo/prune.js';
import { RepoLock } from '../../lib/repo/lock.js';
import { LockstepError } from '../../lib/errors.js';
import type { BackupReport } from '../../lib/report.js';
import { tempFolders } from '../helpers/temp.js';
import { SizedListingFs } from '../helpers/repo.js';
import { packKey } from '../../lib/repo/layout.js';
import { INDEX_VERSION } from '../../lib/repo/index-file.js';

const temp = tempFolders();

async function committed(repo: Repository, backupId: string): Promise<void> {
  const at = new Date().toISOString();
  const m: Manifest = { version: MANIFEST_VERSION, backupId, name: backupId.slice(16), cluster: 'test', repositoryId: repo.id, status: 'complete', startedAt: at, committedAt: at, topology: [], components: [], report: {} as BackupReport };
  await repo.commitManifest(m);
  await repo.driver.put(`backups/${backupId}/node1/data.index`, Buffer.from('an index'));
  await repo.driver.put(`packs/${backupId.slice(-3)}.pack`, Buffer.from('data'));
}

async function keysUnder(dir: string, sub: string): Promise<string[]> {
  return (await readdir(join(dir, sub), { recursive: true, withFileTypes: true }).catch(() => []))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

describe('backup delete', () => {
  it("removes the backup's manifest and indexes, nothing else; a backup that is not there is named", async () => {
    const dir = await temp('repo');
    const repo = await Repository.init(new FsDriver(dir));
    await committed(repo, '20261204-010000-one');
    await committed(repo, '20261204-020000-two');

    const report = await deleteBackup(repo, '20261204-010000-one');
    expect(report).toMatchObject({ kind: 'delete', backupId: '20261204-010000-one', objectsDeleted: 2 });
    expect(await repo.listBackupIds()).toEqual(['20261204-020000-two']);
    expect(await keysUnder(dir, 'backups')).toEqual(['backups/20261204-020000-two/manifest.json', 'backups/20261204-020000-two/node1/data.index']);
    // data is prune's to free
    expect(await keysUnder(dir, 'packs')).toEqual(['packs/one.pack', 'packs/two.pack']);

    const gone = await deleteBackup(repo, '20261204-010000-one').catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(LockstepError);
    expect((gone as LockstepError).code).toBe('LOCKSTEP_E_BACKUP_NOT_FOUND');
    expect((gone as LockstepError).message).toContain('20261204-010000-one');
  });

  it('a big index goes many parts at once, after the manifest: a deletion cut short leaves no backup naming what is gone', async () => {
    const dir = await temp('repo');
    /** an fs store that counts deletes in flight, and fails them once told to */
    class Counting extends FsDriver {
      inFlight = 0;
      most = 0;
      failFrom = Infinity;
      deleted = 0;
      override async delete(key: string): Promise<void> {
        // (the lock's own objects are not the backup's)
        if (!key.startsWith('backups/')) return super.delete(key);
        if (++this.deleted > this.failFrom) throw new Error('store unreachable');
        this.most = Math.max(this.most, ++this.inFlight);
        try {
          await new Promise((r) => setTimeout(r, 2));
          await super.delete(key);
        } finally {
          this.inFlight--;
        }
      }
    }
    const driver = new Counting(dir);
    const repo = await Repository.init(driver);
    for (const id of ['20261204-010000-one', '20261204-020000-two']) {
      await committed(repo, id);
      for (let n = 0; n < 100; n++) await driver.put(`backups/${id}/nodes/node1/data.parts/${String(n).padStart(6, '0')}.json`, Buffer.from('{}'));
    }
    const report = await deleteBackup(repo, '20261204-010000-one');
    expect(report.objectsDeleted).toBe(102);
    expect(driver.most).toBeGreaterThan(1);
    expect(await keysUnder(dir, 'backups/20261204-010000-one')).toEqual([]);

    // the store fails after the first delete: the manifest is what went
    driver.failFrom = driver.deleted + 1;
    await expect(deleteBackup(repo, '20261204-020000-two')).rejects.toThrow(/unreachable/);
    expect(await repo.listBackupIds()).toEqual([]);
    expect(await keysUnder(dir, 'backups/20261204-020000-two')).toHaveLength(101);
  });

  it('prune frees the same bytes whether the store lists sizes (no HEAD per object) or not', async () => {
    for (const sized of [false, true]) {
      const dir = await temp('repo');
      const driver = sized ? new SizedListingFs(dir) : new FsDriver(dir);
      const repo = await Repository.init(driver);
      await committed(repo, '20261204-010000-one');
      await committed(repo, '20261204-020000-two');
      const report = await prune(repo, { keepLast: 1 });
      // neither backup's index names its pack here: both go, 4 bytes each
      expect(report).toMatchObject({ removed: ['20261204-010000-one'], objectsDeleted: 2, bytesFreed: 8 });
      expect(await keysUnder(dir, 'packs')).toEqual([]);
      if (sized) expect((driver as SizedListingFs).heads).toBe(0);
    }
  });

  it("prune keeps the packs of runs that did not commit their component (never committed, or partial without it), named by their records' keys (no record read); a committed component's records keep nothing", async () => {
    const dir = await temp('repo');
    /** an fs store that counts reads of pending records */
    class Counting extends FsDriver {
      pendingReads = 0;
      override get(key: string, range?: Parameters<FsDriver['get']>[1], signal?: AbortSignal) {
        if (key.startsWith('pending/')) this.pendingReads++;
        return super.get(key, range, signal);
      }
      override getBuffer(key: string, range?: Parameters<FsDriver['getBuffer']>[1]) {
        if (key.startsWith('pending/')) this.pendingReads++;
        return super.getBuffer(key, range);
      }
    }
    const driver = new Counting(dir);
    const repo = await Repository.init(driver);
    /** a backup that committed node1/data (its index names no file), and node2/data when `partial` is false */
    const committedWith = async (backupId: string, partial: boolean) => {
      const at = new Date().toISOString();
      const components = [];
      for (const node of partial ? ['node2'] : ['node1', 'node2']) {
        const indexKey = `backups/${backupId}/nodes/${node}/data.json`;
        const sha = await repo.writeIndex(indexKey, { version: INDEX_VERSION, backupId, node, component: 'data', chunkSize: repo.config.chunkSize, sets: ['data'], entries: [] });
        components.push({ node, component: 'data', plugin: 'directory', shard: node, indexKey, indexSha256: sha, files: 0, bytes: 0 });
      }
      await repo.commitManifest({ version: MANIFEST_VERSION, backupId, name: 'x', cluster: 'test', repositoryId: repo.id, status: partial ? 'partial' : 'complete', startedAt: at, committedAt: at, topology: [], components, report: {} as BackupReport });
    };
    await committedWith('20261204-010000-one', false);
    await committedWith('20261204-020000-two', false);
    // node1's agent was killed in the third: the backup committed as partial, without node1
    await committedWith('20261204-030000-three', true);
    const packOf = (b: string) => createHash('sha256').update(b).digest('hex');
    // each backup's run of node1/data left a record of one pack; the fourth run was cut short and never committed
    for (const b of ['20261204-010000-one', '20261204-020000-two', '20261204-030000-three', '20261204-040000-four']) {
      await repo.putPack({ pack: packOf(b), blobs: [] }, Buffer.from(b), { node: 'node1', component: 'data', backupId: b });
    }
    const report = await prune(repo, { keepLast: 2 });
    expect(report.removed).toEqual(['20261204-010000-one']);
    expect(driver.pendingReads).toBe(0);
    // the runs that did not commit node1/data keep their packs for the run that resumes them; the
    // committed ones' records kept nothing (here their indexes name no pack, so nothing of theirs stays either)
    expect(await keysUnder(dir, 'packs')).toEqual([packKey(packOf('20261204-030000-three')), packKey(packOf('20261204-040000-four'))].sort());
    expect(await keysUnder(dir, 'pending')).toHaveLength(4);
  });

  it('waits for nobody: while a backup or prune holds the repository it is refused, naming the holder', async () => {
    const dir = await temp('repo');
    const repo = await Repository.init(new FsDriver(dir));
    await committed(repo, '20261204-010000-one');
    const held = await RepoLock.acquire(repo.driver, 'backup');
    try {
      const refused = await deleteBackup(repo, '20261204-010000-one').catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(LockstepError);
      expect((refused as LockstepError).code).toBe('LOCKSTEP_E_REPO_LOCKED');
      expect((refused as LockstepError).message).toContain(`in use by backup (host`);
      expect(await repo.listBackupIds()).toEqual(['20261204-010000-one']);
    } finally {
      await held.release();
    }
    await deleteBackup(repo, '20261204-010000-one');
    expect(await repo.listBackupIds()).toEqual([]);
  });
});
