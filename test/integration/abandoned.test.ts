/**
 * An upload whose coordinator died: the agent stops it once no coordinator has asked about
 * it for `abandonUploadMs`, so it neither goes on writing to the repository after the lock
 * is gone nor keeps its component busy for the next backup, which then picks up what it
 * stored. A real agent and coordinator over mTLS, into Ceph RGW behind a proxy that can
 * hold the uploads' PUTs (a store that stalls).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { parse, stringify } from 'yaml';
import { CLI_BIN, type LocalCluster } from '../../demo/local-cluster.js';
import { fillDataDir } from '../../demo/fixtures.js';
import { forwardingProxy } from '../../demo/http-proxy.js';
import type { BackupReport } from '../../lib/report.js';
import type { Job } from '../../lib/wire.js';
import { issueCertificate } from '../../lib/tls/certs.js';
import { json, runCli, startCluster, stopCluster } from '../helpers/cluster.js';
import { rgwBucket } from '../helpers/s3.js';

describe('an upload its coordinator abandoned', () => {
  let cluster: LocalCluster;
  let proxy: Awaited<ReturnType<typeof forwardingProxy>>;
  /** PUTs of packs are held while this is set; how many were */
  let holding = false;
  let held = 0;

  beforeAll(async () => {
    const b = await rgwBucket();
    proxy = await forwardingProxy(b.endpoint, {
      hold: (r) => {
        const hold = holding && r.method === 'PUT' && r.url.includes('/packs/');
        if (hold) held++;
        return hold;
      },
    });
    cluster = await startCluster({ nodes: 1, repository: { ...b, endpoint: proxy.endpoint } });
    await fillDataDir(cluster.agents[0]!.data.data!, 'node1', 4 * 1024 * 1024);
    // the agent gives up an upload nobody asked about for 2 s
    const a = cluster.agents[0]!;
    const cfg = parse(await readFile(a.configFile, 'utf8')) as Record<string, unknown>;
    await writeFile(a.configFile, stringify({ ...cfg, abandonUploadMs: 2000 }));
    await cluster.killAgent(a.node, 'SIGTERM');
    await cluster.startAgent(a.node);
  }, 120_000);
  afterAll(async () => {
    await stopCluster(cluster);
    await proxy?.close();
  });

  it('is stopped once nobody asks about it; the next backup runs at once and is whole', async () => {
    holding = true;
    const child = spawn(process.execPath, [CLI_BIN, '--config', cluster.configFile, 'backup', 'create', '--name', 'orphaned', '--json'], { stdio: 'ignore' });
    const exited = new Promise((res) => child.once('exit', res));
    for (let i = 0; i < 600 && held === 0; i++) await sleep(50);
    expect(held).toBeGreaterThan(0);
    // the coordinator dies mid-upload: nobody cancels the job, nobody asks about it again
    child.kill('SIGKILL');
    await exited;

    const a = cluster.agents[0]!;
    const coord = await issueCertificate(cluster.ca, { role: 'coordinator', name: 'ops' });
    const dispatcher = new Agent({ connect: { ca: cluster.ca.cert, cert: coord.cert, key: coord.key } });
    // the job list, which asks about no job in particular
    const uploads = async () => {
      const res = await request(`https://${a.host}:${a.port}/v1/jobs`, { dispatcher });
      return ((await res.body.json()) as { jobs: Job[] }).jobs.filter((j) => j.kind === 'upload');
    };
    try {
      let upload: Job | undefined;
      for (let i = 0; i < 200; i++) {
        upload = (await uploads()).at(-1);
        if (upload && upload.state !== 'running') break;
        await sleep(100);
      }
      expect(upload?.state).toBe('cancelled');
      expect(upload?.error?.code).toBe('LOCKSTEP_E_JOB_ABANDONED');
      expect(upload?.error?.message).toMatch(/no coordinator asked about it for \d+ s/);
    } finally {
      await dispatcher.close();
    }

    // the store answers again: the next backup takes the dead coordinator's lock over and is not told the component is busy
    holding = false;
    const r = await runCli(['backup', 'create', '--name', 'next', '--json'], { config: cluster.configFile });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const report = json<BackupReport>(r.stdout);
    expect(report.status).toBe('complete');
    const v = await runCli(['backup', 'verify', report.backupId, '--read-data', '--json'], { config: cluster.configFile });
    expect(v.code, v.stdout).toBe(0);
  }, 120_000);
});
