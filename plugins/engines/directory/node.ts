/**
 * The `directory` plugin's node half: a component that is a data directory, with
 * optional stop/start/health commands. Snapshot = pre-copy while the service runs →
 * stop (if configured) → copy what changed since (or copy / hard-link everything) →
 * start and wait for health; the time the service was down is measured. This is the "stop, dump, start" cron script, done right: the service is
 * always started again, even when the copy fails or the agent is killed mid-way.
 */
import { readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LockstepError, toErrorInfo } from '../../../lib/errors.js';
import { runCommand } from '../../../lib/exec.js';
import { copyTree, RACY_MS, seenEntries, syncTree, treeSize, type Changed, type CopyStats, type Seen } from '../../../lib/tree.js';
import { writeChanges } from '../../../lib/changes.js';
import { readHeaded, writeHeaded } from '../../../lib/lines.js';
import type { Health, ServiceResult } from '../../../lib/wire.js';
import type { ComponentBase, EngineNode, NodeContext, SnapshotTarget } from '../types.js';
import { waitUntilHealthy } from '../health.js';
import type { DirectorySettings } from './settings.js';

type Comp = ComponentBase & DirectorySettings;

async function runHealthOnce(comp: Comp, ctx: NodeContext, timeoutMs: number): Promise<Health> {
  if (!comp.health) return { ok: true, message: 'no health command configured' };
  try {
    await runCommand(comp.health, { timeoutMs, signal: ctx.signal, what: `health command of component ${comp.name}`, node: ctx.node });
    return { ok: true, message: 'health command passed' };
  } catch (err) {
    return { ok: false, message: toErrorInfo(err).message };
  }
}

/** Poll the health command until it passes or the deadline ends. */
async function waitHealthy(comp: Comp, ctx: NodeContext): Promise<void> {
  if (!comp.health) return;
  await waitUntilHealthy(`component ${comp.name}`, comp.healthTimeoutMs, ctx, (left) => runHealthOnce(comp, ctx, Math.max(1000, Math.min(10_000, left))), {
    hint: 'check the service log; raise healthTimeoutMs if it only starts slowly',
  });
}

async function stop(comp: Comp, ctx: NodeContext): Promise<ServiceResult> {
  if (!comp.stop) return { ran: false, durationMs: 0 };
  const r = await runCommand(comp.stop, { timeoutMs: comp.stopTimeoutMs, signal: ctx.signal, what: `stop command of component ${comp.name}`, node: ctx.node });
  return { ran: true, durationMs: r.durationMs };
}

async function start(comp: Comp, ctx: NodeContext): Promise<ServiceResult> {
  const t0 = performance.now();
  if (comp.start) {
    await runCommand(comp.start, { timeoutMs: comp.startTimeoutMs, signal: ctx.signal, what: `start command of component ${comp.name}`, node: ctx.node });
  }
  await waitHealthy(comp, ctx);
  return { ran: comp.start !== undefined, durationMs: Math.round(performance.now() - t0) };
}

/** A context whose deadline is its own: starting a service again is never cancelled. */
function uncancellable(comp: Comp, ctx: NodeContext): NodeContext {
  return { ...ctx, signal: AbortSignal.timeout(comp.startTimeoutMs + comp.healthTimeoutMs + 10_000) };
}

/** After a failed or cancelled stop the service may be half-down: make sure it runs. */
async function ensureRunning(comp: Comp, parent: NodeContext): Promise<void> {
  const ctx = uncancellable(comp, parent);
  const h = await runHealthOnce(comp, ctx, 10_000);
  if (comp.health && h.ok) return;
  try {
    await start(comp, ctx);
  } catch (err) {
    ctx.log.error({ component: comp.name, err: toErrorInfo(err) }, 'start after failed stop failed');
  }
}

const SEEN_FILE = 'seen.json';

/** what a snapshot's copy saw of the live tree, and the backup it was made for */
interface SeenFile {
  backupId: string;
  seen: [string, Seen][];
}

/**
 * Move the kept snapshot's copy into `into` and load what it saw into `seen`. Undefined
 * (and the kept snapshot dropped) when it is not whole: no record of what it saw, or no
 * copy. `backupId`: the backup the copy was made for (unknown for a record from before
 * it was kept).
 */
