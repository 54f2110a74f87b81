/**
 * What an engine's own snapshot files make of dedup: a Redis Cluster (3 masters + 3
 * replicas, six agents) backed up, then backed up again with nothing changed, after 1% of
 * its values were rewritten (same length), and after 1% of its keys were replaced (half
 * deleted, as many new ones written). Each backup's bytes written, against the bytes
 * the change wrote into Redis.
 *
 *   npm run bench:dedup                          # 128 MiB of values, 2 runs
 *   npm run bench:dedup -- --mib 512 --runs 3
 *
 * The repository goal "after 1% changed, bytes written ≤ 2× the bytes changed" is met for
 * files whose pages are rewritten in place (bench:backup's data). A Redis RDB is written
 * anew by every BGSAVE, its values LZF-compressed one by one: a value of a new compressed
 * length, or a key added or removed, moves every byte after it, so the plugin has it cut
 * by its content (lib/repo/cuts.ts); its keys are in hash order, so a change of 1% still
 * touches blocks all through it. A benchmark, not a test: nothing here asserts a figure.
 */
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { cpus } from 'node:os';
import { runCli, type LocalCluster } from '../demo/local-cluster.js';
import type { RedisTestCluster } from '../demo/redis-cluster.js';
import { withRedisAgents } from './redis-agents.js';
import { diskBytes } from './peers.js';
import { backup, metered } from './metered.js';
import { arg, median, runBench, spread, writeResults } from './stats.js';
import type { RestoreReport } from '../lib/report.js';

const mib = Number(arg('mib', '128'));
const runs = Number(arg('runs', '2'));
/** bytes of a value: random hex, as ids, tokens and serialized records mostly are (compresses ~2:1 in LZ4, a little in LZF) */
const VALUE = 512;

const value = () => randomBytes(VALUE / 2).toString('hex');

/** `n` keys `bench:0…` with random values */
async function fill(redis: RedisTestCluster, n: number): Promise<void> {
  const batch = 50_000;
  for (let start = 0; start < n; start += batch) {
    const m = new Map<string, string>();
    for (let i = start; i < Math.min(n, start + batch); i++) m.set(`bench:${i}`, value());
    await redis.setMany(m);
  }
}

/** `count` distinct numbers below `n`, at random */
function pick(n: number, count: number): number[] {
  const out = new Set<number>();
  while (out.size < count) out.add(Math.floor(Math.random() * n));
  return [...out];
}

interface Round {
  name: string;
  /** bytes of values the change wrote into Redis */
  changed: number[];
  /** the backup's new data (packs and chunks), as its report counts it */
  written: number[];
  /** what the repository grew by on disk: that, the indexes, the manifest and the records (`du -sb`) */
  grew: number[];
  ms: number[];
  /** the largest agent's peak RSS during the backup, MiB */
  peakMiB: number[];
}

interface Restored {
  ms: number;
  /** by node: the bytes fetched from the repository and those reused from its live files */
  nodes: { node: string; fetched: number; reused: number }[];
  peakMiB: number;
}

/** `backupId` restored over the data it was taken from: the time, the bytes fetched and reused, the largest agent's peak */
async function restoreOver(cluster: LocalCluster, backupId: string): Promise<Restored> {
  const { report, peaks } = await metered<RestoreReport>(cluster, ['restore', backupId]);
  if (report.status !== 'restored') throw new Error(`restore ended ${report.status}: ${report.error?.message ?? ''}`);
  const nodes = report.nodes.map((n) => {
    const staged = n.components.map((c) => c.stage!);
    return { node: n.node, fetched: staged.reduce((t, st) => t + st.bytesDownloaded, 0), reused: staged.reduce((t, st) => t + (st.bytesReusedLocally ?? 0), 0) };
  });
  return { ms: Math.round(report.durationMs), nodes, peakMiB: Math.max(...peaks) };
}

