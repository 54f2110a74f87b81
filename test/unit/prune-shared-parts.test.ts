/**
 * Prune reads what the kept backups need part by part, and passes over the parts of an index
 * that the one before it of the same node and component already had (an incremental copies
 * its previous index's unchanged parts): fewer parts read, the same objects kept.
 */
import { describe, expect, it } from 'vitest';
import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FsDriver } from '../../plugins/storage/fs.js';
import type { ByteRange } from '../../plugins/storage/types.js';
import { Repository } from '../../lib/repo/repository.js';
import { MANIFEST_VERSION, type Manifest } from '../../lib/repo/manifest.js';
import { SharedParts, prune } from '../../lib/repo/prune.js';
import { verifyBackup } from '../../lib/repo/verify.js';
import type { BackupReport } from '../../lib/report.js';
import type { IndexPart } from '../../lib/repo/index-file.js';
import { uploadSnapshot } from '../../agent/transfer/upload.js';
import { tempFolders } from '../helpers/temp.js';
import { quietJobContext } from '../helpers/job.js';

const temp = tempFolders();

/** an fs store that counts the index parts read from it */
class CountingParts extends FsDriver {
  partsRead = 0;
  override get(key: string, range?: ByteRange, signal?: AbortSignal) {
    if (key.includes('.parts/')) this.partsRead++;
    return super.get(key, range, signal);
  }
  override getBuffer(key: string, range?: ByteRange, signal?: AbortSignal) {
    if (key.includes('.parts/')) this.partsRead++;
    return super.getBuffer(key, range, signal);
  }
}

describe('prune: parts an index shares with the one before it', () => {
  it('are not read again; every object the kept backups need stays, the rest goes', async () => {
    const snap = await temp('snap');
    // ~12k files in 12 folders: an index of several 512 KiB parts; mtimes an hour back (a file
    // whose read began within 2 s of its change is read again by the next backup, so its entry
    // would change: the first backup waits out their ctimes below)
    const hourAgo = new Date(Date.now() - 3600_000);
    for (let d = 0; d < 12; d++) {
      const folder = join(snap, 'data', `d${String(d).padStart(2, '0')}`);
      await mkdir(folder, { recursive: true });
      await Promise.all(
        Array.from({ length: 1000 }, async (_, i) => {
          const file = join(folder, `file-${String(i).padStart(5, '0')}.row`);
          await writeFile(file, `row ${d} ${i}`);
          await utimes(file, hourAgo, hourAgo);
        }),
      );
    }
    await new Promise((r) => setTimeout(r, 2100));
    const driver = new CountingParts(await temp('repo'));
    const repo = await Repository.init(driver);
    const cacheFile = join(await temp('state'), 'index-cache', 'db.copy');
    const ids = ['20261205-010000-a', '20261205-020000-b', '20261205-030000-c', '20261205-040000-d'];
    let parts = 0;
    for (const [n, backupId] of ids.entries()) {
      if (n > 0) {
        // one file of the last folder changed: the parts before it are copied
        const changed = join(snap, 'data', 'd11', 'file-00500.row');
        await writeFile(changed, `changed in ${backupId}`);
        const at = new Date(hourAgo.getTime() + n * 60_000);
        await utimes(changed, at, at);
      }
      const up = await uploadSnapshot(repo, snap, ['data'], { backupId, node: 'n1', component: 'db', cacheFile }, quietJobContext());
      if (n > 0) expect(up.indexPartsReused).toBeGreaterThan(0);
      parts += up.indexParts ?? 0;
      const at = new Date(Date.parse('2026-12-05T00:00:00Z') + n * 3600_000).toISOString();
      const m: Manifest = {
        version: MANIFEST_VERSION, backupId, name: backupId.slice(16), cluster: 'test', repositoryId: repo.id, status: 'complete', startedAt: at, committedAt: at, topology: [],
        components: [{ node: 'n1', component: 'db', plugin: 'directory', shard: 's1', indexKey: up.indexKey, indexSha256: up.indexSha256, files: up.files, bytes: up.bytes }],
        report: {} as BackupReport,
      };
      await repo.commitManifest(m);
    }
    expect(parts).toBeGreaterThanOrEqual(4 * 3);

    // nothing given up: the oldest index read whole, of the others only what changed
    driver.partsRead = 0;
    const all = await prune(repo, { keepLast: 4 });
    expect(all.removed).toEqual([]);
    expect(all.objectsDeleted).toBe(0);
    expect(driver.partsRead).toBeLessThan(parts / 2);

    // the two oldest given up: what only they needed goes (the changed file's old rows), the rest stays whole
    const two = await prune(repo, { keepLast: 2 });
    expect(two.removed).toEqual(ids.slice(0, 2));
    expect(two.objectsDeleted).toBeGreaterThan(0);
    for (const id of ids.slice(2)) expect(await verifyBackup(repo, id, { readDataPercent: 100 })).toMatchObject({ status: 'ok', problems: [] });
  });

  it('a part is passed over only with the same hash and a pack table that starts with the last one', () => {
    const part = (sha256: string): IndexPart => ({ key: `k-${sha256}`, sha256, entries: 1 });
    const shared = new SharedParts();
    const first = shared.next('n1/db');
    expect([first.pass(part('a'), ['p1', 'p2']), first.pass(part('b'), ['p1', 'p2'])]).toEqual([false, false]);
    first.done();
    // the same parts, the table grown at its end: passed over; a new part read
    const second = shared.next('n1/db');
    expect([second.pass(part('a'), ['p1', 'p2', 'p3']), second.pass(part('c'), ['p1', 'p2', 'p3'])]).toEqual([true, false]);
    second.done();
    // a table that does not start with the last one: its numbers name other packs: read
    const third = shared.next('n1/db');
    expect(third.pass(part('a'), ['p2', 'p1', 'p3'])).toBe(false);
    third.done();
    // another node's index: read
    expect(shared.next('n2/db').pass(part('a'), ['p2', 'p1', 'p3'])).toBe(false);
    // an index without a pack table: read
    const fourth = shared.next('n1/db');
    expect(fourth.pass(part('a'), undefined)).toBe(false);
    expect([shared.passed, shared.read]).toEqual([1, 6]);
  });
});
