/**
 * Full backup of three directory nodes into a local repository, against GNU tar
 * copying the same data on the same disk (`tar -c | tar -x`), in the same run; then
 * incremental backups after 1% of the data changed (pages rewritten in place in the
 * large files, a few new small files), against that run's full backup; the agents'
 * peak RSS (VmHWM) in each backup; and, once the runs are done, the nodes emptied and
 * restored from the last backup, and one more backup of what was restored (every file is
 * new to it: read whole, every block already stored): its time and peak RSS, since a
 * restore is what leaves an agent's memory most fragmented. Every timed step starts with
 * the page cache's dirty pages written out (`sync`), not with the step before's writeback.
 *
 *   npm run bench:backup                       # 3 × 256 MiB, 3 runs
 *   npm run bench:backup -- --mib 1024 --runs 5
 *   npm run bench:backup -- --nodes 1 --mib 5120 --runs 1 --data db   # one agent, 5 GiB (peak RSS)
 *   npm run bench:backup -- --nodes 1 --mib 5120 --runs 1 --data db --history 12
 *   npm run bench:backup -- --nodes 1 --mib 5120 --runs 2 --data db --encrypt   # into an encrypted repository
 *   npm run bench:backup -- --nodes 1 --mib 2048 --runs 2 --data db --s3        # into S3 (Ceph RGW here, in memory)
 *
 * `--incrementals N` (3): incrementals after each run's full backup, 1% changed before each:
 * the ratio is their median against the full backups' (an incremental is short, and one
 * hiccup of a shared machine is a large part of it).
 * `--history N`: after the runs, N more rounds of 1% changed and an incremental into the
 * same repository, which grows by a backup each round: the agents' peak RSS in the first
 * rounds against the last (the goal: it does not grow with the repository).
 *
 * Prints medians (min–max) and the ratio; writes bench/results/full-backup.json.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalCluster, runCli } from '../demo/local-cluster.js';
import { arg, median, runBench, spread, writeResults } from './stats.js';
import { filesChangedSince, readWhole, settle, tarCopy } from './peers.js';
import { backup, metered } from './metered.js';
import { changeOnePercent as changeDb, generate } from './dataset.js';
import { startRgw } from './rgw.js';
import type { RestoreReport } from '../lib/report.js';
import type { UploadPhases } from '../lib/wire.js';

const mibPerNode = Number(arg('mib', '256'));
const runs = Number(arg('runs', '3'));
const nodes = Number(arg('nodes', '3'));
/** random: incompressible files as below; db: bench/dataset.ts (compresses ~2:1, pages rewritten in place) */
const data = arg('data', 'random');
/** incrementals after each run's full backup, 1% changed before each (the ratio is their median against the full backups') */
const incrementals = Number(arg('incrementals', '3'));
/** incrementals into the same repository after the runs (peak RSS as the repository grows) */
const history = Number(arg('history', '0'));
/** into an encrypted repository (AES-256-GCM, its key in a file beside it): what encryption costs */
const encrypt = process.argv.includes('--encrypt');
/** into an S3 repository: Ceph RGW on this machine (bench/rgw.ts), instead of a folder */
const s3 = process.argv.includes('--s3');

/** a database-like tree: a few large files, many small ones */
async function fillNode(dir: string, mib: number): Promise<void> {
  await mkdir(join(dir, 'small'), { recursive: true });
  const big = Math.floor((mib * 0.8) / 4);
  for (let i = 0; i < 4; i++) await writeFile(join(dir, `segment-${i}.dat`), randomBytes(big * 1024 * 1024));
  const smallBytes = mib * 0.2 * 1024 * 1024;
  for (let i = 0; i * 16384 < smallBytes; i++) await writeFile(join(dir, 'small', `f${i}.sst`), randomBytes(16384));
}