async function takeOver(previous: string, into: string, seen: Map<string, Seen>, restored?: SnapshotTarget['restored']): Promise<{ backupId?: string; restored?: number } | undefined> {
  try {
    const doc = JSON.parse(await readFile(join(previous, SEEN_FILE), 'utf8')) as SeenFile | [string, Seen][];
    await rename(join(previous, 'data'), join(into, 'data'));
    for (const [rel, s] of Array.isArray(doc) ? doc : doc.seen) seen.set(rel, s);
    const backupId = Array.isArray(doc) ? undefined : doc.backupId;
    return { backupId, restored: backupId && restored ? await seenRestored(previous, backupId, restored, seen) : undefined };
  } catch {
    return undefined;
  } finally {
    await rm(previous, { recursive: true, force: true });
  }
}

/**
 * Beside the kept copy: what a restore of the very backup the copy was made for staged (the
 * same content, verified), as a sync would see it, and when each entry last changed. The
 * live data is that staged data once the swap put it in place.
 */
const RESTORED_FILE = 'restored.json';

/** its lines (lib/lines.ts): which restore of which backup, then each entry and when it last changed */
interface RestoredHead {
  restoreId: string;
  backupId: string;
}
type RestoredEntry = [rel: string, seen: Seen, changedAt: number];

/**
 * The restored entries become what the copy saw of them, when the restore is the one whose
 * swap `restored` tells of and the copy is of the backup it restored: a live entry still as
 * the restore left it then needs no copy and no comparison. Not one that changed within
 * `RACY_MS` of the swap: a write by the service in the same clock tick might not show.
 * Returns how many entries it took.
 */
async function seenRestored(previous: string, backupId: string, restored: NonNullable<SnapshotTarget['restored']>, seen: Map<string, Seen>): Promise<number> {
  const same = (head: unknown) => {
    const h = head as Partial<RestoredHead> | null;
    return h?.restoreId === restored.restoreId && h.backupId === backupId;
  };
  let taken = 0;
  for await (const line of readHeaded(join(previous, RESTORED_FILE), same)) {
    if (!isRestoredEntry(line) || line[2] >= restored.swappedAt - RACY_MS) continue;
    // racy when staging looked at it, settled by the time of the swap
    seen.set(line[0], { ...line[1], racy: false });
    taken++;
  }
  return taken;
}

const isRestoredEntry = (e: unknown): e is RestoredEntry =>
  Array.isArray(e) && typeof e[0] === 'string' && typeof e[1] === 'object' && e[1] !== null && typeof (e[1] as Seen).sig === 'string' && typeof (e[1] as Seen).type === 'string' && Number.isFinite(e[2]);

