/** Remove local snapshots on every node that took one; failures are logged, not fatal. */
import { fanout } from '../fanout.js';
import type { BackupContext } from './context.js';

export async function cleanup(ctx: BackupContext): Promise<void> {
  // not cancellable: an interrupted backup still cleans up after itself
  const outcomes = await fanout(
    ctx.cluster,
    'cleanup',
    ctx.snapshotted,
    (t) => ({ kind: 'cleanup', component: t.component, backupId: ctx.backupId }),
    AbortSignal.timeout(120_000),
  );
  for (const o of outcomes) {
    if (!o.ok) ctx.log.warn({ node: o.target.node, component: o.target.component, error: o.error }, 'snapshot cleanup failed');
  }
}
