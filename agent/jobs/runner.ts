/**
 * The agent's job runner: a job is created with an id at once and runs in the
 * background; one job at a time per component; state, progress and leftovers are
 * journaled; a restarted agent marks what was running as interrupted and cleans up.
 */
import { rename } from 'node:fs/promises';
import { exists, removeTree } from '../../lib/tree.js';
import { LockstepError, toErrorInfo } from '../../lib/errors.js';
import { newJobId } from '../../lib/ids.js';
import type { Logger } from '../../lib/log.js';
import type { Job, JobKind, JobRequest, JobRequestOf, Progress } from '../../lib/wire.js';
import { Journal, type Leftover } from './journal.js';
import { keepShapeOnce } from '../../lib/shapes.js';

export interface JobContext {
  job: Job;
  signal: AbortSignal;
  log: Logger;
  progress(update: Partial<Progress>): void;
  /** record a leftover before creating it */
  addLeftover(l: Leftover): Promise<void>;
  /** forget a leftover once it is no longer one (e.g. the service is running again) */
  dropLeftover(l: Leftover): Promise<void>;
}

export type JobHandler<K extends JobKind> = (req: JobRequestOf<K>, ctx: JobContext) => Promise<unknown>;
export type JobHandlers = { [K in JobKind]: JobHandler<K> };

/** What recovery does for a leftover `restart-service`. */
export type RestartService = (component: string) => Promise<void>;

interface Live {
  /** resolved once the job has ended (its final state is set) */
  ended: Promise<void>;
  end: () => void;
  job: Job;
  leftovers: Leftover[];
  abort: AbortController;
  started: number;
  /** when a coordinator last asked about the job (performance.now()), and its long polls waiting now */
  asked: number;
  watching: number;
}

/** jobs stopped once no coordinator has asked about them for `afterMs` (lib/wire.ts kinds) */
export interface Abandon {
  kinds: readonly JobKind[];
  afterMs: number;
}

const sameLeftover = (a: Leftover, b: Leftover) => JSON.stringify(a) === JSON.stringify(b);

