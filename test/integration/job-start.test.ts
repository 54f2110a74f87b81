/**
 * A job's start whose answer is lost is asked again under the key the coordinator chose
 * for it: the agent answers with the job it started, so the job runs once and the step
 * goes on. Each agent here loses the answer to its first job start (failpoint
 * "jobs.answer.drop=1": the job runs, the connection closes without an answer).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import type { LocalCluster } from '../../demo/local-cluster.js';
import type { BackupReport, RestoreReport } from '../../lib/report.js';
import type { Job } from '../../lib/wire.js';
import { Cluster } from '../../coordinator/cluster.js';
import { loadClusterConfig } from '../../coordinator/config.js';
import { silentLogger } from '../../lib/log.js';
import { LockstepError } from '../../lib/errors.js';
import { issueCertificate } from '../../lib/tls/certs.js';
import { json, runCli, startCluster, stopCluster } from '../helpers/cluster.js';

/** the jobs an agent knows, oldest first */
async function jobsOf(coordinator: Cluster, node: string): Promise<Job[]> {
  const { jobs } = await coordinator.client(node).call<{ jobs: Job[] }>('GET', '/jobs');
  return jobs.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

describe('a job start whose answer is lost', () => {
  let cluster: LocalCluster;
  let coordinator: Cluster;
  beforeAll(async () => {
    cluster = await startCluster({ nodes: 2, agentEnv: { LOCKSTEP_FAILPOINTS: 'jobs.answer.drop=1' } });
    coordinator = await Cluster.connect(await loadClusterConfig(cluster.configFile), silentLogger());
  });
  afterAll(async () => {
    await coordinator?.close();
    await stopCluster(cluster);
  });

  it('is asked again: the backup completes, each of its jobs ran once, and its data comes back', async () => {
    const data = cluster.agent('node1').data.data!;
    await writeFile(join(data, 'kept.txt'), 'written before the backup\n');
    const r = await runCli(['backup', 'create', '--name', 'lost-answer', '--json'], { config: cluster.configFile });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const report = json<BackupReport>(r.stdout);
    expect(report.status).toBe('complete');
    for (const node of ['node1', 'node2']) {
      const jobs = (await jobsOf(coordinator, node)).filter((j) => (j.request as { backupId?: string }).backupId === report.backupId);
      const kinds = jobs.map((j) => j.kind);
      // the first start's answer was lost, and it was asked again: still one job of each kind
      expect(new Set(kinds).size, kinds.join(', ')).toBe(kinds.length);
      expect(kinds).toContain('upload');
      expect(jobs.every((j) => j.state === 'succeeded')).toBe(true);
    }
    await writeFile(join(data, 'kept.txt'), 'changed after the backup\n');
    const back = await runCli(['restore', report.backupId, '--json'], { config: cluster.configFile });
    expect(back.code, back.stdout + back.stderr).toBe(0);
    expect(json<RestoreReport>(back.stdout).status).toBe('restored');
    expect(await readFile(join(data, 'kept.txt'), 'utf8')).toBe('written before the backup\n');
  }, 120_000);

  it('a start under the key of another start is refused, naming the key and the job', async () => {
    const client = coordinator.client('node1');
    const first = await client.startJob({ kind: 'start', component: 'data' }, undefined, 'key-of-a-test');
    const again = await client.startJob({ kind: 'start', component: 'data' }, undefined, 'key-of-a-test');
    expect(again.id).toBe(first.id);
    const err = await client.startJob({ kind: 'stop', component: 'data' }, undefined, 'key-of-a-test').then(
      () => undefined,
      (e: unknown) => e as LockstepError,
    );
    expect(err).toBeInstanceOf(LockstepError);
    expect(err?.code).toBe('LOCKSTEP_E_BAD_REQUEST');
    expect(err?.message).toContain(`job key key-of-a-test already started job ${first.id} (start of data) with another request`);
    const jobs = await jobsOf(coordinator, 'node1');
    expect(jobs.filter((j) => j.id === first.id)).toHaveLength(1);
    expect(jobs.filter((j) => j.kind === 'stop' && j.createdAt >= first.createdAt)).toHaveLength(0);
  });

  it('a key that is not one is refused before any job starts', async () => {
    const a = cluster.agent('node1');
    const coord = await issueCertificate(cluster.ca, { role: 'coordinator', name: 'ops' });
    const dispatcher = new Agent({ connect: { ca: cluster.ca.cert, cert: coord.cert, key: coord.key } });
    try {
      const before = (await jobsOf(coordinator, 'node1')).length;
      const res = await request(`https://${a.host}:${a.port}/v1/jobs`, {
        method: 'POST',
        dispatcher,
        headers: { 'content-type': 'application/json', 'idempotency-key': 'not a key!' },
        body: JSON.stringify({ kind: 'start', component: 'data' }),
      });
      const body = (await res.body.json()) as { code: string; message: string };
      expect(res.statusCode).toBe(400);
      expect(body.code).toBe('LOCKSTEP_E_BAD_REQUEST');
      expect(body.message).toContain("header idempotency-key of a job start must be 1–128 letters, digits, '-' or '_'");
      expect(await jobsOf(coordinator, 'node1')).toHaveLength(before);
    } finally {
      await dispatcher.close();
    }
  });
});
