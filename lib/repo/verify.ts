/**
 * `lockstep backup verify`: every object a backup references exists (and packs are
 * long enough for their blobs); with read-data, blobs are read back, decrypted,
 * decompressed and hashed. Every problem names the backup, node, component, file and
 * chunk, and the object in the repository.
 */
import { createHash, randomBytes } from 'node:crypto';
import { forEachLimit } from '../../agent/transfer/pool.js';
import { refSha, type ChunkRef, type IndexEntry, type PackRef } from './index-file.js';
import type { ManifestComponent } from './manifest.js';
import { isNotFound, type Repository } from './repository.js';
import { LockstepError } from '../errors.js';
import { BlobCheckPool } from './blob-check-pool.js';
import { verdictsOf, type CheckResult } from './blob-check.js';
import { packKey } from './layout.js';
import { ListingUnordered, listedSizes } from './listed-sizes.js';

const CONCURRENCY = 16;
/** components whose indexes are read at once (the one taken in and those after it) */
const INDEXES_AHEAD = 4;
/** the most of one pack read at once when reading its blobs back */
const EXTENT_MAX = 8 * 1024 * 1024;

/** Whether a blob is in a PERCENT sample: by a hash of the seed and the blob, so a seed always picks the same blobs. */
function sampled(seed: string, sha: string, percent: number): boolean {
  if (percent >= 100) return true;
  return createHash('sha256').update(seed).update(sha).digest().readUInt32BE(0) < (percent / 100) * 2 ** 32;
}

/**
 * The indexes of a backup's components, part by part, in the manifest's order; the heads
 * and first parts of the next `ahead - 1` components are read while one is taken in. One
 * after another, a backup of a hundred nodes cost a few hundred round trips to a distant
 * store in turn (a head, then each part) before a single object was checked. Taken in in
 * order, so which file is the first to use an object (what a problem names) does not
 * depend on which read came back first. Each component read ahead holds at most two of
 * its parts (one parsed, the next on its way). Every component is taken in, failed or not,
 * so none is left read ahead.
 */
class IndexesAhead {
  private readonly started = new Map<number, { parts: AsyncGenerator<{ entries: IndexEntry[] }>; first: Promise<IteratorResult<{ entries: IndexEntry[] }>> }>();

  constructor(
    private readonly repo: Repository,
    private readonly components: readonly ManifestComponent[],
    private readonly ahead: number,
  ) {}

  /** component `k`'s entries, part by part; its failure (a missing or damaged index) is its own */
  async *of(k: number): AsyncGenerator<IndexEntry[]> {
    for (let j = k; j < Math.min(k + this.ahead, this.components.length); j++) this.start(j);
    const { parts, first } = this.started.get(k)!;
    this.started.delete(k);
    for (let r = await first; !r.done; r = await parts.next()) yield r.value.entries;
  }

  private start(k: number): void {
    if (this.started.has(k)) return;
    const c = this.components[k]!;
    const parts = this.repo.indexParts(c.indexKey, c.indexSha256);
    const first = parts.next();
    // awaited when its component's turn comes; not an unhandled rejection before that
    first.catch(() => undefined);
    this.started.set(k, { parts, first });
  }
}

/** a file of the backup, as problems name it: one object a file, shared by its references */
interface FileUse {
  node: string;
  component: string;
  file: string;
}

/**
 * The objects a backup references, numbered densely, in columns: for each, its name (a
 * pack's id, or a chunk object's hash: the strings the index parts share), the first file
 * that uses it, how many references it has, the furthest byte any blob needs (packs), and
 * the hash of the first blob referenced (which problems name). ~230 bytes an object where
 * a map of key strings to objects holding their first reference took ~490: 200,000 packs
 * of one file each, 97 MB of heap after the indexes were read, 47 with these columns.
 */
class Referenced {
  n = 0;
  /** object number by name: packs', chunk objects' */
  private readonly packs = new Map<string, number>();
  private readonly chunks = new Map<string, number>();
  readonly names: string[] = [];
  chunk = new Uint8Array(1024);
  first = new Uint32Array(1024);
  count = new Uint32Array(1024);
  end = new Float64Array(1024);
  private readonly sha = new Hashes();

