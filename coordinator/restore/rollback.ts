/**
 * Put every touched component back as it was: stop what runs (a member may already have
 * started on the restored data), old data returned to its place (or staging removed
 * where nothing was swapped), then services started in order. Plugins' stop must
 * therefore accept a service that is already stopped. A rollback that fails is run once
 * more; a component whose old data still could not be put back is left stopped, never
 * started on what is left of the restored data. Once the swap began, a component that
 * cannot be stopped is left as the restore put it: its data is never moved under a
 * service that may be running on it.
 * A stop or a rollback that failed because its agent went away (died, was restarted,
 * could not be reached) is run again there once the agent answers again, within
 * `REJOIN_MS` (systemd starts a dead agent again 5 s after it died): an agent that only
 * restarted does not leave its node stopped, or as the restore put it, for good.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { toErrorInfo, type ErrorInfo } from '../../lib/errors.js';
import { fanout, key, type Outcome } from '../fanout.js';
import { report, type RestoreContext, type RestoreTarget } from './context.js';
import { startAll } from './service.js';

/** what an agent that went away answers for a step it ran (not what the step itself failed with) */
const GONE = new Set(['LOCKSTEP_E_AGENT_UNREACHABLE', 'LOCKSTEP_E_JOB_LOST', 'LOCKSTEP_E_AGENT_INTERRUPTED']);
/** how long a rollback waits for an agent that went away to answer again before it runs a step there once more */
export const REJOIN_MS = 30_000;
const REJOIN_POLL_MS = 500;

/** the outcomes that failed because their agent went away */
const gone = <T>(outcomes: Outcome<T, RestoreTarget>[]) => outcomes.filter((o): o is Extract<Outcome<T, RestoreTarget>, { ok: false }> => !o.ok && GONE.has(o.error.code));

/** the nodes of `targets` whose agents answer again within `REJOIN_MS` (at once for one that already does) */
async function rejoined(ctx: RestoreContext, targets: RestoreTarget[], signal: AbortSignal): Promise<Set<string>> {
  const back = new Set<string>();
  const deadline = Date.now() + REJOIN_MS;
  await Promise.all(
    [...new Set(targets.map((t) => t.node))].map(async (node) => {
      while (!signal.aborted) {
        const answered = await ctx.cluster
          .client(node)
          .describe(AbortSignal.any([signal, AbortSignal.timeout(REJOIN_POLL_MS * 4)]), false)
          .then(() => true, () => false);
        if (answered) {
          back.add(node);
          return;
        }
        if (Date.now() + REJOIN_POLL_MS > deadline) return;
        await sleep(REJOIN_POLL_MS);
      }
    }),
  );
  return back;
}

export interface RollbackOutcome {
  ok: boolean;
  errors: ErrorInfo[];
}

/** where a restore keeps a data directory DIR's old data, or what it staged (`what`), by the agent's naming (AgentNode.restorePaths) */
const besideDir = (what: 'old' | 'staging', restoreId: string) => `DIR.lockstep-${what}-${restoreId} (DIR/.lockstep-${what}-${restoreId} when DIR is a mount point)`;

