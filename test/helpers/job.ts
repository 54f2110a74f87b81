/** A job context for calling an agent's job code directly (no runner): logs nothing, never cancelled. */
import type { JobContext } from '../../agent/jobs/runner.js';

export function quietJobContext(): JobContext {
  const log = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };
  return {
    job: {} as JobContext['job'],
    signal: new AbortController().signal,
    log: log as unknown as JobContext['log'],
    progress: () => undefined,
    addLeftover: async () => undefined,
    dropLeftover: async () => undefined,
  };
}
