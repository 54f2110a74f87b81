/**
 * `lockstep restore ID`: plan → stage → stop → swap → start → hooks → finish.
 * Staging happens while every service still runs; downtime is stop + swap + start.
 * Any failure after the first stop rolls back to the old data and starts the services
 * again; the old data is removed only once the whole restore has succeeded.
 */
import { LockstepError, toErrorInfo } from '../../lib/errors.js';
import { newRestoreId } from '../../lib/ids.js';
import { RepoLock } from '../../lib/repo/lock.js';
import { listChecks } from '../../lib/repo/checks.js';
import { outcomeOf } from '../../lib/repo/layout.js';
import type { Repository } from '../../lib/repo/repository.js';
import type { Logger } from '../../lib/log.js';
import type { RestoreReport } from '../../lib/report.js';
import type { Cluster } from '../cluster.js';
import type { ProgressSink } from '../fanout.js';
import { Steps, type StepObserver } from '../steps.js';
import type { RestoreContext } from './context.js';
import { estimateTransfers, planRestore } from './plan.js';
import { stage } from './stage.js';
import { start, stopAll } from './service.js';
import { swap } from './swap.js';
import { finish } from './finish.js';
import { runHooks } from './hooks.js';
import { rollback } from './rollback.js';

export interface RestoreOptions {
  backupId: string;
  dryRun: boolean;
  keepOld: boolean;
  allowPartial: boolean;
  map?: Map<string, string>;
  onlyNode?: string;
  signal: AbortSignal;
  log: Logger;
  observer?: StepObserver & ProgressSink;
}

const REFUSALS = new Set([
  'LOCKSTEP_E_USAGE',
  'LOCKSTEP_E_TOPOLOGY_MISMATCH',
  'LOCKSTEP_E_BACKUP_PARTIAL',
  'LOCKSTEP_E_PREFLIGHT_FAILED',
  'LOCKSTEP_E_BACKUP_NOT_FOUND',
  'LOCKSTEP_E_PLAN_UNSUPPORTED',
  'LOCKSTEP_E_REPO_LOCKED',
  'LOCKSTEP_E_REPO_NO_ATOMIC_CREATE',
]);

/**
 * The backup's newest check, for the report; a warning when it found the backup damaged
 * (the restore checks every block it stages all the same, and stops before any service
 * if one is bad). Not knowing (the checks cannot be listed) is not a reason to stop.
 */
async function lastCheckOf(repo: Repository, backupId: string, warnings: string[]): Promise<RestoreReport['lastCheck']> {
  const newest = (await listChecks(repo, backupId).catch(() => [])).at(-1)?.check;
  if (!newest) return undefined;
  const c = outcomeOf(newest);
  if (c.status === 'damaged') {
    warnings.push(`the last check of backup ${backupId} (${c.at}) found it damaged: "lockstep backup show ${backupId}" says where; every block is checked as it is staged, and the restore stops before any service if one is bad`);
  }
  return c;
}

/**
 * The repository lock, as a backup takes it: no prune removes what is being staged, no
 * backup snapshots a cluster mid-restore, no second restore runs at once. A repository
 * this host may only read (restore credentials kept read-only) cannot hold it: the
 * restore then goes on unguarded, with a warning.
 */
async function takeLock(repo: Repository, what: string, warnings: string[]): Promise<RepoLock | undefined> {
  try {
    return await RepoLock.acquire(repo.driver, what);
  } catch (err) {
    if (err instanceof LockstepError && (err.code === 'LOCKSTEP_E_REPO_LOCKED' || err.code === 'LOCKSTEP_E_REPO_NO_ATOMIC_CREATE')) throw err;
    warnings.push(`ran without the repository lock (it could not be written: ${toErrorInfo(err).message}); make sure no backup, prune or other restore runs meanwhile`);
    return undefined;
  }
}

