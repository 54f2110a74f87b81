/**
 * The small runner every sequence uses: each step logs its start and end, records its
 * duration and outcome in the report, and names itself in any error it ends with.
 */
import { LockstepError, toErrorInfo } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { StepRecord } from '../lib/report.js';

export interface StepObserver {
  stepStarted?(name: string): void;
  stepEnded?(record: StepRecord): void;
}

export class Steps {
  readonly records: StepRecord[] = [];

  constructor(
    private readonly log: Logger,
    private readonly observer: StepObserver = {},
  ) {}

  async run<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const startedAt = new Date().toISOString();
    const t0 = performance.now();
    const log = this.log.child({ step: name });
    log.info('step started');
    this.observer.stepStarted?.(name);
    try {
      const out = await fn();
      this.finish({ name, status: 'ok', startedAt, durationMs: Math.round(performance.now() - t0) }, log);
      return out;
    } catch (err) {
      const error = toErrorInfo(err);
      this.finish({ name, status: 'failed', startedAt, durationMs: Math.round(performance.now() - t0), error }, log);
      if (err instanceof LockstepError) throw err;
      throw new LockstepError('LOCKSTEP_E_INTERNAL', `step ${name} failed: ${error.message}`, { cause: err });
    }
  }

  private finish(rec: StepRecord, log: Logger): void {
    this.records.push(rec);
    if (rec.status === 'ok') log.info({ durationMs: rec.durationMs }, 'step done');
    else log.warn({ durationMs: rec.durationMs, error: rec.error }, 'step failed');
    this.observer.stepEnded?.(rec);
  }
}
