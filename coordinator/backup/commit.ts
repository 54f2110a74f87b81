/**
 * The commit point: coverage decides the status, and only a backup that is complete
 * or partial gets a manifest, written last and create-if-absent.
 */
import { LockstepError } from '../../lib/errors.js';
import type { Manifest } from '../../lib/repo/manifest.js';
import type { BackupReport, BackupStatus } from '../../lib/report.js';
import type { Target } from '../fanout.js';
import { assess } from './coverage.js';
import { componentReport, type BackupContext } from './context.js';

export function decideStatus(ctx: BackupContext): BackupStatus {
  const done: Target[] = ctx.selected.filter((t) => componentReport(ctx, t).status === 'ok' && componentReport(ctx, t).upload);
  assess(ctx, done);
  if (done.length === 0) return 'failed';
  return ctx.shards.every((s) => s.covered) ? 'complete' : 'partial';
}

export async function commit(ctx: BackupContext, report: BackupReport): Promise<void> {
  if (report.status === 'failed') {
    throw new LockstepError('LOCKSTEP_E_NOTHING_BACKED_UP', 'no component was backed up; no manifest was written', {
      hint: 'the report names the reason for every component',
    });
  }
  const components = ctx.selected
    .map((t) => componentReport(ctx, t))
    .filter((c) => c.status === 'ok' && c.upload)
    .map((c) => ({
      node: c.node,
      component: c.component,
      plugin: c.plugin,
      shard: c.shard,
      indexKey: c.upload!.indexKey,
      indexSha256: c.upload!.indexSha256,
      files: c.upload!.files,
      bytes: c.upload!.bytes,
    }));
  const manifest: Manifest = {
    version: 1,
    backupId: ctx.backupId,
    name: ctx.name,
    cluster: ctx.cluster.config.cluster,
    repositoryId: ctx.repo.id,
    status: report.status as 'complete' | 'partial',
    startedAt: ctx.startedAt,
    committedAt: new Date().toISOString(),
    topology: ctx.topology,
    components,
    report,
  };
  await ctx.repo.commitManifest(manifest);
}
