/**
 * What the Redis Cluster tests that back up and restore through the agents share: `keys`
 * keys written, a backup (complete, every shard covered), a key changed and one added, a
 * restore; every key read back as backed up, the added one gone.
 */
import { expect } from 'vitest';
import type { LocalCluster } from '../../demo/local-cluster.js';
import type { RedisTestCluster } from '../../demo/redis-cluster.js';
import type { BackupReport, RestoreReport } from '../../lib/report.js';
import { json, runCli } from './cluster.js';

export async function backupChangeRestore(redis: RedisTestCluster, cluster: LocalCluster, keys: number): Promise<{ state: Map<string, string>; restored: RestoreReport }> {
  const cli = (args: string[]) => runCli(args, { config: cluster.configFile });
  const state = new Map(Array.from({ length: keys }, (_, i) => [`k:${i}`, `v${i}`] as const));
  await redis.setMany(state);
  const b = await cli(['backup', 'create', '--json']);
  expect(b.code, b.stdout + b.stderr).toBe(0);
  const report = json<BackupReport>(b.stdout);
  expect(report.status).toBe('complete');
  expect(report.shards.every((s) => s.covered)).toBe(true);

  await redis.setMany(new Map([['k:1', 'changed'], ['k:new', 'after the backup']]));
  const r = await cli(['restore', report.backupId, '--json']);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  const restored = json<RestoreReport>(r.stdout);
  expect(restored.status).toBe('restored');
  await redis.waitOk();
  expect(await redis.getMany([...state.keys(), 'k:new'])).toEqual(new Map([...state, ['k:new', null]]));
  return { state, restored };
}
