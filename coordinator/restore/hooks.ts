/**
 * Each component's `beforeRestore` command (`when` 'before': everything staged, no service
 * stopped yet; one that fails stops the restore there, its staging removed), or its
 * `afterRestore` command (every restored component healthy; one that fails fails the
 * restore, which then rolls back): on its node, all at once.
 */
import { LockstepError } from '../../lib/errors.js';
import { formatArgv } from '../../lib/exec.js';
import type { HookResult } from '../../lib/wire.js';
import { fanout, hintOf, key } from '../fanout.js';
import { report, type RestoreContext } from './context.js';

export async function runHooks(ctx: RestoreContext, when: 'before' | 'after'): Promise<void> {
  const which = `${when}-restore hook`;
  const outcomes = await fanout<HookResult>(
    ctx.cluster,
    'hook',
    when === 'before' ? ctx.beforeHooks : ctx.targets,
    (t) => ({ kind: 'hook', component: t.component, restoreId: ctx.restoreId, backupId: ctx.manifest.backupId, when }),
    ctx.signal,
    ctx.progress,
  );
  const problems: string[] = [];
  for (const o of outcomes) {
    if (!o.ok) {
      problems.push(`${key(o.target)}: ${which} failed: ${o.error.message}`);
      continue;
    }
    if (!o.result.ran) continue;
    const out = o.result.output ? `; it printed: ${o.result.output.split('\n').join(' | ')}` : '';
    report(ctx, o.target).actions?.push(`${which} ${formatArgv(o.result.command ?? [])} ran in ${o.result.durationMs} ms${out}`);
  }
  if (problems.length === 0) return;
  // before any stop: the restore ends here, its staging removed
  const tail = when === 'before' ? '\n  no service was stopped; what was staged is removed' : '';
  throw new LockstepError('LOCKSTEP_E_RESTORE_FAILED', problems.join('\n  ') + tail, hintOf(outcomes));
}
