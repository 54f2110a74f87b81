/**
 * Jobs `swap`, `rollback` and `finish`. Swap moves the live data aside (never deletes
 * it) and renames the staged data into place; rollback puts the old data back;
 * finish removes the old data only once the restore has succeeded (in the background:
 * the report does not wait for the kernel to free it).
 *
 * A data directory that is a mount point cannot be renamed (the kernel answers EBUSY): its
 * restore stages inside it (AgentNode.restorePaths), and the swap moves its entries, one
 * rename each, the old ones into a folder inside it and the staged ones up into it; every
 * move is recorded before it is made and undone if the agent dies mid-way. A record written
 * last in that folder says the swap was whole: only then does a rollback take the entries
 * in the data directory for the restored ones (and what the service made since), moving
 * them out before it moves the old ones back.
 *
 * A rollback may be run again from wherever it stopped, with the same outcome: the agent's
 * next start runs one cut short by its death again (agent/jobs/journal.ts `again`), and a
 * coordinator runs one that failed once more.
 */
import { mkdir, readdir, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { failpoint } from '../../lib/failpoints.js';
import { applyMeta, exists, metaOf, removeTree, RESTORE_INSIDE, type Meta } from '../../lib/tree.js';
import { LockstepError } from '../../lib/errors.js';
import type { JobRequestOf } from '../../lib/wire.js';
import type { AgentNode, RestorePaths } from '../node.js';
import type { JobContext } from './runner.js';
import { recordSwapped } from '../transfer/restored.js';

/** in the old data's folder inside a mount point: the swap moved every entry (with the data directory's own metadata before it) */
const SWAPPED = '.lockstep-swapped.json';
/** and a rollback has moved the restored entries out: the old ones go back next */
const ROLLING_BACK = '.lockstep-rolling-back';
/** what of the old data's folder is the restore's own, not old data (the record half written too) */
const OWN_RECORDS = [SWAPPED, `${SWAPPED}.tmp`, ROLLING_BACK];

function sets(node: AgentNode, component: string): string[] {
  const { config, plugin } = node.component(component);
  return Object.values(plugin.node.paths(config));
}

/**
 * The entries of a data directory that is a mount point that a swap moves: not a restore's
 * own folders, nor the filesystem's `lost+found` (fsck's, made by mkfs with blocks of its
 * own: it stays where it is, and one in the backup is left out).
 */
async function dataEntries(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => !RESTORE_INSIDE.test(n) && n !== LOST_FOUND).sort();
}

const LOST_FOUND = 'lost+found';

