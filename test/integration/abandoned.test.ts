/**
 * An upload, or a restore's stage, whose coordinator died: the agent stops it once no
 * coordinator has asked about it for `abandonTransferMs`, or at once when the next backup
 * or restore takes the repository's lock over, so an upload does not go on writing
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

/**
 * One agent backing up into RGW behind a proxy that holds the requests for packs of
 * `holding`'s method while it is set; the agent's `abandonTransferMs` as given (its default
 * when not), no copy kept beside the data (a restore then downloads).
 */
function orphans(abandonTransferMs?: number) {
  const o = {
    cluster: undefined as unknown as LocalCluster,
    proxy: undefined as Awaited<ReturnType<typeof forwardingProxy>> | undefined,
    holding: undefined as 'PUT' | 'GET' | undefined,
    held: 0,

    async start(): Promise<void> {
      const b = await rgwBucket();
      o.proxy = await forwardingProxy(b.endpoint, {
        hold: (r) => {
          const hold = r.method === o.holding && r.url.includes('/packs/');
          if (hold) o.held++;
          return hold;
        },
      });
      o.cluster = await startCluster({ nodes: 1, repository: { ...b, endpoint: o.proxy.endpoint } });
      await fillDataDir(o.cluster.agents[0]!.data.data!, 'node1', 4 * 1024 * 1024);
      const a = o.cluster.agents[0]!;
      const cfg = parse(await readFile(a.configFile, 'utf8')) as { components: Record<string, unknown>[] };
      cfg.components[0] = { ...cfg.components[0], keepCopy: false };
      await writeFile(a.configFile, stringify({ ...cfg, ...(abandonTransferMs ? { abandonTransferMs } : {}) }));
      await o.cluster.killAgent(a.node, 'SIGTERM');
      await o.cluster.startAgent(a.node);
    },

    async stop(): Promise<void> {
      await stopCluster(o.cluster);
      await o.proxy?.close();
    },

    /** run `args` on the CLI until `method` requests are held, then kill it: its coordinator dies mid-transfer */
    async killedWhileHeld(args: string[], method: 'PUT' | 'GET'): Promise<void> {
      o.holding = method;
      o.held = 0;
      const child = spawn(process.execPath, [CLI_BIN, '--config', o.cluster.configFile, ...args], { stdio: 'ignore' });
      const exited = new Promise((res) => child.once('exit', res));
      for (let i = 0; i < 600 && o.held === 0; i++) await sleep(50);
      expect(o.held).toBeGreaterThan(0);
      // nobody cancels the job, nobody asks about it again
      child.kill('SIGKILL');
      await exited;
    },

    /**
     * The node's data removed (a restore must download it) and a restore of the latest
     * backup killed while its pack GETs are held: the data as that backup holds it
     */
    async restoreKilledMidStage(): Promise<Awaited<ReturnType<typeof fingerprint>>> {
      const data = o.cluster.agents[0]!.data.data!;
      const backedUp = await fingerprint(data);
      for (const e of await readdir(data)) await rm(join(data, e), { recursive: true, force: true });
      await o.killedWhileHeld(['restore', 'latest', '--json'], 'GET');
      return backedUp;
    },

    /** the agent's jobs (the job list, which asks about no job in particular) */
    async jobs(): Promise<Job[]> {
      const a = o.cluster.agents[0]!;
      const coord = await issueCertificate(o.cluster.ca, { role: 'coordinator', name: 'ops' });
      const dispatcher = new Agent({ connect: { ca: o.cluster.ca.cert, cert: coord.cert, key: coord.key } });
      try {
        const res = await request(`https://${a.host}:${a.port}/v1/jobs`, { dispatcher });
        return ((await res.body.json()) as { jobs: Job[] }).jobs;
      } finally {
        await dispatcher.close();
      }
    },

    /** the newest job of `kind` on the agent, once it has ended */
    async ended(kind: Job['kind']): Promise<Job | undefined> {
      let job: Job | undefined;
      for (let i = 0; i < 200; i++) {
        job = (await o.jobs()).filter((j) => j.kind === kind).at(-1);
        if (job && job.state !== 'running') break;
        await sleep(100);
      }
      return job;
    },
  };
  return o;
}

