/**
 * Write pause of a consistent Redis Cluster backup, against the downtime of a
 * stop → copy → start backup of the same data, measured in the same run.
 *
 *   npm run bench:pause                          # quick: 256 MiB and 1 GiB, 5 runs each
 *   npm run bench:pause -- --sizes 1024,4096     # the sizes (needs ~12 GiB RAM)
 *
 * Prints a table of medians (with min–max) and writes bench/results/pause-window.json.
 * A benchmark, not a test: nothing here asserts a time.
 */
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCli } from '../demo/local-cluster.js';
import { arg, median, runBench, spread, writeResults } from './stats.js';
import type { RedisTestCluster } from '../demo/redis-cluster.js';
import { withRedisAgents } from './redis-agents.js';
import type { BackupReport } from '../lib/report.js';


const sizesMiB = arg('sizes', '256,1024').split(',').map(Number);
const runs = Number(arg('runs', '5'));
const VALUE = 'v'.repeat(1000);


function sh(file: string, args: string[]): Promise<void> {
  return new Promise((res, rej) => execFile(file, args, { maxBuffer: 1 << 20 }, (e) => (e ? rej(e) : res())));
}

async function fill(redis: RedisTestCluster, mib: number): Promise<void> {
  const keys = Math.round((mib * 1024 * 1024) / (VALUE.length + 40));
  const batch = 50_000;
  for (let start = 0; start < keys; start += batch) {
    const m = new Map<string, string>();
    for (let i = start; i < Math.min(keys, start + batch); i++) m.set(`bench:${i}`, VALUE);
    await redis.setMany(m);
  }
}

/** stop (SHUTDOWN SAVE, as a service stop does) → cp -r → start → answering and loaded, on every master at once */
async function stopCopyStart(redis: RedisTestCluster, root: string, run: number): Promise<number> {
  const masters = await redis.masters();
  const downtimes = await Promise.all(
    masters.map(async (m) => {
      const n = redis.node(m.port);
      const copy = join(root, `copy-${m.port}-${run}`);
      const t0 = performance.now();
      await redis.withClient(m.port, (r) => r.call('SHUTDOWN', 'SAVE')).catch(() => undefined);
      while (await redis.ping(m.port)) await sleep(5);
      await sh('cp', ['-r', n.dir, copy]);
      await redis.startNode(m.port);
      for (;;) {
        const loaded = await redis.withClient(m.port, async (r) => (await r.info('persistence')).includes('loading:0')).catch(() => false);
        if (loaded) break;
        await sleep(5);
      }
      const ms = performance.now() - t0;
      await rm(copy, { recursive: true, force: true });
      return ms;
    }),
  );
  await redis.waitOk(120_000);
  return Math.round(Math.max(...downtimes));
}

interface Row {
  sizeMiB: number;
  /** coordinator's view: first freeze sent → last thaw acknowledged */
  pauseMs: number[];
  /** the agents' view: longest CLIENT PAUSE → CLIENT UNPAUSE on any master */
  masterPauseMs: number[];
  stopCopyStartMs: number[];
}

async function measure(sizeMiB: number): Promise<Row> {
  return withRedisAgents(async (redis, cluster, root) => {
    process.stderr.write(`filling ${sizeMiB} MiB…\n`);
    await fill(redis, sizeMiB);
    const row: Row = { sizeMiB, pauseMs: [], masterPauseMs: [], stopCopyStartMs: [] };
    for (let i = 0; i < runs; i++) {
      const r = await runCli(['backup', 'create', '--name', `bench${i}`, '--json'], { config: cluster.configFile, timeoutMs: 1_800_000 });
      const report = JSON.parse(r.stdout) as BackupReport;
      if (report.status !== 'complete' || !report.pause) throw new Error(`backup ${i} ended ${report.status}: ${report.error?.message ?? ''}`);
      row.pauseMs.push(report.pause.windowMs);
      row.stopCopyStartMs.push(await stopCopyStart(redis, root, i));
      const p = report.pause;
      const perMaster = Math.max(...report.nodes.flatMap((n) => n.components).map((c) => c.pauseMs ?? 0));
      row.masterPauseMs.push(perMaster);
      process.stderr.write(`  ${sizeMiB} MiB run ${i + 1}/${runs}: window ${p.windowMs} ms (freeze ${p.freezeMs}, point ${p.pointMs}, thaw ${p.thawMs}), longest master pause ${perMaster} ms, stop/copy/start ${row.stopCopyStartMs.at(-1)} ms\n`);
    }
    return row;
  });
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const s of sizesMiB) rows.push(await measure(s));
  const lines = [
    `Redis Cluster 3 masters + 3 replicas on loopback, ${cpus().length} cores, ${runs} runs per size (median, min–max)`,
    '',
    '| data | lockstep pause window (coordinator) | longest master write pause (agent) | stop → copy → start downtime | downtime / window |',
    '| --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.sizeMiB} MiB | ${median(r.pauseMs)} ms (${spread(r.pauseMs)}) | ${median(r.masterPauseMs)} ms (${spread(r.masterPauseMs)}) | ${median(r.stopCopyStartMs)} ms (${spread(r.stopCopyStartMs)}) | ${(median(r.stopCopyStartMs) / Math.max(1, median(r.pauseMs))).toFixed(1)}× |`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  await writeResults('pause-window', { cores: cpus().length, runs, rows });
}

runBench(main);
