/** Every agent downloads into a staging dir beside the live data, verified; nothing is stopped. */
import { LockstepError } from '../../lib/errors.js';
import type { StageResult } from '../../lib/wire.js';
import { fanout } from '../fanout.js';
import { report, type RestoreContext, type RestoreTarget } from './context.js';

export async function stage(ctx: RestoreContext): Promise<void> {
  const bySource = new Map(ctx.targets.map((t) => [`${t.node}/${t.component}`, t]));
  const outcomes = await fanout<StageResult>(
    ctx.cluster,
    'stage',
    ctx.targets,
    (t) => {
      const { source } = bySource.get(`${t.node}/${t.component}`)!;
      return {
        kind: 'stage',
        component: t.component,
        restoreId: ctx.restoreId,
        backupId: ctx.manifest.backupId,
        repositoryId: ctx.repo.id,
        indexKey: source.indexKey,
        indexSha256: source.indexSha256,
      };
    },
    ctx.signal,
    ctx.progress,
  );
  const failed: string[] = [];
  for (const o of outcomes) {
    const r = report(ctx, o.target);
    if (o.ok) {
      r.stage = o.result;
      r.actions?.push(...(o.result.notes ?? []));
      ctx.staged.push(o.target as RestoreTarget);
    } else {
      r.status = 'failed';
      r.error = o.error;
      r.reason = `staging failed: ${o.error.message}`;
      failed.push(`${o.target.node}/${o.target.component}: ${o.error.message}`);
    }
  }
  if (failed.length > 0) {
    const corrupt = outcomes.find((o) => !o.ok && o.error.code === 'LOCKSTEP_E_REPO_CORRUPT');
    throw new LockstepError(
      corrupt ? 'LOCKSTEP_E_REPO_CORRUPT' : 'LOCKSTEP_E_RESTORE_FAILED',
      `staging failed on ${failed.length} component(s); no service was stopped:\n  ${failed.join('\n  ')}`,
    );
  }
}
