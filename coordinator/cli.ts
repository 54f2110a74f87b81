#!/usr/bin/env node
/**
 * The `lockstep` CLI. The only place that turns errors into exit codes and printed
 * text; everything below it returns reports or throws LockstepError.
 */
import { Command, CommanderError, Option } from 'commander';
import { LockstepError, toErrorInfo, type ErrorInfo } from '../lib/errors.js';
import { BACKUP_ID_RE, BACKUP_NAME_RE } from '../lib/ids.js';
import { createLogger } from '../lib/log.js';
import type { BackupReport, RestoreReport } from '../lib/report.js';
import { openDriver, openRepositoryAt } from '../plugins/storage/registry.js';
import { initRepository } from '../lib/repo/open.js';
import { oldestFirst, type Repository } from '../lib/repo/repository.js';
import { Cluster } from './cluster.js';
import { loadClusterConfig } from './config.js';
import { EXIT, exitCodeForError, type ExitCode } from './exit-codes.js';
import { TerminalProgress, quietProgress } from './progress.js';
import { backupListEntry, errorLines, warningLines, renderBackup, renderBackupList, renderDelete, renderPrune, renderRepoStatus, renderRestore, renderShow, renderTopology, renderVerify, type BackupListEntry, type RepoStatus } from './render.js';
import { runBackup } from './backup/run.js';
import { runRestore } from './restore/run.js';
import { verifyBackup, type VerifyReport } from '../lib/repo/verify.js';
import { listChecks, readCheck, recordCheck, stalestChecked, type CheckRecord } from '../lib/repo/checks.js';
import { outcomeOf, type CheckSummary } from '../lib/repo/layout.js';
import { deleteBackup, parseSpan, prune, versioningWarning, type RetentionPolicy, type Span } from '../lib/repo/prune.js';
import { lockStatus } from '../lib/repo/lock.js';

const VERSION = '0.1.0';

interface Global {
  config: string;
  logLevel: string;
}

let jsonOutput = false;

/** the CA commands load the certificate-issuing library only when they run: every other command starts faster */
const loadCa = () => import('./ca.js');