/** change ~1% of a node's bytes: 8 KiB pages rewritten in place in each large file, plus new small files */
async function changeOnePercent(dir: string, mib: number): Promise<number> {
  const target = mib * 1024 * 1024 * 0.01;
  let changed = 0;
  const big = Math.floor((mib * 0.8) / 4) * 1024 * 1024;
  for (let i = 0; i < 4; i++) {
    const fh = await open(join(dir, `segment-${i}.dat`), 'r+');
    for (let p = 0; p < (target * 0.2) / 4 / 8192; p++) {
      await fh.write(randomBytes(8192), 0, 8192, Math.floor(Math.random() * (big / 8192)) * 8192);
      changed += 8192;
    }
    await fh.close();
  }
  for (let i = 0; changed < target; i++) {
    await writeFile(join(dir, 'small', `new-${Date.now()}-${i}.sst`), randomBytes(16384));
    changed += 16384;
  }
  return changed;
}

/** each phase of the uploads (report field `upload.phases`), median (min–max) */
function phaseLine(phases: UploadPhases[]): string {
  const names: [keyof UploadPhases, string][] = [['walkMs', 'walk'], ['previousMs', 'previous index'], ['filesMs', 'files'], ['indexMs', 'index']];
  return names.map(([k, name]) => `${name} ${median(phases.map((p) => p[k]))} (${spread(phases.map((p) => p[k]))})`).join(', ');
}

/** 1% of every node changed (`round` picks which, for the database-like data); the bytes changed */
async function changeNodes(cluster: LocalCluster, round: number): Promise<number> {
  let changed = 0;
  for (const a of cluster.agents) {
    changed += data === 'db' ? await changeDb(a.data.data!, a.node, mibPerNode * 1024 * 1024, round) : await changeOnePercent(a.data.data!, mibPerNode);
  }
  return changed;
}

/** one `--history` round: what the repository held after it, the incremental's time and each agent's peak */
interface Round {
  backups: number;
  objects: number;
  bytes: number;
  ms: number;
  peaks: number[];
}

/** objects (chunks, packs, indexes, manifests …) in an fs repository, and their bytes */
async function repoSize(dir: string): Promise<{ objects: number; bytes: number }> {
  let objects = 0;
  let bytes = 0;
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    objects++;
    bytes += (await stat(join(e.parentPath, e.name))).size;
  }
  return { objects, bytes };
}

/**
 * `--history` rounds: 1% of every node changed, an incremental into the same repository;
 * each agent's peak RSS per round. The first three rounds' peaks against the last three's,
 * with what the repository held at each end.
 */
/** what the bench's repository holds: objects, bytes, backups */
type RepositorySize = () => Promise<{ objects: number; bytes: number; backups: number }>;

async function growHistory(cluster: LocalCluster, repository: RepositorySize, lastId: string): Promise<{ lastId: string; rounds: Round[]; lines: string[] }> {
  const rounds: Round[] = [];
  for (let i = 0; i < history; i++) {
    await changeNodes(cluster, 1000 + i);
    const { report, peaks } = await backup(cluster, `history${i}`);
    lastId = report.backupId;
    const { backups, objects, bytes } = await repository();
    rounds.push({ backups, objects, bytes, ms: Math.round(report.durationMs), peaks });
    process.stderr.write(`  history ${i + 1}/${history}: ${backups} backups in the repository, ${rounds.at(-1)!.ms} ms, peaks ${peaks.join(', ')} MiB\n`);
  }
  if (rounds.length < 2) return { lastId, rounds, lines: [] };
  const k = Math.min(3, Math.floor(rounds.length / 2));
  const first = rounds.slice(0, k);
  const last = rounds.slice(-k);
  const held = (r: Round) => `${r.backups} backups, ${r.objects} objects, ${(r.bytes / 2 ** 30).toFixed(2)} GiB`;
  const peaksOf = (rs: Round[]) => rs.flatMap((r) => r.peaks);
  const lines = [
    '',
    `as the repository grows (${rounds.length} more incrementals into it, one a round; every agent, median (min–max)):`,
    '',
    '| | the repository then held | incremental peak RSS | incremental wall time |',
    '| --- | --- | --- | --- |',
    `| first ${k} rounds | ${held(first[0]!)} | ${median(peaksOf(first))} MiB (${spread(peaksOf(first))}) | ${median(first.map((r) => r.ms))} ms |`,
    `| last ${k} rounds | ${held(last.at(-1)!)} | ${median(peaksOf(last))} MiB (${spread(peaksOf(last))}) | ${median(last.map((r) => r.ms))} ms |`,
    `| last / first | | ${(median(peaksOf(last)) / median(peaksOf(first))).toFixed(2)}× (goal: not growing) | ${(median(last.map((r) => r.ms)) / median(first.map((r) => r.ms))).toFixed(2)}× |`,
  ];
  return { lastId, rounds, lines };
}

