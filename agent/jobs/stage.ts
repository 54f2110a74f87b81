/** Job `stage`: download a backup beside the live data, verified, while the service runs. */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { LockstepError } from '../../lib/errors.js';
import type { JobRequestOf, StageResult } from '../../lib/wire.js';
import { stageIndex, type SetTarget } from '../transfer/stage.js';
import type { AgentNode } from '../node.js';
import type { JobContext } from './runner.js';

export async function stageJob(node: AgentNode, req: JobRequestOf<'stage'>, ctx: JobContext): Promise<StageResult> {
  const { config, plugin } = node.component(req.component);
  const repo = await node.repositoryFor(req.repositoryId);
  ctx.progress({ phase: 'reading index' });
  const index = await repo.readIndex(req.indexKey, req.indexSha256);
  if (index.component !== req.component) {
    throw new LockstepError('LOCKSTEP_E_STAGE_FAILED', `index ${req.indexKey} is for component ${index.component}, not ${req.component}`, { node: node.name });
  }
  const targets: Record<string, SetTarget> = {};
  for (const [set, live] of Object.entries(plugin.node.paths(config))) {
    const staging = node.stagingPath(live, req.restoreId);
    await ctx.addLeftover({ kind: 'path', path: staging });
    await rm(staging, { recursive: true, force: true });
    const cache = plugin.keepLastSnapshot ? join(node.lastSnapshotDir(req.component), set) : undefined;
    targets[set] = { live, staging, cache };
  }
  const result = await stageIndex(repo, index, targets, ctx);
  const notRestored = index.sets.filter((set) => !(set in targets));
  if (notRestored.length > 0) result.notes = [`captured but not restored: ${notRestored.join(', ')}`];
  if (plugin.node.afterStage) {
    const staged = Object.fromEntries(Object.entries(targets).map(([set, t]) => [set, t.staging]));
    result.notes = [...(result.notes ?? []), ...(await plugin.node.afterStage(config, node.ctx(ctx.signal, ctx.log), staged, req.params ?? {}))];
  }
  return result;
}