function print(value: unknown, human: () => string): void {
  process.stdout.write(jsonOutput ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
}

/** SIGINT/SIGTERM cancel the running operation (which cleans up); a second one exits at once. */
function interruptSignal(): AbortSignal {
  const ac = new AbortController();
  let count = 0;
  const onSignal = (sig: string) => {
    count++;
    if (count > 1) process.exit(EXIT.INTERRUPTED);
    process.stderr.write(`\nlockstep: ${sig}: stopping; thawing, starting services and cleaning up (press again to quit at once)\n`);
    ac.abort(new LockstepError('LOCKSTEP_E_CANCELLED', `interrupted by ${sig}`));
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  return ac.signal;
}

async function withCluster<T>(g: Global, fn: (cluster: Cluster) => Promise<T>): Promise<T> {
  const cfg = await loadClusterConfig(g.config);
  const log = createLogger({ name: 'lockstep', level: g.logLevel });
  const cluster = await Cluster.connect(cfg, log);
  try {
    return await fn(cluster);
  } finally {
    await cluster.close();
  }
}

function observer() {
  return !jsonOutput && process.stderr.isTTY ? new TerminalProgress() : quietProgress;
}

export function backupExit(r: BackupReport): ExitCode {
  if (r.status === 'complete') return EXIT.OK;
  if (r.status === 'partial') return EXIT.PARTIAL;
  // a backup that started and failed is FAILED even when its cause reads like a config error
  const code = r.error ? exitCodeForError(r.error.code) : EXIT.FAILED;
  return code === EXIT.USAGE ? EXIT.FAILED : code;
}

export function restoreExit(r: RestoreReport): ExitCode {
  switch (r.status) {
    case 'restored':
    case 'planned':
      return EXIT.OK;
    case 'rollback-failed':
      return EXIT.NEEDS_ATTENTION;
    case 'refused':
      return r.error && exitCodeForError(r.error.code) === EXIT.USAGE ? EXIT.USAGE : EXIT.REFUSED;
    default:
      return r.error?.code === 'LOCKSTEP_E_CANCELLED' ? EXIT.INTERRUPTED : EXIT.FAILED;
  }
}

function program(): Command {
  const p = new Command('lockstep')
    .description('Consistent backup and restore of whole database clusters, over mutual TLS, without SSH')
    .version(VERSION)
    .addOption(new Option('-c, --config <file>', 'cluster config file').env('LOCKSTEP_CONFIG').default('lockstep.yaml'))
    .addOption(new Option('--log-level <level>', 'JSON log level on stderr').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('error'))
    .option('--json', 'print the result as one JSON document')
    .showHelpAfterError()
    .exitOverride();
  const g = () => p.opts<Global & { json?: boolean }>();
  /** the repository the cluster config names (all list, show, verify and prune need) */
  const configuredRepository = async () => {
    const cfg = await loadClusterConfig(g().config);
    return openRepositoryAt(cfg.repository, cfg.repositoryBaseDir);
  };
  const setJson = (cmd: Command) => {
    jsonOutput = Boolean(g().json || cmd.opts<{ json?: boolean }>().json);
  };

  const ca = p.command('ca').description('the cluster certificate authority');
  ca.command('init')
    .description('create the cluster CA (ca.crt, ca.key)')
    .requiredOption('--dir <dir>', 'where the CA lives')
    .option('--cluster <name>', 'cluster name in the CA certificate', 'lockstep')
    .option('--days <n>', 'validity in days', (v) => positiveInt(v, '--days'), 3650)
    .option('--json', 'print JSON')
    .action(async (o: { dir: string; cluster: string; days: number }, cmd: Command) => {
      setJson(cmd);
      const { caInit } = await loadCa();
      const paths = await caInit(o.dir, o.cluster, o.days);
      print(paths, () => `created CA ${paths.cert} (key ${paths.key}, mode 0600)`);
    });
  ca.command('issue')
    .description('issue a certificate for an agent or a coordinator')
    .addArgument(new Command().createArgument('<role>', 'agent or coordinator').choices(['agent', 'coordinator']))
    .requiredOption('--name <name>', 'node name (agent) or operator/host name (coordinator)')
    .option('--host <host...>', 'host name or IP the coordinator dials (agents; repeatable)', [])
    .requiredOption('--dir <dir>', 'the CA directory')
    .option('--out <dir>', 'where to write the certificate and key (default: the CA directory)')
    .option('--days <n>', 'validity in days', (v) => positiveInt(v, '--days'), 825)
    .option('--force', 'replace an existing certificate (rotation)', false)
    .option('--json', 'print JSON')
    .action(async (role: 'agent' | 'coordinator', o: { name: string; host: string[]; dir: string; out?: string; days: number; force: boolean }, cmd: Command) => {
      setJson(cmd);
      const { caIssue } = await loadCa();
      const paths = await caIssue({ dir: o.dir, out: o.out ?? o.dir, role, name: o.name, hosts: o.host, days: o.days, force: o.force });
      print(paths, () => `issued ${role} certificate ${paths.cert} (key ${paths.key}, mode 0600)`);
    });
  ca.command('show')
    .description('print role, name, hosts and expiry of a certificate')
    .argument('<file>')
    .option('--json', 'print JSON')
    .action(async (file: string, _o, cmd: Command) => {
      setJson(cmd);
      const { caShow, renderCertInfo } = await loadCa();
      const info = await caShow(file);
      print(info, () => renderCertInfo(file, info));
    });

  const repo = p.command('repo').description('the backup repository');
  repo
    .command('status')
    .description("the repository's settings, who holds its lock and until when, its backups, runs a next backup resumes")
    .option('--json', 'print JSON')
    .action(async (_o, cmd: Command) => {
      setJson(cmd);
      const r = await configuredRepository();
      const [lock, versioning, { ids, checks }, interrupted] = await Promise.all([lockStatus(r.driver), r.driver.versioning?.(), r.listBackups(), r.interruptedRuns()]);
      const newest = ids.at(-1);
      const status: RepoStatus = {
        location: r.location,
        id: r.id,
        format: r.config.format,
        encrypted: r.config.encryption !== 'none',
        chunkSize: r.config.chunkSize,
        ...(versioning ? { versioning } : {}),
        lock,
        backups: ids.length,
        ...(newest ? { newest: { backupId: newest, lastCheck: checks.get(newest)?.at(-1) } } : {}),
        interrupted,
      };
      const warning = versioningWarning(versioning, r.location, 'the objects prune deletes');
      if (warning) status.warnings = [warning];
      print(status, () => renderRepoStatus(status));
    });
  repo
    .command('init')
    .description('initialise the repository named in the cluster config (once)')
    .option('--json', 'print JSON')
    .action(async (_o, cmd: Command) => {
      setJson(cmd);
      const cfg = await loadClusterConfig(g().config);
      const driver = openDriver(cfg.repository, cfg.repositoryBaseDir);
      const repo = await initRepository(driver, cfg.repository, cfg.repositoryBaseDir);
      const warning = versioningWarning(await driver.versioning?.(), repo.location, 'the objects prune deletes');
      const warnings = warning ? [warning] : undefined;
      print({ location: repo.location, id: repo.id, config: repo.config, ...(warnings ? { warnings } : {}) }, () =>
        [`initialised repository ${repo.location} (id ${repo.id})`, ...warningLines(warnings)].join('\n'),
      );
    });

  p.command('topology')
    .description('nodes, components, roles, shards, data paths, sizes and health')
    .option('--json', 'print JSON')
    .action(async (_o, cmd: Command) => {
      setJson(cmd);
      await withCluster(g(), async (cluster) => {
        const described = await cluster.describeAll();
        print({ cluster: cluster.config.cluster, nodes: described }, () => renderTopology(cluster.config.cluster, described));
        if (described.some((d) => !d.description)) process.exitCode = EXIT.FAILED;
      });
    });

  const backup = p.command('backup').description('create, list and show backups');
  backup
    .command('create')
    .description('back up the whole cluster')
    .option('--name <name>', 'name carried in the backup id', 'manual')
    .addOption(new Option('--coverage <policy>', 'default: one good snapshot per shard; all: every replica').choices(['default', 'all']))
    .option('--json', 'print the report as JSON')
    .action(async (o: { name: string; coverage?: 'default' | 'all' }, cmd: Command) => {
      setJson(cmd);
      if (!BACKUP_NAME_RE.test(o.name)) throw new LockstepError('LOCKSTEP_E_USAGE', `--name "${o.name}" must be 1-40 lowercase letters, digits, "-" or "_", starting with a letter or digit`);
      const signal = interruptSignal();
      await withCluster(g(), async (cluster) => {
        const log = createLogger({ name: 'lockstep', level: g().logLevel });
        const report = await runBackup(cluster, { name: o.name, coverage: o.coverage, signal, log, observer: observer() });
        print(report, () => renderBackup(report));
        process.exitCode = backupExit(report);
      });
    });
  backup
    .command('list')
    .description('backups in the repository, oldest first')
    .option('--json', 'print JSON')
    .action(async (_o, cmd: Command) => {
      setJson(cmd);
      const repo = await configuredRepository();
      // a damaged manifest is listed as such, not in place of the others
      const { ids, checks } = await repo.listBackups();
      // backups begun in the same second in the order they began, as `latest` sees them
      const read = oldestFirst(await repo.listManifests(ids));
      const entries = read.map((r): BackupListEntry => ('error' in r ? { backupId: r.backupId, status: 'unreadable', error: r.error.toJSON() } : backupListEntry(r.manifest, checks.get(r.backupId))));
      print(entries, () => renderBackupList(entries));
      // damage known in the repository (a manifest, or what the last check of a backup found) is told by the exit code too
      if (entries.some((e) => e.status === 'unreadable' || e.lastCheck?.status === 'damaged' || e.lastReadBack?.status === 'damaged')) process.exitCode = EXIT.DAMAGED;
    });
  backup
    .command('show')
    .description('the manifest and report of one backup')
    .argument('<id>', 'backup id, or latest (the newest complete backup)')
    .option('--json', 'print the whole manifest as JSON, with its checks ("checks", oldest first; the newest whole as "lastCheck")')
    .action(async (id: string, _o, cmd: Command) => {
      setJson(cmd);
      checkBackupId(id, true);
      const repo = await configuredRepository();
      const m = id === LATEST ? await repo.latestComplete() : await repo.readManifest(id);
      const { checks, newest } = await checksOf(repo, m.backupId);
      print({ ...m, checks: checks.map(outcomeOf), ...(newest ? { lastCheck: newest } : {}) }, () => renderShow(m.report, checks, newest));
    });

  backup
    .command('verify')
    .description('check that every object a backup needs exists; --read-data also reads them back and checks their hashes')
    .argument('<id>', 'backup id; latest (the newest complete backup); or stalest (the complete backup whose last check of this kind, reading data back or not, is the oldest, or that has none)')
    .option('--read-data [percent]', 'read back this percentage of the data (all when no number is given)')
    .option('--seed <seed>', 'pick the --read-data sample with this seed (the report gives the one it used): the same seed reads the same blobs')
    .option('--no-record', 'do not keep the result in the repository (by default it is kept beside the backup: backup list shows each backup\'s last check)')
    .option('--json', 'print the report as JSON')
    .action(async (id: string, o: { readData?: string | boolean; seed?: string; record: boolean }, cmd: Command) => {
      setJson(cmd);
      checkBackupId(id, true, true);
      const percent = o.readData === undefined ? 0 : o.readData === true ? 100 : Number(String(o.readData).replace(/%$/, ''));
      if (!(percent >= 0 && percent <= 100)) throw new LockstepError('LOCKSTEP_E_USAGE', `--read-data "${String(o.readData)}" must be a percentage from 0 to 100`);
      const repo = await configuredRepository();
      const backupId = id === STALEST ? await stalestChecked(repo, percent > 0) : await backupIdIn(repo, id);
      const report = await verifyBackup(repo, backupId, { readDataPercent: percent, seed: o.seed, signal: interruptSignal() });
      await keepCheck(repo, report, o.record);
      print(report, () => renderVerify(report));
      process.exitCode = report.status === 'ok' ? EXIT.OK : EXIT.DAMAGED;
    });

  backup
    .command('delete')
    .description("give one backup up: its manifest and indexes go now, its data with the next prune (for a backup whose manifest is damaged, or one taken by mistake)")
    .argument('<id>', 'backup id (exactly: not latest)')
    .option('--json', 'print the report as JSON')
    .action(async (id: string, _o, cmd: Command) => {
      setJson(cmd);
      checkBackupId(id);
      const repo = await configuredRepository();
      const report = await deleteBackup(repo, id, { signal: interruptSignal() });
      print(report, () => renderDelete(report));
    });

  p.command('prune')
    .description('remove backups by a retention policy, then the data no remaining backup needs')
    .option('--keep-last <n>', 'keep the newest N backups', count('--keep-last'))
    .option('--keep-hourly <n>', 'keep the newest backup of each of the last N hours that have one', count('--keep-hourly'))
    .option('--keep-daily <n>', 'keep the newest backup of each of the last N days that have one', count('--keep-daily'))
    .option('--keep-weekly <n>', 'keep the newest backup of each of the last N weeks that have one', count('--keep-weekly'))
    .option('--keep-monthly <n>', 'keep the newest backup of each of the last N months that have one', count('--keep-monthly'))
    .option('--keep-yearly <n>', 'keep the newest backup of each of the last N years that have one', count('--keep-yearly'))
    .option('--keep-within <span>', 'keep every backup taken within SPAN before the newest one (years, months, weeks, days, hours: 1y6m, 14d, 36h)', spanOption('--keep-within'))
    .option('--dry-run', 'print what would be removed and freed; change nothing', false)
    .option('--json', 'print the report as JSON')
    .action(async (o: RetentionPolicy & { dryRun: boolean }, cmd: Command) => {
      setJson(cmd);
      const policy: RetentionPolicy = {
        keepLast: o.keepLast,
        keepHourly: o.keepHourly,
        keepDaily: o.keepDaily,
        keepWeekly: o.keepWeekly,
        keepMonthly: o.keepMonthly,
        keepYearly: o.keepYearly,
        keepWithin: o.keepWithin,
      };
      if (!Object.values(policy).some((n) => n !== undefined && (typeof n !== 'number' || n > 0))) {
        throw new LockstepError('LOCKSTEP_E_USAGE', 'prune needs a policy: at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly above 0, or --keep-within (it never removes every backup)');
      }
      const repo = await configuredRepository();
      const report = await prune(repo, policy, { dryRun: o.dryRun, signal: interruptSignal() });
      print(report, () => renderPrune(report));
    });

  p.command('restore')
    .description('restore the cluster from a backup (staged while running; old data kept until success)')
    .argument('<id>', 'backup id, or latest (the newest complete backup)')
    .option('--dry-run', 'print the plan and change nothing', false)
    .option('--keep-old', 'keep the previous data beside the restored data', false)
    .option('--allow-partial', 'restore a partial backup (missing shards keep their current data); latest then means the newest backup, partial or not', false)
    .option('--node <name>', 'restore only this node (a replaced disk); the others are not touched')
    .option('--map <old=new...>', 'restore backup node OLD onto cluster node NEW (repeatable)', [])
    .option('--json', 'print the report as JSON')
    .action(async (id: string, o: { dryRun: boolean; keepOld: boolean; allowPartial: boolean; node?: string; map: string[] }, cmd: Command) => {
      setJson(cmd);
      checkBackupId(id, true);
      const map = new Map<string, string>();
      for (const pair of o.map) {
        const m = /^([^=\s]+)=([^=\s]+)$/.exec(pair);
        if (!m) throw new LockstepError('LOCKSTEP_E_USAGE', `--map "${pair}" is not OLD=NEW`);
        if (map.has(m[1]!)) throw new LockstepError('LOCKSTEP_E_USAGE', `--map names ${m[1]} twice`);
        map.set(m[1]!, m[2]!);
      }
      const signal = interruptSignal();
      await withCluster(g(), async (cluster) => {
        const log = createLogger({ name: 'lockstep', level: g().logLevel });
        const backupId = await backupIdIn(await cluster.openRepository(), id, o.allowPartial);
        const report = await runRestore(cluster, { backupId, dryRun: o.dryRun, keepOld: o.keepOld, allowPartial: o.allowPartial, map, onlyNode: o.node, signal, log, observer: observer() });
        print(report, () => renderRestore(report));
        process.exitCode = restoreExit(report);
      });
    });
  return p;
}

function wholeNumber(v: string, what: string, min: 0 | 1): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new LockstepError('LOCKSTEP_E_USAGE', `${what} must be a ${min === 1 ? 'positive ' : ''}whole number, got "${v}"`);
  return n;
}

function positiveInt(v: string, what: string): number {
  return wholeNumber(v, what, 1);
}

/** a commander parser for a count option (0 allowed: "keep none by this rule") */
function count(what: string): (v: string) => number {
  return (v) => wholeNumber(v, what, 0);
}

/** a span of time given to option `what` (lib/repo/prune.ts parseSpan), longer than nothing */
function spanOption(what: string): (v: string) => Span {
  return (v) => {
    const span = parseSpan(v);
    if (!span) throw new LockstepError('LOCKSTEP_E_USAGE', `${what} "${v}" is not a span of time: whole numbers of years, months, weeks, days and hours, in that order, such as 1y6m, 2w, 14d or 36h`);
    if (span.years + span.months + span.weeks + span.days + span.hours === 0) throw new LockstepError('LOCKSTEP_E_USAGE', `${what} "${v}" keeps nothing but the newest backup: give a span longer than 0`);
    return span;
  };
}

/** on the command line, the newest complete backup (not for `backup delete`, which takes an exact id) */
const LATEST = 'latest';

/** for `backup verify`: the complete backup checked longest ago, or never (lib/repo/checks.ts) */
const STALEST = 'stalest';

/** `latest` (and `stalest`): allowed where the command takes it */
function checkBackupId(id: string, latest = false, stalest = false): void {
  if (id === LATEST && !latest) throw new LockstepError('LOCKSTEP_E_USAGE', `give the exact id of the backup to delete, not "${LATEST}"`, { hint: 'list backups with "lockstep backup list"' });
  if (id === STALEST && stalest) return;
  if (id !== LATEST && !BACKUP_ID_RE.test(id)) {
    const words = [latest ? LATEST : '', stalest ? STALEST : ''].filter(Boolean).join(' or ');
    throw new LockstepError('LOCKSTEP_E_USAGE', `"${id}" is not a backup id (like 20261122-101307-nightly${words ? `, or ${words}` : ''})`, { hint: 'list backups with "lockstep backup list"' });
  }
}

/**
 * Keep what a check found beside its backup (lib/repo/checks.ts), unless told not to. A
 * repository this host may only read, or any failure to write, does not change the check's
 * outcome: the report says why nothing was kept.
 */
async function keepCheck(repo: Repository, report: VerifyReport, record: boolean): Promise<void> {
  if (!record) {
    report.notRecorded = '--no-record';
    return;
  }
  try {
    const key = await recordCheck(repo, report);
    if (key) report.recordedAs = key;
    else report.notRecorded = `backup ${report.backupId} is no longer in the repository`;
  } catch (err) {
    report.notRecorded = toErrorInfo(err).message;
  }
}

/** a backup's checks (from their names) and its newest record, whole; a damaged record is named in the errors of the output, not in place of the backup */
async function checksOf(repo: Repository, backupId: string): Promise<{ checks: CheckSummary[]; newest?: CheckRecord | { error: ErrorInfo } }> {
  const listed = await listChecks(repo, backupId);
  const last = listed.at(-1);
  if (!last) return { checks: [] };
  const newest = await readCheck(repo, last.key).catch((err: unknown) => ({ error: toErrorInfo(err) }));
  return { checks: listed.map((c) => c.check), newest };
}

/** the id given, or for `latest` the newest complete backup's (the newest, partial or not, with `partialToo`) */
async function backupIdIn(repo: Repository, id: string, partialToo = false): Promise<string> {
  return id === LATEST ? (await repo.latestComplete(partialToo)).backupId : id;
}

async function main(): Promise<void> {
  try {
    await program().parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
      return;
    }
    const info = toErrorInfo(err);
    if (!(err instanceof LockstepError)) {
      // an unexpected failure: still no stack trace for the operator; it goes to the log
      createLogger({ name: 'lockstep', level: 'error' }).error({ err }, 'unexpected error');
    }
    if (jsonOutput) process.stdout.write(`${JSON.stringify({ error: info }, null, 2)}\n`);
    else process.stderr.write(`lockstep: ${errorLines(info).join('\n')}\n`);
    process.exitCode = exitCodeForError(info.code);
  }
}

void main();
