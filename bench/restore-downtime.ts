/**
 * etcd restore: downtime (first stop → last member healthy) against the whole restore,
 * at two data sizes, and a delta restore after 1% of the keys changed.
 *
 *   npm run bench:restore                          # 64 and 256 MiB, 3 runs
 *   npm run bench:restore -- --sizes 1024,4096     # the sizes (~40 GB of disk, long)
 *
 * Prints medians (min–max); writes bench/results/restore-downtime.json. No assertions.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalCluster, runCli } from '../demo/local-cluster.js';
import { arg, median, runBench, spread, writeResults } from './stats.js';
import { EtcdTestCluster } from '../demo/etcd-cluster.js';
import type { BackupReport, RestoreReport } from '../lib/report.js';

const sizes = arg('sizes', '64,256').split(',').map(Number);
const runs = Number(arg('runs', '3'));
const VALUE_BYTES = 512 * 1024;

interface Row {
  sizeMiB: number;
  downtimeMs: number[];
  restoreMs: number[];
  deltaRestoreMs: number[];
  deltaDownloadedBytes: number[];
}

async function measure(sizeMiB: number): Promise<Row> {
  const root = await mkdtemp(join(tmpdir(), 'lockstep-bench-'));
  const etcd = new EtcdTestCluster(root, 3, undefined, undefined, ['--quota-backend-bytes=8589934592']);
  let cluster: LocalCluster | undefined;
  try {
    await etcd.start();
    cluster = await new LocalCluster({ root, nodes: 3, components: (_n, i) => [etcd.component(i)] }).start();
    const cfg = { config: cluster.configFile, timeoutMs: 3_600_000 };
    const keys = Math.ceil((sizeMiB * 1024 * 1024) / VALUE_BYTES);
    process.stderr.write(`filling ${sizeMiB} MiB (${keys} keys)…\n`);
    for (let i = 0; i < keys; i += 16) {
      const m = new Map<string, string>();
      for (let j = i; j < Math.min(keys, i + 16); j++) m.set(`bench/${j}`, randomBytes(VALUE_BYTES / 2).toString('hex'));
      await etcd.putMany(m);
    }
    const row: Row = { sizeMiB, downtimeMs: [], restoreMs: [], deltaRestoreMs: [], deltaDownloadedBytes: [] };
    for (let i = 0; i < runs; i++) {
      const b = JSON.parse((await runCli(['backup', 'create', '--name', `b${i}`, '--json'], cfg)).stdout) as BackupReport;
      if (b.status !== 'complete') throw new Error(`backup ${b.status}: ${b.error?.message ?? ''}`);
      const full = JSON.parse((await runCli(['restore', b.backupId, '--json'], cfg)).stdout) as RestoreReport;
      if (full.status !== 'restored') throw new Error(`restore ${full.status}: ${full.error?.message ?? ''}`);
      row.downtimeMs.push(full.downtimeMs ?? 0);
      row.restoreMs.push(full.durationMs);
      // 1% of the keys change, a new backup, then a restore of it
      const changed = new Map<string, string>();
      for (let j = 0; j < Math.max(1, Math.floor(keys / 100)); j++) changed.set(`bench/${j * 100}`, randomBytes(VALUE_BYTES / 2).toString('hex'));
      await etcd.putMany(changed);
      const b2 = JSON.parse((await runCli(['backup', 'create', '--name', `d${i}`, '--json'], cfg)).stdout) as BackupReport;
      const delta = JSON.parse((await runCli(['restore', b2.backupId, '--json'], cfg)).stdout) as RestoreReport;
      if (delta.status !== 'restored') throw new Error(`delta restore ${delta.status}: ${delta.error?.message ?? ''}`);
      row.deltaRestoreMs.push(delta.durationMs);
      row.deltaDownloadedBytes.push(delta.nodes.reduce((n, x) => n + (x.components[0]?.stage?.bytesDownloaded ?? 0), 0));
      process.stderr.write(`  ${sizeMiB} MiB run ${i + 1}/${runs}: downtime ${row.downtimeMs.at(-1)} ms, restore ${row.restoreMs.at(-1)} ms, delta restore ${row.deltaRestoreMs.at(-1)} ms\n`);
    }
    return row;
  } finally {
    await etcd.stop();
    await cluster?.stop();
    await rm(root, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const s of sizes) rows.push(await measure(s));
  const lines = [
    `etcd, 3 members and 3 agents on loopback, ${cpus().length} cores, ${runs} runs per size (median, min–max)`,
    '',
    '| data | downtime (first stop → last healthy) | whole restore | delta restore after 1% changed | delta / whole | delta bytes downloaded |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.sizeMiB} MiB | ${median(r.downtimeMs)} ms (${spread(r.downtimeMs)}) | ${median(r.restoreMs)} ms (${spread(r.restoreMs)}) | ${median(r.deltaRestoreMs)} ms (${spread(r.deltaRestoreMs)}) | ${(median(r.deltaRestoreMs) / median(r.restoreMs)).toFixed(2)} | ${(median(r.deltaDownloadedBytes) / 1048576).toFixed(0)} MiB |`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  await writeResults('restore-downtime', { cores: cpus().length, runs, rows });
}

runBench(main);
