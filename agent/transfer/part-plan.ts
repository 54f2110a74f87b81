/**
 * Which parts of the previous index an upload's index can store again as they are.
 *
 * An index is rewritten whole by every backup: ~22 MB of JSON for a node of 52k files,
 * made, compressed, hashed and stored, ~0.35 s of a 5 GiB incremental that changed 1% of
 * the data, and as many bytes in the repository per backup. Most of it is what the
 * previous index said: in an incremental, a part whose entries are all unchanged is the
 * previous index's part byte for byte, given that
 *   - its entries are the same rows in the same order (paths, types, metadata, `seen`),
 *     which a digest of what each entry says tells (`PartIdentity.digest`, kept for each
 *     part beside the agent's copy of the index, index-cache.ts);
 *   - every file in it took its content from the previous index (`Columns.isCopied`):
 *     then its refs are the ones that part holds;
 *   - its packs have the same numbers: the index numbers the previous index's packs as
 *     that one did before any new pack (`packs`).
 * Such a part is copied by the store (a hard link on a filesystem, CopyObject on S3) to
 * the new index's part key, under its own backup: nothing refers to another backup's
 * objects, so pruning or deleting that backup never touches this one. A part that
 * changed is made again from its first entry to where the previous index's next part
 * began (or further, while what it holds is under a quarter of a part: parts that shrank
 * are merged), so the parts stay lined up with the previous index's.
 *
 * The pack table only grows this way (a pack no entry names any more keeps its number);
 * when it is more than twice the packs the index names, the index is written afresh,
 * numbered anew, reusing nothing.
 */
import { createHash } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import type { ComponentIndex, IndexPart, PartPlan, ReusablePart } from '../../lib/repo/index-file.js';
import type { Columns } from './columns.js';
import type { Known } from './known.js';
import type { CacheKey } from './index-cache.js';

/** what is kept of each part of an index for the next one: where it begins and what its entries say */
export interface PartIdentity {
  /** the part's key */
  key: string;
  /** the path of its first entry */
  first: string;
  /** SHA-256 of its entries' identities (`Columns.identityInto`), in order */
  digest: string;
  /**
   * a run of parts that hold an entry in pieces (index version 7), this one first: they are
   * reused together or not at all, and `digest` is of all their entries
   */
  run?: IndexPart[];
}

const SCRATCH = 64 * 1024;

/** SHA-256 of rows [from, to)'s identities */
export function rowsDigest(rows: Columns, from: number, to: number, scratch = Buffer.allocUnsafe(SCRATCH)): string {
  const h = createHash('sha256');
  let at = 0;
  for (let r = from; r < to; r++) {
    const need = rows.identityBytes(r);
    if (at + need > scratch.length) {
      h.update(scratch.subarray(0, at));
      at = 0;
      if (need > scratch.length) scratch = Buffer.allocUnsafe(need);
    }
    at = rows.identityInto(r, scratch, at);
  }
  h.update(scratch.subarray(0, at));
  return h.digest('hex');
}

/** how many of the table's packs the files of `rows` name */
function packsNamed(rows: Columns, known: Known): number {
  const { table, lists } = known;
  const named = new Uint8Array(table.packCount);
  let count = 0;
  for (let r = 0; r < rows.length; r++) {
    if (rows.type(r) !== 'file') continue;
    const { first, count: blocks } = rows.blocksOf(r);
    for (let i = 0; i < blocks; i++) {
      const p = table.packOf(lists.at(first + i));
      if (p >= 0 && named[p] === 0) {
        named[p] = 1;
        count++;
      }
    }
  }
  return count;
}

/**
 * The plan of an upload's index (see the top): reuses the parts of `previous` (the head of
 * the index the upload deduped against, with `identities` of its parts) that still hold
 * what `rows` say, and keeps the identities of the parts written for the next upload.
 */
export class PartPlanner implements PartPlan {
  packs: readonly string[];
  /** the previous index's reusable candidates, by the path of their first entry */
  private readonly byFirst = new Map<string, ReusablePart & { digest: string }>();
  /** the paths the previous index's parts began at */
  private readonly starts = new Set<string>();
  private readonly scratch = Buffer.allocUnsafe(SCRATCH);
  /** the identity of the part `reusableAt` last gave */
  private lastDigest = '';
  private kept: PartIdentity[] = [];
  /** the parts of a run written so far (see `written`), and the entry it began at */
  private run: IndexPart[] = [];
  private runFrom = 0;
  reused = 0;
  /** why the index was written again reusing nothing, if it was */
  restarted: unknown;