export async function runRestore(cluster: Cluster, opts: RestoreOptions): Promise<RestoreReport> {
  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  const repo = await cluster.openRepository();
  const manifest = await repo.readManifest(opts.backupId);
  const restoreId = newRestoreId();
  const log = opts.log.child({ restore: restoreId, backup: opts.backupId });
  const ctx: RestoreContext = {
    cluster,
    repo,
    manifest,
    restoreId,
    keepOld: opts.keepOld,
    allowPartial: opts.allowPartial,
    map: opts.map ?? new Map(),
    onlyNode: opts.onlyNode,
    details: new Map(),
    signal: opts.signal,
    log,
    progress: opts.observer,
    nodes: [],
    components: new Map(),
    targets: [],
    startGroups: [],
    beforeHooks: [],
    staged: [],
    stopped: [],
    swapped: [],
    swapBegun: false,
    stoppedAt: new Map(),
    keptOld: [],
    lockHeld: false,
    warnings: [],
  };
  const steps = new Steps(log, opts.observer);
  let healthyAt: number | undefined;
  const warnings = ctx.warnings;
  let lock: RepoLock | undefined;
  let lastCheck: RestoreReport['lastCheck'];
  const report = (status: RestoreReport['status']): RestoreReport => ({
    kind: 'restore',
    restoreId,
    backupId: opts.backupId,
    cluster: cluster.config.cluster,
    status,
    dryRun: opts.dryRun,
    startedAt,
    finishedAt: new Date().toISOString(),
    durationMs: Math.round(performance.now() - t0),
    steps: steps.records,
    nodes: ctx.nodes.map((n) => ({ ...n, status: n.components.some((c) => c.status === 'failed') ? 'failed' : n.status })),
    // first stop → last healthy (hooks run on a healthy cluster); after a rollback, until now
    downtimeMs: ctx.stoppedAt.size === 0 ? undefined : Math.round((healthyAt ?? performance.now()) - Math.min(...ctx.stoppedAt.values())),
    keptOldData: ctx.keptOld,
    ...(lastCheck ? { lastCheck } : {}),
    ...(warnings.length > 0 ? { warnings } : {}),
  });

  try {
    if (!opts.dryRun) {
      // one operation at a time in the repository (a lease, renewed while we run)
      lock = await steps.run('lock', () => takeLock(repo, `restore ${restoreId} of backup ${opts.backupId} to cluster ${cluster.config.cluster}`, warnings));
      if (lock) ctx.signal = AbortSignal.any([opts.signal, lock.signal]);
      ctx.lockHeld = lock !== undefined;
    }
    // manifest against the live topology: same nodes and components, or refuse
    await steps.run('plan', () => planRestore(ctx));
    lastCheck = await lastCheckOf(repo, opts.backupId, warnings);
    if (opts.dryRun) {
      // per node: what staging would download and what it would likely reuse
      await steps.run('estimate', () => estimateTransfers(ctx));
      return report('planned');
    }
    // download and verify beside the live data; every service still runs
    await steps.run('stage', () => stage(ctx));
    if (lock?.signal.aborted) throw lock.signal.reason;
    if (opts.signal.aborted) throw new LockstepError('LOCKSTEP_E_CANCELLED', 'restore interrupted before any service was stopped');
    // the components' beforeRestore commands, everything staged, every service still running; a failure stops the restore here
    if (ctx.beforeHooks.length > 0) await steps.run('before-hooks', () => runHooks(ctx, 'before'));
    // nothing below reads the repository: a lease lost from here on does not stop the restore
    ctx.signal = opts.signal;
    // downtime starts at the first stop: stop in the plugins' stop order
    await steps.run('stop', () => stopAll(ctx));
    // live data moved aside (kept), staged data renamed into place
    await steps.run('swap', () => swap(ctx));
    // start in plugin order, each group healthy before the next
    await steps.run('start', () => start(ctx));
    healthyAt = performance.now();
    // each component's afterRestore command, the whole cluster healthy; a failure rolls back
    await steps.run('hooks', () => runHooks(ctx, 'after'));
    const done = report('restored');
    // only now is the old data removed (or kept with --keep-old)
    await steps.run('finish', () => finish(ctx));
    return { ...done, keptOldData: ctx.keptOld, steps: steps.records, finishedAt: new Date().toISOString(), durationMs: Math.round(performance.now() - t0) };
  } catch (err) {
    // a rollback after the start (a hook failed) is downtime too
    healthyAt = undefined;
    // a lost lock explains an abort while staging better than whatever it interrupted
    const error = toErrorInfo(lock?.signal.aborted && ctx.stopped.length === 0 ? lock.signal.reason : err);
    if (ctx.stopped.length === 0) {
      // nothing was stopped: remove what was staged and say why
      if (ctx.staged.length > 0) await steps.run('cleanup', () => rollback(ctx)).catch(() => undefined);
      const r = report(err instanceof LockstepError && REFUSALS.has(err.code) ? 'refused' : 'failed');
      r.error = error;
      return r;
    }
    const rb = await steps.run('rollback', () => rollback(ctx));
    const r = report(rb.ok ? 'rolled-back' : 'rollback-failed');
    r.error = error;
    r.rollback = { attempted: true, ok: rb.ok, errors: rb.errors };
    return r;
  } finally {
    await lock?.release().catch(() => undefined);
  }
}
