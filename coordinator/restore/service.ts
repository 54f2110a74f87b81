/**
 * Stop (each plugin's stop order, by default its start order reversed) and start (start
 * order, each group healthy before the next). Downtime per component runs from its stop
 * to its healthy start.
 */
import { LockstepError } from '../../lib/errors.js';
import { fanout, hintOf, key, type Outcome } from '../fanout.js';
import { getPlugin } from '../../plugins/engines/registry.js';
import { report, type RestoreContext, type RestoreTarget } from './context.js';
import { stopGroups } from './plan.js';

function failures(label: string, outcomes: { ok: boolean; target: { node: string; component: string }; error?: { message: string } }[]): string[] {
  return outcomes.filter((o) => !o.ok).map((o) => `${key(o.target)}: ${label} failed: ${o.error?.message ?? '?'}`);
}

/**
 * Roles as they are now, for plugins whose stop order depends on them (a leader may have
 * changed while staging ran); a node that cannot say keeps the role the plan saw.
 */
async function currentRoles(ctx: RestoreContext): Promise<Map<string, string>> {
  const roles = new Map<string, string>();
  const nodes = new Set(ctx.targets.filter((t) => getPlugin(t.live.plugin)?.cluster.stopOrder).map((t) => t.node));
  await Promise.all(
    [...nodes].map(async (node) => {
      const d = await ctx.cluster.client(node).describe(ctx.signal, false).catch(() => undefined);
      for (const c of d?.components ?? []) roles.set(`${node}/${c.name}`, c.role);
    }),
  );
  return roles;
}

export async function stopAll(ctx: RestoreContext): Promise<void> {
  const problems: string[] = [];
  const all: Outcome<unknown>[] = [];
  const groups = stopGroups(ctx.targets, await currentRoles(ctx));
  for (const group of groups) {
    for (const t of group) ctx.stoppedAt.set(key(t), performance.now());
    // counted as stopped before the call: a stop that failed half-way is started again on rollback
    ctx.stopped.push(...group);
    const outcomes = await fanout(ctx.cluster, 'stop', group, (t) => ({ kind: 'stop', component: t.component }), ctx.signal, ctx.progress);
    all.push(...outcomes);
    problems.push(...failures('stop', outcomes));
    if (problems.length > 0) break;
  }
  if (problems.length > 0) throw new LockstepError('LOCKSTEP_E_RESTORE_FAILED', problems.join('\n  '), hintOf(all));
}

/** start `targets` group by group; what failed, and what the agents advise (`hintOf`) */
export async function startAll(ctx: RestoreContext, targets: RestoreTarget[], signal: AbortSignal): Promise<{ problems: string[]; hint?: string }> {
  const problems: string[] = [];
  const all: Outcome<unknown>[] = [];
  const wanted = new Set(targets.map(key));
  for (const group of ctx.startGroups) {
    const g = group.filter((t) => wanted.has(key(t)));
    if (g.length === 0) continue;
    const outcomes = await fanout(ctx.cluster, 'start', g, (t) => ({ kind: 'start', component: t.component }), signal, ctx.progress);
    for (const o of outcomes) {
      const since = ctx.stoppedAt.get(key(o.target));
      if (o.ok && since !== undefined) report(ctx, o.target).downtimeMs = Math.round(performance.now() - since);
    }
    all.push(...outcomes);
    problems.push(...failures('start', outcomes));
    // the next group needs this one healthy
    if (problems.length > 0) break;
  }
  return { problems, ...hintOf(all) };
}

export async function start(ctx: RestoreContext): Promise<void> {
  const { problems, hint } = await startAll(ctx, ctx.targets, ctx.signal);
  if (problems.length > 0) throw new LockstepError('LOCKSTEP_E_RESTORE_FAILED', problems.join('\n  '), hint ? { hint } : {});
}
