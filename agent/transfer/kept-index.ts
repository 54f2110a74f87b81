/**
 * The newest index an upload wrote of a component, kept in memory for the component's next
 * upload, which then neither reads nor checks the agent's copy of it (index-cache.ts): ~0.2 s
 * of the agent's one thread at the start of a 5 GiB node's incremental (34k files, 135k
 * blocks), ~8% of it.
 *
 * It is read back from that copy, by the same code as a copy is read, once the upload's work
 * after it returned has written the copy (after its backup's last step: nothing waits for
 * it). So what the next upload dedups against is exactly what the copy would have given it:
 * the blobs the index names, not every blob the upload knew of (a blob only an older backup
 * named may be pruned). The next upload takes it only when the component's newest backup in
 * the repository is that index (repository, node, component, backup and index hash: the
 * copy's own check), and whatever it takes is its own (it adds to it as it uploads).
 *
 * It costs memory while the agent is idle (~19 MiB at 5 GiB: ~90 bytes a block, ~200 a
 * file), so the agent keeps at most `keepIndexMiB` (agent config) of them; a component whose
 * index is larger is read from the copy as before. A restore lets go of them all first.
 */
import { collect } from '../../lib/memory.js';
import { readIndexCache, type CacheKey } from './index-cache.js';
import { Known, OldFiles } from './known.js';

interface Kept {
  key: CacheKey;
  known: Known;
  files: OldFiles;
  bytes: number;
}

/** by node and component */
const kept = new Map<string, Kept>();
/** by node and component: how many uploads started (an upload's work after it keeps nothing once the next one started) */
const turns = new Map<string, number>();

const slot = (node: string, component: string) => `${node}/${component}`;

/**
 * whether the index kept in `s` is the one `key` names. Looked at here, not where it may be
 * let go: a frame that held it would keep it alive through the collection that follows.
 */
function keptFor(s: string, key: Partial<CacheKey>): boolean {
  const k = kept.get(s);
  return k !== undefined && (Object.keys(key) as (keyof CacheKey)[]).every((f) => k.key[f] === key[f]);
}

/** about what a kept index of `blocks` blocks and `files` files holds (Known: ref table and runs; OldFiles: columns, paths and the Map by path) */
export function keptBytes(blocks: number, files: number): number {
  return blocks * 90 + files * 200;
}

/**
 * An upload of `node`'s `component` into repository `repositoryId` starts: its turn. A kept
 * index of another repository is let go now, before the upload walks its files.
 */
export function uploadStarts(repositoryId: string, node: string, component: string): number {
  const s = slot(node, component);
  const turn = (turns.get(s) ?? 0) + 1;
  turns.set(s, turn);
  if (kept.has(s) && !keptFor(s, { repositoryId })) dropKeptIndex(node, component);
  return turn;
}

/**
 * The index kept for `key`'s component, taken (it is not kept any more), when it is the index
 * `key` names; one kept of another index is let go (and its memory collected) before the
 * caller reads another.
 */
export function takeKeptIndex(key: CacheKey): { known: Known; files: OldFiles } | undefined {
  const s = slot(key.node, key.component);
  if (!kept.has(s)) return undefined;
  if (!keptFor(s, key)) {
    dropKeptIndex(key.node, key.component);
    return undefined;
  }
  const { known, files } = kept.get(s)!;
  kept.delete(s);
  return { known, files };
}

/**
 * Upload `turn` of `key`'s component wrote `file`, the copy of index `key` (`blocks` blocks,
 * `files` files): read it back and keep it, unless it would take the kept indexes past
 * `budget` bytes, or a later upload of the component started meanwhile. Reading it costs what
 * the next upload no longer spends; a copy that does not read back is not kept (the next
 * upload reads the repository, as it would). Why it was not kept, when it was not for want
 * of room (for the agent's log: `keepIndexMiB` may be too small for the node).
 */
export async function keepIndex(file: string, key: CacheKey, blocks: number, files: number, turn: number, budget: number): Promise<{ kept: boolean; why?: string }> {
  const s = slot(key.node, key.component);
  const bytes = keptBytes(blocks, files);
  let others = 0;
  for (const [k, v] of kept) if (k !== s) others += v.bytes;
  if (turns.get(s) !== turn || budget <= 0) return { kept: false };
  if (others + bytes > budget) {
    const mib = (n: number) => (n / (1024 * 1024)).toFixed(1);
    return { kept: false, why: `about ${mib(bytes)} MiB${others > 0 ? ` with ${mib(others)} MiB kept for other components` : ''}: more than keepIndexMiB (${mib(budget)})` };
  }
  const known = Known.about(blocks);
  const old = new OldFiles();
  const read = await readIndexCache(file, key, known, old);
  if (!read.ok || turns.get(s) !== turn) return { kept: false, why: read.ok ? undefined : read.why };
  kept.set(s, { key, known, files: old, bytes });
  return { kept: true };
}

/** let go of the index kept for `node`'s `component`, if it is still there (its upload found no previous backup to take it for) */
export function dropKeptIndex(node: string, component: string): void {
  if (kept.delete(slot(node, component))) collect();
}

/** let go of every kept index (a restore is about to need the memory) */
export function dropKeptIndexes(): void {
  if (kept.size === 0) return;
  kept.clear();
  collect();
}

/** the kept indexes: how many and about how many bytes (for tests and logs) */
export function keptIndexes(): { count: number; bytes: number } {
  let bytes = 0;
  for (const v of kept.values()) bytes += v.bytes;
  return { count: kept.size, bytes };
}
