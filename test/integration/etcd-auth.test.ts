/**
 * An etcd member with its own authentication turned on (`etcdctl auth enable`): the agent
 * logs in as the component's `auth.user` with the password in the environment variable
 * `auth.passwordEnv` names, backs the member up and restores it (users and roles come back
 * with the data); without the password it says which variable is missing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../demo/local-cluster.js';
import { EtcdTestCluster } from '../../demo/etcd-cluster.js';
import type { BackupReport } from '../../lib/report.js';
import { json, runCli, stopCluster, tempDir } from '../helpers/cluster.js';
import { keysRoundTrip } from '../helpers/etcd.js';

const PASSWORD = 'a password, with spaces: and colons';

describe('etcd with authentication', () => {
  let etcd: EtcdTestCluster;
  let cluster: LocalCluster;
  const cli = (args: string[]) => runCli(args, { config: cluster.configFile });

  beforeAll(async () => {
    const root = await tempDir();
    etcd = await (await new EtcdTestCluster(root, 1).start()).enableAuth(PASSWORD);
    cluster = await new LocalCluster({ root, nodes: 1, components: (_n, i) => [etcd.component(i)], agentEnv: { ETCD_PASSWORD: PASSWORD } }).start();
  });
  afterAll(async () => {
    await etcd?.stop();
    await stopCluster(cluster);
  });

  it('backed up and restored as the configured user; every key read back (as root: users came back with the data) equals the backup', async () => {
    await keysRoundTrip(etcd, cli, 200);
  });

  it('an agent without the password says which variable is missing, and no backup is taken', async () => {
    const a = cluster.agents[0]!;
    await cluster.killAgent(a.node, 'SIGTERM');
    const env = cluster.opts.agentEnv!;
    delete env.ETCD_PASSWORD;
    await cluster.startAgent(a.node);
    try {
      const b = await cli(['backup', 'create', '--json']);
      expect(b.code).not.toBe(0);
      const c = json<BackupReport>(b.stdout).nodes[0]!.components[0]! as { health?: { ok: boolean; message: string } };
      expect(c.health?.ok).toBe(false);
      expect(c.health?.message).toContain('environment variable ETCD_PASSWORD (auth.passwordEnv of etcd member m1) is not set for the agent');
    } finally {
      await cluster.killAgent(a.node, 'SIGTERM');
      env.ETCD_PASSWORD = PASSWORD;
      await cluster.startAgent(a.node);
    }
  });
});
