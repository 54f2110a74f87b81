/**
 * Check records (lib/repo/checks.ts): what `backup verify` found is kept beside the backup,
 * found again from the listing of backups alone, read back whole (through the codec:
 * sealed when the repository is encrypted), never kept for a backup that is gone, and
 * removed with its backup.
 */
import { describe, expect, it, vi } from 'vitest';
import { readFile, readdir } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { FsDriver } from '../../plugins/storage/fs.js';
import { oldestFirst, Repository } from '../../lib/repo/repository.js';
import { MANIFEST_VERSION, type Manifest } from '../../lib/repo/manifest.js';
import { verifyBackup, type VerifyReport } from '../../lib/repo/verify.js';
import { lastChecks, listChecks, readCheck, recordCheck, stalestChecked } from '../../lib/repo/checks.js';
import { checkKey, checkOfKey, type CheckSummary } from '../../lib/repo/layout.js';
import { deleteBackup, prune } from '../../lib/repo/prune.js';
import type { BackupReport } from '../../lib/report.js';
import { tempFolders } from '../helpers/temp.js';

const temp = tempFolders();

async function committed(repo: Repository, backupId: string, committedAt = new Date().toISOString(), status: Manifest['status'] = 'complete'): Promise<void> {
  const m: Manifest = { version: MANIFEST_VERSION, backupId, name: backupId.slice(16), cluster: 'test', repositoryId: repo.id, status, startedAt: committedAt, committedAt, topology: [], components: [], report: {} as BackupReport };
  await repo.commitManifest(m);
}

