/**
 * Which backup is the newest (what an upload dedups against): ids sort by the second a
 * backup began, then by name, so backups begun in the same second are ordered by the time
 * their manifests record, not by their names.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsDriver } from '../../plugins/storage/fs.js';
import { Repository } from '../../lib/repo/repository.js';
import { MANIFEST_VERSION, type Manifest } from '../../lib/repo/manifest.js';
import type { BackupReport } from '../../lib/report.js';

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
});
