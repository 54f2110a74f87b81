/**
 * An incremental stores again, by the store's copy, the parts of the previous backup's
 * file index whose entries did not change: through the real agent, into an fs repository
 * and an encrypted one on Ceph RGW.
 * What a user checks: the report says how many parts were reused, the backup verifies and
 * restores exactly, deleting the older backup takes nothing from the newer one, and a part
 * that can no longer be copied costs only the reuse.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { LocalCluster } from '../../demo/local-cluster.js';
import { fingerprint } from '../../demo/fixtures.js';
import type { BackupReport, RestoreReport } from '../../lib/report.js';
import type { UploadResult } from '../../lib/wire.js';
import type { StorageDriver } from '../../plugins/storage/types.js';
import { FsDriver } from '../../plugins/storage/fs.js';
import { s3Driver } from '../../plugins/storage/s3.js';
import { json, runCli, startCluster, stopCluster, tempDir } from '../helpers/cluster.js';
import { leftoversBeside } from '../helpers/leftovers.js';
import { rgwBucket } from '../helpers/s3.js';

const settle = () => new Promise((r) => setTimeout(r, 2100));

/** the repository's settings and a driver onto the same store (fs: the cluster's own folder) */
type Store = (cluster?: LocalCluster) => Promise<{ settings?: Record<string, unknown>; driver: (cluster: LocalCluster) => StorageDriver; cleanup?: () => Promise<void> }>;

const fsStore: Store = async () => ({ driver: (c) => new FsDriver(c.repoDir) });

const rgwStore: Store = async () => {
  const keyDir = await tempDir('lockstep-key-');
  const keyFile = join(keyDir, 'repo.key');
  await writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  const { driver: _d, ...s3 } = await rgwBucket();
  const prefix = `reuse-${randomBytes(4).toString('hex')}`;
  return {
    settings: { driver: 's3', ...s3, prefix, encryption: { keyFile } },
    driver: () => s3Driver.open({ ...s3, prefix }, '/'),
    cleanup: () => rm(keyDir, { recursive: true, force: true }),
  };
};

describe.each([
  ['an fs repository', fsStore],
  ['an encrypted repository on Ceph RGW', rgwStore],
])('file index parts reused by an incremental, into %s', (_name, store) => {
  let cluster: LocalCluster;
  let driver: StorageDriver;
  let cleanup: (() => Promise<void>) | undefined;
  const cli = (args: string[]) => runCli(args, { config: cluster.configFile });
  const backup = async (name: string): Promise<{ report: BackupReport; up: UploadResult }> => {
    const r = await cli(['backup', 'create', '--name', name, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = json<BackupReport>(r.stdout);
    return { report, up: report.nodes[0]!.components[0]!.upload! };
  };
  const verify = async (id: string) => {
    const r = await cli(['backup', 'verify', id, '--read-data=100', '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  };
  const partsOf = async (id: string) => {
    const keys: string[] = [];
    for await (const k of driver.list(`backups/${id}/nodes/node1/data.parts/`)) keys.push(k);
    return keys.sort();
  };

  beforeAll(async () => {
    const s = await store();
    cleanup = s.cleanup;
    cluster = await startCluster({ nodes: 1, ...(s.settings ? { repository: s.settings } : {}) });
    driver = s.driver(cluster);
  });
  afterAll(async () => {
    await stopCluster(cluster);
    await cleanup?.();
  });

  it('reuses the unchanged parts; the backup verifies and restores whole, also once the older backup is deleted', async () => {
    const d = cluster.agent('node1').data.data!;
    // 24 folders of 400 small files and one file of many blocks: an index of several parts
    for (let f = 0; f < 24; f++) {
      await mkdir(join(d, `d${String(f).padStart(2, '0')}`), { recursive: true });
      for (let i = 0; i < 400; i++) await writeFile(join(d, `d${String(f).padStart(2, '0')}`, `f${i}`), `${f}/${i}\n`);
    }
    await writeFile(join(d, 'big.bin'), randomBytes(3 * 1024 * 1024));
    // files that changed within 2 s of being looked at are read again next time: let them settle
    await settle();
    const first = await backup('first');
    expect(first.up.indexParts).toBeGreaterThanOrEqual(4);
    expect(first.up.indexPartsReused ?? 0).toBe(0);

    // a file changed in one folder, one added to another: their parts are made again, the others copied
    await writeFile(join(d, 'd05', 'f7'), 'changed\n');
    await writeFile(join(d, 'd17', 'new'), 'new\n');
    await settle();
    const second = await backup('second');
    const parts = second.up.indexParts!;
    expect(second.up.indexPartsReused).toBeGreaterThan(0);
    expect(second.up.indexPartsReused).toBeLessThanOrEqual(parts - 2);
    expect(await partsOf(second.report.backupId)).toHaveLength(parts);
    const text = await cli(['backup', 'create', '--name', 'text']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/index parts reused (\d+)\/\1/);
    const want = await fingerprint(d);

    // the older backup goes: the newer one's parts are its own objects
    const del = await cli(['backup', 'delete', first.report.backupId]);
    expect(del.code, del.stderr).toBe(0);
    await verify(second.report.backupId);

    // nothing changed: every part is the previous one's
    const third = await backup('third');
    expect(third.up.indexPartsReused).toBe(third.up.indexParts);

    // restored onto changed data, the second backup is what the data was then
    await writeFile(join(d, 'd05', 'f7'), 'later\n');
    await rm(join(d, 'd17'), { recursive: true });
    const restored = await runCli(['restore', second.report.backupId, '--node', 'node1', '--json'], { config: cluster.configFile });
    expect(restored.code, restored.stderr).toBe(0);
    expect(json<RestoreReport>(restored.stdout).status).toBe('restored');
    expect(await fingerprint(d)).toEqual(want);
    expect(await leftoversBeside(d)).toEqual([]);
  });

  it('a part of the previous index that is gone: the index is written whole, and the next one reuses again', async () => {
    const d = cluster.agent('node1').data.data!;
    await settle();
    const before = await backup('before');
    // the previous backup loses a part of its index (as if it were deleted while this one ran)
    await driver.delete((await partsOf(before.report.backupId)).at(-1)!);
    await writeFile(join(d, 'd03', 'f1'), 'changed again\n');
    await settle();
    const whole = await backup('whole');
    expect(whole.up.indexPartsReused ?? 0).toBe(0);
    expect(await partsOf(whole.report.backupId)).toHaveLength(whole.up.indexParts!);
    await verify(whole.report.backupId);
    const next = await backup('next');
    expect(next.up.indexPartsReused).toBe(next.up.indexParts);
    await verify(next.report.backupId);
  });
});