async function filesUnder(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

describe('check records', () => {
  it("a record's key tells when, the outcome and how much was read back; other keys are not records", () => {
    for (const readDataPercent of [0, 5, 0.5, 100, 1e-7]) {
      const c: CheckSummary = { backupId: '20261204-010203-nightly', at: '2026-12-04T13:40:05.123Z', status: readDataPercent === 5 ? 'damaged' : 'ok', readDataPercent };
      const key = checkKey(c, 'a1b2c3d4');
      expect(key.startsWith('backups/20261204-010203-nightly/checks/20261204T134005123Z_')).toBe(true);
      expect(checkOfKey(key)).toEqual(c);
    }
    for (const key of [
      'backups/20261204-010203-nightly/manifest.json',
      'backups/20261204-010203-nightly/nodes/node1/data.json',
      'backups/20261204-010203-nightly/checks/20261204T134005123Z_fine_5_ab.json',
      'backups/20261204-010203-nightly/checks/20261204T134005123Z_ok_500_ab.json',
      'backups/20261204-010203-nightly/checks/20261304T134005123Z_ok_5_ab.json',
      'backups/20261204-010203-nightly/checks/x/20261204T134005123Z_ok_5_ab.json',
    ]) {
      expect(checkOfKey(key), key).toBeUndefined();
    }
  });

  it('is found from the listing of backups, read back whole, and sealed in an encrypted repository', async () => {
    const dir = await temp('repo');
    const repo = await Repository.init(new FsDriver(dir), { secret: randomBytes(32) });
    await committed(repo, '20261204-010000-one');
    await committed(repo, '20261204-020000-two');
    expect((await repo.listBackups()).checks.size).toBe(0);

    const quick = await verifyBackup(repo, '20261204-010000-one');
    const k1 = await recordCheck(repo, quick, new Date('2026-12-04T03:00:00.000Z'));
    const damaged: VerifyReport = { ...quick, status: 'damaged', readDataPercent: 5, seed: 'abc', problems: [{ kind: 'missing', node: 'node1', component: 'data', file: 'big.bin', chunk: 'f'.repeat(64), object: 'packs/ab/abcd', message: 'not there' }] };
    const k2 = await recordCheck(repo, damaged, new Date('2026-12-04T04:00:00.000Z'));
    const k3 = await recordCheck(repo, quick, new Date('2026-12-04T05:00:00.000Z'));
    expect([k1, k2, k3].every((k) => k?.startsWith('backups/20261204-010000-one/checks/'))).toBe(true);

    const { ids, checks } = await repo.listBackups();
    expect(ids).toEqual(['20261204-010000-one', '20261204-020000-two']);
    expect(checks.get('20261204-020000-two')).toBeUndefined();
    const mine = checks.get('20261204-010000-one')!;
    expect(mine).toHaveLength(3);
    const { last, lastReadBack } = lastChecks(mine);
    expect(last).toEqual({ backupId: '20261204-010000-one', at: '2026-12-04T05:00:00.000Z', status: 'ok', readDataPercent: 0 });
    expect(lastReadBack).toEqual({ backupId: '20261204-010000-one', at: '2026-12-04T04:00:00.000Z', status: 'damaged', readDataPercent: 5 });

    const listed = await listChecks(repo, '20261204-010000-one');
    expect(listed.map((l) => l.check.at)).toEqual(['2026-12-04T03:00:00.000Z', '2026-12-04T04:00:00.000Z', '2026-12-04T05:00:00.000Z']);
    const record = await readCheck(repo, listed[1]!.key);
    expect(record).toMatchObject({ backupId: '20261204-010000-one', status: 'damaged', readDataPercent: 5, seed: 'abc', host: hostname(), problems: 1 });
    expect(record.firstProblems[0]).toMatchObject({ kind: 'missing', file: 'big.bin', object: 'packs/ab/abcd' });
    // sealed: nothing of the report is readable in the stored object
    const stored = await readFile(join(dir, listed[1]!.key));
    expect(stored.includes('big.bin')).toBe(false);
    expect(stored.includes('damaged')).toBe(false);
  });

  it('is not kept for a backup that is gone; goes with its backup (delete, prune); a leftover record is not listed and prune removes it', async () => {
    const dir = await temp('repo');
    const repo = await Repository.init(new FsDriver(dir));
    await committed(repo, '20261201-010000-old', '2026-12-01T01:00:00.000Z');
    await committed(repo, '20261202-010000-mid', '2026-12-02T01:00:00.000Z');
    await committed(repo, '20261203-010000-new', '2026-12-03T01:00:00.000Z');
    for (const id of ['20261201-010000-old', '20261202-010000-mid', '20261203-010000-new']) expect(await recordCheck(repo, await verifyBackup(repo, id))).toBeDefined();

    const report = await verifyBackup(repo, '20261202-010000-mid');
    await deleteBackup(repo, '20261202-010000-mid');
    expect(await recordCheck(repo, report)).toBeUndefined();
    expect((await filesUnder(dir)).filter((f) => f.startsWith('backups/20261202-010000-mid/'))).toEqual([]);

    // what a check that ended just after its backup was pruned would leave
    const stray = checkKey({ backupId: '20261202-010000-mid', at: new Date().toISOString(), status: 'ok', readDataPercent: 0 }, 'ffff');
    await repo.driver.put(stray, Buffer.from('{}'));
    expect([...(await repo.listBackups()).checks.keys()].sort()).toEqual(['20261201-010000-old', '20261203-010000-new']);

    const pruned = await prune(repo, { keepLast: 1 });
    expect(pruned.removed).toEqual(['20261201-010000-old']);
    expect(pruned.leftoversDeleted).toBe(1);
    const left = (await filesUnder(dir)).filter((f) => f.startsWith('backups/'));
    expect(left).toHaveLength(2);
    expect(left[0]).toBe('backups/20261203-010000-new/checks/' + left[0]!.split('/').at(-1));
    expect(left[1]).toBe('backups/20261203-010000-new/manifest.json');
  });

  it('backups begun in the same second are listed in the order they began, as latest sees them, not by name', async () => {
    const repo = await Repository.init(new FsDriver(await temp('repo')));
    await committed(repo, '20261201-010000-zzz', '2026-12-01T01:00:00.100Z');
    await committed(repo, '20261201-010000-aaa', '2026-12-01T01:00:00.900Z');
    await committed(repo, '20261201-005959-zzz', '2026-12-01T00:59:59.999Z');
    const { ids } = await repo.listBackups();
    expect(ids).toEqual(['20261201-005959-zzz', '20261201-010000-aaa', '20261201-010000-zzz']);
    const listed = oldestFirst(await repo.listManifests(ids)).map((r) => r.backupId);
    expect(listed).toEqual(['20261201-005959-zzz', '20261201-010000-zzz', '20261201-010000-aaa']);
    expect((await repo.latestComplete()).backupId).toBe(listed.at(-1));
  });

  it('stalest: the complete backup never checked (the oldest of those), else the one checked longest ago, by the kind of check asked for', async () => {
    const dir = await temp('repo');
    const repo = await Repository.init(new FsDriver(dir));
    const none = await stalestChecked(repo, true).catch((e: unknown) => e);
    expect((none as { code?: string }).code).toBe('LOCKSTEP_E_BACKUP_NOT_FOUND');
    await committed(repo, '20261201-010000-old', '2026-12-01T01:00:00.000Z');
    await committed(repo, '20261201-020000-part', '2026-12-01T02:00:00.000Z', 'partial');
    await committed(repo, '20261202-010000-mid', '2026-12-02T01:00:00.000Z');
    await committed(repo, '20261203-010000-new', '2026-12-03T01:00:00.000Z');
    const check = async (id: string, readDataPercent: number, at: string) => recordCheck(repo, { ...(await verifyBackup(repo, id)), readDataPercent }, new Date(at));

    expect(await stalestChecked(repo, true)).toBe('20261201-010000-old');
    await check('20261201-010000-old', 5, '2026-12-03T02:00:00.000Z');
    expect(await stalestChecked(repo, true)).toBe('20261202-010000-mid');
    await check('20261202-010000-mid', 5, '2026-12-03T03:00:00.000Z');
    // a check that read nothing back does not count for a read-back one
    await check('20261203-010000-new', 0, '2026-12-03T04:00:00.000Z');
    expect(await stalestChecked(repo, true)).toBe('20261203-010000-new');
    expect(await stalestChecked(repo, false)).toBe('20261201-010000-old');
    await check('20261203-010000-new', 10, '2026-12-03T05:00:00.000Z');
    // every one read back once: the one read back longest ago; never the partial one
    expect(await stalestChecked(repo, true)).toBe('20261201-010000-old');
    await check('20261201-010000-old', 5, '2026-12-04T02:00:00.000Z');
    expect(await stalestChecked(repo, true)).toBe('20261202-010000-mid');

    // many more backups, each checked since: the pick reads the manifests in the order it
    // picks, a few at a time, not every one in the repository
    for (let d = 10; d < 22; d++) {
      const id = `202612${d}-010000-more`;
      await committed(repo, id, `2026-12-${d}T01:00:00.000Z`);
      await check(id, 5, `2026-12-${d}T02:00:00.000Z`);
    }
    const reads = vi.spyOn(repo, 'readManifest');
    expect(await stalestChecked(repo, true)).toBe('20261202-010000-mid');
    expect(reads.mock.calls.length).toBeLessThanOrEqual(4);
    reads.mockRestore();
  });
});
