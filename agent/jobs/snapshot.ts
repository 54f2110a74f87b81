/** Jobs `snapshot` (the plugin produces the files into a snapshot dir) and `cleanup`. */
import { lstat, mkdir, rename, rmdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { snapshotSets } from './sets.js';
import { removeTree, treeSize } from '../../lib/tree.js';
import type { JobRequestOf, SnapshotResult } from '../../lib/wire.js';
import type { AgentNode } from '../node.js';
import { snapshotCleanedUp } from '../transfer/upload.js';
import { lastSwap } from '../transfer/restored.js';
import type { JobContext } from './runner.js';

export async function snapshotJob(node: AgentNode, req: JobRequestOf<'snapshot'>, ctx: JobContext): Promise<SnapshotResult> {
  const { config, plugin } = node.component(req.component);
  const dir = node.snapshotDir(req.backupId, req.component);
  const t0 = performance.now();
  await ctx.addLeftover({ kind: 'path', path: dir });
  await removeTree(dir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  ctx.progress({ phase: 'snapshot' });
  const restart = { kind: 'restart-service', component: req.component } as const;
  const last = node.lastSnapshotDir(req.component);
  // the plugin may take the kept snapshot over: not while a restore stages from it
  const outcome = await node.withKept(req.component, async () => {
    const kept = plugin.keepLastSnapshot?.(config) && (await stat(last).then((s) => s.isDirectory(), () => false));
    const restored = kept ? await lastSwap(node.restoredDir(req.component)) : undefined;
    return plugin.node.snapshot(config, node.ctx(ctx.signal, ctx.log), {
      backupId: req.backupId,
      into: dir,
      previous: kept ? last : undefined,
      ...(restored ? { restored } : {}),
      serviceStopped: async (stopped) => {
        if (stopped) await ctx.addLeftover(restart);
        else await ctx.dropLeftover(restart);
      },
    });
  });
  // a set that is the live data read in place (a symlink) is counted by the upload that reads it, not walked twice
  let size: { files: number; bytes: number } | undefined = { files: 0, bytes: 0 };
  for (const set of await snapshotSets(dir)) {
    if ((await lstat(join(dir, set))).isSymbolicLink()) {
      size = undefined;
      break;
    }
    const s = await treeSize(join(dir, set));
    size.files += s.files;
    size.bytes += s.bytes;
  }
  return { files: size?.files, bytes: size?.bytes, downtimeMs: outcome.downtimeMs, snapshotMs: Math.round(performance.now() - t0), copiedBytes: outcome.copiedBytes, ...(outcome.comparedBytes !== undefined ? { comparedBytes: outcome.comparedBytes } : {}), configFiles: outcome.configFiles };
}

export async function cleanupJob(node: AgentNode, req: JobRequestOf<'cleanup'>): Promise<{ removed: string }> {
  try {
    return await removeSnapshot(node, req);
  } finally {
    // the backup's last step on the component: what its upload left for after it may start
    snapshotCleanedUp(req.component);
  }
}

async function removeSnapshot(node: AgentNode, req: JobRequestOf<'cleanup'>): Promise<{ removed: string }> {
  const { config, plugin } = node.component(req.component);
  const dir = node.snapshotDir(req.backupId, req.component);
  if (plugin.keepLastSnapshot?.(config) && (await stat(dir).then((s) => s.isDirectory(), () => false))) {
    // the newest snapshot replaces the kept one (a local source for the next restore)
    const last = node.lastSnapshotDir(req.component);
    await node.withKept(req.component, async () => {
      await removeTree(last);
      await mkdir(dirname(last), { recursive: true, mode: 0o700 });
      await rename(dir, last);
    });
  }
  await removeTree(dir);
  // the backup's folder goes with its last component (others may still be in it)
  await rmdir(dirname(dir)).catch(() => undefined);
  return { removed: dir };
}
