/**
 * Snapshot every selected component at once. Each plugin blocks writes (or stops its
 * service) only around snapshot creation; the copy to the repository comes later.
 */
import type { SnapshotResult } from '../../lib/wire.js';
import { fanout } from '../fanout.js';
import { componentReport, markFailed, type BackupContext } from './context.js';

export async function snapshot(ctx: BackupContext): Promise<void> {
  // a component whose freeze or point failed has nothing to snapshot
  const ready = ctx.selected.filter((t) => componentReport(ctx, t).status === 'ok');
  ctx.snapshotted = ready;
  const outcomes = await fanout<SnapshotResult>(
    ctx.cluster,
    'snapshot',
    ready,
    (t) => ({ kind: 'snapshot', component: t.component, backupId: ctx.backupId }),
    ctx.signal,
    ctx.progress,
  );
  for (const o of outcomes) {
    if (o.ok) componentReport(ctx, o.target).snapshot = o.result;
    else markFailed(ctx, o.target, `snapshot failed: ${o.error.message}`, o.error);
  }
}
