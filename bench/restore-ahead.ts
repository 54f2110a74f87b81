/**
 * Restore from S3 with a round trip per request: one big file against eight files of the
 * same bytes. Eight files are staged eight at a time, each with its next read on the way;
 * one file alone used to wait for each 2 MiB read in turn, so every request's round trip
 * added up (etcd's one database file, a table's big segments). Now a file alone has
 * several reads on the way while the others are idle.
 *
 *   npm run bench:ahead                              # 256 MiB, 20 ms a request, 3 runs
 *   npm run bench:ahead -- --mib 1024 --delay 40 --runs 5
 *
 * Ceph RGW on this machine (data in memory) behind a proxy that holds every request
 * `--delay` ms before passing it on. One agent, the directory plugin; its data folder is
 * emptied before each restore, so every byte comes from the store. Prints medians
 * (min–max) and the ratio one file ÷ eight files (1× = a file alone restores as fast as
 * many); writes bench/results/restore-ahead.json. No assertions.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalCluster, runCli } from '../demo/local-cluster.js';
import { forwardingProxy } from '../demo/http-proxy.js';
import { startRgw } from './rgw.js';
import { arg, median, runBench, spread, writeResults } from './stats.js';
import type { BackupReport, RestoreReport } from '../lib/report.js';

const mib = Number(arg('mib', '256'));
const delayMs = Number(arg('delay', '20'));
const runs = Number(arg('runs', '3'));

async function emptied(dir: string): Promise<void> {
  for (const name of await readdir(dir)) await rm(join(dir, name), { recursive: true, force: true });
}

async function digest(dir: string): Promise<string> {
  const h = createHash('sha256');
  for (const name of (await readdir(dir)).sort()) h.update(name).update(await readFile(join(dir, name)));
  return h.digest('hex');
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'lockstep-bench-'));
  const rgw = await startRgw(root);
  const proxy = await forwardingProxy(rgw.settings.endpoint as string, { delayMs });
  const cluster = new LocalCluster({ root, nodes: 1, repository: { ...rgw.settings, endpoint: proxy.endpoint } });
  try {
    await cluster.start();
    const data = cluster.agents[0]!.data.data!;
    const cfg = { config: cluster.configFile, timeoutMs: 3_600_000 };
    const bytes = mib * 1024 * 1024;
    const backup = async (name: string, files: number) => {
      await emptied(data);
      for (let i = 0; i < files; i++) await writeFile(join(data, `f${i}.db`), randomBytes(bytes / files));
      const sum = await digest(data);
      const r = JSON.parse((await runCli(['backup', 'create', '--name', name, '--json'], cfg)).stdout) as BackupReport;
      if (r.status !== 'complete') throw new Error(`backup ${name} ended ${r.status}: ${r.error?.message ?? ''}`);
      return { id: r.backupId, sum };
    };
    const one = await backup('one-file', 1);
    const eight = await backup('eight-files', 8);
    const ms = { one: [] as number[], eight: [] as number[] };
    const restore = async (b: { id: string; sum: string }, into: number[]) => {
      await emptied(data);
      const r = JSON.parse((await runCli(['restore', b.id, '--json'], cfg)).stdout) as RestoreReport;
      if (r.status !== 'restored') throw new Error(`restore of ${b.id} ended ${r.status}: ${r.error?.message ?? ''}`);
      if ((await digest(data)) !== b.sum) throw new Error(`restore of ${b.id} did not give back the data backed up`);
      into.push(r.nodes[0]!.components[0]!.stage!.stageMs);
    };
    for (let i = 0; i < runs; i++) {
      // alternated: neither always goes first
      if (i % 2 === 0) {
        await restore(one, ms.one);
        await restore(eight, ms.eight);
      } else {
        await restore(eight, ms.eight);
        await restore(one, ms.one);
      }
      process.stderr.write(`  run ${i + 1}/${runs}: one file ${ms.one.at(-1)} ms, eight files ${ms.eight.at(-1)} ms\n`);
    }
    const ratio = median(ms.one) / median(ms.eight);
    const lines = [
      `staging ${mib} MiB from Ceph RGW with ${delayMs} ms a request, one agent, ${cpus().length} cores, ${runs} runs (median, min–max)`,
      '',
      '| data | staged in | MB/s |',
      '| --- | --- | --- |',
      `| one file of ${mib} MiB | ${median(ms.one)} ms (${spread(ms.one)}) | ${((bytes / median(ms.one)) * 1e-3).toFixed(0)} |`,
      `| eight files of ${mib / 8} MiB | ${median(ms.eight)} ms (${spread(ms.eight)}) | ${((bytes / median(ms.eight)) * 1e-3).toFixed(0)} |`,
      `| one ÷ eight | ${ratio.toFixed(2)}× | |`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    await writeResults('restore-ahead', { cores: cpus().length, mib, delayMs, runs, oneFileMs: ms.one, eightFilesMs: ms.eight, ratio });
  } finally {
    await cluster.stop();
    await proxy.close();
    await rgw.stop();
    await rm(root, { recursive: true, force: true });
  }
}

runBench(main);
