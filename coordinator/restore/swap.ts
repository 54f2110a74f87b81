/** Swap: live data moved aside (never deleted), staged data renamed into place. */
import { LockstepError } from '../../lib/errors.js';
import { fanout, hintOf, key } from '../fanout.js';
import { report, type RestoreContext, type RestoreTarget } from './context.js';

export async function swap(ctx: RestoreContext): Promise<void> {
  ctx.swapBegun = true;
  const outcomes = await fanout<{ old: string[] }, RestoreTarget>(
    ctx.cluster,
    'swap',
    ctx.targets,
    (t) => ({ kind: 'swap', component: t.component, restoreId: ctx.restoreId }),
    // a swap is a few renames: once begun it is not cancelled half-way
    AbortSignal.timeout(120_000),
    ctx.progress,
  );
  const problems: string[] = [];
  for (const o of outcomes) {
    if (o.ok) {
      ctx.swapped.push(o.target);
      report(ctx, o.target).actions?.push(...o.result.old.map((p) => `previous data moved aside to ${p}`));
    } else problems.push(`${key(o.target)}: swap failed: ${o.error.message}`);
  }
  if (problems.length > 0) throw new LockstepError('LOCKSTEP_E_RESTORE_FAILED', problems.join('\n  '), hintOf(outcomes));
}
