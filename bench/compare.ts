/**
 * lockstep against its peers and the machine's limit, on the same data in the same run:
 * full backup, incremental after 1% changed, restore, service downtime, resources, and
 * the control plane as the number of agents grows. See bench/README.md.
 *
 *   npm run bench                       # quick: 3 × 128 MiB, 3 runs, 3 and 25 agents (a few minutes)
 *   npm run bench -- --size full        # 3 × 1 GiB, 3 runs, 3, 25 and 100 agents
 *   npm run bench -- --mib 512 --runs 5 --scale 3,50 --only backup,scale
 *
 * Prints a markdown table (medians, min–max, ratios) and writes bench/results/compare.{md,json}.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { cpus, freemem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse, stringify } from 'yaml';
import { CLI_BIN, LocalCluster, projectRoot } from '../demo/local-cluster.js';
import type { BackupReport, RestoreReport } from '../lib/report.js';
import { changeOnePercent, generate, treeDigest } from './dataset.js';
import { AgentMeter, childrenCpuSeconds, diskBytes, ensurePeers, filesChangedSince, readWhole, Restic, run, Sshd, tarCopy } from './peers.js';
import { arg, median, runBench, writeResults } from './stats.js';

const PRESETS = {
  quick: { mib: 128, runs: 3, scale: '3,25' },
  full: { mib: 1024, runs: 3, scale: '3,25,100' },
} as const;
let sizeName = 'quick';
let mibPerNode = 0;
let runs = 0;
let scaleNs: number[] = [];
let only = new Set<string>();

/** the command line, checked before anything starts */
function parseOptions(): void {
  sizeName = arg('size', 'quick');
  if (!(sizeName in PRESETS)) throw new Error(`--size must be quick or full, not "${sizeName}"`);
  const preset = PRESETS[sizeName as keyof typeof PRESETS];
  mibPerNode = positive('mib', arg('mib', String(preset.mib)));
  runs = positive('runs', arg('runs', String(preset.runs)));
  const scale = arg('scale', preset.scale);
  scaleNs = scale === 'none' ? [] : scale.split(',').map((n) => positive('scale', n));
  only = new Set(arg('only', 'backup,pause,scale').split(','));
  const unknown = [...only].filter((o) => !['backup', 'pause', 'scale'].includes(o));
  if (unknown.length > 0) throw new Error(`--only takes backup, pause and scale, not ${unknown.join(', ')}`);
}

