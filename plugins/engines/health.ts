/** Waiting for a component to become healthy after a start: one loop for every plugin. */
import { setTimeout as sleep } from 'node:timers/promises';
import { LockstepError } from '../../lib/errors.js';
import type { Health } from '../../lib/wire.js';
import type { NodeContext } from './types.js';

/**
 * Poll `check` (given the time left) until it reports healthy or `timeoutMs` passes;
 * then fail with LOCKSTEP_E_HEALTH_TIMEOUT and the last answer.
 */
export async function waitUntilHealthy(
  what: string,
  timeoutMs: number,
  ctx: NodeContext,
  check: (remainingMs: number) => Promise<Health>,
  opts: { intervalMs?: number; hint?: string } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: Health = { ok: false, message: 'not checked' };
  while (Date.now() < deadline) {
    ctx.signal.throwIfAborted();
    last = await check(deadline - Date.now());
    if (last.ok) return;
    await sleep(opts.intervalMs ?? 250, undefined, { signal: ctx.signal });
  }
  throw new LockstepError('LOCKSTEP_E_HEALTH_TIMEOUT', `${what} did not become healthy within ${timeoutMs} ms: ${last.message}`, {
    node: ctx.node,
    hint: opts.hint,
  });
}
