/** Job `upload`: the snapshot dir goes straight into the repository. */
import { stat } from 'node:fs/promises';
import { snapshotSets } from './sets.js';
import { LockstepError } from '../../lib/errors.js';
import type { JobRequestOf, UploadResult } from '../../lib/wire.js';
import { uploadSnapshot } from '../transfer/upload.js';
import type { AgentNode } from '../node.js';
import type { JobContext } from './runner.js';

export async function uploadJob(node: AgentNode, req: JobRequestOf<'upload'>, ctx: JobContext): Promise<UploadResult> {
  const { config, plugin } = node.component(req.component);
  const dir = node.snapshotDir(req.backupId, req.component);
  if (!(await stat(dir).then((s) => s.isDirectory(), () => false))) {
    throw new LockstepError('LOCKSTEP_E_SNAPSHOT_MISSING', `no snapshot of ${req.component} for backup ${req.backupId} on ${node.name}`, {
      node: node.name,
      hint: 'the agent may have restarted since the snapshot; run the backup again',
    });
  }
  const repo = await node.repositoryFor(req.repositoryId);
  // every set the snapshot produced (restorable data, and files captured for the record)
  const sets = await snapshotSets(dir);
  const linked = plugin.linksLiveFiles?.(config) ?? false;
  const cutSets = plugin.cutSets?.(config);
  const cacheFile = node.indexCacheFile(repo.id, req.component);
  const stale = await node.dropOtherIndexCopies(repo.id, req.component);
  if (stale.length > 0) ctx.log.info({ component: req.component, removed: stale }, 'local index copies made for another repository removed');
  const keepIndexBytes = node.config.keepIndexMiB * 1024 * 1024;
  return uploadSnapshot(repo, dir, sets, { backupId: req.backupId, node: node.name, component: req.component, plugin: config.plugin, shard: req.shard, linked, ...(cutSets ? { cutSets: [...cutSets] } : {}), cacheFile, keepIndexBytes, restoredDir: node.restoredDir(req.component) }, ctx);
}