function positive(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} needs positive integers, not "${v}"`);
  return n;
}

const TOOLS = ['lockstep', 'tar', 'ssh', 'rsync', 'restic', 'script', 'read'] as const;
type Tool = (typeof TOOLS)[number];
const TOOL_TITLES: Record<Tool, string> = {
  lockstep: 'lockstep',
  tar: 'tar -c \\| tar -x',
  ssh: 'ssh node tar (fan-out)',
  rsync: 'rsync over ssh',
  restic: 'restic',
  script: 'stop → cp → start script',
  read: 'read the files the change touched',
};

interface Row {
  section: string;
  measure: string;
  unit: 'ms' | 'bytes' | 'MiB' | 's' | '%';
  values: Partial<Record<Tool, number[]>>;
  goal?: string;
}

const rows: Row[] = [];
function record(section: string, measure: string, unit: Row['unit'], tool: Tool, value: number, goal?: string): void {
  let row = rows.find((r) => r.section === section && r.measure === measure);
  if (!row) rows.push((row = { section, measure, unit, values: {}, goal }));
  (row.values[tool] ??= []).push(value);
}

const FULL = 'full backup';
const INCR = 'after 1% changed';
const RESTORE = 'restore (3 nodes, empty data dirs)';
const STOPPED = 'backups with the service stopped (directory plugin, copy kept between backups)';

/** a tool's wall time and CPU seconds (all its processes) in one section */
function recordRun(section: string, tool: Tool, wallMs: number, cpuS: number, goal?: string): void {
  record(section, 'wall time', 'ms', tool, wallMs, goal);
  record(section, 'CPU seconds (all processes)', 's', tool, cpuS);
}

/** time an async step */
async function timed(work: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await work();
  return Math.round(performance.now() - t0);
}

interface CliRun {
  stdout: string;
  code: number;
  wallMs: number;
  rusage: { maxRssKiB: number; userCpuMs: number; systemCpuMs: number };
}

/** the coordinator CLI as an operator runs it, with its own peak RSS and CPU time */
async function lockstep(config: string, args: string[], scratch: string): Promise<CliRun> {
  const usageFile = join(scratch, `rusage-${process.hrtime.bigint()}.json`);
  const preload = pathToFileURL(join(projectRoot(), 'dist', 'bench', 'rusage-preload.js')).href;
  const t0 = performance.now();
  const { stdout, code } = await new Promise<{ stdout: string; code: number }>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', preload, CLI_BIN, '--config', config, ...args], {
      env: { ...process.env, LOCKSTEP_BENCH_RUSAGE: usageFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
    child.on('error', reject);
    child.on('close', (c) => (c === null ? reject(new Error(`lockstep ${args.join(' ')} was killed: ${err}`)) : resolve({ stdout: out, code: c })));
  });
  const wallMs = Math.round(performance.now() - t0);
  const rusage = JSON.parse(await readFile(usageFile, 'utf8')) as CliRun['rusage'];
  await rm(usageFile, { force: true });
  return { stdout, code, wallMs, rusage };
}

function backupReport(r: CliRun, what: string): BackupReport {
  const report = JSON.parse(r.stdout) as BackupReport;
  if (report.status !== 'complete') throw new Error(`${what} ended ${report.status}: ${report.error?.message ?? ''}`);
  return report;
}

/** a lockstep command with the agents metered around it: CPU is the agents' plus the coordinator's */
async function metered(meter: AgentMeter, config: string, args: string[], scratch: string): Promise<{ run: CliRun; cpuS: number; peakMiB: number }> {
  await meter.start();
  const run = await lockstep(config, args, scratch);
  const agents = await meter.stop();
  return { run, cpuS: agents.cpuS + (run.rusage.userCpuMs + run.rusage.systemCpuMs) / 1000, peakMiB: agents.peakMiB };
}

/** stop the benchmark if a restore gave back other data than was backed up */
async function checkRestored(who: string, dirs: string[], expected: string[]): Promise<void> {
  const got = await Promise.all(dirs.map(treeDigest));
  if (got.join() !== expected.join()) throw new Error(`${who} restored different data than was backed up`);
}

/** CPU seconds of the peers' processes over one phase: our reaped children, plus sshd's sessions */
async function peersCpu<T>(sshd: Sshd, work: () => Promise<T>): Promise<{ result: T; cpuS: number }> {
  const c0 = (await childrenCpuSeconds()) + (await childrenCpuSeconds(sshd.pid));
  const result = await work();
  const c1 = (await childrenCpuSeconds()) + (await childrenCpuSeconds(sshd.pid));
  return { result, cpuS: c1 - c0 };
}

async function emptyDir(dir: string): Promise<void> {
  for (const e of await readdir(dir)) await rm(join(dir, e), { recursive: true, force: true });
}

async function main(): Promise<void> {
  parseOptions();
  await ensurePeers();
  const root = await mkdtemp(join(tmpdir(), 'lockstep-compare-'));
  const peerDir = join(root, 'peers');
  const scratch = join(root, 'scratch');
  await mkdir(scratch, { recursive: true });
  const bytesPerNode = mibPerNode * 1024 * 1024;
  const meta: Record<string, unknown> = {
    size: sizeName,
    mibPerNode,
    runs,
    cores: cpus().length,
    cpu: cpus()[0]?.model,
    disk: (await run('findmnt', ['-n', '-o', 'SOURCE,FSTYPE', '-T', tmpdir()]).catch(() => '?')).trim(),
    node: process.version,
    restic: '',
  };
  const cluster = new LocalCluster({ root: join(root, 'cluster'), nodes: 3 });
  const sshd = new Sshd(join(root, 'sshd'), ['127.0.0.1', '127.0.0.2', '127.0.0.3']);
  const restic = new Restic(join(peerDir, 'restic-repo'));
  try {
    meta.restic = await restic.version();
    await cluster.start();
    await sshd.start();
    const nodes = cluster.agents.map((a) => ({ node: a.node, host: a.host, dir: a.data.data! }));
    process.stderr.write(`generating 3 × ${mibPerNode} MiB …\n`);
    await Promise.all(nodes.map((n) => generate(n.dir, n.node, bytesPerNode)));
    const meter = new AgentMeter(cluster.agents.map((a) => a.process!.pid!));
    const all = <T>(work: (n: (typeof nodes)[number]) => Promise<T>) => Promise.all(nodes.map(work));

    if (only.has('backup')) {
      for (let i = 0; i < runs; i++) {
        // ---- full backup: a fresh repository for every tool
        await rm(cluster.repoDir, { recursive: true, force: true });
        await lockstep(cluster.configFile, ['repo', 'init'], scratch);
        const full = await metered(meter, cluster.configFile, ['backup', 'create', '--name', `full${i}`, '--json'], scratch);
        backupReport(full.run, 'full backup');
        recordRun(FULL, 'lockstep', full.run.wallMs, full.cpuS, '≥ 0.9× tar, faster than ssh');
        record(FULL, 'bytes in the repository', 'bytes', 'lockstep', await diskBytes(cluster.repoDir));
        record(FULL, 'agent peak RSS (largest)', 'MiB', 'lockstep', full.peakMiB, '≤ 150 MB');
        record(FULL, 'coordinator peak RSS', 'MiB', 'lockstep', Math.round(full.run.rusage.maxRssKiB / 1024));

        const tarDest = join(peerDir, 'tar');
        const tar = await peersCpu(sshd, () => timed(() => all((n) => tarCopy(n.dir, join(tarDest, n.node)))));
        recordRun(FULL, 'tar', tar.result, tar.cpuS);
        record(FULL, 'bytes in the repository', 'bytes', 'tar', await diskBytes(tarDest));
        await rm(tarDest, { recursive: true, force: true });

        const sshDest = join(peerDir, 'ssh');
        await rm(sshDest, { recursive: true, force: true });
        await mkdir(sshDest, { recursive: true });
        const ssh = await peersCpu(sshd, () => timed(() => all((n) => sshd.tarTo(n.host, n.dir, join(sshDest, `${n.node}.tar`)))));
        recordRun(FULL, 'ssh', ssh.result, ssh.cpuS);
        record(FULL, 'bytes in the repository', 'bytes', 'ssh', await diskBytes(sshDest));

        await restic.init();
        const rfull = await peersCpu(sshd, () => timed(() => all((n) => restic.backup(n.node, n.dir))));
        recordRun(FULL, 'restic', rfull.result, rfull.cpuS);
        record(FULL, 'bytes in the repository', 'bytes', 'restic', await diskBytes(restic.repo));

        const rsyncDest = join(peerDir, 'rsync');
        await rm(rsyncDest, { recursive: true, force: true });
        const rsFull = await peersCpu(sshd, () => timed(() => all((n) => sshd.rsyncFrom(n.host, n.dir, join(rsyncDest, n.node)))));
        recordRun(FULL, 'rsync', rsFull.result, rsFull.cpuS);
        record(FULL, 'bytes in the repository', 'bytes', 'rsync', await diskBytes(rsyncDest));

        // ---- 1% changed, then an incremental with every tool that has one
        const changedFrom = Date.now() - 1;
        const changed = (await all((n) => changeOnePercent(n.dir, n.node, bytesPerNode, i))).reduce((a, b) => a + b, 0);
        const repoBefore = await diskBytes(cluster.repoDir);
        const incr = await metered(meter, cluster.configFile, ['backup', 'create', '--name', `incr${i}`, '--json'], scratch);
        const incrReport = backupReport(incr.run, 'incremental backup');
        record(INCR, 'bytes changed', 'bytes', 'lockstep', changed);
        recordRun(INCR, 'lockstep', incr.run.wallMs, incr.cpuS, 'faster than restic and rsync');
        record(INCR, 'wall time ÷ the full backup\'s', '%', 'lockstep', (100 * incr.run.wallMs) / full.run.wallMs, '≤ 10%');
        record(INCR, 'bytes written to the repository', 'bytes', 'lockstep', (await diskBytes(cluster.repoDir)) - repoBefore, '≤ 2× bytes changed');
        record(INCR, 'agent peak RSS (largest)', 'MiB', 'lockstep', incr.peakMiB);
        // what no tool that cannot know which pages changed can skip: reading every file whose mtime moved
        const touched = await all((n) => filesChangedSince(n.dir, changedFrom));
        record(INCR, 'bytes read from the nodes', 'bytes', 'lockstep', incrReport.nodes.flatMap((n) => n.components).reduce((a, c) => a + (c.upload?.bytesRead ?? 0), 0));
        record(INCR, 'bytes read from the nodes', 'bytes', 'read', touched.flat().reduce((a, f) => a + f.size, 0));
        // the nodes at once: the slowest one's reading
        record(INCR, 'wall time', 'ms', 'read', Math.max(...(await Promise.all(touched.map((files) => readWhole(files.map((f) => f.path)))))));

        let rsyncWritten = 0;
        const rsIncr = await peersCpu(sshd, () => timed(async () => {
          const stats = await all((n) => sshd.rsyncFrom(n.host, n.dir, join(rsyncDest, n.node)));
          rsyncWritten = stats.reduce((a, s) => a + s.bytesWritten, 0);
        }));
        recordRun(INCR, 'rsync', rsIncr.result, rsIncr.cpuS);
        record(INCR, 'bytes written to the repository', 'bytes', 'rsync', rsyncWritten);

        const resticBefore = await diskBytes(restic.repo);
        const rIncr = await peersCpu(sshd, () => timed(() => all((n) => restic.backup(n.node, n.dir))));
        recordRun(INCR, 'restic', rIncr.result, rIncr.cpuS);
        record(INCR, 'bytes written to the repository', 'bytes', 'restic', (await diskBytes(restic.repo)) - resticBefore);

        // ---- restore of the three nodes onto empty data directories
        const expected = i === 0 ? await all((n) => treeDigest(n.dir)) : undefined;
        await all((n) => emptyDir(n.dir));
        const rest = await metered(meter, cluster.configFile, ['restore', incrReport.backupId, '--json'], scratch);
        const restReport = JSON.parse(rest.run.stdout) as RestoreReport;
        if (restReport.status !== 'restored') throw new Error(`restore ended ${restReport.status}: ${restReport.error?.message ?? ''}`);
        if (expected) await checkRestored('lockstep', nodes.map((n) => n.dir), expected);
        recordRun(RESTORE, 'lockstep', rest.run.wallMs, rest.cpuS, 'faster than ssh and restic');
        record(RESTORE, 'agent peak RSS (largest)', 'MiB', 'lockstep', rest.peakMiB);

        const sshRestore = join(peerDir, 'ssh-restore');
        const sshR = await peersCpu(sshd, () => timed(() => all((n) => sshd.tarFrom(n.host, join(sshDest, `${n.node}.tar`), join(sshRestore, n.node)))));
        recordRun(RESTORE, 'ssh', sshR.result, sshR.cpuS);
        await rm(sshRestore, { recursive: true, force: true });

        const resticRestore = join(peerDir, 'restic-restore');
        const rR = await peersCpu(sshd, () => timed(() => all((n) => restic.restore(n.node, n.dir, join(resticRestore, n.node)))));
        if (expected) await checkRestored('restic', nodes.map((n) => join(resticRestore, n.node, n.dir)), expected);
        recordRun(RESTORE, 'restic', rR.result, rR.cpuS);
        await rm(resticRestore, { recursive: true, force: true });

        process.stderr.write(`  run ${i + 1}/${runs}: full ${full.run.wallMs} ms (tar ${tar.result}, ssh ${ssh.result}, restic ${rfull.result}); ` +
          `1% ${incr.run.wallMs} ms (rsync ${rsIncr.result}, restic ${rIncr.result}); restore ${rest.run.wallMs} ms (ssh ${sshR.result}, restic ${rR.result})\n`);
      }
      await rm(peerDir, { recursive: true, force: true });
    }

    if (only.has('pause')) await measureDowntime(cluster, bytesPerNode, nodes, scratch, all);
    await cluster.stop();
    if (only.has('scale')) for (const n of scaleNs) await measureScale(root, n, scratch);
  } finally {
    await cluster.stop();
    await sshd.stop();
    await rm(root, { recursive: true, force: true });
  }
  const table = render(meta);
  process.stdout.write(table);
  await writeResults('compare', { ...meta, rows });
  await writeFile(join(projectRoot(), 'bench', 'results', 'compare.md'), table);
}

/**
 * Service downtime of a backup that stops the service: lockstep's directory plugin with
 * stop/start commands, against a stop → cp -a → start script on every node at once. And
 * what such a backup costs after 1% changed, its copy kept from the one before.
 */
async function measureDowntime(
  cluster: LocalCluster,
  bytesPerNode: number,
  nodes: { node: string; dir: string }[],
  scratch: string,
  all: <T>(work: (n: { node: string; dir: string }) => Promise<T>) => Promise<T[]>,
): Promise<void> {
  const service = { stop: ['true'], start: ['true'] };
  for (const a of cluster.agents) {
    const config = parse(await readFile(a.configFile, 'utf8')) as { components: Record<string, unknown>[] };
    config.components = config.components.map((c) => ({ ...c, ...service }));
    await writeFile(a.configFile, stringify(config));
    await cluster.killAgent(a.node, 'SIGTERM');
    await cluster.startAgent(a.node);
  }
  const copies = join(scratch, 'stop-copy-start');
  await mkdir(copies, { recursive: true });
  // the first backup with the service stopped copies everything and keeps the copy; each
  // after it follows a 1% change: the pre-copy patches the kept copy, the upload reads what it patched
  const first = backupReport(await lockstep(cluster.configFile, ['backup', 'create', '--name', 'stopfirst', '--json'], scratch), 'first stop/start backup');
  record(STOPPED, 'first backup (copies everything): wall time', 'ms', 'lockstep', Math.round(first.durationMs));
  for (let i = 0; i < runs; i++) {
    const changed = (await all((n) => changeOnePercent(n.dir, n.node, bytesPerNode, 100 + i))).reduce((a, b) => a + b, 0);
    const b = backupReport(await lockstep(cluster.configFile, ['backup', 'create', '--name', `stop${i}`, '--json'], scratch), 'stop/start backup');
    const components = b.nodes.flatMap((n) => n.components);
    record(STOPPED, 'after 1% changed: wall time', 'ms', 'lockstep', Math.round(b.durationMs), '≤ 10% of the first');
    record(STOPPED, 'after 1% changed: bytes changed', 'bytes', 'lockstep', changed);
    record(STOPPED, 'after 1% changed: bytes the snapshot copied', 'bytes', 'lockstep', components.reduce((n, c) => n + (c.snapshot?.copiedBytes ?? 0), 0));
    record(STOPPED, 'after 1% changed: bytes the upload read', 'bytes', 'lockstep', components.reduce((n, c) => n + (c.upload?.bytesRead ?? 0), 0));
    record('service downtime (stop/start)', 'longest node downtime', 'ms', 'lockstep', b.totals.maxDowntimeMs);
    const perNode = await all(async (n) => {
      const t0 = performance.now();
      await run(service.stop[0]!, []);
      await run('cp', ['-a', n.dir, join(copies, n.node)]);
      await run(service.start[0]!, []);
      return Math.round(performance.now() - t0);
    });
    record('service downtime (stop/start)', 'longest node downtime', 'ms', 'script', Math.max(...perNode));
    await rm(copies, { recursive: true, force: true });
    await mkdir(copies, { recursive: true });
  }
}

/** N agents with tiny data: time outside the data transfer and the stop window, as N grows */
async function measureScale(root: string, n: number, scratch: string): Promise<void> {
  const need = n * 130 * 1024 * 1024;
  if (freemem() < need * 1.2) {
    process.stderr.write(`  skipping ${n} agents: about ${Math.round(need / 2 ** 30)} GiB of memory needed, ${Math.round(freemem() / 2 ** 30)} GiB free\n`);
    return;
  }
  process.stderr.write(`  control plane: starting ${n} agents …\n`);
  const dir = join(root, `scale-${n}`);
  const cluster = new LocalCluster({
    root: dir,
    nodes: n,
    startConcurrency: 8,
    components: () => [{ name: 'data', settings: { stop: ['true'], start: ['true'] } }],
  });
  try {
    await cluster.start();
    for (const a of cluster.agents) {
      for (let f = 0; f < 16; f++) await writeFile(join(a.data.data!, `f${f}`), `${a.node} ${f}\n`.repeat(256));
    }
    const section = `control plane, ${n} agents`;
    for (let i = 0; i < runs; i++) {
      const r = await lockstep(cluster.configFile, ['backup', 'create', '--name', `scale${i}`, '--json'], scratch);
      const b = backupReport(r, `backup of ${n} agents`);
      const step = (name: string) => b.steps.find((s) => s.name === name)?.durationMs ?? 0;
      record(section, 'backup wall time', 'ms', 'lockstep', r.wallMs);
      record(section, 'outside data transfer (all but upload)', 'ms', 'lockstep', b.durationMs - step('upload'), 'grows ≤ linearly with N');
      record(section, 'stop window (snapshot step)', 'ms', 'lockstep', step('snapshot'));
      record(section, 'preflight step', 'ms', 'lockstep', step('preflight'));
      record(section, 'coordinator CPU seconds', 's', 'lockstep', (r.rusage.userCpuMs + r.rusage.systemCpuMs) / 1000);
      record(section, 'coordinator peak RSS', 'MiB', 'lockstep', Math.round(r.rusage.maxRssKiB / 1024));
    }
  } finally {
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

function fmt(unit: Row['unit'], v: number): string {
  switch (unit) {
    case 'ms':
      return v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${Math.round(v)} ms`;
    case 'bytes':
      return v >= 1e9 ? `${(v / 1e9).toFixed(2)} GB` : `${(v / 1e6).toFixed(1)} MB`;
    case 'MiB':
      return `${Math.round(v)} MiB`;
    case 's':
      return `${v.toFixed(1)} s`;
    case '%':
      return `${v.toFixed(1)}%`;
  }
}