async function main(): Promise<void> {
  if (!Number.isFinite(mib) || mib < 8) throw new Error('--mib must be a number of MiB, 8 or more');
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a whole number, 1 or more');
  const keys = Math.round((mib * 1024 * 1024) / VALUE);
  const onePercent = Math.round(keys / 100);
  const rounds: Round[] = ['full backup', 'nothing changed', '1% of values rewritten (same length)', '1% of keys replaced (0.5% deleted, 0.5% new)'].map((name) => ({ name, changed: [], written: [], grew: [], ms: [], peakMiB: [] }));
  let restored: Restored | undefined;
  await withRedisAgents(async (redis, cluster) => {
    for (let i = 0; i < runs; i++) {
      // a fresh repository and fresh data each run
      await rm(cluster.repoDir, { recursive: true, force: true });
      await runCli(['repo', 'init'], { config: cluster.configFile });
      await redis.flushAll();
      process.stderr.write(`run ${i + 1}/${runs}: filling ${mib} MiB (${keys} values of ${VALUE} B)…\n`);
      await fill(redis, keys);
      // the number of the next new key
      let next = keys;
      const changes: (() => Promise<number>)[] = [
        async () => keys * VALUE,
        async () => 0,
        async () => {
          await redis.setMany(new Map(pick(keys, onePercent).map((k) => [`bench:${k}`, value()])));
          return onePercent * VALUE;
        },
        async () => {
          const half = Math.round(onePercent / 2);
          const gone = pick(keys, half).map((k) => `bench:${k}`);
          // one DEL a key: a cluster refuses keys of different slots in one command
          for (const [port, ks] of await redis.groupBySlot(gone)) {
            await redis.withClient(port, async (r) => {
              const p = r.pipeline();
              for (const k of ks) p.del(k);
              await p.exec();
            });
          }
          const added = new Map<string, string>();
          for (let k = 0; k < half; k++) added.set(`bench:${next++}`, value());
          await redis.setMany(added);
          return half * VALUE;
        },
      ];
      let last = '';
      for (let j = 0; j < rounds.length; j++) {
        const changed = await changes[j]!();
        const before = await diskBytes(cluster.repoDir);
        const { report, peaks } = await backup(cluster, `run${i}-${j}`);
        const round = rounds[j]!;
        round.changed.push(changed);
        round.written.push(report.totals.bytesNew);
        round.grew.push((await diskBytes(cluster.repoDir)) - before);
        round.ms.push(Math.round(report.durationMs));
        round.peakMiB.push(Math.max(...peaks));
        last = report.backupId;
        process.stderr.write(`  ${round.name}: ${report.totals.bytesNew} B written (the repository grew by ${round.grew.at(-1)} B) for ${changed} B changed, ${Math.round(report.durationMs)} ms, agents' peak ${Math.max(...peaks)} MiB\n`);
      }
      if (i === runs - 1) restored = await restoreOver(cluster, last);
    }
    const full = median(rounds[0]!.written);
    const fullGrew = median(rounds[0]!.grew);
    const lines = [
      `Redis Cluster, 3 masters + 3 replicas (one snapshot per shard, from a replica), ${mib} MiB of ${VALUE}-byte random values, ${cpus().length} cores, ${runs} run${runs > 1 ? 's' : ''} (median, min–max)`,
      '',
      '| backup | bytes changed | bytes written (data) | written / changed | written / full backup | repository growth (indexes included) | growth / full backup\'s | time | agent peak RSS (the largest agent) |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
      ...rounds.map((r) => {
        const written = median(r.written);
        const changed = median(r.changed);
        const ratio = changed > 0 ? `${(written / changed).toFixed(2)}×` : '';
        const grew = median(r.grew);
        return `| ${r.name} | ${changed} | ${written} (${spread(r.written)}) | ${ratio} | ${((100 * written) / full).toFixed(1)}% | ${grew} (${spread(r.grew)}) | ${((100 * grew) / fullGrew).toFixed(1)}% | ${median(r.ms)} ms (${spread(r.ms)}) | ${median(r.peakMiB)} MiB (${spread(r.peakMiB)}) |`;
      }),
    ];
    if (restored) {
      lines.push(
        '',
        `restore of the last backup over the live data (the data it was taken from: a node's RDB, where it has one, cut and its blocks found there by hash): ${restored.ms} ms, agent peak RSS ${restored.peakMiB} MiB (the largest agent); by node, bytes fetched / reused locally:`,
        ...restored.nodes.map((n) => `- ${n.node}: ${n.fetched} / ${n.reused}`),
      );
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    await writeResults('engine-dedup', { cores: cpus().length, mib, runs, valueBytes: VALUE, rounds, restored });
  });
}

runBench(main);