export const directoryNode = {
  paths(comp) {
    return { data: comp.path };
  },

  async describe(comp, ctx, { sizes }) {
    const exists = await stat(comp.path).then((st) => st.isDirectory(), () => false);
    const size = !sizes ? undefined : exists ? await treeSize(comp.path) : { files: 0, bytes: 0 };
    const health = await runHealthOnce(comp, ctx, 10_000);
    return {
      tier: comp.tier,
      role: comp.role ?? 'standalone',
      shard: comp.shard ?? `${ctx.node}/${comp.name}`,
      paths: { data: comp.path },
      configFiles: comp.configFiles ?? [],
      ...(size ? { sizeBytes: size.bytes, files: size.files } : {}),
      health: exists ? health : { ok: false, message: `data directory ${comp.path} does not exist or is not a directory` },
    };
  },

  async health(comp, ctx) {
    if (!(await stat(comp.path).then((st) => st.isDirectory(), () => false))) {
      return { ok: false, message: `data directory ${comp.path} does not exist or is not a directory` };
    }
    return runHealthOnce(comp, ctx, 10_000);
  },

  async snapshot(comp, ctx, { backupId, into, previous, restored, serviceStopped }) {
    const copy = join(into, 'data');
    // the bulk of the copy while the service still runs; only what changes after it is copied while it is down
    const seen = comp.stop && comp.snapshotMode === 'copy' && comp.precopy ? new Map<string, Seen>() : undefined;
    let copiedBytes = 0;
    let comparedBytes = 0;
    // what bringing the kept copy up to date changed in it: the upload reads only that
    let changed: Changed | undefined;
    let basedOn: string | undefined;
    if (seen) {
      const t = performance.now();
      // the copy kept from the last backup, with what it saw, is brought up to date instead of copied again
      const kept = previous ? await takeOver(previous, into, seen, restored) : undefined;
      basedOn = kept?.backupId;
      if (kept?.restored) ctx.log.info({ component: comp.name, entries: kept.restored }, 'entries restored from the backup of the kept copy and untouched since are not compared again');
      if (basedOn) changed = new Map();
      const pre: CopyStats & { compared?: number } = await (kept ? syncTree(comp.path, copy, seen, ctx.signal, true, changed) : copyTree(comp.path, copy, 'copy', ctx.signal, seen)).catch((err: unknown) => {
        throw new LockstepError('LOCKSTEP_E_SNAPSHOT_FAILED', `pre-copying ${comp.path} (the service still running) failed: ${toErrorInfo(err).message}`, { node: ctx.node, cause: err });
      });
      copiedBytes += pre.bytes;
      comparedBytes += pre.compared ?? 0;
      ctx.log.info({ component: comp.name, files: pre.files, bytes: pre.bytes, fromKeptCopy: kept !== undefined, ms: Math.round(performance.now() - t) }, 'pre-copy done');
    }
    const t0 = performance.now();
    if (comp.stop) {
      await serviceStopped(true);
      try {
        await stop(comp, ctx);
      } catch (err) {
        await ensureRunning(comp, ctx);
        await serviceStopped(false);
        throw err;
      }
    }
    let copyError: unknown;
    try {
      if (seen) {
        const since = await syncTree(comp.path, copy, seen, ctx.signal, false, changed);
        copiedBytes += since.bytes;
        comparedBytes += since.compared;
        ctx.log.info({ component: comp.name, files: since.files, bytes: since.bytes, removed: since.removed }, 'copied what changed since the pre-copy');
      } else if (comp.stop) copiedBytes += (await copyTree(comp.path, copy, comp.snapshotMode, ctx.signal)).bytes;
      // nothing to stop: a copy would be no more consistent than reading in place, only slower
      else await symlink(comp.path, copy);
    } catch (err) {
      copyError = err;
    }
    if (comp.stop) {
      // always start again, whatever happened to the copy
      // a cancelled job still starts the service again
      await start(comp, uncancellable(comp, ctx));
      await serviceStopped(false);
    }
    if (copyError) {
      throw new LockstepError('LOCKSTEP_E_SNAPSHOT_FAILED', `copying ${comp.path} failed: ${toErrorInfo(copyError).message}`, {
        node: ctx.node,
        cause: copyError,
      });
    }
    // beside the set, not in it: what the copy saw, for the next snapshot if this one is kept
    if (seen) await writeFile(join(into, SEEN_FILE), JSON.stringify({ backupId, seen: [...seen] } satisfies SeenFile), { mode: 0o600 });
    if (changed && basedOn) await writeChanges(into, basedOn, { data: changed });
    const copies = comp.stop !== undefined && comp.snapshotMode === 'copy';
    return {
      downtimeMs: comp.stop ? Math.round(performance.now() - t0) : 0,
      copiedBytes: copies ? copiedBytes : undefined,
      ...(copies && comparedBytes > 0 ? { comparedBytes } : {}),
      configFiles: comp.configFiles ?? [],
    };
  },

  async staged(comp, ctx, { restoreId, backupId, staged, kept }) {
    const data = staged.data;
    if (!kept || !data) return;
    await rm(join(kept, RESTORED_FILE), { force: true });
    // only a copy of the backup restored holds what was staged
    const doc = await readFile(join(kept, SEEN_FILE), 'utf8').then((t) => JSON.parse(t) as Partial<SeenFile>, () => undefined);
    if (doc?.backupId !== backupId) return;
    const lines = async function* (): AsyncGenerator<RestoredEntry> {
      for await (const e of seenEntries(data, ctx.signal)) yield [e.rel, e.seen, e.changedAt];
    };
    const entries = await writeHeaded(join(kept, RESTORED_FILE), { restoreId, backupId } satisfies RestoredHead, lines());
    ctx.log.info({ component: comp.name, entries }, 'staged entries noted beside the kept copy for the next snapshot');
  },

  stop,
  start,
} satisfies EngineNode<Comp>;
