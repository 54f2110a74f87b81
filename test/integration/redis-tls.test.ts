/**
 * A Redis Cluster that speaks TLS only (clients, replication, the cluster bus) and asks
 * every client for a certificate: the agents reach it with each component's `tls` files,
 * back it up with a consistent cut and restore it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import { parse, stringify } from 'yaml';
import { LocalCluster } from '../../demo/local-cluster.js';
import { RedisTestCluster } from '../../demo/redis-cluster.js';
import type { BackupReport } from '../../lib/report.js';
import { json, runCli, stopCluster, tempDir } from '../helpers/cluster.js';
import { backupChangeRestore } from '../helpers/redis.js';

describe('redis cluster over TLS', () => {
  let redis: RedisTestCluster;
  let cluster: LocalCluster;
  const cli = (args: string[]) => runCli(args, { config: cluster.configFile });

  beforeAll(async () => {
    const root = await tempDir();
    redis = await (await new RedisTestCluster(root).withTls()).start();
    cluster = await new LocalCluster({ root, nodes: 6, components: (_n, i) => [redis.component(i)] }).start();
  });
  afterAll(async () => {
    await redis?.stop();
    await stopCluster(cluster);
  });

  it('backed up and restored over TLS with a client certificate; every key read back equals the backup', async () => {
    await backupChangeRestore(redis, cluster, 2000);
  });

  it("a TLS file one agent cannot read: its server is skipped with the file named, its shard covered by a replica", async () => {
    const a = cluster.agents[0]!;
    const saved = await readFile(a.configFile, 'utf8');
    const cfg = parse(saved) as { components: { tls: Record<string, string> }[] };
    cfg.components[0]!.tls.cert = '/nonexistent/client.crt';
    await writeFile(a.configFile, stringify(cfg));
    await cluster.killAgent(a.node, 'SIGTERM');
    await cluster.startAgent(a.node);
    try {
      const b = await cli(['backup', 'create', '--json']);
      expect(b.code, b.stdout + b.stderr).toBe(0);
      const report = json<BackupReport>(b.stdout);
      expect(report.status).toBe('complete');
      expect(report.shards.every((s) => s.covered)).toBe(true);
      const c = report.nodes.find((n) => n.node === a.node)!.components[0]! as { status: string; health?: { ok: boolean; message: string } };
      expect(c.status).toBe('skipped');
      expect(c.health).toEqual({ ok: false, message: `tls.cert of redis 127.0.0.1:${redis.nodes[0]!.port}: cannot read /nonexistent/client.crt (ENOENT)` });
    } finally {
      await writeFile(a.configFile, saved);
      await cluster.killAgent(a.node, 'SIGTERM');
      await cluster.startAgent(a.node);
    }
  });
});