async function main(): Promise<void> {
  // told as the bench's failure (runBench), not as a stack trace
  if (data !== 'random' && data !== 'db') throw new Error('--data must be random or db');
  if (!Number.isInteger(incrementals) || incrementals < 1) throw new Error('--incrementals must be a whole number, 1 or more');
  const root = await mkdtemp(join(tmpdir(), 'lockstep-bench-'));
  const keyFile = join(root, 'repository.key');
  if (encrypt) await writeFile(keyFile, randomBytes(32).toString('hex'), { mode: 0o600 });
  const rgw = s3 ? await startRgw(root) : undefined;
  const store = rgw?.settings ?? { driver: 'fs', path: join(root, 'repo') };
  const cluster = new LocalCluster({ root, nodes, ...(encrypt || rgw ? { repository: { ...store, ...(encrypt ? { encryption: { keyFile } } : {}) } } : {}) });
  const repository: RepositorySize = rgw ? () => rgw.size() : async () => ({ ...(await repoSize(cluster.repoDir)), backups: (await readdir(join(cluster.repoDir, 'backups'))).length });
  try {
    await cluster.start();
    for (const a of cluster.agents) {
      if (data === 'db') await generate(a.data.data!, a.node, mibPerNode * 1024 * 1024);
      else await fillNode(a.data.data!, mibPerNode);
    }
    const totalMiB = mibPerNode * nodes;
    const lockstep: number[] = [];
    const tar: number[] = [];
    const incrMs: number[] = [];
    const incrWritten: number[] = [];
    const changedBytes: number[] = [];
    const fullPeaks: number[] = [];
    const incrPeaks: number[] = [];
    /** each incremental upload's phases, and each incremental's time outside its slowest upload */
    const incrPhases: UploadPhases[] = [];
    const incrOutside: number[] = [];
    /** reading only the files the change touched, whole (dd), after each incremental: what no backup that cannot know which pages changed can skip */
    const floorMs: number[] = [];
    const floorBytes: number[] = [];
    /** the agents' CPU seconds in each full backup and each incremental: on a machine whose cores they fill, what bounds their wall time */
    const fullCpu: number[] = [];
    const incrCpu: number[] = [];
    let lastId = '';
    for (let i = 0; i < runs; i++) {
      // a fresh repository each run: a full backup, not a deduplicated one
      if (rgw) await rgw.empty();
      else await rm(cluster.repoDir, { recursive: true, force: true });
      await runCli(['repo', 'init'], { config: cluster.configFile });
      const full = await backup(cluster, `full${i}`);
      lockstep.push(Math.round(full.report.durationMs));
      fullPeaks.push(...full.peaks);
      fullCpu.push(full.cpuS);
      // the same three trees, three tar pipelines at once, onto the same disk
      const dests = await Promise.all(cluster.agents.map(async (a) => {
        const d = join(root, `tar-${a.node}-${i}`);
        await mkdir(d);
        return d;
      }));
      await settle();
      const t0 = performance.now();
      await Promise.all(cluster.agents.map((a, j) => tarCopy(a.data.data!, dests[j]!)));
      tar.push(Math.round(performance.now() - t0));
      for (const d of dests) await rm(d, { recursive: true, force: true });
      // incrementals: 1% of every node changed, backed up again into the same repository, a few
      // times a run: each is short, and one hiccup of a shared machine is a large part of it
      for (let k = 0; k < incrementals; k++) {
        const changedFrom = Date.now() - 1;
        const changed = await changeNodes(cluster, i * incrementals + k + 1);
        const { report: incr, peaks, cpuS } = await backup(cluster, `incr${i}-${k}`);
        incrCpu.push(cpuS);
        const touched = (await Promise.all(cluster.agents.map((a) => filesChangedSince(a.data.data!, changedFrom)))).flat();
        floorBytes.push(touched.reduce((n, f) => n + f.size, 0));
        await settle();
        floorMs.push(await readWhole(touched.map((f) => f.path)));
        incrMs.push(Math.round(incr.durationMs));
        incrPeaks.push(...peaks);
        const uploads = incr.nodes.flatMap((n) => n.components.flatMap((c) => (c.upload ? [c.upload] : [])));
        incrPhases.push(...uploads.flatMap((u) => (u.phases ? [u.phases] : [])));
        incrOutside.push(Math.round(incr.durationMs - Math.max(0, ...uploads.map((u) => u.uploadMs))));
        lastId = incr.backupId;
        incrWritten.push(incr.totals.bytesNew);
        changedBytes.push(changed);
      }
      process.stderr.write(
        `  run ${i + 1}/${runs}: lockstep ${lockstep.at(-1)} ms, tar ${tar.at(-1)} ms; after 1% changed: ${incrMs.slice(-incrementals).join(', ')} ms, wrote ${incrWritten.slice(-incrementals).join(', ')} B for ${changedBytes.slice(-incrementals).join(', ')} B changed\n`,
      );
    }
    // the repository grows by a backup a round: does the agents' peak grow with it?
    const grown = await growHistory(cluster, repository, lastId);
    lastId = grown.lastId;
    // the nodes emptied and restored from the last backup, then backed up again
    for (const a of cluster.agents) for (const name of await readdir(a.data.data!)) await rm(join(a.data.data!, name), { recursive: true, force: true });
    const { report: restored, peaks: restorePeaks } = await metered<RestoreReport>(cluster, ['restore', lastId]);
    if (restored.status !== 'restored') throw new Error(`restore ended ${restored.status}`);
    const again = await backup(cluster, 'after-restore');
    process.stderr.write(`  restore ${Math.round(restored.durationMs)} ms; the backup after it ${Math.round(again.report.durationMs)} ms\n`);
    // what it read again: the restored files are known (agent/transfer/restored.ts) but for those staged within 2 s of the swap
    const uploads = again.report.nodes.flatMap((n) => n.components.map((c) => c.upload!));
    const afterRead = { files: uploads.reduce((n, u) => n + u.files - (u.filesUnchanged ?? 0), 0), bytes: uploads.reduce((n, u) => n + (u.bytesRead ?? 0), 0) };
    const peakLine = (what: string, peaks: number[]) => `| ${what} | ${median(peaks)} MiB (${spread(peaks)}) |`;
    const mbps = (ms: number) => ((totalMiB * 1.048576) / (ms / 1000)).toFixed(0);
    const lines = [
      `full backup of ${nodes} node${nodes > 1 ? 's' : ''} × ${mibPerNode} MiB (${data === 'db' ? 'database-like, bench/dataset.ts' : '80% in 4 large files, 20% in 16 KiB files'}) into ${encrypt ? 'an encrypted' : 'a'} repository${rgw ? ' on S3 (Ceph RGW on this machine, in memory)' : ''}, ${cpus().length} cores, ${runs} runs of a full backup and ${incrementals} incremental${incrementals > 1 ? 's' : ''} (median, min–max)`,
      '',
      `| | lockstep backup create | tar -c \\| tar -x (${nodes} at once) | lockstep / tar throughput |`,
      '| --- | --- | --- | --- |',
      `| wall time | ${median(lockstep)} ms (${spread(lockstep)}) | ${median(tar)} ms (${spread(tar)}) | ${(median(tar) / median(lockstep)).toFixed(2)}× |`,
      `| throughput | ${mbps(median(lockstep))} MB/s | ${mbps(median(tar))} MB/s | |`,
      '',
      '| after 1% changed | lockstep incremental | full backup | ratio (goal) |',
      '| --- | --- | --- | --- |',
      `| wall time | ${median(incrMs)} ms (${spread(incrMs)}) | ${median(lockstep)} ms | ${((100 * median(incrMs)) / median(lockstep)).toFixed(1)}% (≤ 10%) |`,
      `| bytes written / bytes changed | ${median(incrWritten)} B / ${median(changedBytes)} B | | ${(median(incrWritten) / median(changedBytes)).toFixed(2)}× (≤ 2×) |`,
      `| the agents' CPU (user + system; cores busy on average over the wall time) | ${median(incrCpu).toFixed(2)} s (${spread(incrCpu.map((c) => Number(c.toFixed(2))))}), ${(median(incrCpu) / (median(incrMs) / 1000)).toFixed(2)} cores | ${median(fullCpu).toFixed(2)} s, ${(median(fullCpu) / (median(lockstep) / 1000)).toFixed(2)} cores | ${((100 * median(incrCpu)) / median(fullCpu)).toFixed(1)}% |`,
      `| reading only the files the change touched (one process, 1 MiB reads, one after another; ${(median(floorBytes) / 2 ** 20).toFixed(0)} MiB) | ${median(floorMs)} ms (${spread(floorMs)}) | | ${((100 * median(floorMs)) / median(lockstep)).toFixed(1)}% |`,
      '',
      `where an incremental went (every upload, median (min–max) ms): ${phaseLine(incrPhases)}; outside the slowest upload (lock, preflight, snapshot, commit, clean-up) ${median(incrOutside)} (${spread(incrOutside)})`,
      '',
      `agent peak RSS (VmHWM; goal ≤ 150 MB = 143 MiB during a backup), every agent in every backup, median (min–max):`,
      '',
      '| | agent peak RSS |',
      '| --- | --- |',
      peakLine('full backups', fullPeaks),
      peakLine('incrementals', incrPeaks),
      peakLine(`restore of the last backup onto the emptied nodes (${Math.round(restored.durationMs)} ms; not a goal)`, restorePeaks),
      peakLine(`the backup after that restore (${Math.round(again.report.durationMs)} ms, ${afterRead.files} of ${again.report.totals.files} files read again, ${(afterRead.bytes / 2 ** 20).toFixed(0)} MiB, ${again.report.totals.bytesNew} B written)`, again.peaks),
      ...grown.lines,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    await writeResults(`full-backup${rgw ? '-s3' : ''}${encrypt ? '-encrypted' : ''}`, { cores: cpus().length, nodes, data, encrypted: encrypt, s3, mibPerNode, runs, incrementals, history: grown.rounds, lockstepMs: lockstep, tarMs: tar, incrMs, incrWritten, changedBytes, incrPhases, incrOutside, floorMs, floorBytes, fullCpuS: fullCpu, incrCpuS: incrCpu, fullPeakRssMiB: fullPeaks, incrPeakRssMiB: incrPeaks, restoreMs: restored.durationMs, restorePeakRssMiB: restorePeaks, afterRestoreMs: again.report.durationMs, afterRestorePeakRssMiB: again.peaks });
  } finally {
    await cluster.stop();
    await rgw?.stop();
    await rm(root, { recursive: true, force: true });
  }
}

runBench(main);
