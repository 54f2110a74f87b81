/** Each agent uploads its snapshots straight to the repository, all in parallel. */
import type { UploadResult } from '../../lib/wire.js';
import { fanout } from '../fanout.js';
import { componentReport, markFailed, type BackupContext } from './context.js';

export async function upload(ctx: BackupContext): Promise<void> {
  const ready = ctx.selected.filter((t) => componentReport(ctx, t).status === 'ok');
  const outcomes = await fanout<UploadResult>(
    ctx.cluster,
    'upload',
    ready,
    (t) => ({ kind: 'upload', component: t.component, backupId: ctx.backupId, repositoryId: ctx.repo.id, shard: componentReport(ctx, t).shard }),
    ctx.signal,
    ctx.progress,
  );
  for (const o of outcomes) {
    if (o.ok) componentReport(ctx, o.target).upload = o.result;
    else markFailed(ctx, o.target, `upload failed: ${o.error.message}`, o.error);
  }
}
