/** Waiting for a component to become healthy after a start: one loop for every plugin. */
import { setTimeout as sleep } from 'node:timers/promises';
import { LockstepError } from '../../lib/errors.js';
import type { Health } from '../../lib/wire.js';
import type { NodeContext } from './types.js';

/** how much longer than its `timeoutMs` a wait goes on while the component shows progress */
export const PROGRESS_CAP = 10;

/**
 * Poll `check` (given the time left) until it reports healthy or `timeoutMs` passes;
 * then fail with LOCKSTEP_E_HEALTH_TIMEOUT and the last answer. An answer whose `progress`
 * changed since the one before (a dataset still loading, further on, or done loading)
 * starts the `timeoutMs` again, up to `PROGRESS_CAP` × `timeoutMs` in all: a big dataset
 * that takes minutes to load is waited for, one that stopped moving is not.
 */
export async function waitUntilHealthy(
  what: string,
  timeoutMs: number,
  ctx: NodeContext,
  check: (remainingMs: number) => Promise<Health>,
  opts: { intervalMs?: number; hint?: string } = {},
): Promise<void> {
  const start = Date.now();
  const cap = start + timeoutMs * PROGRESS_CAP;
  let deadline = start + timeoutMs;
  let last: Health = { ok: false, message: 'not checked' };
  let progress: string | undefined;
  /** the last progress it showed, if it ever did */
  let shown: string | undefined;
  while (Date.now() < deadline) {
    ctx.signal.throwIfAborted();
    last = await check(deadline - Date.now());
    if (last.ok) return;
    // (progress that ended counts too: a load that just finished is checked again)
    if (last.progress !== progress) {
      progress = last.progress;
      shown = last.progress ?? shown;
      deadline = Math.min(cap, Date.now() + timeoutMs);
    }
    await sleep(opts.intervalMs ?? 250, undefined, { signal: ctx.signal });
  }
  const how = shown === undefined ? '' : ` (${Date.now() - start} ms in all; the last progress it showed: ${shown})`;
  throw new LockstepError('LOCKSTEP_E_HEALTH_TIMEOUT', `${what} did not become healthy within ${timeoutMs} ms${how}: ${last.message}`, {
    node: ctx.node,
    hint: opts.hint,
  });
}
