/**
 * Jobs `swap`, `rollback` and `finish`. Swap moves the live data aside (never deletes
 * it) and renames the staged data into place; rollback puts the old data back;
 * finish removes the old data only once the restore has succeeded (in the background:
 * the report does not wait for the kernel to free it).
 */
import { rename, stat } from 'node:fs/promises';
import { removeTree } from '../../lib/tree.js';
import { LockstepError } from '../../lib/errors.js';
import type { JobRequestOf } from '../../lib/wire.js';
import type { AgentNode } from '../node.js';
import type { JobContext } from './runner.js';
import { recordSwapped } from '../transfer/restored.js';

const exists = (p: string) => stat(p).then(() => true, () => false);

function sets(node: AgentNode, component: string): string[] {
  const { config, plugin } = node.component(component);
  return Object.values(plugin.node.paths(config));
}

export async function swapJob(node: AgentNode, req: JobRequestOf<'swap'>, ctx: JobContext): Promise<{ old: string[] }> {
  const lives = sets(node, req.component);
  for (const live of lives) {
    if (!(await exists(node.stagingPath(live, req.restoreId)))) {
      throw new LockstepError('LOCKSTEP_E_NOT_STAGED', `nothing staged for restore ${req.restoreId} at ${node.stagingPath(live, req.restoreId)}`, { node: node.name });
    }
  }
  const old: string[] = [];
  ctx.progress({ phase: 'swapping' });
  // from now on the service may write the staged files (agent/transfer/restored.ts)
  await recordSwapped(node.restoredDir(req.component), req.restoreId).catch((err: unknown) =>
    ctx.log.warn({ component: req.component, err: String(err) }, 'swap time not recorded: the next backup reads every file'),
  );
  for (const live of lives) {
    const staging = node.stagingPath(live, req.restoreId);
    const aside = node.oldPath(live, req.restoreId);
    // recorded before each move; undone in reverse if the agent dies mid-way
    await ctx.addLeftover({ kind: 'path', path: staging });
    if (await exists(live)) {
      await ctx.addLeftover({ kind: 'undo-rename', from: live, to: aside });
      await rename(live, aside);
      old.push(aside);
    }
    await ctx.addLeftover({ kind: 'undo-rename', from: staging, to: live });
    await rename(staging, live);
  }
  return { old };
}

export async function rollbackJob(node: AgentNode, req: JobRequestOf<'rollback'>, ctx: JobContext): Promise<{ actions: string[] }> {
  const actions: string[] = [];
  ctx.progress({ phase: 'rolling back' });
  for (const live of sets(node, req.component)) {
    const aside = node.oldPath(live, req.restoreId);
    const staging = node.stagingPath(live, req.restoreId);
    if (await exists(aside)) {
      // the restored copy can be fetched again from the repository: it may go
      if (await exists(live)) {
        await removeTree(live);
        actions.push(`removed restored ${live}`);
      }
      await rename(aside, live);
      actions.push(`moved ${aside} back to ${live}`);
    }
    if (await exists(staging)) {
      await removeTree(staging);
      actions.push(`removed ${staging}`);
    }
  }
  return { actions };
}

export async function finishJob(node: AgentNode, req: JobRequestOf<'finish'>, ctx: JobContext): Promise<{ removed: string[]; kept: string[] }> {
  const out = { removed: [] as string[], kept: [] as string[] };
  ctx.progress({ phase: 'finishing' });
  for (const live of sets(node, req.component)) {
    const aside = node.oldPath(live, req.restoreId);
    if (!(await exists(aside))) continue;
    if (req.keepOld) out.kept.push(aside);
    else {
      // renamed at once to a name that marks it as garbage (a `.lockstep-old-` folder is a
      // restore's way back, never swept), then removed in the background
      const removing = node.removingPath(live, req.restoreId);
      await rename(aside, removing);
      node.removeLater(removing);
      out.removed.push(aside);
    }
  }
  return out;
}
