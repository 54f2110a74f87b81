/**
 * Run one job kind on many components at once and gather each outcome; one
 * component's failure never hides another's result. Progress of all running jobs is
 * summed for the display.
 */
import { toErrorInfo, type ErrorInfo } from '../lib/errors.js';
import type { Job, JobRequest } from '../lib/wire.js';
import type { Cluster } from './cluster.js';
import { jobError } from './client.js';

export interface Target {
  node: string;
  component: string;
}

export type Outcome<T, G extends Target = Target> = { target: G; ok: true; result: T; job: Job } | { target: G; ok: false; error: ErrorInfo; job?: Job };

export interface ProgressSink {
  update(step: string, jobs: Job[]): void;
}

export async function fanout<T, G extends Target = Target>(
  cluster: Cluster,
  step: string,
  targets: G[],
  makeRequest: (t: G) => JobRequest,
  signal: AbortSignal,
  progress?: ProgressSink,
): Promise<Outcome<T, G>[]> {
  const latest = new Map<string, Job>();
  const show = () => progress?.update(step, [...latest.values()]);
  return Promise.all(
    targets.map(async (target): Promise<Outcome<T, G>> => {
      try {
        const job = await cluster.client(target.node).runJob(makeRequest(target), {
          signal,
          onProgress: (j) => {
            latest.set(`${target.node}/${target.component}`, j);
            show();
          },
        });
        latest.set(`${target.node}/${target.component}`, job);
        show();
        if (job.state === 'succeeded') return { target, ok: true, result: job.result as T, job };
        return { target, ok: false, error: jobError(job).toJSON(), job };
      } catch (err) {
        return { target, ok: false, error: toErrorInfo(err, 'LOCKSTEP_E_INTERNAL', target.node) };
      }
    }),
  );
}

/**
 * What the failed outcomes advise, for the error that sums them up: each hint once, and
 * named by node/component when they differ (a node's "move the data one level down" was
 * otherwise only in that component's entry of the report).
 */
export function hintOf(outcomes: readonly Outcome<unknown>[]): { hint?: string } {
  const failed = outcomes.flatMap((o) => (!o.ok && o.error.hint ? [{ at: key(o.target), hint: o.error.hint }] : []));
  const distinct = new Set(failed.map((f) => f.hint));
  if (distinct.size === 0) return {};
  return { hint: distinct.size === 1 ? failed[0]!.hint : failed.map((f) => `${f.at}: ${f.hint}`).join('; ') };
}

export function key(t: Target): string {
  return `${t.node}/${t.component}`;
}
