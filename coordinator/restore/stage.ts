/** Every agent downloads into a staging dir beside the live data, verified; nothing is stopped. */
import { LockstepError } from '../../lib/errors.js';
import type { StageResult } from '../../lib/wire.js';
import { fanout, hintOf, key } from '../fanout.js';
import { getPlugin } from '../../plugins/engines/registry.js';
import { report, type RestoreContext, type RestoreTarget } from './context.js';

export async function stage(ctx: RestoreContext): Promise<void> {
  // what each plugin's cluster half computes for its members (membership, a new cluster token …)
  const params = new Map<string, Record<string, string>>();
  for (const plugin of new Set(ctx.targets.map((t) => t.live.plugin))) {
    const members = ctx.targets.filter((t) => t.live.plugin === plugin).map((t) => ({ node: t.node, component: t.component, details: ctx.details.get(key(t)) ?? {} }));
    for (const [k, v] of getPlugin(plugin)?.cluster.restoreParams?.(members, ctx.restoreId) ?? []) params.set(k, v);
  }
  const outcomes = await fanout<StageResult, RestoreTarget>(
    ctx.cluster,
    'stage',
    ctx.targets,
    (t) => ({
      kind: 'stage',
      component: t.component,
      restoreId: ctx.restoreId,
      backupId: ctx.manifest.backupId,
      repositoryId: ctx.repo.id,
      indexKey: t.source.indexKey,
      indexSha256: t.source.indexSha256,
      ...(params.has(key(t)) ? { params: params.get(key(t)) } : {}),
      // an orphaned transfer in the way (its coordinator died) is stopped, not waited for
      ...(ctx.lockHeld ? { lockHeld: true } : {}),
    }),
    ctx.signal,
    ctx.progress,
  );
  const failed: string[] = [];
  for (const o of outcomes) {
    if (o.job?.tookOver) ctx.warnings.push(`${key(o.target)}: ${o.job.tookOver}`);
    const r = report(ctx, o.target);
    if (o.ok) {
      r.stage = o.result;
      r.actions?.push(...(o.result.notes ?? []));
      ctx.staged.push(o.target);
    } else {
      r.status = 'failed';
      r.error = o.error;
      r.reason = `staging failed: ${o.error.message}`;
      failed.push(`${o.target.node}/${o.target.component}: ${o.error.message}`);
    }
  }
  if (failed.length > 0) {
    // a missing object is a damaged repository too
    const corrupt = outcomes.find((o) => !o.ok && (o.error.code === 'LOCKSTEP_E_REPO_CORRUPT' || o.error.code === 'LOCKSTEP_E_OBJECT_NOT_FOUND'));
    throw new LockstepError(
      corrupt ? 'LOCKSTEP_E_REPO_CORRUPT' : 'LOCKSTEP_E_RESTORE_FAILED',
      `staging failed on ${failed.length} component(s); no service was stopped:\n  ${failed.join('\n  ')}`,
      hintOf(outcomes),
    );
  }
}