describe('an upload its coordinator abandoned', () => {
  // the agent gives up a transfer nobody asked about for 2 s
  const o = orphans(2000);
  beforeAll(() => o.start(), 120_000);
  afterAll(() => o.stop());
  const killedWhileHeld = o.killedWhileHeld;
  const ended = o.ended;

  it('an upload is stopped once nobody asks about it; the next backup runs at once and is whole', async () => {
    await killedWhileHeld(['backup', 'create', '--name', 'orphaned', '--json'], 'PUT');
    const upload = await ended('upload');
    expect(upload?.state).toBe('cancelled');
    expect(upload?.error?.code).toBe('LOCKSTEP_E_JOB_ABANDONED');
    expect(upload?.error?.message).toMatch(/no coordinator asked about it for \d+ s/);

    // the store answers again: the next backup takes the dead coordinator's lock over and is not told the component is busy
    o.holding = undefined;
    const r = await runCli(['backup', 'create', '--name', 'next', '--json'], { config: o.cluster.configFile });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const report = json<BackupReport>(r.stdout);
    expect(report.status).toBe('complete');
    const v = await runCli(['backup', 'verify', report.backupId, '--read-data', '--json'], { config: o.cluster.configFile });
    expect(v.code, v.stdout).toBe(0);
  }, 120_000);

  it("a restore's stage is stopped the same way, its staging removed; the next restore runs and brings the data back", async () => {
    const data = o.cluster.agents[0]!.data.data!;
    const backedUp = await o.restoreKilledMidStage();
    const stage = await ended('stage');
    expect(stage?.state).toBe('cancelled');
    expect(stage?.error?.code).toBe('LOCKSTEP_E_JOB_ABANDONED');
    // nothing staged is left beside the data, and the data was not touched
    expect((await readdir(dirname(data))).filter((x) => x.includes('.lockstep-'))).toEqual([]);
    expect(await readdir(data)).toEqual([]);

    o.holding = undefined;
    const r = await runCli(['restore', 'latest', '--json'], { config: o.cluster.configFile });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(json<RestoreReport>(r.stdout).status).toBe('restored');
    expect(await fingerprint(data)).toEqual(backedUp);
  }, 120_000);
});

describe('an upload its coordinator abandoned, and the next backup at once', () => {
  // the agent's own watchdog would take two minutes
  const o = orphans();
  beforeAll(() => o.start(), 120_000);
  afterAll(() => o.stop());

  it("the next backup stops the dead coordinator's upload when it takes the lock over, and runs", async () => {
    await o.killedWhileHeld(['backup', 'create', '--name', 'orphaned', '--json'], 'PUT');
    const orphaned = (await o.jobs()).find((j) => j.kind === 'upload' && (j.request as { backupId: string }).backupId.endsWith('-orphaned'))!;
    expect(orphaned.state).toBe('running');

    o.holding = undefined;
    const r = await runCli(['backup', 'create', '--name', 'next', '--json'], { config: o.cluster.configFile });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const report = json<BackupReport>(r.stdout);
    expect(report.status).toBe('complete');
    const from = (orphaned.request as { backupId: string }).backupId;
    expect(report.warnings).toEqual([
      `node1: component data: upload job ${orphaned.id} of backup ${from} was stopped: its coordinator no longer held the repository's lock (it died or lost the store); this backup picks up what it stored`,
    ]);
    const stopped = (await o.jobs()).find((j) => j.id === orphaned.id)!;
    expect(stopped.state).toBe('cancelled');
    expect(stopped.error?.code).toBe('LOCKSTEP_E_JOB_TAKEN_OVER');
    const v = await runCli(['backup', 'verify', report.backupId, '--read-data', '--json'], { config: o.cluster.configFile });
    expect(v.code, v.stdout).toBe(0);
  }, 120_000);

  it("the next restore stops the dead coordinator's stage when it takes the lock over, and restores", async () => {
    const data = o.cluster.agents[0]!.data.data!;
    const backedUp = await o.restoreKilledMidStage();
    const orphaned = (await o.jobs()).find((j) => j.kind === 'stage' && j.state === 'running')!;
    expect(orphaned).toBeDefined();

    o.holding = undefined;
    const r = await runCli(['restore', 'latest', '--json'], { config: o.cluster.configFile });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const report = json<RestoreReport>(r.stdout);
    expect(report.status).toBe('restored');
    const from = (orphaned.request as { restoreId: string }).restoreId;
    expect(report.warnings).toEqual([
      `node1/data: stage job ${orphaned.id} of restore ${from} was stopped: its coordinator no longer held the repository's lock (it died or lost the store); what it staged was removed`,
    ]);
    const stopped = (await o.jobs()).find((j) => j.id === orphaned.id)!;
    expect(stopped.state).toBe('cancelled');
    expect(stopped.error?.code).toBe('LOCKSTEP_E_JOB_TAKEN_OVER');
    expect(await fingerprint(data)).toEqual(backedUp);
    expect((await readdir(dirname(data))).filter((x) => x.includes('.lockstep-'))).toEqual([]);
  }, 120_000);
});