export async function rollback(ctx: RestoreContext): Promise<RollbackOutcome> {
  const errors: ErrorInfo[] = [];
  // not cancellable: an interrupted restore must still come back
  const signal = AbortSignal.timeout(600_000);
  // after the swap began, the members that could not be stopped: their data is not moved under them
  const unstopped = new Set<string>();
  if (ctx.stopped.length > 0) {
    // some members may already run on the restored data: stop them before their data moves
    const stop = (targets: RestoreTarget[]) => fanout(ctx.cluster, 'stop', targets, (t) => ({ kind: 'stop', component: t.component }), signal);
    const stops = await stop(ctx.stopped);
    // once more where the agent went away, once it answers again (a stop accepts a stopped service)
    const wentAway = gone(stops);
    if (wentAway.length > 0) {
      const back = await rejoined(ctx, wentAway.map((o) => o.target), signal);
      const retry = wentAway.filter((o) => back.has(o.target.node));
      const again = await stop(retry.map((o) => o.target));
      again.forEach((o, i) => {
        const first = retry[i]!;
        stops[stops.indexOf(first)] = o;
        if (o.ok) report(ctx, o.target).actions?.push(`stop before rollback: its agent went away (${first.error.message}), stopped once it answered again`);
      });
    }
    for (const o of stops) {
      if (o.ok) continue;
      if (!ctx.swapBegun) {
        // its data was never touched: only its staging goes, and it is started again
        errors.push({ ...o.error, message: `${key(o.target)}: stop before rollback failed: ${o.error.message}` });
        continue;
      }
      unstopped.add(key(o.target));
      const swapped = ctx.swapped.some((t) => key(t) === key(o.target));
      report(ctx, o.target).actions?.push(`left as the restore put it: it could not be stopped for the rollback (${o.error.message})`);
      errors.push({
        ...o.error,
        message: `${key(o.target)}: stop before rollback failed, so its data was left as the restore put it (not rolled back, not started again): ${o.error.message}`,
        hint: swapped
          ? `its service may still run on the restored data, which is whole in its data directory DIR; its old data is whole in ${besideDir('old', ctx.restoreId)}: once the service is stopped, put the old data back, or keep the restored data`
          : `its swap did not go through: its data directory DIR holds its old data, and what the restore staged is in ${besideDir('staging', ctx.restoreId)}, which the agent's next start removes; its service may still run`,
      });
    }
  }
  const rollBack = (targets: RestoreTarget[]) =>
    fanout<{ actions: string[] }, RestoreTarget>(ctx.cluster, 'rollback', targets, (t) => ({ kind: 'rollback', component: t.component, restoreId: ctx.restoreId }), signal);
  const outcomes = await rollBack(ctx.staged.filter((t) => !unstopped.has(key(t))));
  const failedOnce = outcomes.filter((o) => !o.ok);
  // once more where it failed: a rollback goes on from wherever it stopped (an agent that
  // died in it has run it again at its start, and this finds nothing left to do); where the
  // agent went away, once it answers again
  const lost = gone(failedOnce);
  if (lost.length > 0) await rejoined(ctx, lost.map((o) => o.target), signal);
  const again = failedOnce.length > 0 ? await rollBack(failedOnce.map((o) => o.target)) : [];
  const firstFailure = new Map(failedOnce.flatMap((o) => (o.ok ? [] : [[key(o.target), o.error.message] as const])));
  const notBack = new Set<string>();
  for (const o of [...outcomes.filter((x) => x.ok), ...again]) {
    const actions = report(ctx, o.target).actions;
    const first = firstFailure.get(key(o.target));
    if (first !== undefined) actions?.push(`rollback: failed once (${first}), run again`);
    if (o.ok) {
      actions?.push(...o.result.actions.map((a) => `rollback: ${a}`));
      continue;
    }
    if (!ctx.swapBegun) {
      // no swap began: its data was not touched, only its staging is left (and it is started again if it was stopped)
      actions?.push(`what was staged could not be removed (${o.error.message})`);
      errors.push({ ...o.error, message: `${key(o.target)}: removing what was staged failed twice: ${o.error.message}`, hint: "its data was not touched; the agent's next start removes the staging" });
      continue;
    }
    // its data directory may hold what is left of the restored data: no service starts on that
    notBack.add(key(o.target));
    actions?.push(`left stopped: its old data could not be put back (${o.error.message})`);
    errors.push({
      ...o.error,
      message: `${key(o.target)}: rollback failed twice, the service is left stopped: ${o.error.message}`,
      hint: `nothing of its old data was removed: it is in ${besideDir('old', ctx.restoreId)}, DIR its data directory; an agent that died in the rollback puts it back itself at its next start; else fix what the error names, put that data back in place of what DIR holds now, then start the service`,
    });
  }
  const toStart = ctx.stopped.filter((t) => !notBack.has(key(t)) && !unstopped.has(key(t)));
  if (toStart.length > 0) {
    try {
      const { problems, hint } = await startAll(ctx, toStart, signal);
      errors.push(...problems.map((p) => ({ code: 'LOCKSTEP_E_ROLLBACK_FAILED', message: p, ...(hint ? { hint } : {}) })));
    } catch (err) {
      errors.push(toErrorInfo(err, 'LOCKSTEP_E_ROLLBACK_FAILED'));
    }
  }
  return { ok: errors.length === 0, errors };
}
