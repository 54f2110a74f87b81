/**
 * An etcd member that serves its clients over TLS and asks them for a certificate (as
 * production etcd does): the agent talks to it with the component's `tls` files, backs it
 * up and restores it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, relative } from 'node:path';
import { parse, stringify } from 'yaml';
import { LocalCluster } from '../../demo/local-cluster.js';
import { EtcdTestCluster } from '../../demo/etcd-cluster.js';
import type { BackupReport } from '../../lib/report.js';
import { json, runCli, stopCluster, tempDir } from '../helpers/cluster.js';
import { keysRoundTrip } from '../helpers/etcd.js';

describe('etcd with client TLS', () => {
  let etcd: EtcdTestCluster;
  let cluster: LocalCluster;
  const cli = (args: string[]) => runCli(args, { config: cluster.configFile });

  beforeAll(async () => {
    const root = await tempDir();
    etcd = await (await new EtcdTestCluster(root, 1).withTls()).start();
    cluster = await new LocalCluster({ root, nodes: 1, components: (_n, i) => [etcd.component(i)] }).start();
    // the TLS files as an operator may give them: relative to agent.yaml
    const a = cluster.agents[0]!;
    const cfg = parse(await readFile(a.configFile, 'utf8')) as { components: { tls: Record<string, string> }[] };
    const tls = cfg.components[0]!.tls;
    for (const k of Object.keys(tls)) tls[k] = relative(dirname(a.configFile), tls[k]!);
    expect(tls.ca).toMatch(/^\.\.\//);
    await writeFile(a.configFile, stringify(cfg));
    await cluster.killAgent(a.node, 'SIGTERM');
    await cluster.startAgent(a.node);
  });
  afterAll(async () => {
    await etcd?.stop();
    await stopCluster(cluster);
  });

  it('backed up and restored over TLS with a client certificate; every key read back equals the backup', async () => {
    await keysRoundTrip(etcd, cli, 300);
  });

  it('without its client certificate the member is reported unhealthy and no backup is taken', async () => {
    const a = cluster.agents[0]!;
    const saved = await readFile(a.configFile, 'utf8');
    const cfg = parse(saved) as { components: { tls: Record<string, string> }[] };
    cfg.components[0]!.tls = { ca: cfg.components[0]!.tls.ca! };
    await writeFile(a.configFile, stringify(cfg));
    await cluster.killAgent(a.node, 'SIGTERM');
    await cluster.startAgent(a.node);
    try {
      const b = await cli(['backup', 'create', '--json']);
      expect(b.code).not.toBe(0);
      const report = json<BackupReport>(b.stdout);
      expect(report.status).not.toBe('complete');
      // the member's health says what etcdctl said, not only that a deadline passed
      const c = report.nodes[0]!.components[0]! as { health?: { ok: boolean; message: string } };
      expect(c.health?.ok).toBe(false);
      expect(c.health?.message).toContain('health check of etcd member m1');
      expect(c.health?.message).toContain('is unhealthy');
    } finally {
      await writeFile(a.configFile, saved);
      await cluster.killAgent(a.node, 'SIGTERM');
      await cluster.startAgent(a.node);
    }
  });
});
