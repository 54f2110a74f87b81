/** Job `stage`: download a backup beside the live data, verified, while the service runs. */
import { mkdir, readlink, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { copyTree, lstatIfAny, removeTree, walkTree } from '../../lib/tree.js';
import { LockstepError } from '../../lib/errors.js';
import { isMountPoint } from '../../lib/mounts.js';
import type { JobRequestOf, StageResult } from '../../lib/wire.js';
import { stageIndex, type SetTarget } from '../transfer/stage.js';
import { dropKeptIndexes } from '../transfer/kept-index.js';
import { forgetRestored, recordStaged, untilSettled } from '../transfer/restored.js';
import type { AgentNode } from '../node.js';
import type { JobContext } from './runner.js';

/**
 * The staged files (verified) become this node's local source for the next restore,
 * hard-linked before the plugin turns them into a data dir (etcd's snapshot restore
 * leaves the staged snapshot out of it). Returns the finishing step, run after the plugin.
 */
async function keepStaged(staging: string, cache: string, signal: AbortSignal): Promise<() => Promise<void>> {
  const next = `${cache}.next`;
  await removeTree(next);
  await mkdir(dirname(cache), { recursive: true, mode: 0o700 });
  try {
    await copyTree(staging, next, 'hardlink', signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    // the state dir is on another filesystem than the data
    await removeTree(next);
    await copyTree(staging, next, 'copy', signal);
  }
  return async () => {
    // a staged file that goes live will be written by the engine: it is not kept
    const goLive: string[] = [];
    let left = 0;
    for await (const e of walkTree(next)) {
      if (e.type !== 'file') continue;
      const live = lstatIfAny(join(staging, e.rel));
      if (live?.ino === e.stat.ino && live.dev === e.stat.dev) goLive.push(e.abs);
      else left++;
    }
    if (left === 0) {
      // everything staged goes live (a directory): the kept snapshot stays as it was
      await removeTree(next);
      return;
    }
    for (const p of goLive) await rm(p);
    await removeTree(cache);
    await rename(next, cache);
  };
}

export async function stageJob(node: AgentNode, req: JobRequestOf<'stage'>, ctx: JobContext): Promise<StageResult> {
  const { config, plugin } = node.component(req.component);
  // before anything is read or written: a symbolic link would be swapped: the link moved
  // aside and the restored data put in its place, staged and left on the link's filesystem
  // instead of the one it points to. A mount point cannot be renamed: its restore stages
  // inside it (on its filesystem) and the swap moves its entries (agent/jobs/swap.ts)
  const inside = new Map<string, boolean>();
  for (const [set, live] of Object.entries(plugin.node.paths(config))) {
    const target = await readlink(live).catch(() => undefined);
    if (target !== undefined) {
      throw new LockstepError('LOCKSTEP_E_STAGE_FAILED', `${live} (the ${set} of component ${req.component}) is a symbolic link to ${target}: a restore would replace the link with the restored data, on the link's filesystem`, {
        node: node.name,
        hint: `point the component at ${resolve(dirname(live), target)}, where the data is`,
      });
    }
    inside.set(set, await isMountPoint(live));
  }
  const repo = await node.repositoryFor(req.repositoryId);
  // the restore's peak is its own: the indexes kept for the next backups make room (those read their copies)
  dropKeptIndexes();
  ctx.progress({ phase: 'reading index' });
  // the index part by part (see stageIndex); its head first, checked against the manifest's hash
  const parts = repo.indexParts(req.indexKey, req.indexSha256);
  const first = await parts.next();
  if (first.done) throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `file index ${req.indexKey} gave no entries`, { node: node.name });
  const index = first.value.head;
  if (index.component !== req.component) {
    throw new LockstepError('LOCKSTEP_E_STAGE_FAILED', `index ${req.indexKey} is for component ${index.component}, not ${req.component}`, { node: node.name });
  }
  const all = (async function* () {
    yield first.value;
    yield* parts;
  })();
  // what the whole index holds, for progress: the manifest says (progress only: no total when it cannot be read)
  const totals = await repo
    .readManifest(req.backupId)
    .then((m) => m.components.find((c) => c.indexKey === req.indexKey))
    .catch(() => undefined);
  const targets: Record<string, SetTarget> = {};
  for (const [set, live] of Object.entries(plugin.node.paths(config))) {
    const { staging } = node.restorePaths(live, req.restoreId, inside.get(set) === true);
    await ctx.addLeftover({ kind: 'path', path: staging });
    await removeTree(staging);
    const cache = plugin.keepLastSnapshot?.(config) ? join(node.lastSnapshotDir(req.component), set) : undefined;
    targets[set] = { live, staging, cache };
  }
  // staging trusts the hashes it takes of kept files: no backup may replace them meanwhile
  return node.withKept(req.component, async () => {
    const result = await stageIndex(repo, all, targets, ctx, totals);
    const notRestored = index.sets.filter((set) => !(set in targets));
    if (notRestored.length > 0) result.notes = [`captured but not restored: ${notRestored.join(', ')}`];
    const staged = Object.fromEntries(Object.entries(targets).map(([set, t]) => [set, t.staging]));
    if (plugin.node.afterStage) {
      // a later backup of the restored data shares most of its blocks with what was staged:
      // kept, the restore after it downloads little here. Only a plugin that rebuilds the
      // staged files (etcd) leaves any out of the data; otherwise they all go live
      const keeps: (() => Promise<void>)[] = [];
      for (const t of Object.values(targets)) if (t.cache) keeps.push(await keepStaged(t.staging, t.cache, ctx.signal));
      result.notes = [...(result.notes ?? []), ...(await plugin.node.afterStage(config, node.ctx(ctx.signal, ctx.log), staged, req.params ?? {}))];
      for (const finish of keeps) await finish();
      // the staged files were rebuilt: they are not the index's
      await forgetRestored(node.restoredDir(req.component)).catch(() => undefined);
      return result;
    }
    // they go live as staged: what they are is worth knowing to the backup after, once the
    // last of them has settled (before the service is stopped: no downtime)
    const lastChangeMs = await recordRestore(node, req, repo.id, staged, ctx);
    if (plugin.node.staged) {
      const kept = plugin.keepLastSnapshot?.(config) ? node.lastSnapshotDir(req.component) : undefined;
      await plugin.node
        .staged(config, node.ctx(ctx.signal, ctx.log), { restoreId: req.restoreId, backupId: req.backupId, staged, ...(kept ? { kept } : {}) })
        .catch((err: unknown) => ctx.log.warn({ component: req.component, err: String(err) }, 'the plugin could not note what was staged: its next snapshot compares every file'));
    }
    const wait = untilSettled(lastChangeMs);
    if (wait > 0) await sleep(wait, undefined, { signal: ctx.signal });
    return result;
  });
}

/**
 * The staged files' signatures, for the backup after this restore (agent/transfer/restored.ts);
 * the latest change time among them (-1: none recorded). Only ever a saving: a failure to
 * record is logged, not the restore's.
 */
async function recordRestore(node: AgentNode, req: JobRequestOf<'stage'>, repositoryId: string, staged: Record<string, string>, ctx: JobContext): Promise<number> {
  try {
    const from = { restoreId: req.restoreId, repositoryId, backupId: req.backupId, indexKey: req.indexKey, indexSha256: req.indexSha256 };
    const { files, lastChangeMs } = await recordStaged(node.restoredDir(req.component), from, staged);
    ctx.log.info({ component: req.component, files }, 'staged files recorded for the next backup');
    return lastChangeMs;
  } catch (err) {
    ctx.log.warn({ component: req.component, err: String(err) }, 'staged files not recorded: the next backup reads every file');
    return -1;
  }
}