function cell(row: Row, tool: Tool): string {
  const xs = row.values[tool];
  if (!xs || xs.length === 0) return '';
  const m = median(xs);
  const range = xs.length > 1 ? ` (${fmt(row.unit, Math.min(...xs))}–${fmt(row.unit, Math.max(...xs))})` : '';
  const mine = row.values.lockstep;
  // ratio = peer / lockstep: above 1 means lockstep took less (time, bytes, CPU, memory)
  const ratio = tool !== 'lockstep' && mine && mine.length > 0 && median(mine) > 0 ? ` **${(m / median(mine)).toFixed(2)}×**` : '';
  return `${fmt(row.unit, m)}${range}${ratio}`;
}

function render(meta: Record<string, unknown>): string {
  const used = TOOLS.filter((t) => rows.some((r) => r.values[t]));
  const out = [
    `# lockstep against its peers`,
    '',
    `${meta.size} run: 3 nodes × ${mibPerNode} MiB, ${runs} runs each, median (min–max); ${meta.cores} cores (${meta.cpu}), disk ${meta.disk}, Node ${meta.node}, ${meta.restic}.`,
    'A peer cell ends with **peer ÷ lockstep**: above 1× lockstep needed less (time, bytes, CPU, memory).',
    '',
  ];
  for (const section of [...new Set(rows.map((r) => r.section))]) {
    const own = rows.filter((r) => r.section === section);
    const tools = used.filter((t) => own.some((r) => r.values[t]));
    out.push(`## ${section}`, '', `| | ${tools.map((t) => TOOL_TITLES[t]).join(' | ')} | goal |`, `| --- | ${tools.map(() => '---').join(' | ')} | --- |`);
    for (const r of own) out.push(`| ${r.measure} | ${tools.map((t) => cell(r, t)).join(' | ')} | ${r.goal ?? ''} |`);
    out.push('');
  }
  return `${out.join('\n')}\n`;
}

runBench(main);
