/**
 * Failures in the middle: an agent killed mid-job, a service that will not start
 * after the swap, a corrupt chunk, a topology that does not match.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readdir, readFile, writeFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { parse, stringify } from 'yaml';
import { CLI_BIN, type LocalCluster } from '../../demo/local-cluster.js';
import { fillDataDir, fingerprint } from '../../demo/fixtures.js';
import type { BackupReport, RestoreReport } from '../../lib/report.js';
import type { Job } from '../../lib/wire.js';
import type { ErrorInfo } from '../../lib/errors.js';
import { issueCertificate } from '../../lib/tls/certs.js';
import { FAKE_SERVICE, isAlive, json, runCli, service, startCluster, stopCluster } from '../helpers/cluster.js';
import { openFsRepo } from '../helpers/repo.js';
import { RepoLock } from '../../lib/repo/lock.js';

const run = (argv: string[]) => new Promise<void>((res, rej) => execFile(argv[0]!, argv.slice(1), (e) => (e ? rej(e) : res())));

async function setComponent(cluster: LocalCluster, node: string, settings: Record<string, unknown>): Promise<void> {
  const a = cluster.agent(node);
  const cfg = parse(await readFile(a.configFile, 'utf8')) as { components: Record<string, unknown>[] };
  cfg.components[0] = { name: cfg.components[0]!.name, plugin: 'directory', path: cfg.components[0]!.path, ...settings };
  await writeFile(a.configFile, stringify(cfg));
  await cluster.killAgent(node, 'SIGTERM');
  await cluster.startAgent(node);
}

describe('recovery from failures', () => {
  let cluster: LocalCluster;
  let backupId: string;
  let before: Awaited<ReturnType<typeof fingerprint>>[];
  const pidfile = (node: string) => join(cluster.opts.root, `${node}.pid`);
  const fingerprints = () => Promise.all(cluster.agents.map((a) => fingerprint(a.data.data!)));
  /** nothing a restore made (staging, old data) is left beside any node's data */
  const nothingOfARestoreBeside = async (): Promise<void> => {
    for (const a of cluster.agents) expect((await readdir(dirname(a.data.data!))).filter((x) => x.includes('.lockstep-'))).toEqual([]);
  };
  /** a restore that fails after the stop: rolled back, data as `now`, nothing of it left beside the data */
  const restoreRolledBack = async (now: Awaited<ReturnType<typeof fingerprints>>, ...says: string[]): Promise<void> => {
    const r = await runCli(['restore', backupId, '--json'], { config: cluster.configFile });
    expect(r.code, r.stdout).toBe(1);
    const report = json<RestoreReport>(r.stdout);
    expect(report.status).toBe('rolled-back');
    expect(report.rollback?.ok).toBe(true);
    for (const text of says) expect(report.error?.message).toContain(text);
    expect(await fingerprints()).toEqual(now);
    await nothingOfARestoreBeside();
  };

  /** node1's component as a service of its own (started, stopped, health-checked through its pid file) */
  const node1AsService = () => setComponent(cluster, 'node1', { start: service('start', pidfile('node1')), stop: service('stop', pidfile('node1')), health: service('health', pidfile('node1')) });
  /**
   * A restore whose rollback fails on node2 (exit 5): node2's rollback error, which starts with
   * `says` and names where its old data is, and node2's actions in the report; node1 rolled
   * back to its data as `now`, its service running.
   */
  const restoreLeavingNode2 = async (now: Awaited<ReturnType<typeof fingerprints>>, says: string): Promise<{ report: RestoreReport; failed: ErrorInfo; actions: string }> => {
    const r = await runCli(['restore', backupId, '--json'], { config: cluster.configFile });
    // a person must act
    expect(r.code, r.stdout).toBe(5);
    const report = json<RestoreReport>(r.stdout);
    expect(report.status).toBe('rollback-failed');
    expect(report.rollback?.ok).toBe(false);
    const failed = report.rollback!.errors.find((e) => e.message.startsWith(`node2/data: ${says}`));
    expect(failed, JSON.stringify(report.rollback)).toBeDefined();
    expect(failed!.hint).toContain(`.lockstep-old-${report.restoreId}`);
    expect(await fingerprint(cluster.agent('node1').data.data!)).toEqual(now[0]);
    expect(isAlive(Number(await readFile(pidfile('node1'), 'utf8')))).toBe(true);
    return { report, failed: failed!, actions: report.nodes.find((n) => n.node === 'node2')!.components[0]!.actions!.join('\n') };
  };
  /** as the hint of a failed rollback says: node2's old data put back by hand in place of what its directory holds; every node's data as `now` */
  const putBackByHand = async (restoreId: string, now: Awaited<ReturnType<typeof fingerprints>>): Promise<void> => {
    const live2 = cluster.agent('node2').data.data!;
    await rm(live2, { recursive: true });
    await run(['mv', `${live2}.lockstep-old-${restoreId}`, live2]);
    expect(await fingerprints()).toEqual(now);
  };

  /**
   * A restore during which node2's agent dies (its start or stop command kills it), started
   * again `downMs` after it died, as systemd would: rolled back (exit 1), what `retried`
   * says among node2's actions (the step run again once its agent answered), every node's
   * data as `now`; node2's actions.
   */
  const restoreWithNode2AgentGone = async (now: Awaited<ReturnType<typeof fingerprints>>, downMs: number, retried: string): Promise<{ report: RestoreReport; actions: string }> => {
    const restarted = once(cluster.agent('node2').process!, 'exit')
      .then(() => sleep(downMs))
      .then(() => cluster.startAgent('node2'));
    try {
      const r = await runCli(['restore', backupId, '--json'], { config: cluster.configFile });
      expect(r.code, r.stdout).toBe(1);
      const report = json<RestoreReport>(r.stdout);
      expect(report.status).toBe('rolled-back');
      expect(report.rollback?.ok, JSON.stringify(report.rollback)).toBe(true);
      const actions = report.nodes.find((n) => n.node === 'node2')!.components[0]!.actions!.join('\n');
      expect(actions).toContain(retried);
      expect(await fingerprints()).toEqual(now);
      return { report, actions };
    } finally {
      await restarted.catch(() => undefined);
    }
  };

  beforeAll(async () => {
    cluster = await startCluster({ nodes: 2 });
    for (const a of cluster.agents) await fillDataDir(a.data.data!, a.node, 256 * 1024);
    before = await fingerprints();
    const r = await runCli(['backup', 'create', '--name', 'base', '--json'], { config: cluster.configFile });
    expect(r.code, r.stderr).toBe(0);
    backupId = json<BackupReport>(r.stdout).backupId;
  });
  afterAll(async () => {
    for (const a of cluster.agents) await run(service('stop', pidfile(a.node))).catch(() => undefined);
    await stopCluster(cluster);
  });

  it('an agent killed mid-job reports the job as interrupted, removes its leftovers and starts the service again', async () => {
    const pf = pidfile('node1');
    const events = join(cluster.opts.root, 'node1.events');
    await run(service('start', pf));
    await setComponent(cluster, 'node1', { stop: service('slow-stop', pf, events), start: service('start', pf, events), health: service('health', pf) });
    const a = cluster.agent('node1');
    const coord = await issueCertificate(cluster.ca, { role: 'coordinator', name: 'ops' });
    const dispatcher = new Agent({ connect: { ca: cluster.ca.cert, cert: coord.cert, key: coord.key } });
    const api = async <T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> => {
      const res = await request(`https://${a.host}:${a.port}/v1${path}`, { method, dispatcher, body: body ? JSON.stringify(body) : undefined, headers: body ? { 'content-type': 'application/json' } : {} });
      return (await res.body.json()) as T;
    };
    try {
      const job = await api<Job>('POST', '/jobs', { kind: 'snapshot', component: 'data', backupId: '20260101-000000-killed' });
      expect(job.state).toBe('running');
      // wait until the stop command runs: the snapshot dir exists, the service is being stopped
      const snapDir = join(a.stateDir, 'snapshots', '20260101-000000-killed', 'data');
      for (let i = 0; i < 100 && !existsSync(events); i++) await sleep(50);
      expect(existsSync(snapDir)).toBe(true);
      await cluster.killAgent('node1');
      await dispatcher.close();
      await cluster.startAgent('node1');
      const fresh = new Agent({ connect: { ca: cluster.ca.cert, cert: coord.cert, key: coord.key } });
      const res = await request(`https://${a.host}:${a.port}/v1/jobs/${job.id}`, { dispatcher: fresh });
      const after = (await res.body.json()) as Job;
      await fresh.close();
      expect(after.state).toBe('interrupted');
      expect(after.error?.code).toBe('LOCKSTEP_E_AGENT_INTERRUPTED');
      expect(after.recovery?.join('\n')).toContain('started component data again');
      expect(existsSync(snapDir)).toBe(false);
      expect(await readdir(join(a.stateDir, 'snapshots')).catch(() => [])).toEqual([]);
      expect(isAlive(Number(await readFile(pf, 'utf8')))).toBe(true);
    } finally {
      await dispatcher.close().catch(() => undefined);
    }
  });

  it('SIGINT during a backup cancels it: services running again, no snapshot left, no manifest, exit 130', async () => {
    // node1 still has the slow stop command from the test above
    const pf = pidfile('node1');
    const events = join(cluster.opts.root, 'node1.events');
    const seen = (await readFile(events, 'utf8')).split('\n').filter((l) => l === 'slow-stop').length;
    const child = spawn(process.execPath, [CLI_BIN, '--config', cluster.configFile, 'backup', 'create', '--name', 'interrupted', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    for (let i = 0; i < 200; i++) {
      if ((await readFile(events, 'utf8')).split('\n').filter((l) => l === 'slow-stop').length > seen) break;
      await sleep(50);
    }
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    const report = json<BackupReport>(out);
    expect(report.status).toBe('failed');
    expect(report.error?.code).toBe('LOCKSTEP_E_CANCELLED');
    expect(isAlive(Number(await readFile(pf, 'utf8')))).toBe(true);
    for (const a of cluster.agents) expect(await readdir(join(a.stateDir, 'snapshots')).catch(() => [])).toEqual([]);
    expect(existsSync(join(cluster.repoDir, 'backups', report.backupId))).toBe(false);
  });

  it('a service that will not start after the swap rolls every node back to its data, started', async () => {
    // node2's start command fails: its data must come back as it was before the restore
    for (const a of cluster.agents) await writeFile(join(a.data.data!, 'CURRENT'), `changed on ${a.node}`);
    const now = await fingerprints();
    // node2's service cannot run on the backed-up data (its health check refuses it)
    await setComponent(cluster, 'node2', { health: [process.execPath, FAKE_SERVICE, 'refuse-if', join(cluster.agent('node2').data.data!, 'CURRENT'), 'MANIFEST'], healthTimeoutMs: 1500 });
    await node1AsService();
    await restoreRolledBack(now, 'node2/data: start failed', 'did not become healthy');
    // node1's service runs again after the rollback
    expect(isAlive(Number(await readFile(pidfile('node1'), 'utf8')))).toBe(true);
    await setComponent(cluster, 'node2', {});
  });

  it("a node whose rollback fails twice is left stopped, its old data kept whole; the other nodes are rolled back and started", async (t) => {
    const live2 = cluster.agent('node2').data.data!;
    // an immutable data directory (chattr +i) refuses every removal and rename in it, root's too
    const probe = join(cluster.opts.root, 'immutable-probe');
    await mkdir(probe, { recursive: true });
    const canPin = await run(['chattr', '+i', probe]).then(() => run(['chattr', '-i', probe])).then(() => true, () => false);
    if (!canPin) t.skip();
    for (const a of cluster.agents) await writeFile(join(a.data.data!, 'CURRENT'), `changed before a failed rollback on ${a.node}`);
    const now = await fingerprints();
    // node2's first start makes its (restored) data directory immutable and fails; any later start is logged
    const events = join(cluster.opts.root, 'pinned-events');
    const mark = join(cluster.opts.root, 'pinned');
    const start = ['sh', '-c', 'echo start >> "$1"; if [ ! -e "$2" ]; then touch "$2"; chattr +i "$3"; exit 1; fi', 'start', events, mark, live2];
    await setComponent(cluster, 'node2', { start });
    await node1AsService();
    try {
      const { report, failed, actions } = await restoreLeavingNode2(now, 'rollback failed twice, the service is left stopped');
      // rm's own words: the cause, not an error of a fallback
      expect(failed.message).toContain('Operation not permitted');
      expect(actions).toContain('rollback: failed once');
      expect(actions).toContain('left stopped: its old data could not be put back');
      // node2 was not started on what is left of the restored data: its start ran once, the failed one
      expect((await readFile(events, 'utf8')).trim().split('\n')).toEqual(['start']);
      // its old data whole beside it
      expect(await fingerprint(`${live2}.lockstep-old-${report.restoreId}`)).toEqual(now[1]);
      // the cause fixed, then as the hint says
      await run(['chattr', '-i', live2]);
      await putBackByHand(report.restoreId, now);
    } finally {
      await run(['chattr', '-i', live2]).catch(() => undefined);
      await setComponent(cluster, 'node2', {});
    }
    await nothingOfARestoreBeside();
  });

  it('a node that cannot be stopped for the rollback is left as the restore put it, not started again; the others are rolled back', async () => {
    const live2 = cluster.agent('node2').data.data!;
    for (const a of cluster.agents) await writeFile(join(a.data.data!, 'CURRENT'), `changed before an unstoppable rollback on ${a.node}`);
    const now = await fingerprints();
    // node2's first start fails (the rollback follows); every stop of it after its first fails
    const events = join(cluster.opts.root, 'unstoppable-events');
    const started = join(cluster.opts.root, 'unstoppable-started');
    const stopped = join(cluster.opts.root, 'unstoppable-stopped');
    const start = ['sh', '-c', 'echo start >> "$1"; if [ ! -e "$2" ]; then touch "$2"; exit 1; fi', 'start', events, started];
    const stop = ['sh', '-c', 'echo stop >> "$1"; if [ -e "$2" ]; then exit 1; fi; touch "$2"', 'stop', events, stopped];
    await setComponent(cluster, 'node2', { start, stop });
    await node1AsService();
    try {
      const { report, actions } = await restoreLeavingNode2(now, 'stop before rollback failed, so its data was left as the restore put it');
      expect(actions).toContain('left as the restore put it');
      // its data was not moved under it, nor was it started again
      expect((await readFile(events, 'utf8')).trim().split('\n')).toEqual(['stop', 'start', 'stop']);
      expect(await fingerprint(live2)).toEqual(before[1]);
      expect(await fingerprint(`${live2}.lockstep-old-${report.restoreId}`)).toEqual(now[1]);
      await putBackByHand(report.restoreId, now);
    } finally {
      await setComponent(cluster, 'node2', {});
    }
    await nothingOfARestoreBeside();
  });

  it('an agent that dies in the stop before the rollback and is started again is stopped once more and rolled back, not left as the restore put it', async () => {
    for (const a of cluster.agents) await writeFile(join(a.data.data!, 'CURRENT'), `changed before an agent died in the rollback on ${a.node}`);
    const now = await fingerprints();
    // node2's first start fails (the rollback follows); the stop after it kills node2's agent ($PPID: the agent runs the command)
    const events = join(cluster.opts.root, 'died-events');
    const started = join(cluster.opts.root, 'died-started');
    const killed = join(cluster.opts.root, 'died-killed');
    const start = ['sh', '-c', 'echo start >> "$1"; if [ ! -e "$2" ]; then touch "$2"; exit 1; fi', 'start', events, started];
    const stop = ['sh', '-c', 'echo stop >> "$1"; if [ -e "$2" ] && [ ! -e "$3" ]; then touch "$3"; kill -9 $PPID; fi', 'stop', events, started, killed];
    await setComponent(cluster, 'node2', { start, stop });
    await node1AsService();
    try {
      // the agent started again a second after it died
      await restoreWithNode2AgentGone(now, 1000, 'stop before rollback: its agent went away');
      expect(existsSync(killed)).toBe(true);
      // node2 started again on its own data, node1 running
      expect((await readFile(events, 'utf8')).trim().split('\n').at(-1)).toBe('start');
      expect(isAlive(Number(await readFile(pidfile('node1'), 'utf8')))).toBe(true);
    } finally {
      await setComponent(cluster, 'node2', {});
    }
    await nothingOfARestoreBeside();
  });

  it('an agent that is down when the rollback would stop its service is waited for, then stopped and rolled back', async () => {
    for (const a of cluster.agents) await writeFile(join(a.data.data!, 'CURRENT'), `changed before an agent was down for the rollback on ${a.node}`);
    const now = await fingerprints();
    // node2's first start kills its agent, which stays down longer than the coordinator follows a job it lost (15 s)
    const events = join(cluster.opts.root, 'down-events');
    const started = join(cluster.opts.root, 'down-started');
    const start = ['sh', '-c', 'echo start >> "$1"; if [ ! -e "$2" ]; then touch "$2"; kill -9 $PPID; fi', 'start', events, started];
    const stop = ['sh', '-c', 'echo stop >> "$1"', 'stop', events];
    await setComponent(cluster, 'node2', { start, stop });
    await node1AsService();
    try {
      const { report } = await restoreWithNode2AgentGone(now, 20_000, 'stop before rollback: its agent went away (cannot reach');
      // its agent died in the start: lost while the coordinator followed the job, or gone before it answered the request that started it
      expect(report.error?.message).toMatch(/lost contact with agent node2|agent node2 at \S+ closed the connection before answering/);
      // stopped for the restore, started (its agent killed), stopped once it was back, started on its own data
      expect((await readFile(events, 'utf8')).trim().split('\n')).toEqual(['stop', 'start', 'stop', 'start']);
    } finally {
      await setComponent(cluster, 'node2', {});
    }
    await nothingOfARestoreBeside();
  }, 90_000);

  it('an agent killed in the middle of its rollback and down for a while is waited for before the rollback runs there again', async () => {
    for (const a of cluster.agents) await writeFile(join(a.data.data!, 'CURRENT'), `changed before an agent died in its rollback on ${a.node}`);
    const now = await fingerprints();
    // node2's first start fails and kills its agent a second later, while its rollback is held (journaled, nothing moved yet)
    const events = join(cluster.opts.root, 'mid-rollback-events');
    const started = join(cluster.opts.root, 'mid-rollback-started');
    const start = ['sh', '-c', 'echo start >> "$1"; if [ ! -e "$2" ]; then touch "$2"; (sleep 1; kill -9 $PPID) </dev/null >/dev/null 2>&1 & exit 1; fi', 'start', events, started];
    const stop = ['sh', '-c', 'echo stop >> "$1"', 'stop', events];
    cluster.opts.agentEnv = { LOCKSTEP_FAILPOINTS: 'rollback.hold=4000' };
    try {
      await setComponent(cluster, 'node2', { start, stop });
    } finally {
      cluster.opts.agentEnv = undefined;
    }
    await node1AsService();
    try {
      // started again (without the hold) once the coordinator has given up following the rollback (15 s): its own start ran the rollback again
      await restoreWithNode2AgentGone(now, 20_000, 'rollback: failed once (lost contact with agent node2');
      expect((await readFile(events, 'utf8')).trim().split('\n')).toEqual(['stop', 'start', 'stop', 'start']);
    } finally {
      await setComponent(cluster, 'node2', {});
    }
    await nothingOfARestoreBeside();
  }, 90_000);

  it('after-restore hooks run once every node is healthy, with the restore\'s ids; a failing hook rolls every node back', async () => {
    const out = join(cluster.opts.root, 'hook-ran');
    const record = [process.execPath, '-e', `require('fs').appendFileSync(${JSON.stringify(out)}, [process.env.LOCKSTEP_NODE, process.env.LOCKSTEP_RESTORE_ID, process.env.LOCKSTEP_BACKUP_ID].join(' ') + '\\n'); console.log('replicas in sync')`];
    for (const a of cluster.agents) await setComponent(cluster, a.node, { afterRestore: record });
    for (const a of cluster.agents) await writeFile(join(a.data.data!, 'CURRENT'), `changed again on ${a.node}`);
    // the plan names them
    const plan = json<RestoreReport>((await runCli(['restore', backupId, '--dry-run', '--json'], { config: cluster.configFile })).stdout);
    for (const n of plan.nodes) expect(n.components[0]!.actions!.join('\n')).toContain(`then, the cluster healthy, run ${process.execPath} -e`);
    const ok = await runCli(['restore', backupId, '--json'], { config: cluster.configFile });
    expect(ok.code, ok.stdout).toBe(0);
    const done = json<RestoreReport>(ok.stdout);
    expect(done.steps.map((x) => x.name)).toEqual(['lock', 'plan', 'stage', 'stop', 'swap', 'start', 'hooks', 'finish']);
    const lines = (await readFile(out, 'utf8')).trim().split('\n').sort();
    expect(lines).toEqual(cluster.agents.map((a) => `${a.node} ${done.restoreId} ${backupId}`));
    for (const n of done.nodes) expect(n.components[0]!.actions!.join('\n')).toMatch(/after-restore hook .* ran in \d+ ms; it printed: replicas in sync/);
    expect(await fingerprints()).toEqual(before);

    // node2's hook fails: the restore is rolled back on every node, though all were healthy
    for (const a of cluster.agents) await writeFile(join(a.data.data!, 'CURRENT'), `changed once more on ${a.node}`);
    const now = await fingerprints();
    await setComponent(cluster, 'node2', { afterRestore: [process.execPath, '-e', `process.stderr.write('replica check failed'); process.exit(2)`] });
    await restoreRolledBack(now, 'node2/data: after-restore hook failed', 'replica check failed');
    for (const a of cluster.agents) await setComponent(cluster, a.node, {});
  });

  it("before-restore hooks run once everything is staged, before any stop, with the restore's ids; a failing one stops the restore there", async () => {
    const events = join(cluster.opts.root, 'before-events');
    const log = (what: string) => [process.execPath, '-e', `require('fs').appendFileSync(${JSON.stringify(events)}, [${JSON.stringify(what)}, process.env.LOCKSTEP_NODE, process.env.LOCKSTEP_RESTORE_ID ?? ''].join(' ').trim() + '\\n')`];
    for (const a of cluster.agents) await setComponent(cluster, a.node, { beforeRestore: log('drained'), stop: log('stop'), start: log('start') });
    for (const a of cluster.agents) await writeFile(join(a.data.data!, 'CURRENT'), `changed before on ${a.node}`);
    const plan = json<RestoreReport>((await runCli(['restore', backupId, '--dry-run', '--json'], { config: cluster.configFile })).stdout);
    for (const n of plan.nodes) expect(n.components[0]!.actions!.join('\n')).toContain(`everything staged, run ${process.execPath} -e`);
    await rm(events, { force: true });
    const ok = await runCli(['restore', backupId, '--json'], { config: cluster.configFile });
    expect(ok.code, ok.stdout).toBe(0);
    const done = json<RestoreReport>(ok.stdout);
    expect(done.steps.map((x) => x.name)).toEqual(['lock', 'plan', 'stage', 'before-hooks', 'stop', 'swap', 'start', 'hooks', 'finish']);
    const lines = (await readFile(events, 'utf8')).trim().split('\n');
    // every node drained before any service stopped, each told the restore's id
    expect(lines.slice(0, 2).sort()).toEqual(cluster.agents.map((a) => `drained ${a.node} ${done.restoreId}`));
    expect(lines.slice(2).length).toBeGreaterThan(0);
    expect(lines.slice(2).filter((l) => !l.startsWith('stop') && !l.startsWith('start'))).toEqual([]);
    expect(await fingerprints()).toEqual(before);

    // node2's hook fails: nothing is stopped, nothing staged is left, the data is as it was
    for (const a of cluster.agents) await writeFile(join(a.data.data!, 'CURRENT'), `changed again before on ${a.node}`);
    const now = await fingerprints();
    await setComponent(cluster, 'node2', { beforeRestore: [process.execPath, '-e', `process.stderr.write('the load balancer would not drain'); process.exit(3)`], stop: log('stop'), start: log('start') });
    await rm(events, { force: true });
    const r = await runCli(['restore', backupId, '--json'], { config: cluster.configFile });
    expect(r.code, r.stdout).toBe(1);
    const failed = json<RestoreReport>(r.stdout);
    expect(failed.status).toBe('failed');
    expect(failed.error?.message).toContain('node2/data: before-restore hook failed');
    expect(failed.error?.message).toContain('the load balancer would not drain');
    expect(failed.error?.message).toContain('no service was stopped');
    expect(failed.steps.map((x) => x.name)).not.toContain('stop');
    expect((await readFile(events, 'utf8').catch(() => '')).split('\n').filter((l) => l.startsWith('stop'))).toEqual([]);
    expect(await fingerprints()).toEqual(now);
    await nothingOfARestoreBeside();
    for (const a of cluster.agents) await setComponent(cluster, a.node, {});
  });

  it('a restore while another operation holds the repository is refused, naming it; nothing is touched', async () => {
    const repo = await openFsRepo(cluster.repoDir);
    const held = await RepoLock.acquire(repo.driver, 'backup nightly of cluster other');
    try {
      const now = await fingerprints();
      const r = await runCli(['restore', backupId, '--json'], { config: cluster.configFile });
      expect(r.code, r.stdout).toBe(4);
      const report = json<RestoreReport>(r.stdout);
      expect(report.status).toBe('refused');
      expect(report.error?.code).toBe('LOCKSTEP_E_REPO_LOCKED');
      expect(report.error?.message).toContain('backup nightly of cluster other');
      expect(report.steps.map((x) => x.name)).toEqual(['lock']);
      expect(await fingerprints()).toEqual(now);
      // a dry run only reads: it still plans
      expect((await runCli(['restore', backupId, '--dry-run', '--json'], { config: cluster.configFile })).code).toBe(0);
    } finally {
      await held.release();
    }
  });

  it('a corrupt chunk stops the restore during staging, before any service is stopped', async () => {
    const events = join(cluster.opts.root, 'node1.events');
    const stopsBefore = await readFile(events, 'utf8').catch(() => '');
    // flip the last byte of every chunk and pack (the end of each pack is some file's blob)
    const saved = new Map<string, Buffer>();
    for (const sub of ['chunks', 'packs']) {
      for (const e of await readdir(join(cluster.repoDir, sub), { recursive: true, withFileTypes: true }).catch(() => [])) {
        if (!e.isFile()) continue;
        const p = join(e.parentPath, e.name);
        const b = await readFile(p);
        saved.set(p, Buffer.from(b));
        b[b.length - 1] = b[b.length - 1]! ^ 0xff;
        await writeFile(p, b);
      }
    }
    expect(saved.size).toBeGreaterThan(0);
    try {
      // make every file differ so that nothing can be reused locally
      for (const a of cluster.agents) await rm(a.data.data!, { recursive: true });
      for (const a of cluster.agents) await mkdir(a.data.data!);
      const r = await runCli(['restore', backupId, '--json'], { config: cluster.configFile });
      expect(r.code).toBe(1);
      const report = json<RestoreReport>(r.stdout);
      expect(report.status).toBe('failed');
      expect(report.error?.code).toBe('LOCKSTEP_E_REPO_CORRUPT');
      expect(report.error?.message).toMatch(/(chunk|pack) \S+ in .* (is corrupt|does not decompress)/);
      expect(report.steps.map((s) => s.name)).not.toContain('stop');
      expect(await readFile(events, 'utf8').catch(() => '')).toBe(stopsBefore);
      for (const a of cluster.agents) expect((await readdir(dirname(a.data.data!))).filter((s) => s.includes('.lockstep-'))).toEqual([]);
    } finally {
      for (const [p, b] of saved) await writeFile(p, b);
    }
    // with the chunks repaired the same restore succeeds
    const ok = await runCli(['restore', backupId, '--json'], { config: cluster.configFile });
    expect(ok.code, ok.stdout).toBe(0);
    expect(await fingerprints()).toEqual(before);
  });

  it('restore onto a different topology is refused, naming the difference, and changes nothing', async () => {
    const a2 = cluster.agent('node2');
    const cfg = parse(await readFile(a2.configFile, 'utf8')) as { components: Record<string, unknown>[] };
    const extra = join(dirname(a2.data.data!), 'logs');
    await mkdir(extra, { recursive: true });
    cfg.components.push({ name: 'logs', plugin: 'directory', path: extra });
    await writeFile(a2.configFile, stringify(cfg));
    await cluster.killAgent('node2', 'SIGTERM');
    await cluster.startAgent('node2');
    await writeFile(join(cluster.agent('node1').data.data!, 'CURRENT'), 'after backup');
    const fp = await fingerprint(cluster.agent('node1').data.data!);
    const r = await runCli(['restore', backupId], { config: cluster.configFile });
    expect(r.code).toBe(4);
    expect(r.stdout).toContain('LOCKSTEP_E_TOPOLOGY_MISMATCH');
    expect(r.stdout).toContain('node node2: component logs (directory) is on the node but not in the backup');
    expect(await fingerprint(cluster.agent('node1').data.data!)).toEqual(fp);
  });
});
