/** Agents accept only coordinator certificates of their CA; the coordinator checks who it reached. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { parse, stringify } from 'yaml';
import type { LocalCluster } from '../../demo/local-cluster.js';
import { createCa, issueCertificate, type Pem } from '../../lib/tls/certs.js';
import { caPaths } from '../../lib/tls/files.js';
import type { BackupReport } from '../../lib/report.js';
import { json, runCli, startCluster, stopCluster } from '../helpers/cluster.js';
import { Cluster } from '../../coordinator/cluster.js';
import { loadClusterConfig } from '../../coordinator/config.js';
import { silentLogger } from '../../lib/log.js';
import type { LockstepError } from '../../lib/errors.js';

async function getNode(cluster: LocalCluster, client?: Pem): Promise<number> {
  const a = cluster.agent('node1');
  const dispatcher = new Agent({ connect: { ca: cluster.ca.cert, cert: client?.cert, key: client?.key } });
  try {
    const res = await request(`https://${a.host}:${a.port}/v1/node`, { dispatcher, signal: AbortSignal.timeout(10_000) });
    await res.body.text();
    return res.statusCode;
  } finally {
    await dispatcher.close();
  }
}

describe('mutual TLS', () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = await startCluster({ nodes: 2 });
  });
  afterAll(() => stopCluster(cluster));

  it('admits a coordinator certificate of the cluster CA', async () => {
    const coord = await issueCertificate(cluster.ca, { role: 'coordinator', name: 'ops' });
    expect(await getNode(cluster, coord)).toBe(200);
  });

  it('refuses a client without a certificate', async () => {
    await expect(getNode(cluster)).rejects.toThrow();
  });

  it('refuses a coordinator certificate from another CA', async () => {
    const other = await createCa('other');
    const coord = await issueCertificate(other, { role: 'coordinator', name: 'ops' });
    await expect(getNode(cluster, coord)).rejects.toThrow();
  });

  it('refuses an agent certificate used as a client', async () => {
    const agentCert = await issueCertificate(cluster.ca, { role: 'agent', name: 'node2', hosts: ['127.0.0.2'] });
    // TLS refuses it (serverAuth only); were it let through, the role check answers 403
    const outcome = await getNode(cluster, agentCert).then((s) => s, () => 'refused');
    expect(outcome === 'refused' || outcome === 403).toBe(true);
  });

  it('refuses an expired coordinator certificate', async () => {
    const expired = await issueCertificate(cluster.ca, {
      role: 'coordinator',
      name: 'ops',
      notBefore: new Date('2020-01-01T00:00:00Z'),
      notAfter: new Date('2020-02-01T00:00:00Z'),
    });
    await expect(getNode(cluster, expired)).rejects.toThrow();
  });

  it('the CLI explains an agent that refuses its certificate', async () => {
    const other = await createCa('other');
    const coord = await issueCertificate(other, { role: 'coordinator', name: 'ops' });
    const dir = join(cluster.opts.root, 'foreign');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'c.crt'), coord.cert);
    await writeFile(join(dir, 'c.key'), coord.key, { mode: 0o600 });
    await writeFile(join(dir, 'ca.crt'), cluster.ca.cert);
    const cfg = join(dir, 'lockstep.yaml');
    await writeFile(
      cfg,
      stringify({
        cluster: 'demo',
        repository: { driver: 'fs', path: cluster.repoDir },
        tls: { ca: 'ca.crt', cert: 'c.crt', key: 'c.key' },
        agents: cluster.agents.map((a) => ({ node: a.node, address: `${a.host}:${a.port}` })),
      }),
    );
    const r = await runCli(['backup', 'create', '--json'], { config: cfg });
    expect(r.code).toBe(4);
    const report = json<BackupReport>(r.stdout);
    expect(report.error?.code).toBe('LOCKSTEP_E_PREFLIGHT_FAILED');
    const n1 = report.nodes.find((n) => n.node === 'node1')!;
    expect(n1.error?.code).toBe('LOCKSTEP_E_AGENT_TLS_REFUSED');
    expect(n1.error?.message).toContain('node1');
  });

  it('the coordinator refuses an agent whose certificate names another node', async () => {
    const [a1, a2] = cluster.agents;
    const cfg = join(cluster.opts.root, 'swapped.yaml');
    // node1's entry points at node2's agent
    await writeFile(
      cfg,
      stringify({
        cluster: 'demo',
        repository: { driver: 'fs', path: cluster.repoDir },
        tls: { ca: caPaths(cluster.caDir).cert, cert: join(cluster.caDir, 'coordinator-operator.crt'), key: join(cluster.caDir, 'coordinator-operator.key') },
        agents: [
          { node: 'node1', address: `${a2!.host}:${a2!.port}` },
          { node: 'node2', address: `${a1!.host}:${a1!.port}` },
        ],
      }),
    );
    const r = await runCli(['backup', 'create', '--json'], { config: cfg });
    expect(r.code).toBe(4);
    const report = json<BackupReport>(r.stdout);
    const codes = report.nodes.map((n) => n.error?.code);
    expect(codes).toEqual(['LOCKSTEP_E_AGENT_IDENTITY', 'LOCKSTEP_E_AGENT_IDENTITY']);
    expect(report.nodes[0]!.error!.message).toMatch(/names node node2.*expected agent node1/);
    expect(report.manifest).toBeUndefined();
  });

  it('refuses to run with an expired coordinator certificate of its own', async () => {
    const expired = await issueCertificate(cluster.ca, { role: 'coordinator', name: 'old', notBefore: new Date('2020-01-01'), notAfter: new Date('2020-02-01') });
    const dir = join(cluster.opts.root, 'expired');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'c.crt'), expired.cert);
    await writeFile(join(dir, 'c.key'), expired.key);
    await writeFile(join(dir, 'lockstep.yaml'), stringify({ cluster: 'demo', repository: { driver: 'fs', path: cluster.repoDir }, tls: { ca: caPaths(cluster.caDir).cert, cert: 'c.crt', key: 'c.key' }, agents: [{ node: 'node1', address: '127.0.0.1:1' }] }));
    const r = await runCli(['topology'], { config: join(dir, 'lockstep.yaml') });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('expired');
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('an agent that dies while a request waits for its answer is told as gone, not as refusing our certificate', async () => {
    const a = cluster.agent('node2');
    const original = await readFile(a.configFile, 'utf8');
    // its stop command runs a while: the coordinator's long poll of that job is in flight when the agent dies
    const cfg = parse(original) as { components: Record<string, unknown>[] };
    cfg.components[0] = { ...cfg.components[0], stop: ['sleep', '3'] };
    await writeFile(a.configFile, stringify(cfg));
    await cluster.killAgent('node2', 'SIGTERM');
    await cluster.startAgent('node2');
    const coordinator = await Cluster.connect(await loadClusterConfig(cluster.configFile), silentLogger());
    try {
      const client = coordinator.client('node2');
      await client.describe(undefined, false);
      const job = await client.startJob({ kind: 'stop', component: 'data' });
      const poll = client.getJob(job.id, undefined, 10_000).then(
        () => undefined,
        (err: unknown) => err as LockstepError,
      );
      await sleep(300);
      await cluster.killAgent('node2');
      const err = await poll;
      expect(err?.code).toBe('LOCKSTEP_E_AGENT_UNREACHABLE');
      expect(err?.message).toMatch(/agent node2 at \S+ closed the connection before answering \(.+\): the agent stopped or restarted/);
    } finally {
      await coordinator.close();
      await writeFile(a.configFile, original);
      await cluster.startAgent('node2');
    }
  });
});
