/**
 * Which backup is the newest (what an upload dedups against): ids sort by the second a
 * backup began, then by name, so backups begun in the same second are ordered by the time
 * their manifests record, not by their names.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { FsDriver } from '../../plugins/storage/fs.js';
import type { ByteRange } from '../../plugins/storage/types.js';
import { Repository } from '../../lib/repo/repository.js';
import { MANIFEST_VERSION, type Manifest } from '../../lib/repo/manifest.js';
import { checkKey } from '../../lib/repo/layout.js';
import type { BackupReport } from '../../lib/report.js';
import { LockstepError } from '../../lib/errors.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function manifest(repo: Repository, backupId: string, startedAt: string): Manifest {
  return {
    version: MANIFEST_VERSION,
    backupId,
    name: backupId.slice(16),
    cluster: 'test',
    repositoryId: repo.id,
    status: 'complete',
    startedAt,
    committedAt: startedAt,
    topology: [],
    components: [],
    report: {} as BackupReport,
  };
}

describe('newest backup first', () => {
  it('orders backups of the same second by when they began; others by their second', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lockstep-order-'));
    dirs.push(dir);
    const repo = await Repository.init(new FsDriver(dir));
    // "zz" began first and "aa" a little later, in the same second; "mm" a second before both
    await repo.commitManifest(manifest(repo, '20261203-101010-zz', '2026-12-03T10:10:10.100Z'));
    await repo.commitManifest(manifest(repo, '20261203-101010-aa', '2026-12-03T10:10:10.900Z'));
    await repo.commitManifest(manifest(repo, '20261203-101009-mm', '2026-12-03T10:10:09.500Z'));
    await repo.commitManifest(manifest(repo, '20261203-101011-now', '2026-12-03T10:10:11.000Z'));
    const ids: string[] = [];
    for await (const { id, manifest: m } of repo.newestFirst('20261203-101011-now')) {
      expect((await m).backupId).toBe(id);
      ids.push(id);
    }
    expect(ids).toEqual(['20261203-101010-aa', '20261203-101010-zz', '20261203-101009-mm']);
  });

  it('reads manifests ahead only once the reader goes past the newest, a few at a time; a damaged one is named in its turn', async () => {
    /** an fs repository whose manifest reads take a while, counted */
    class SlowManifests extends FsDriver {
      started = 0;
      inFlight = 0;
      most = 0;
      private async counted<T>(key: string, read: () => Promise<T>): Promise<T> {
        if (!key.endsWith('/manifest.json')) return read();
        this.started++;
        this.most = Math.max(this.most, ++this.inFlight);
        try {
          await sleep(5);
          return await read();
        } finally {
          this.inFlight--;
        }
      }
      override get(key: string, range?: ByteRange, signal?: AbortSignal): Promise<Readable> {
        return this.counted(key, () => super.get(key, range, signal));
      }
      override getBuffer(key: string, range?: ByteRange, signal?: AbortSignal): Promise<Buffer> {
        return this.counted(key, () => super.getBuffer(key, range, signal));
      }
    }
    const dir = await mkdtemp(join(tmpdir(), 'lockstep-ahead-'));
    dirs.push(dir);
    const driver = new SlowManifests(dir);
    const repo = await Repository.init(driver);
    const ids = Array.from({ length: 30 }, (_, i) => `20261203-10${String(10 + i).padStart(2, '0')}00-b${i}`);
    for (const [i, id] of ids.entries()) await repo.commitManifest(manifest(repo, id, `2026-12-03T10:${10 + i}:00.000Z`));
    await writeFile(join(dir, 'backups', ids[12]!, 'manifest.json'), 'not a manifest');

    // an upload whose node is in the newest backup reads that manifest only
    driver.started = 0;
    for await (const { manifest: m } of repo.newestFirst()) {
      await m;
      break;
    }
    expect(driver.started).toBe(1);

    // one that looks through all of them gets every one, in order, several at once after the first few
    driver.started = 0;
    driver.most = 0;
    const seen: string[] = [];
    const damaged: string[] = [];
    for await (const { id, manifest: m } of repo.newestFirst()) {
      seen.push(id);
      await m.then(
        (got) => expect(got.backupId).toBe(id),
        () => damaged.push(id),
      );
    }
    expect(seen).toEqual([...ids].reverse());
    expect(damaged).toEqual([ids[12]]);
    expect(driver.started).toBe(30);
    expect(driver.most).toBeGreaterThan(1);
    expect(driver.most).toBeLessThanOrEqual(9);

    // one that stops half-way leaves no read behind that fails unheard (the damaged one is read ahead here)
    let n = 0;
    for await (const { manifest: m } of repo.newestFirst()) {
      await m;
      if (++n === 15) break;
    }
    await sleep(50);
  });

  it('latest: the newest complete backup, a partial one passed over (taken when partial ones are allowed); a damaged manifest on the way is named, not skipped', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lockstep-latest-'));
    dirs.push(dir);
    const repo = await Repository.init(new FsDriver(dir));
    const none = await repo.latestComplete().catch((e: unknown) => e as LockstepError);
    expect(none).toBeInstanceOf(LockstepError);
    expect((none as LockstepError).code).toBe('LOCKSTEP_E_BACKUP_NOT_FOUND');

    await repo.commitManifest(manifest(repo, '20261203-090000-old', '2026-12-03T09:00:00.000Z'));
    await repo.commitManifest(manifest(repo, '20261203-101010-zz', '2026-12-03T10:10:10.100Z'));
    await repo.commitManifest(manifest(repo, '20261203-101010-aa', '2026-12-03T10:10:10.900Z'));
    expect((await repo.latestComplete()).backupId).toBe('20261203-101010-aa');
    await repo.commitManifest({ ...manifest(repo, '20261203-110000-half', '2026-12-03T11:00:00.000Z'), status: 'partial' });
    expect((await repo.latestComplete()).backupId).toBe('20261203-101010-aa');
    // restore latest --allow-partial: the newest, partial or not
    expect((await repo.latestComplete(true)).backupId).toBe('20261203-110000-half');

    await mkdir(join(dir, 'backups', '20261203-120000-bad'), { recursive: true });
    await writeFile(join(dir, 'backups', '20261203-120000-bad', 'manifest.json'), 'garbage');
    const bad = await repo.latestComplete().catch((e: unknown) => e as LockstepError);
    expect(bad).toBeInstanceOf(LockstepError);
    expect((bad as LockstepError).code).toBe('LOCKSTEP_E_REPO_CORRUPT');
    expect((bad as LockstepError).message).toContain('backups/20261203-120000-bad/manifest.json');
    expect((bad as LockstepError).hint).toContain('lockstep backup delete 20261203-120000-bad');
  });

  it("the backups' listing: committed ones with their checks, a folder without a manifest passed over, and no index part listed where the store lists a level at a time; the same from one that cannot", async () => {
    /** an fs store that counts the keys its plain listings go through */
    class Counting extends FsDriver {
      listed = 0;
      override async *list(prefix: string): AsyncIterable<string> {
        for await (const k of super.list(prefix)) {
          this.listed++;
          yield k;
        }
      }
    }
    const dir = await mkdtemp(join(tmpdir(), 'lockstep-listing-'));
    dirs.push(dir);
    const driver = new Counting(dir);
    const repo = await Repository.init(driver);
    const ids = ['20261203-090000-a', '20261203-100000-b', '20261203-110000-c'];
    for (const id of ids) {
      await repo.commitManifest(manifest(repo, id, `${id.slice(0, 4)}-12-03T${id.slice(9, 11)}:00:00.000Z`));
      for (let n = 0; n < 200; n++) await driver.put(`backups/${id}/nodes/n1/data.parts/${String(n).padStart(6, '0')}.json`, Buffer.from('{}'));
    }
    const check = { backupId: ids[1]!, at: '2026-12-03T12:00:00.000Z', status: 'ok' as const, readDataPercent: 0 };
    await driver.put(checkKey(check, 'ab12'), Buffer.from('{}'));
    // a backup begun and never committed: its parts, no manifest
    await driver.put('backups/20261203-120000-d/nodes/n1/data.parts/000000.json', Buffer.from('{}'));

    const want = { ids, checks: new Map([[ids[1], [check]]]) };
    driver.listed = 0;
    expect(await repo.listBackups()).toEqual(want);
    // the one check record, not 600 index parts
    expect(driver.listed).toBe(1);
    const newest: string[] = [];
    for await (const { id } of repo.newestFirst()) newest.push(id);
    expect(newest).toEqual([...ids].reverse());

    // a store without one-level listings: one plain listing of backups/, the same answers
    Object.defineProperty(driver, 'listShallow', { value: undefined });
    const deep = await Repository.open(driver);
    driver.listed = 0;
    expect(await deep.listBackups()).toEqual(want);
    expect(driver.listed).toBeGreaterThan(600);
    newest.length = 0;
    for await (const { id } of deep.newestFirst()) newest.push(id);
    expect(newest).toEqual([...ids].reverse());
  });
});

