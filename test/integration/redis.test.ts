/**
 * A real 6-node Redis Cluster (3 masters, 3 replicas), one agent per node: consistent
 * cuts under a running writer, freeze leases, coverage, partial backups, round trips.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI_BIN, LocalCluster } from '../../demo/local-cluster.js';
import { RedisTestCluster } from '../../demo/redis-cluster.js';
import type { BackupReport, RestoreReport } from '../../lib/report.js';
import { json, runCli, tempDir, stopCluster } from '../helpers/cluster.js';

const FREEZE_TTL_MS = 2000;

describe('redis cluster', () => {
  let redis: RedisTestCluster;
  let cluster: LocalCluster;
  const cli = (args: string[], env?: NodeJS.ProcessEnv) => runCli(args, { config: cluster.configFile, env });

  beforeAll(async () => {
    const root = await tempDir();
    redis = await new RedisTestCluster(root).start();
    cluster = await new LocalCluster({
      root,
      nodes: 6,
      components: (_node, i) => [redis.component(i)],
      clusterSettings: { freeze: { ttlMs: FREEZE_TTL_MS } },
    }).start();
  });
  afterAll(async () => {
    await redis?.stop();
    await stopCluster(cluster);
  });

  it('round trip: 100k keys backed up, cluster wiped, restored, every key read back', async () => {
    const data = new Map<string, string>();
    for (let i = 0; i < 100_000; i++) data.set(`key:${i}`, `value-${i}-${'x'.repeat(i % 50)}`);
    await redis.setMany(data);
    const b = await cli(['backup', 'create', '--name', 'full', '--json']);
    expect(b.code, b.stdout + b.stderr).toBe(0);
    const report = json<BackupReport>(b.stdout);
    expect(report.status).toBe('complete');
    expect(report.shards).toHaveLength(3);
    expect(report.shards.every((s) => s.covered && s.coveredBy.length === 1)).toBe(true);
    // default coverage prefers replicas; the masters were frozen too but not snapshotted
    for (const s of report.shards) {
      const by = report.nodes.flatMap((n) => n.components).find((c) => `${c.node}/${c.component}` === s.coveredBy[0])!;
      expect(by.role).toBe('replica');
    }
    expect(report.pause?.components).toBe(6);
    expect(report.pause?.windowMs).toBeGreaterThan(0);

    await redis.flushAll();
    expect(await redis.dbsize()).toBe(0);
    const r = await cli(['restore', report.backupId, '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(json<RestoreReport>(r.stdout).status).toBe('restored');

    await redis.waitOk();
    const back = await redis.getMany([...data.keys()]);
    let wrong = 0;
    for (const [k, v] of data) if (back.get(k) !== v) wrong++;
    expect(wrong).toBe(0);
    expect(await redis.dbsize()).toBe(100_000);
  });
});
