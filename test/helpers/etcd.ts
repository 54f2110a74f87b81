/** What the etcd tests share: a round trip of keys through a backup and a restore. */
import { expect } from 'vitest';
import type { EtcdTestCluster } from '../../demo/etcd-cluster.js';
import type { BackupReport, RestoreReport } from '../../lib/report.js';
import { json } from './cluster.js';

/**
 * `count` keys put, backed up (complete), then one changed, one added and one deleted, the
 * backup restored: every key read back equals the backup's. `cli` runs the CLI on the
 * cluster's config.
 */
export async function keysRoundTrip(etcd: EtcdTestCluster, cli: (args: string[]) => Promise<{ code: number | null; stdout: string; stderr: string }>, count: number): Promise<void> {
  const state = new Map(Array.from({ length: count }, (_, i) => [`k/${String(i).padStart(3, '0')}`, `v${i}`] as const));
  await etcd.putMany(state);
  const b = await cli(['backup', 'create', '--json']);
  expect(b.code, b.stdout + b.stderr).toBe(0);
  const report = json<BackupReport>(b.stdout);
  expect(report.status).toBe('complete');

  await etcd.putMany(new Map([['k/000', 'changed'], ['k/new', 'after the backup']]));
  await etcd.deleteKey('k/001');
  const r = await cli(['restore', report.backupId, '--json']);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  expect(json<RestoreReport>(r.stdout).status).toBe('restored');
  await etcd.waitHealthy();
  expect(await etcd.readPrefix('k/')).toEqual(state);
}
