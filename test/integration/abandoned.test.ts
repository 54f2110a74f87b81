/**
 * An upload, or a restore's stage, whose coordinator died: the agent stops it once no
 * coordinator has asked about it for `abandonTransferMs`, so an upload does not go on writing
 * to the repository after the lock is gone, a stage does not go on filling the disk, and
 * neither keeps its component busy for the next run (the next backup picks up what the
 * upload stored). A real agent and coordinator over mTLS, into Ceph RGW behind a proxy that
 * can hold the PUTs and GETs of packs (a store that stalls).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { parse, stringify } from 'yaml';
import { CLI_BIN, type LocalCluster } from '../../demo/local-cluster.js';
import { fillDataDir, fingerprint } from '../../demo/fixtures.js';
import { forwardingProxy } from '../../demo/http-proxy.js';
import type { BackupReport, RestoreReport } from '../../lib/report.js';
import type { Job } from '../../lib/wire.js';
import { issueCertificate } from '../../lib/tls/certs.js';
import { json, runCli, startCluster, stopCluster } from '../helpers/cluster.js';
import { rgwBucket } from '../helpers/s3.js';

describe('an upload its coordinator abandoned', () => {
  let cluster: LocalCluster;
  let proxy: Awaited<ReturnType<typeof forwardingProxy>>;
  /** requests for packs of this method are held while this is set; how many were */
  let holding: 'PUT' | 'GET' | undefined;
  let held = 0;

  beforeAll(async () => {
    const b = await rgwBucket();
    proxy = await forwardingProxy(b.endpoint, {
      hold: (r) => {
        const hold = r.method === holding && r.url.includes('/packs/');
        if (hold) held++;
        return hold;
      },
    });
    cluster = await startCluster({ nodes: 1, repository: { ...b, endpoint: proxy.endpoint } });
    await fillDataDir(cluster.agents[0]!.data.data!, 'node1', 4 * 1024 * 1024);
    // the agent gives up a transfer nobody asked about for 2 s; no copy kept beside the data (a restore then downloads)
    const a = cluster.agents[0]!;
    const cfg = parse(await readFile(a.configFile, 'utf8')) as { components: Record<string, unknown>[] };
    cfg.components[0] = { ...cfg.components[0], keepCopy: false };
    await writeFile(a.configFile, stringify({ ...cfg, abandonTransferMs: 2000 }));
    await cluster.killAgent(a.node, 'SIGTERM');
    await cluster.startAgent(a.node);
  }, 120_000);
  afterAll(async () => {
    await stopCluster(cluster);
    await proxy?.close();
  });

  /** run `args` on the CLI until `holding` requests are held, then kill it: its coordinator dies mid-transfer */
  async function killedWhileHeld(args: string[], method: 'PUT' | 'GET'): Promise<void> {
    holding = method;
    held = 0;
    const child = spawn(process.execPath, [CLI_BIN, '--config', cluster.configFile, ...args], { stdio: 'ignore' });
    const exited = new Promise((res) => child.once('exit', res));
    for (let i = 0; i < 600 && held === 0; i++) await sleep(50);
    expect(held).toBeGreaterThan(0);
    // nobody cancels the job, nobody asks about it again
    child.kill('SIGKILL');
    await exited;
  }

  /** the newest job of `kind` on the agent, once it has ended (from the job list, which asks about no job in particular) */
  async function ended(kind: Job['kind']): Promise<Job | undefined> {
    const a = cluster.agents[0]!;
    const coord = await issueCertificate(cluster.ca, { role: 'coordinator', name: 'ops' });
    const dispatcher = new Agent({ connect: { ca: cluster.ca.cert, cert: coord.cert, key: coord.key } });
    try {
      let job: Job | undefined;
      for (let i = 0; i < 200; i++) {
        const res = await request(`https://${a.host}:${a.port}/v1/jobs`, { dispatcher });
        job = ((await res.body.json()) as { jobs: Job[] }).jobs.filter((j) => j.kind === kind).at(-1);
        if (job && job.state !== 'running') break;
        await sleep(100);
      }
      return job;
    } finally {
      await dispatcher.close();
    }
  }

  it('an upload is stopped once nobody asks about it; the next backup runs at once and is whole', async () => {
    await killedWhileHeld(['backup', 'create', '--name', 'orphaned', '--json'], 'PUT');
    const upload = await ended('upload');
    expect(upload?.state).toBe('cancelled');
    expect(upload?.error?.code).toBe('LOCKSTEP_E_JOB_ABANDONED');
    expect(upload?.error?.message).toMatch(/no coordinator asked about it for \d+ s/);

    // the store answers again: the next backup takes the dead coordinator's lock over and is not told the component is busy
    holding = undefined;
    const r = await runCli(['backup', 'create', '--name', 'next', '--json'], { config: cluster.configFile });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const report = json<BackupReport>(r.stdout);
    expect(report.status).toBe('complete');
    const v = await runCli(['backup', 'verify', report.backupId, '--read-data', '--json'], { config: cluster.configFile });
    expect(v.code, v.stdout).toBe(0);
  }, 120_000);

  it("a restore's stage is stopped the same way, its staging removed; the next restore runs and brings the data back", async () => {
    const data = cluster.agents[0]!.data.data!;
    const backedUp = await fingerprint(data);
    // the data gone: the restore must download it
    for (const e of await readdir(data)) await rm(join(data, e), { recursive: true, force: true });
    await killedWhileHeld(['restore', 'latest', '--json'], 'GET');
    const stage = await ended('stage');
    expect(stage?.state).toBe('cancelled');
    expect(stage?.error?.code).toBe('LOCKSTEP_E_JOB_ABANDONED');
    // nothing staged is left beside the data, and the data was not touched
    expect((await readdir(dirname(data))).filter((x) => x.includes('.lockstep-'))).toEqual([]);
    expect(await readdir(data)).toEqual([]);

    holding = undefined;
    const r = await runCli(['restore', 'latest', '--json'], { config: cluster.configFile });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(json<RestoreReport>(r.stdout).status).toBe('restored');
    expect(await fingerprint(data)).toEqual(backedUp);
  }, 120_000);
});
