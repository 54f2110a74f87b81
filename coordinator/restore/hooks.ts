/**
 * After every restored component is healthy: each component's `afterRestore` command, on
 * its node, all at once. One that fails fails the restore, which then rolls back.
 */
import { LockstepError } from '../../lib/errors.js';
import { formatArgv } from '../../lib/exec.js';
import type { HookResult } from '../../lib/wire.js';
import { fanout, hintOf, key } from '../fanout.js';
import { report, type RestoreContext } from './context.js';

export async function runHooks(ctx: RestoreContext): Promise<void> {
  const outcomes = await fanout<HookResult>(
    ctx.cluster,
    'hook',
    ctx.targets,
    (t) => ({ kind: 'hook', component: t.component, restoreId: ctx.restoreId, backupId: ctx.manifest.backupId }),
    ctx.signal,
    ctx.progress,
  );
  const problems: string[] = [];
  for (const o of outcomes) {
    if (!o.ok) {
      problems.push(`${key(o.target)}: after-restore hook failed: ${o.error.message}`);
      continue;
    }
    if (!o.result.ran) continue;
    const out = o.result.output ? `; it printed: ${o.result.output.split('\n').join(' | ')}` : '';
    report(ctx, o.target).actions?.push(`after-restore hook ${formatArgv(o.result.command ?? [])} ran in ${o.result.durationMs} ms${out}`);
  }
  if (problems.length > 0) throw new LockstepError('LOCKSTEP_E_RESTORE_FAILED', problems.join('\n  '), hintOf(outcomes));
}
