/**
 * `lockstep backup create`: preflight → plan → snapshot → upload → commit → cleanup.
 * Any failure before commit leaves no manifest; local snapshots are always cleaned up.
 * Operational failures end in the report (status and error), never as a throw.
 */
import { LockstepError, toErrorInfo } from '../../lib/errors.js';
import { newBackupId } from '../../lib/ids.js';
import type { Logger } from '../../lib/log.js';
import type { BackupReport } from '../../lib/report.js';
import type { Cluster } from '../cluster.js';
import type { ProgressSink } from '../fanout.js';
import { Steps, type StepObserver } from '../steps.js';
import type { BackupContext } from './context.js';
import { preflight, takeFreeId } from './preflight.js';
import { plan } from './coverage.js';
import { snapshot } from './snapshot.js';
import { freezeAndPoint } from './freeze.js';
import { upload } from './upload.js';
import { commit, decideStatus } from './commit.js';
import { cleanup } from './cleanup.js';
import { RepoLock, clockSkewWarning } from '../../lib/repo/lock.js';
import { failpoint } from '../../lib/failpoints.js';

export interface BackupOptions {
  name: string;
  coverage?: 'default' | 'all';
  signal: AbortSignal;
  log: Logger;
  observer?: StepObserver & ProgressSink;
}

export async function runBackup(cluster: Cluster, opts: BackupOptions): Promise<BackupReport> {
  const t0 = performance.now();
  // stops the agents' early descriptions (below) when the backup ends first, a lock held
  // elsewhere: a node that does not answer must not hold up the exit
  const describing = new AbortController();
  const ctx: BackupContext = {
    cluster,
    repo: await cluster.openRepository(),
    // the agents' connections (mutual TLS) are made and their descriptions read while the lock
    // is taken: nothing is asked of them but to describe themselves (the lock's and id's round
    // trips to an S3 store, ~5 ms on a local folder, went by before the first agent was asked)
    described: cluster.describeAll(AbortSignal.any([opts.signal, describing.signal]), false),
    backupId: newBackupId(opts.name),
    name: opts.name,
    coverage: opts.coverage ?? cluster.config.coverage,
    startedAt: new Date().toISOString(),
    signal: opts.signal,
    log: opts.log,
    progress: opts.observer,
    topology: [],
    nodes: [],
    components: new Map(),
    shards: [],
    selected: [],
    snapshotted: [],
    capabilities: new Map(),
    freezeTtlMs: cluster.config.freeze.ttlMs,
  };
  ctx.log = opts.log.child({ backup: ctx.backupId });
  const steps = new Steps(ctx.log, opts.observer);
  /** what the report tells the operator though it did not stop the backup */
  const warnings: string[] = [];
  const report = (): BackupReport => {
    const comps = [...ctx.components.values()];
    return {
      kind: 'backup',
      backupId: ctx.backupId,
      cluster: cluster.config.cluster,
      status: 'failed',
      coverage: ctx.coverage,
      startedAt: ctx.startedAt,
      finishedAt: new Date().toISOString(),
      durationMs: Math.round(performance.now() - t0),
      steps: steps.records,
      nodes: ctx.nodes.map((n) => ({ ...n, status: n.status === 'ok' && n.components.some((c) => c.status === 'failed') ? 'failed' : n.status })),
      shards: ctx.shards,
      totals: {
        files: comps.reduce((n, c) => n + (c.upload?.files ?? 0), 0),
        bytes: comps.reduce((n, c) => n + (c.upload?.bytes ?? 0), 0),
        bytesNew: comps.reduce((n, c) => n + (c.upload?.bytesNew ?? 0), 0),
        chunksNew: comps.reduce((n, c) => n + (c.upload?.chunksNew ?? 0), 0),
        maxDowntimeMs: Math.max(0, ...comps.map((c) => c.snapshot?.downtimeMs ?? 0)),
      },
      pause: ctx.pause,
      ...(warnings.length > 0 ? { warnings: [...warnings] } : {}),
    };
  };

  let lock: RepoLock | undefined;
  try {
    // one writer at a time in the repository (a lease, renewed while we run)
    // the backup's id checked while the store's create-if-absent is proven (their round trips at once)
    lock = await steps.run('lock', () => RepoLock.acquire(ctx.repo.driver, () => `backup ${ctx.backupId} of cluster ${cluster.config.cluster}`, undefined, () => takeFreeId(ctx)));
    ctx.signal = AbortSignal.any([opts.signal, lock.signal]);
    // the backup's id and time are this host's: a clock far off the store's is told
    const skewed = clockSkewWarning(lock.clockSkewMs, ctx.repo.location);
    if (skewed) warnings.push(skewed);
    // tests that need the lock held while another run tries it
    const hold = failpoint('lock.hold');
    if (hold) await new Promise((r) => setTimeout(r, hold));
    // every agent reachable and itself, plugins healthy, repository the same and writable
    warnings.push(...(await steps.run('preflight', () => preflight(ctx))));
    // which replica of each shard to snapshot (coverage policy)
    await steps.run('plan', async () => plan(ctx));
    // the consistent cut: freeze the cluster, fix every point in time, thaw (lease-guarded)
    await steps.run('freeze', () => freezeAndPoint(ctx));
    // all selected components at once; a plugin without freeze stops its service only in here
    await steps.run('snapshot', () => snapshot(ctx));
    if (ctx.signal.aborted) throw cancelled(ctx.backupId);
    // each agent straight to the repository, in parallel
    await steps.run('upload', () => upload(ctx));
    if (ctx.signal.aborted) throw cancelled(ctx.backupId);
    // coverage decides complete / partial / failed; the manifest is written last
    const final = report();
    final.status = decideStatus(ctx);
    await steps.run('commit', () => commit(ctx, final));
    final.manifest = `backups/${ctx.backupId}/manifest.json`;
    return await finish(ctx, steps, report, final.status, final.manifest);
  } catch (err) {
    // a lost lock explains the abort better than whatever it interrupted
    const error = toErrorInfo(lock?.signal.aborted ? lock.signal.reason : err);
    const r = await finish(ctx, steps, report, 'failed');
    r.error = error;
    return r;
  } finally {
    describing.abort();
    await lock?.release().catch(() => undefined);
  }
}

function cancelled(backupId: string): LockstepError {
  return new LockstepError('LOCKSTEP_E_CANCELLED', `backup ${backupId} was interrupted; no manifest was written`);
}

async function finish(
  ctx: BackupContext,
  steps: Steps,
  report: () => BackupReport,
  status: BackupReport['status'],
  manifest?: string,
): Promise<BackupReport> {
  // local snapshots go, whatever happened
  if (ctx.snapshotted.length > 0) await steps.run('cleanup', () => cleanup(ctx)).catch(() => undefined);
  if (status === 'failed') await ctx.repo.discardUncommitted(ctx.backupId).catch(() => undefined);
  // the shard view reflects the final state even when commit never ran
  if (status === 'failed' && ctx.shards.length > 0) decideStatus(ctx);
  const r = report();
  r.status = status;
  r.manifest = manifest;
  return r;
}