export async function swapJob(node: AgentNode, req: JobRequestOf<'swap'>, ctx: JobContext): Promise<{ old: string[] }> {
  const lives: [string, RestorePaths][] = [];
  for (const live of sets(node, req.component)) {
    const paths = await node.stagedPaths(live, req.restoreId);
    if (!(await exists(paths.staging))) {
      throw new LockstepError('LOCKSTEP_E_NOT_STAGED', `nothing staged for restore ${req.restoreId} at ${paths.staging}`, { node: node.name });
    }
    lives.push([live, paths]);
  }
  const old: string[] = [];
  ctx.progress({ phase: 'swapping' });
  // from now on the service may write the staged files (agent/transfer/restored.ts)
  await recordSwapped(node.restoredDir(req.component), req.restoreId).catch((err: unknown) =>
    ctx.log.warn({ component: req.component, err: String(err) }, 'swap time not recorded: the next backup reads every file'),
  );
  for (const [live, { inside, staging, old: aside }] of lives) {
    if (inside) {
      await swapInside(live, staging, aside, ctx);
      old.push(aside);
      continue;
    }
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

/**
 * The swap inside a mount point: every entry of `live` into `aside`, every staged entry up
 * into `live`, the staged root's mode, owner and times onto `live`; then the record that
 * the swap is whole. Undone in reverse if the agent dies mid-way, the record first.
 */
async function swapInside(live: string, staging: string, aside: string, ctx: JobContext): Promise<void> {
  const before = metaOf(await stat(live));
  // (before its entries go: each move is a change of the folder)
  const staged = metaOf(await stat(staging));
  await mkdir(aside, { recursive: true, mode: 0o700 });
  for (const name of await dataEntries(live)) {
    await ctx.addLeftover({ kind: 'undo-rename', from: join(live, name), to: join(aside, name) });
    await rename(join(live, name), join(aside, name));
  }
  for (const name of await dataEntries(staging)) {
    await ctx.addLeftover({ kind: 'undo-rename', from: join(staging, name), to: join(live, name) });
    await rename(join(staging, name), join(live, name));
  }
  // the data directory as staged (a database may require its own mode, 0700 for PostgreSQL)
  await applyMeta(live, 'dir', staged);
  const record = join(aside, SWAPPED);
  await ctx.addLeftover({ kind: 'path', path: record });
  await writeFile(`${record}.tmp`, JSON.stringify({ before } satisfies { before: Meta }), { mode: 0o600 });
  await rename(`${record}.tmp`, record);
}

export async function rollbackJob(node: AgentNode, req: JobRequestOf<'rollback'>, ctx: JobContext): Promise<{ actions: string[] }> {
  const actions: string[] = [];
  // cut short by the agent's death, it is run again at its next start (every step below may be run again)
  await ctx.addLeftover({ kind: 'again', request: req });
  const hold = failpoint('rollback.hold');
  if (hold !== undefined) await sleep(hold);
  ctx.progress({ phase: 'rolling back' });
  for (const live of sets(node, req.component)) {
    const { inside, old: aside, staging } = await node.stagedPaths(live, req.restoreId);
    if (inside) {
      if (await exists(aside)) await rollBackInside(live, staging, aside, actions);
    } else if (await exists(aside)) {
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

/**
 * A rollback inside a mount point. After a whole swap: what the data directory holds (the
 * restored entries, and what the service made since) goes out, into the staging folder
 * that is removed after; only once all of it is out (`ROLLING_BACK` says so, for a rollback
 * run again) do the old entries go back. After a swap that was not whole (its moves were
 * undone): any old entry still aside goes back where its name is free. Nothing old is ever
 * removed; an old entry whose name is taken stays aside, named in the actions.
 */
async function rollBackInside(live: string, staging: string, aside: string, actions: string[]): Promise<void> {
  const swapped = await readSwapped(aside);
  if (swapped) {
    if (!(await exists(join(aside, ROLLING_BACK)))) {
      await mkdir(staging, { recursive: true, mode: 0o700 });
      const restored = await dataEntries(live);
      for (const name of restored) await rename(join(live, name), join(staging, name));
      await writeFile(join(aside, ROLLING_BACK), '');
      actions.push(`moved the ${restored.length} restored entries of ${live} out`);
    }
  }
  let back = 0;
  const left: string[] = [];
  for (const name of (await readdir(aside)).sort()) {
    if (OWN_RECORDS.includes(name)) continue;
    if (await exists(join(live, name))) {
      left.push(name);
      continue;
    }
    await rename(join(aside, name), join(live, name));
    back++;
  }
  if (swapped) await applyMeta(live, 'dir', swapped.before);
  actions.push(`moved ${back} entries of the old data from ${aside} back into ${live}`);
  if (left.length > 0) {
    actions.push(`left in ${aside}: ${left.join(', ')} (${live} holds entries of those names)`);
    return;
  }
  for (const name of OWN_RECORDS) await rm(join(aside, name), { force: true });
  await rmdir(aside);
}

export async function finishJob(node: AgentNode, req: JobRequestOf<'finish'>, ctx: JobContext): Promise<{ removed: string[]; kept: string[] }> {
  const out = { removed: [] as string[], kept: [] as string[] };
  ctx.progress({ phase: 'finishing' });
  for (const live of sets(node, req.component)) {
    const { inside, old: aside, removing, staging } = await node.stagedPaths(live, req.restoreId);
    // inside a mount point, the staging folder the swap emptied
    if (inside) await rm(staging, { recursive: true, force: true });
    if (!(await exists(aside))) continue;
    if (req.keepOld) {
      // kept as the old data alone, the data directory's own mode, owner and times on it: the
      // swap's record is of no use once the restore succeeded
      if (inside) await keptAsOld(aside);
      out.kept.push(aside);
    } else {
      // renamed at once to a name that marks it as garbage (a `.lockstep-old-` folder is a
      // restore's way back, never swept), then removed in the background
      await rename(aside, removing);
      node.removeLater(removing);
      out.removed.push(aside);
    }
  }
  return out;
}

/** the old data's folder inside a mount point, kept: the metadata the data directory had on it, the swap's record gone */
async function keptAsOld(aside: string): Promise<void> {
  const swapped = await readSwapped(aside);
  await rm(join(aside, SWAPPED), { force: true });
  if (swapped) await applyMeta(aside, 'dir', swapped.before);
}

/** the record that a swap inside a mount point was whole (undefined: it was not, or is gone) */
function readSwapped(aside: string): Promise<{ before: Meta } | undefined> {
  return readFile(join(aside, SWAPPED), 'utf8').then(
    (text) => JSON.parse(text) as { before: Meta },
    () => undefined,
  );
}