  constructor(
    private readonly rows: Columns,
    known: Known,
    previous?: { head: ComponentIndex; identities: PartIdentity[] },
  ) {
    const parts = previous?.head.parts;
    const packs = previous?.head.packs;
    if (!previous || !parts || !packs || packs.length > 2 * packsNamed(rows, known) + 256) {
      this.packs = [];
      return;
    }
    this.packs = packs;
    const identity = new Map(previous.identities.map((p) => [p.key, p]));
    for (const [n, p] of parts.entries()) {
      const id = identity.get(p.key);
      if (!id) continue;
      if (!id.run) {
        if (!p.more) this.byFirst.set(id.first, { key: p.key, sha256: p.sha256, entries: p.entries, digest: id.digest });
        continue;
      }
      // a run: reused only as the head lists it, part for part
      const run = parts.slice(n, n + id.run.length);
      const same = run.length === id.run.length && run.every((q, k) => q.key === id.run![k]!.key && q.sha256 === id.run![k]!.sha256 && q.entries === id.run![k]!.entries && (q.more === true) === (k < run.length - 1));
      if (same) this.byFirst.set(id.first, { key: p.key, sha256: p.sha256, entries: run.reduce((a, q) => a + q.entries, 0), digest: id.digest, run });
    }
    for (const p of previous.identities) this.starts.add(p.first);
  }

  beginsPart(i: number): boolean {
    return i < this.rows.length && this.starts.has(this.rows.path(i));
  }

  reusableAt(i: number): ReusablePart | undefined {
    if (i >= this.rows.length || this.byFirst.size === 0) return undefined;
    const p = this.byFirst.get(this.rows.path(i));
    const end = i + (p?.entries ?? 0);
    if (!p || end > this.rows.length) return undefined;
    // (looked at once: the rows it begins at only move forward)
    this.byFirst.delete(this.rows.path(i));
    for (let r = i; r < end; r++) if (this.rows.type(r) === 'file' && !this.rows.isCopied(r)) return undefined;
    if (rowsDigest(this.rows, i, end, this.scratch) !== p.digest) return undefined;
    this.lastDigest = p.digest;
    return { key: p.key, sha256: p.sha256, entries: p.entries, ...(p.run ? { run: p.run } : {}) };
  }

  written(from: number, part: IndexPart, reused: boolean, shares = false): void {
    if (reused) this.reused++;
    if (!shares) {
      this.kept.push({ key: part.key, first: this.rows.path(from), digest: reused ? this.lastDigest : rowsDigest(this.rows, from, from + part.entries, this.scratch) });
      return;
    }
    // a run of parts that hold an entry in pieces: one identity once its last part came, for all of them
    if (this.run.length === 0) this.runFrom = from;
    this.run.push(part);
    if (part.more) return;
    const run = this.run;
    this.run = [];
    const to = from + part.entries;
    this.kept.push({ key: run[0]!.key, first: this.rows.path(this.runFrom), digest: reused ? this.lastDigest : rowsDigest(this.rows, this.runFrom, to, this.scratch), run });
  }

  restart(why: unknown): void {
    this.restarted = why ?? 'unknown';
    this.kept = [];
    this.run = [];
    this.reused = 0;
    // written afresh: nothing of the previous index's is reused or lined up with
    this.packs = [];
    this.byFirst.clear();
    this.starts.clear();
  }

  /** the identities of the parts written, for the next upload */
  identities(): PartIdentity[] {
    return this.kept;
  }
}

/** the identities file beside the agent's copy of an index (`cacheFile`) */
const identitiesFile = (cacheFile: string) => `${cacheFile}.parts.json`;

/** Keep `parts`, the identities of the parts of the index `key` names, beside its copy. */
export async function writePartIdentities(cacheFile: string, key: CacheKey, parts: PartIdentity[]): Promise<void> {
  const file = identitiesFile(cacheFile);
  await writeFile(`${file}.tmp`, JSON.stringify({ ...key, parts }), { mode: 0o600 });
  await rename(`${file}.tmp`, file);
}

/** The identities kept of the parts of the index `key` names; none when there are none for it (or they do not read back). */
export async function readPartIdentities(cacheFile: string, key: CacheKey): Promise<PartIdentity[]> {
  try {
    const doc = JSON.parse(await readFile(identitiesFile(cacheFile), 'utf8')) as Partial<CacheKey> & { parts?: unknown };
    if ((Object.keys(key) as (keyof CacheKey)[]).some((k) => doc[k] !== key[k]) || !Array.isArray(doc.parts)) return [];
    const part = (q: unknown) => {
      const x = q as IndexPart;
      return typeof x?.key === 'string' && typeof x.sha256 === 'string' && Number.isInteger(x.entries) && (x.more === undefined || x.more === true);
    };
    const ok = (p: unknown): p is PartIdentity => {
      const x = p as PartIdentity;
      return typeof x?.key === 'string' && typeof x.first === 'string' && typeof x.digest === 'string' && /^[0-9a-f]{64}$/.test(x.digest) && (x.run === undefined || (Array.isArray(x.run) && x.run.length > 0 && x.run.every(part)));
    };
    return doc.parts.every(ok) ? doc.parts : [];
  } catch {
    return [];
  }
}