/** whether the job ends within `ms` */
async function endedWithin(live: Live, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([live.ended.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A running job's context. A class, not an object of closures: optimized code that calls
 * `ctx.progress` for every file (the upload) recorded that call's target, and a closure
 * made per job died with its job, so V8 threw that code away after every job ("weak
 * objects" in --trace-deopt) and compiled it again in the next one; a method stays.
 */
class LiveContext implements JobContext {
  readonly job: Job;
  readonly signal: AbortSignal;
  constructor(
    private readonly live: Live,
    readonly log: Logger,
    private readonly journal: Journal,
  ) {
    this.job = live.job;
    this.signal = live.abort.signal;
  }

  progress(u: Partial<Progress>): void {
    const p = this.job.progress;
    Object.assign(p, u);
    const secs = (performance.now() - this.live.started) / 1000;
    p.rate = secs > 0 ? Math.round(p.bytesDone / secs) : 0;
  }

  async addLeftover(l: Leftover): Promise<void> {
    this.live.leftovers.push(l);
    await this.journal.write({ job: this.job, leftovers: this.live.leftovers });
  }

  async dropLeftover(l: Leftover): Promise<void> {
    this.live.leftovers = this.live.leftovers.filter((x) => !sameLeftover(x, l));
    await this.journal.write({ job: this.job, leftovers: this.live.leftovers });
  }
}

/**
 * The context of a job run again by recovery (a leftover `again`): nobody follows its
 * progress, and what it leaves is not journaled again (the interrupted job's record keeps
 * the leftover until recovery is over: an agent that dies again runs it once more).
 */
class RecoveryContext implements JobContext {
  readonly signal = AbortSignal.timeout(600_000);
  constructor(
    readonly job: Job,
    readonly log: Logger,
  ) {}

  progress(): void {}

  async addLeftover(): Promise<void> {}

  async dropLeftover(): Promise<void> {}
}

/** how long a caller under the repository's lock waits for an orphaned transfer it stopped to end (its requests aborted, its undo done): well within the coordinator's request timeout (timeouts.requestMs, 60 s by default) */
export const TAKE_OVER_WAIT_MS = 10_000;

/** the operation a caller holds the repository's lock for */
export type Operation = { backupId: string; restoreId?: undefined } | { restoreId: string; backupId?: undefined };

/** "backup B" / "restore R": what an upload or a stage was for */
function operationOf(req: JobRequestOf<'upload'> | JobRequestOf<'stage'>): string {
  return req.kind === 'upload' ? `backup ${req.backupId}` : `restore ${req.restoreId}`;
}

/** what the caller reports of a transfer it stopped (`takeOver`), by what it is */
export function takenOver(job: Job, taker: 'this backup' | 'a restore'): string {
  const req = job.request as JobRequestOf<'upload'> | JobRequestOf<'stage'>;
  const then = req.kind === 'upload' ? `${taker === 'this backup' ? 'this' : 'the next'} backup picks up what it stored` : 'what it staged was removed';
  return `${req.kind} job ${job.id} of ${operationOf(req)} was stopped: its coordinator no longer held the repository's lock (it died or lost the store); ${then}`;
}

/** said of a job still keeping its component busy though `takeOver` stopped it */
export const NOT_ENDED = ` (stopped: its coordinator no longer holds the repository's lock; it has not ended in ${TAKE_OVER_WAIT_MS / 1000} s)`;

export class JobRunner {
  private readonly jobs = new Map<string, Job>();
  private readonly live = new Map<string, Live>();
  private readonly busy = new Map<string, string>(); // component → job id
  /** the key each job was started under (`JOB_KEY_HEADER`) → its id, while the job is kept */
  private readonly byKey = new Map<string, string>();
  private readonly journal: Journal;
  private readonly watchdog: NodeJS.Timeout | undefined;

  constructor(
    private readonly node: string,
    journalDir: string,
    private readonly handlers: JobHandlers,
    private readonly log: Logger,
    private readonly history: number,
    private readonly restart: RestartService,
    abandon?: Abandon,
  ) {
    this.journal = new Journal(journalDir);
    if (abandon) {
      this.watchdog = setInterval(() => this.stopAbandoned(abandon), Math.min(5000, Math.max(100, abandon.afterMs / 4)));
      this.watchdog.unref();
    }
  }

  /**
   * Stop the jobs of `abandon`'s kinds that no coordinator has asked about for its time:
   * their coordinator died or lost this agent, and gave up (it fails a job after 15 s
   * without an answer, and lets the repository's lock go). An upload would otherwise go on
   * writing to the repository unlocked, a stage on filling the disk, and either keep its
   * component busy for the next run. What an upload stored is picked up by the next backup
   * (pending records); a stage's staging is removed, as for any failed job.
   */
  private stopAbandoned(abandon: Abandon): void {
    const now = performance.now();
    for (const live of this.live.values()) {
      const { job } = live;
      if (!abandon.kinds.includes(job.kind) || live.watching > 0 || now - live.asked < abandon.afterMs || live.abort.signal.aborted) continue;
      const secs = Math.round((now - live.asked) / 1000);
      this.log.warn({ job: job.id, kind: job.kind, component: job.component, secs }, 'job abandoned by its coordinator; stopped');
      live.abort.abort(
        new LockstepError('LOCKSTEP_E_JOB_ABANDONED', `job ${job.id} (${job.kind} of ${job.component}) was stopped: no coordinator asked about it for ${secs} s (its coordinator stopped, or lost ${this.node})`, {
          node: this.node,
          hint: job.kind === 'upload' ? 'the next backup picks up what it stored' : 'run it again',
        }),
      );
    }
  }

  /** the watchdog stops (the agent is shutting down) */
  close(): void {
    clearInterval(this.watchdog);
  }

  /** Load the journal; anything that was running is interrupted and its leftovers undone. */
  async recover(): Promise<Job[]> {
    await this.journal.init();
    const interrupted: Job[] = [];
    for (const rec of await this.journal.readAll()) {
      const job = rec.job;
      if (job.state === 'running') {
        const actions = await this.undo(rec.leftovers, job);
        job.state = 'interrupted';
        job.finishedAt = new Date().toISOString();
        job.error = {
          code: 'LOCKSTEP_E_AGENT_INTERRUPTED',
          message: `job ${job.id} (${job.kind} of ${job.component}) was interrupted: the agent on ${this.node} stopped while it ran`,
          node: this.node,
        };
        job.recovery = actions;
        await this.journal.write({ job, leftovers: [] });
        this.log.warn({ job: job.id, kind: job.kind, component: job.component, actions }, 'job interrupted by agent restart; leftovers cleaned');
        interrupted.push(job);
      }
      this.jobs.set(job.id, job);
    }
    await this.trimHistory();
    return interrupted;
  }

  /**
   * Undo what a job left, in reverse. `recovering`: the job of an agent that died while it
   * ran, whose `again` leftovers are run again; a job that failed says so to its
   * coordinator instead, which decides whether to run it again.
   */
  private async undo(leftovers: Leftover[], recovering?: Job): Promise<string[]> {
    const actions: string[] = [];
    for (const l of [...leftovers].reverse()) {
      try {
        if (l.kind === 'again') {
          if (!recovering) continue;
          const handler = this.handlers[l.request.kind] as JobHandler<JobKind>;
          const result = (await handler(l.request, new RecoveryContext(recovering, this.log))) as { actions?: unknown } | undefined;
          const done = Array.isArray(result?.actions) ? result.actions.map(String) : [];
          actions.push(`ran the ${l.request.kind} of ${l.request.component} again${done.length > 0 ? `: ${done.join('; ')}` : ''}`);
        } else if (l.kind === 'path') {
          await removeTree(l.path);
          actions.push(`removed ${l.path}`);
        } else if (l.kind === 'undo-rename') {
          const toExists = await exists(l.to);
          const fromExists = await exists(l.from);
          if (toExists && !fromExists) {
            await rename(l.to, l.from);
            actions.push(`moved ${l.to} back to ${l.from}`);
          }
        } else {
          await this.restart(l.component);
          actions.push(`started component ${l.component} again`);
        }
      } catch (err) {
        actions.push(`could not undo ${JSON.stringify(l)}: ${toErrorInfo(err).message}`);
      }
    }
    return actions;
  }

  /** the job, as a coordinator asks about it */
  get(id: string): Job {
    const job = this.jobs.get(id);
    if (!job) throw new LockstepError('LOCKSTEP_E_JOB_NOT_FOUND', `no job ${id} on ${this.node}`, { node: this.node });
    const live = this.live.get(id);
    if (live) live.asked = performance.now();
    return job;
  }

  /** The job once it has ended, or as it is after `waitMs` (a long poll: the caller hears of the end at once). */
  async wait(id: string, waitMs: number): Promise<Job> {
    const job = this.get(id);
    const live = this.live.get(id);
    if (!live || waitMs <= 0) return job;
    live.watching++;
    try {
      await endedWithin(live, waitMs);
    } finally {
      live.watching--;
      live.asked = performance.now();
    }
    return job;
  }

  list(): Job[] {
    return [...this.jobs.values()];
  }

  busyComponents(): Map<string, string> {
    return this.busy;
  }

  cancel(id: string): Job {
    const job = this.get(id);
    this.live.get(id)?.abort.abort(new LockstepError('LOCKSTEP_E_CANCELLED', `job ${id} was cancelled`, { node: this.node }));
    return job;
  }

  /**
   * Stop the job keeping `component` busy when it is a transfer of another operation than
   * `by` into repository `repositoryId` (an upload of another backup, a stage of another
   * restore), and the caller holds that repository's lock for `by`: the transfer's own
   * coordinator has lost the lock (it died, or lost the store), so it must not go on
   * writing there or filling the disk, nor keep the component busy until `stopAbandoned`
   * would stop it. What an upload stored is picked up by the next backup; what a stage
   * staged is removed (its undo). Waits up to `waitMs` for it to end; undefined when the
   * component's job is not such a transfer.
   */
  async takeOver(component: string, repositoryId: string, by: Operation, waitMs: number): Promise<{ job: Job; ended: boolean } | undefined> {
    const id = this.busy.get(component);
    const live = id === undefined ? undefined : this.live.get(id);
    // (the request the job was started with, schema-checked)
    const req = live?.job.request as JobRequest | undefined;
    if (!live || (req?.kind !== 'upload' && req?.kind !== 'stage') || req.repositoryId !== repositoryId) return undefined;
    if (req.kind === 'upload' ? req.backupId === by.backupId : req.restoreId === by.restoreId) return undefined;
    const { job } = live;
    const of = operationOf(req);
    const taker = by.backupId !== undefined ? `backup ${by.backupId}` : `restore ${by.restoreId}`;
    if (!live.abort.signal.aborted) {
      this.log.warn({ job: job.id, component, of, by: taker }, `${req.kind} stopped: ${taker} of another coordinator took the repository's lock over`);
      live.abort.abort(
        new LockstepError('LOCKSTEP_E_JOB_TAKEN_OVER', `job ${job.id} (${req.kind} of ${component} for ${of}) was stopped: ${taker} took the repository's lock over (this ${req.kind}'s coordinator no longer held it)`, {
          node: this.node,
          hint: req.kind === 'upload' ? 'the next backup picks up what it stored' : 'what it staged was removed; no service was stopped',
        }),
      );
    }
    return { job, ended: await endedWithin(live, waitMs) };
  }

  /**
   * Create a job and start it; returns at once. `key`: the key the coordinator chose for
   * this start (`JOB_KEY_HEADER`); a start under a key that started a job still kept
   * returns that job as it is now, and starts nothing.
   */
  async start(req: JobRequest, key?: string): Promise<Job> {
    const before = key === undefined ? undefined : this.startedUnder(key, req);
    if (before) return before;
    // a stage under the repository's lock stops an orphaned transfer in its way (see `takeOver`)
    const taken = req.kind === 'stage' && req.lockHeld && this.busy.has(req.component) ? await this.takeOver(req.component, req.repositoryId, { restoreId: req.restoreId }, TAKE_OVER_WAIT_MS) : undefined;
    // (the same start asked again while this one waited)
    const meanwhile = key === undefined ? undefined : this.startedUnder(key, req);
    if (meanwhile) return meanwhile;
    const holder = this.busy.get(req.component);
    if (holder) {
      const other = this.jobs.get(holder);
      const still = taken?.job.id === holder ? NOT_ENDED : '';
      throw new LockstepError(
        'LOCKSTEP_E_COMPONENT_BUSY',
        `component ${req.component} on ${this.node} is busy with job ${holder} (${other?.kind ?? '?'})${still}`,
        { node: this.node, hint: 'wait for that job or cancel it' },
      );
    }
    const job: Job = {
      id: newJobId(),
      node: this.node,
      kind: req.kind,
      component: req.component,
      request: req,
      state: 'running',
      createdAt: new Date().toISOString(),
      progress: { phase: 'starting', bytesDone: 0, bytesTotal: 0, filesDone: 0, filesTotal: 0, rate: 0 },
      ...(taken ? { tookOver: takenOver(taken.job, 'a restore') } : {}),
    };
    let end = () => {};
    const ended = new Promise<void>((r) => (end = r));
    const started = performance.now();
    const live: Live = { job, leftovers: [], abort: new AbortController(), started, ended, end, asked: started, watching: 0 };
    this.busy.set(req.component, job.id);
    this.jobs.set(job.id, job);
    if (key !== undefined) this.byKey.set(key, job.id);
    this.live.set(job.id, live);
    await this.journal.write({ job, leftovers: [] });
    void this.run(req, live);
    return job;
  }

  /** the job started under `key`, if one is kept; an error if it was started by another request */
  private startedUnder(key: string, req: JobRequest): Job | undefined {
    const id = this.byKey.get(key);
    const job = id === undefined ? undefined : this.jobs.get(id);
    if (!job) return undefined;
    if (JSON.stringify(job.request) !== JSON.stringify(req)) {
      throw new LockstepError('LOCKSTEP_E_BAD_REQUEST', `job key ${key} already started job ${job.id} (${job.kind} of ${job.component}) with another request`, {
        node: this.node,
        hint: 'a coordinator chooses a new key for every job it starts; only the same start, asked again, may reuse one',
      });
    }
    const live = this.live.get(job.id);
    if (live) live.asked = performance.now();
    this.log.info({ job: job.id, kind: job.kind, component: job.component, state: job.state }, 'job start asked again under its key: the job started then is answered');
    return job;
  }

  private async run(req: JobRequest, live: Live): Promise<void> {
    const { job } = live;
    const log = this.log.child({ job: job.id, kind: job.kind, component: job.component });
    const ctx = new LiveContext(live, log, this.journal);
    // the first job's context (and so its record, a few KiB) for good, for its shapes and its
    // abort signal's: code that reports progress for every file was compiled again after
    // every job (lib/shapes.ts)
    keepShapeOnce('job-context', () => ctx);
    log.info('job started');
    // the job reads as ended only once its undo is done and its component is free:
    // a coordinator that sees it ended may at once send the next job for that component
    let state: Job['state'];
    try {
      const handler = this.handlers[req.kind] as JobHandler<JobKind>;
      job.result = await handler(req as JobRequestOf<JobKind>, ctx);
      state = 'succeeded';
    } catch (err) {
      const stopped = live.abort.signal.aborted;
      state = stopped ? 'cancelled' : 'failed';
      // a job stopped (cancelled, abandoned) says why, not what its stop broke (a store's request aborted)
      job.error = toErrorInfo(stopped ? live.abort.signal.reason : err, 'LOCKSTEP_E_INTERNAL', this.node);
      // a failed job undoes what it left, as recovery would; a job that succeeded
      // hands its leftovers on (a snapshot dir to upload, a staged dir to swap in)
      job.recovery = await this.undo(live.leftovers);
    }
    job.finishedAt = new Date().toISOString();
    job.durationMs = Math.round(performance.now() - live.started);
    job.progress.phase = state;
    this.busy.delete(job.component);
    this.live.delete(job.id);
    job.state = state;
    live.end();
    try {
      await this.journal.write({ job, leftovers: [] });
    } catch (err) {
      log.error({ err: toErrorInfo(err) }, 'cannot write job journal');
    }
    if (job.state === 'succeeded') log.info({ durationMs: job.durationMs }, 'job succeeded');
    else log.warn({ durationMs: job.durationMs, error: job.error }, 'job did not succeed');
    await this.trimHistory();
  }

  private async trimHistory(): Promise<void> {
    const done = [...this.jobs.values()].filter((j) => j.state !== 'running');
    const gone = done.slice(0, Math.max(0, done.length - this.history));
    for (const j of gone) this.jobs.delete(j.id);
    // a start asked again once its job is forgotten starts it anew (the coordinator gave up on it long before)
    if (gone.length > 0) for (const [key, id] of this.byKey) if (!this.jobs.has(id)) this.byKey.delete(key);
    for (const j of gone) await this.journal.remove(j.id);
  }
}