  /** the object `ref` is in, counted once more; `use` gives the file's record (made only for a first use) */
  add(ref: ChunkRef, use: () => number): number {
    const name = typeof ref === 'string' ? ref : ref.pack;
    const numbers = typeof ref === 'string' ? this.chunks : this.packs;
    let i = numbers.get(name);
    if (i === undefined) {
      if (this.n === this.first.length) this.grow();
      i = this.n++;
      numbers.set(name, i);
      this.names.push(name);
      this.chunk[i] = typeof ref === 'string' ? 1 : 0;
      this.first[i] = use();
      this.sha.set(i, refSha(ref));
    }
    this.count[i]!++;
    if (typeof ref !== 'string') this.end[i] = Math.max(this.end[i]!, ref.offset + ref.length);
    return i;
  }

  isChunk(i: number): boolean {
    return this.chunk[i] === 1;
  }

  /** the hash of the first blob referenced in object `i` (a chunk object's own) */
  shaOf(i: number): string {
    return this.sha.hex(i);
  }

  /** object `i`'s key in `repo` */
  keyOf(repo: Repository, i: number): string {
    return this.isChunk(i) ? repo.chunkObjectKey(this.names[i]!) : packKey(this.names[i]!);
  }

  private grow(): void {
    this.chunk = grown(this.chunk);
    this.first = grown(this.first);
    this.count = grown(this.count);
    this.end = grown(this.end);
  }
}

/** SHA-256 hashes by number, 32 bytes each, in one buffer that grows */
class Hashes {
  private buf = Buffer.alloc(1024 * 32);

  set(i: number, hex: string): void {
    if ((i + 1) * 32 > this.buf.length) {
      const more = Buffer.alloc(Math.max(this.buf.length * 2, (i + 1) * 32));
      this.buf.copy(more);
      this.buf = more;
    }
    this.buf.write(hex, i * 32, 'hex');
  }

  hex(i: number): string {
    return this.buf.toString('hex', i * 32, i * 32 + 32);
  }
}

/** a column twice as long, its values kept */
function grown<T extends Uint8Array | Uint32Array | Float64Array>(a: T): T {
  const b = new (a.constructor as new (n: number) => T)(a.length * 2);
  b.set(a);
  return b;
}

/**
 * The sampled references to blobs in packs, in columns: ~52 bytes a reference, where an
 * object, a key string and a map entry each took ~300 (and their grouping by pack copied
 * each pack's list once per blob). Verifying all of a 7.6 GiB backup's 217k blobs: 406 →
 * 343 MB peak (most of the rest is the stretches in flight), 23.3 → 15.1 s. A blob
 * referenced by several files is here once for each.
 */
class PackedSample {
  n = 0;
  pack = new Uint32Array(1024);
  offset = new Float64Array(1024);
  length = new Uint32Array(1024);
  use = new Uint32Array(1024);
  private readonly sha = new Hashes();

  add(pack: number, ref: PackRef, use: number): void {
    if (this.n === this.pack.length) this.grow();
    const i = this.n++;
    this.pack[i] = pack;
    this.offset[i] = ref.offset;
    this.length[i] = ref.length;
    this.use[i] = use;
    this.sha.set(i, ref.sha256);
  }

  private grow(): void {
    this.pack = grown(this.pack);
    this.offset = grown(this.offset);
    this.length = grown(this.length);
    this.use = grown(this.use);
  }

  shaOf(i: number): string {
    return this.sha.hex(i);
  }

