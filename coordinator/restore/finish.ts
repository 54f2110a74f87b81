/** After success only: remove the moved-aside data (the agents do it in the background), or keep it with --keep-old. */
import { fanout } from '../fanout.js';
import { report, type RestoreContext } from './context.js';

export async function finish(ctx: RestoreContext): Promise<void> {
  const outcomes = await fanout<{ removed: string[]; kept: string[] }>(
    ctx.cluster,
    'finish',
    ctx.targets,
    (t) => ({ kind: 'finish', component: t.component, restoreId: ctx.restoreId, keepOld: ctx.keepOld }),
    AbortSignal.timeout(600_000),
  );
  for (const o of outcomes) {
    const r = report(ctx, o.target);
    if (o.ok) {
      ctx.keptOld.push(...o.result.kept.map((p) => `${o.target.node}:${p}`));
      r.actions?.push(...o.result.removed.map((p) => `removing previous data ${p} (in the background)`), ...o.result.kept.map((p) => `kept previous data at ${p}`));
    } else {
      // the restore itself succeeded; the old copy simply stays
      r.actions?.push(`could not remove the previous data: ${o.error.message}`);
      ctx.log.warn({ node: o.target.node, component: o.target.component, error: o.error }, 'finish failed; old data kept');
    }
  }
}
