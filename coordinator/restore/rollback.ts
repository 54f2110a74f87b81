/**
 * Put every touched component back as it was: stop what runs (a member may already have
 * started on the restored data), old data returned to its place (or staging removed
 * where nothing was swapped), then services started in order. Plugins' stop must
 * therefore accept a service that is already stopped.
 */
import { toErrorInfo, type ErrorInfo } from '../../lib/errors.js';
import { fanout, key } from '../fanout.js';
import { report, type RestoreContext } from './context.js';
import { startAll } from './service.js';

export interface RollbackOutcome {
  ok: boolean;
  errors: ErrorInfo[];
}

export async function rollback(ctx: RestoreContext): Promise<RollbackOutcome> {
  const errors: ErrorInfo[] = [];
  // not cancellable: an interrupted restore must still come back
  const signal = AbortSignal.timeout(600_000);
  if (ctx.stopped.length > 0) {
    // some members may already run on the restored data: stop them before their data moves
    const stops = await fanout(ctx.cluster, 'stop', ctx.stopped, (t) => ({ kind: 'stop', component: t.component }), signal);
    for (const o of stops) {
      if (!o.ok) errors.push({ ...o.error, message: `${key(o.target)}: stop before rollback failed: ${o.error.message}` });
    }
  }
  const outcomes = await fanout<{ actions: string[] }>(
    ctx.cluster,
    'rollback',
    ctx.staged,
    (t) => ({ kind: 'rollback', component: t.component, restoreId: ctx.restoreId }),
    signal,
  );
  for (const o of outcomes) {
    if (o.ok) report(ctx, o.target).actions?.push(...o.result.actions.map((a) => `rollback: ${a}`));
    else errors.push({ ...o.error, message: `${key(o.target)}: rollback failed: ${o.error.message}` });
  }
  if (ctx.stopped.length > 0) {
    try {
      const { problems, hint } = await startAll(ctx, ctx.stopped, signal);
      errors.push(...problems.map((p) => ({ code: 'LOCKSTEP_E_ROLLBACK_FAILED', message: p, ...(hint ? { hint } : {}) })));
    } catch (err) {
      errors.push(toErrorInfo(err, 'LOCKSTEP_E_ROLLBACK_FAILED'));
    }
  }
  return { ok: errors.length === 0, errors };
}