  /**
   * The references grouped by pack (a counting sort: packs are numbered densely), each
   * pack's by offset, then by file: a blob's references follow each other, its first
   * file first. `starts[p]` is where pack `p`'s references begin in `order`.
   */
  byPack(packs: number): { order: Uint32Array; starts: Uint32Array } {
    const starts = new Uint32Array(packs + 1);
    for (let i = 0; i < this.n; i++) starts[this.pack[i]! + 1]!++;
    for (let p = 0; p < packs; p++) starts[p + 1]! += starts[p]!;
    const order = new Uint32Array(this.n);
    const next = starts.slice(0, packs);
    for (let i = 0; i < this.n; i++) order[next[this.pack[i]!]!++] = i;
    const offset = this.offset;
    const use = this.use;
    for (let p = 0; p < packs; p++) order.subarray(starts[p], starts[p + 1]).sort((a, b) => offset[a]! - offset[b]! || use[a]! - use[b]!);
    return { order, starts };
  }
}

/**
 * Stretches of one pack read with one ranged request: `order[from..to)` are references to
 * its blobs, by offset, the stretch at most `EXTENT_MAX` long.
 */
function extents(sample: PackedSample, order: Uint32Array, starts: Uint32Array, skip: (pack: number) => boolean): { pack: number; from: number; to: number }[] {
  const out: { pack: number; from: number; to: number }[] = [];
  for (let p = 0; p + 1 < starts.length; p++) {
    if (skip(p)) continue;
    for (let from = starts[p]!; from < starts[p + 1]!; ) {
      const first = sample.offset[order[from]!]!;
      let to = from + 1;
      while (to < starts[p + 1]! && sample.offset[order[to]!]! + sample.length[order[to]!]! - first <= EXTENT_MAX) to++;
      out.push({ pack: p, from, to });
      from = to;
    }
  }
  return out;
}

export interface VerifyProblem {
  kind: 'missing' | 'corrupt' | 'truncated' | 'index';
  node: string;
  component: string;
  /** the first file that needs it (and how many more do) */
  file?: string;
  alsoIn?: number;
  chunk?: string;
  object: string;
  message: string;
}

export interface VerifyReport {
  kind: 'verify';
  backupId: string;
  status: 'ok' | 'damaged';
  readDataPercent: number;
  /** picks the sample of --read-data below 100%: the same seed reads the same blobs */
  seed?: string;
  components: number;
  files: number;
  objectsChecked: number;
  blobsRead: number;
  bytesRead: number;
  problems: VerifyProblem[];
  durationMs: number;
  /** the key of the record of this check kept in the repository (checks.ts) */
  recordedAs?: string;
  /** why no record was kept (--no-record, a repository this host may only read, the backup gone) */
  notRecorded?: string;
}

/**
 * Every object's size, given to `checked` (-1: missing): from the store's listing where it
 * lists sizes (a thousand a request, not a HEAD per object; where the listing can start
 * anywhere, only around the objects referenced: listed-sizes.ts), else a HEAD each. Their
 * keys are made here, for the listing only, and dropped when it returns.
 */
async function sizeEach(repo: Repository, objects: Referenced, checked: (i: number, key: string, size: number) => void, signal: AbortSignal | undefined): Promise<void> {
  const listSized = repo.driver.listSized?.bind(repo.driver);
  const listPage = repo.driver.listPage?.bind(repo.driver);
  if (listSized || listPage) {
    const byPrefix = new Map<string, number[]>();
    const keys: string[] = [];
    for (let i = 0; i < objects.n; i++) {
      const key = objects.keyOf(repo, i);
      keys.push(key);
      const prefix = key.slice(0, key.indexOf('/') + 1);
      const those = byPrefix.get(prefix);
      if (those) those.push(i);
      else byPrefix.set(prefix, [i]);
    }
    for (const [prefix, those] of byPrefix) {
      // in key order (keys are unique)
      those.sort((x, y) => (keys[x]! < keys[y]! ? -1 : 1));
      if (listPage) {
        try {
          const { sizes } = await listedSizes(listPage, prefix, those.map((i) => keys[i]!), signal);
          those.forEach((i, k) => checked(i, keys[i]!, sizes[k]!));
          continue;
        } catch (err) {
          if (!(err instanceof ListingUnordered) || !listSized) throw err;
          // a store that does not list in key order: all of it, as below
        }
      }
      const sizes = new Map<string, number>();
      const wanted = new Set(those.map((i) => keys[i]!));
      for await (const { key, size } of listSized!(prefix)) {
        signal?.throwIfAborted();
        if (wanted.has(key)) sizes.set(key, size);
      }
      for (const i of those) checked(i, keys[i]!, sizes.get(keys[i]!) ?? -1);
    }
  } else {
    await forEachLimit(
      Array.from({ length: objects.n }, (_, i) => i),
      CONCURRENCY,
      async (i) => {
        const key = objects.keyOf(repo, i);
        checked(i, key, (await repo.driver.head(key))?.size ?? -1);
      },
      signal,
    );
  }
}

export async function verifyBackup(repo: Repository, backupId: string, opts: { readDataPercent?: number; seed?: string; signal?: AbortSignal } = {}): Promise<VerifyReport> {
  const t0 = performance.now();
  const percent = Math.max(0, Math.min(100, opts.readDataPercent ?? 0));
  const m = await repo.readManifest(backupId);
  const report: VerifyReport = {
    kind: 'verify',
    backupId,
    status: 'ok',
    readDataPercent: percent,
    ...(percent > 0 && percent < 100 ? { seed: opts.seed ?? randomBytes(8).toString('hex') } : {}),
    components: m.components.length,
    files: 0,
    objectsChecked: 0,
    blobsRead: 0,
    bytesRead: 0,
    problems: [],
    durationMs: 0,
  };
  const seed = report.seed ?? '';
  /**
   * Every object referenced (`objects`, numbered; the first file that uses each, how many
   * references it has, the furthest byte any blob needs). Not every reference: a backup of
   * many nodes of hundreds of GiB has hundreds of millions. Indexes are read part by part.
   * The blobs to read back (the sample only) are in `sample`, by object number.
   */
  const objects = new Referenced();
  const uses: FileUse[] = [];
  const sample = new PackedSample();
  const indexes = new IndexesAhead(repo, m.components, INDEXES_AHEAD);
  for (const [k, c] of m.components.entries()) {
    try {
      for await (const entries of indexes.of(k)) {
        for (const e of entries) {
          if (e.type !== 'file') continue;
          report.files++;
          // the file's record, made only once something needs it (a quick verify of many
          // small unchanged files holds one per object, not one per file)
          let use = -1;
          const useOf = () => (use >= 0 ? use : (use = uses.push({ node: c.node, component: c.component, file: e.path }) - 1));
          for (const ref of e.chunks) {
            const i = objects.add(ref, useOf);
            if (typeof ref !== 'string' && percent > 0 && sampled(seed, ref.sha256, percent)) sample.add(i, ref, useOf());
          }
        }
      }
    } catch (err) {
      const kind = isNotFound(err) ? 'missing' : 'index';
      report.problems.push({ kind, node: c.node, component: c.component, object: c.indexKey, message: err instanceof Error ? err.message : String(err) });
    }
  }

  const problem = (kind: VerifyProblem['kind'], object: string, u: FileUse, chunk: string, count: number, message: string) => {
    report.problems.push({
      kind,
      node: u.node,
      component: u.component,
      file: u.file,
      alsoIn: count > 1 ? count - 1 : undefined,
      chunk,
      object,
      message,
    });
  };

  /** objects found missing, by number */
  const missing = new Uint8Array(objects.n);
  /** object `i`, of key `key`, is `size` bytes long (-1: missing) */
  const checked = (i: number, key: string, size: number) => {
    report.objectsChecked++;
    const first = uses[objects.first[i]!]!;
    const count = objects.count[i]!;
    if (size < 0) {
      missing[i] = 1;
      problem('missing', key, first, objects.shaOf(i), count, `${key} is missing: file ${first.file} on ${first.node} cannot be restored`);
    } else if (size < objects.end[i]!) {
      problem('truncated', key, first, objects.shaOf(i), count, `${key} is ${size} bytes, its blobs need ${objects.end[i]!}`);
    }
  };
  await sizeEach(repo, objects, checked, opts.signal);

  /** every sampled blob read back, decoded and checked against its hash */
  async function readBack(pool: BlobCheckPool | undefined): Promise<void> {
    /** a blob that did not read back: named with its first file and how many more need it */
    const failed = (ref: ChunkRef, u: FileUse, count: number, err: unknown) => {
      const kind = isNotFound(err) ? 'missing' : 'corrupt';
      problem(kind, repo.objectKeyOf(ref), u, refSha(ref), count, `file ${u.file} on ${u.node}: ${err instanceof Error ? err.message : String(err)}`);
    };
    /** read one blob back alone */
    const readOne = async (ref: ChunkRef, u: FileUse, count: number) => {
      try {
        const data = await repo.getBlob(ref, opts.signal);
        report.blobsRead++;
        report.bytesRead += data.length;
      } catch (err) {
        failed(ref, u, count, err);
      }
    };
    // chunk objects one by one (each is one blob)
    const chunks: number[] = [];
    for (let i = 0; i < objects.n; i++) if (objects.isChunk(i) && missing[i] === 0 && sampled(seed, objects.names[i]!, percent)) chunks.push(i);
    await forEachLimit(chunks, CONCURRENCY, (i) => readOne(objects.names[i]!, uses[objects.first[i]!]!, objects.count[i]!), opts.signal);
    // blobs of a pack by stretches of it, each blob checked on its own
    const { order, starts } = sample.byPack(objects.n);
    const stretches = extents(sample, order, starts, (p) => missing[p] === 1);
    await forEachLimit(
      stretches,
      CONCURRENCY,
      async ({ pack, from, to }) => {
        // the stretch's blobs, each once: its first reference, and how many it has
        const blobs: { ref: PackRef; u: FileUse; count: number }[] = [];
        for (let k = from; k < to; k++) {
          const i = order[k]!;
          const last = blobs.at(-1);
          if (last && last.ref.offset === sample.offset[i]) last.count++;
          else blobs.push({ ref: { pack: objects.names[pack]!, offset: sample.offset[i]!, length: sample.length[i]!, sha256: sample.shaOf(i) }, u: uses[sample.use[i]!]!, count: 1 });
        }
        const start = blobs[0]!.ref.offset;
        const end = Math.max(...blobs.map((b) => b.ref.offset + b.ref.length));
        let extent: Buffer;
        try {
          extent = await repo.getPackExtent(objects.names[pack]!, start, end, opts.signal);
        } catch {
          // the stretch cannot be read whole: each blob alone says what is wrong with it
          for (const b of blobs) await readOne(b.ref, b.u, b.count);
          return;
        }
        const refs = blobs.map((b) => b.ref);
        let verdicts: CheckResult[];
        try {
          verdicts = pool ? await pool.check(extent, start, refs, repo.location) : await verdictsOf(repo.codec, refs, extent, start, repo.location);
        } catch {
          // no worker could check it (the stretch went to one that died): read each blob again here
          for (const b of blobs) await readOne(b.ref, b.u, b.count);
          return;
        }
        blobs.forEach((b, k) => {
          const v = verdicts[k]!;
          if ('error' in v) return failed(b.ref, b.u, b.count, LockstepError.fromInfo(v.error));
          report.blobsRead++;
          report.bytesRead += v.length;
        });
      },
      opts.signal,
    );
  }
  if (percent > 0) {
    // blobs of packs decoded and checked on worker threads where there are any (blob-check-pool.ts); chunk objects here
    const pool = BlobCheckPool.open(repo.codec);
    try {
      await readBack(pool);
    } finally {
      await pool?.close();
    }
  }
  // what a prune or delete running meanwhile removed is not damage: the backup went with it
  if (report.problems.some((p) => p.kind === 'missing') && !(await repo.hasManifest(backupId))) {
    throw new LockstepError('LOCKSTEP_E_BACKUP_NOT_FOUND', `backup ${backupId} was removed from ${repo.location} (pruned or deleted) while it was being checked: what it missed went with it`, {
      hint: 'lockstep backup list shows what there is; check another backup, or run checks when no prune runs',
    });
  }
  report.status = report.problems.length > 0 ? 'damaged' : 'ok';
  report.durationMs = Math.round(performance.now() - t0);
  return report;
}
