/**
 * Upload a snapshot straight from the agent into the repository.
 *
 * - A file is cut into fixed-size blocks whose size grows with the file (32 KiB up to
 *   1 MiB, at most about 16k blocks a file), so a page rewritten in place costs one
 *   small block, not a 4 MiB chunk. A file keeps its block size from one backup to the
 *   next, so its unchanged blocks line up and dedup.
 * - Blocks are stored in packs, in file order: each file fills packs of its own
 *   (~2 MiB, read back with one ranged request at restore); what is left at the end of
 *   a file, and small files, go into shared ~4 MiB packs. S3 never gets one tiny
 *   object per block or file. Blobs dedup against the component's previous backup and
 *   against what a killed run already packed (pending records), which is how an
 *   interrupted backup resumes without sending its completed data again.
 * - Files too big for 16k blocks of 1 MiB are cut into chunk objects of the
 *   repository's chunk size (4 MiB unless set at init), stored once across the whole
 *   repository. A repository made with a chunk size of 1 MiB or less stores more files
 *   that way: dedup across nodes for them, at the price of coarser incrementals.
 * - A file whose size, mtime, inode and ctime equal the previous backup's entry is not read again.
 *   Of a file that is, a block whose fingerprint (lib/repo/fingerprint.ts) and length are
 *   those of the same block last time is not hashed or stored again.
 *   When the snapshot records what it changed in the copy that backup read (`changes.json`,
 *   see lib/changes.ts), a file it did not touch is not read either, and of a patched file
 *   only the blocks a patched range falls in are read.
 * - Memory is bounded and reused: reads, packs under construction and packs in flight
 *   come from fixed pools of buffers, so the agent neither grows with the data nor
 *   churns garbage buffers.
 * The file index is written last, after every object it references is stored.
 */
import { lstatSync, readdirSync, type Stats as FileStats } from 'node:fs';
import { readlink } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { LockstepError } from '../../lib/errors.js';
import { closeFd, openFd, readOnce, SmallReads } from '../../lib/fd.js';
import { alignedBuffers } from '../../lib/aligned.js';
import { compressSync } from 'lz4-napi';
import type { Repository } from '../../lib/repo/repository.js';
import { INDEX_VERSION, entryJsonAbout, hashesBlocks, type ComponentIndex, type EntryToWrite, type IndexToWrite, type PendingRecord } from '../../lib/repo/index-file.js';
import { RefTable, contentHashOf } from '../../lib/repo/ref-table.js';
import { FP, type Fingerprinter } from '../../lib/repo/fingerprint.js';
import { cutAverageFor, encodeCuts, forEachCut } from '../../lib/repo/cuts.js';
import { indexKey, packKey, pendingBackupOf, pendingPrefix } from '../../lib/repo/layout.js';
import { holdsComponent, type Manifest, type ManifestComponent } from '../../lib/repo/manifest.js';
import { metaOf, prefixOf, RACY_MS, walkEach, type Ranges, type TreeEntry, type TreeVisitor } from '../../lib/tree.js';
import { readChanges, type SnapshotChanges } from '../../lib/changes.js';
import { applyRestored, forgetRestored } from './restored.js';
import type { UploadResult } from '../../lib/wire.js';
import type { JobContext } from '../jobs/runner.js';
import { forEachLimit, forEachTaken } from './pool.js';
import { deleteKeys } from '../../lib/repo/delete-keys.js';
import { listKeys } from '../../plugins/storage/types.js';
import { Known, OldFiles, type CutBlocks, type Content, type OldFile } from './known.js';
import { Columns } from './columns.js';
import { PartPlanner, readPartIdentities, writePartIdentities, type PartIdentity } from './part-plan.js';
import { readIndexCache, writeIndexCache, type CacheKey } from './index-cache.js';
import { dropKeptIndex, keepIndex, takeKeptIndex, uploadStarts } from './kept-index.js';
import { collect, collectIfGrown } from '../../lib/memory.js';
import { keepShape, keepShapeOnce } from '../../lib/shapes.js';
import { Stop } from '../../lib/stop.js';

const MiB = 1024 * 1024;
const FILE_CONCURRENCY = 8;
/** chunk-object bytes held at once (plain and stored forms), for files cut into chunk objects */
const MAX_IN_FLIGHT = 32 * MiB;
const MIN_BLOCK = 32 * 1024;
const MAX_PACKED_BLOCK = MiB;
const BLOCKS_PER_FILE = 16384;
/**
 * a file's own pack is stored once it holds this much. 2 MiB, not 4: the run buffers
 * were the largest part of an agent's peak (a 5 GiB backup peaked at 148-151 MiB with
 * 4 MiB runs, 140-141 with 2 MiB, in the same time); S3 sees twice the objects for big
 * files, still ~500 a GiB.
 */
const RUN_SIZE = 2 * MiB;
/** what is left of a file's pack at its end goes into the shared pack when smaller than this */
const MERGE_MAX = MiB;
/** the stored form of a blob is at most this much larger than its plain form (header, IV, tag) */
const BLOB_OVERHEAD = 64;
const READ_SIZE = MiB;
/**
 * Files read at once (each holds a read buffer while it is read; the other workers go on
 * with files that need no read) and run buffers (one per big file being read, plus some in
 * flight). 6 and 3, not 8 and 4: one 5 GiB node, full backup plus two incrementals, runs
 * alternated: incrementals peaked at 131–137 MiB (median 133.5, ten) against 142–146
 * (median 144.5, six) and took 1.43–1.95 s against 1.56–2.08 (fewer fresh buffers a job);
 * full backups 137–153 MiB (median 140) against 147–152, but ~10% slower (12.1–13.4 s,
 * one run 17.2, against 11.8–12.3; still ~1.8× tar). 3 run buffers with 8 read ones
 * peaked like 8 and 4 (142–145): the read buffers are what counts.
 */
const READ_BUFFERS = 6;
const RUN_BUFFERS = 3;
const PACK_BUFFERS = 2;

/**
 * The block size for a file of `size` bytes: the smallest power of two from 32 KiB that
 * keeps it under ~16k blocks, up to 1 MiB; beyond that, and never more than, the
 * repository's chunk size (blocks of the chunk size are chunk objects). `previous` is
 * the block size the file had in the last backup: kept unless it is far from the
 * ideal, so unchanged blocks still line up.
 */
export function blockSizeFor(size: number, chunkSize: number, previous?: number): number {
  let ideal = MIN_BLOCK;
  while (ideal < size / BLOCKS_PER_FILE && ideal < MAX_PACKED_BLOCK) ideal *= 2;
  if (size / BLOCKS_PER_FILE > MAX_PACKED_BLOCK) ideal = chunkSize;
  ideal = Math.min(ideal, chunkSize);
  const usable = previous !== undefined && (previous === chunkSize || (previous >= MIN_BLOCK && previous <= Math.min(MAX_PACKED_BLOCK, chunkSize)));
  return usable && previous * 4 >= ideal && previous <= ideal * 4 ? previous : ideal;
}

/** about how many blocks a file of `size` bytes is cut into */
function blocksAbout(size: number, config: { chunkSize: number; packThreshold: number }): number {
  if (size < config.packThreshold) return size > 0 ? 1 : 0;
  return Math.ceil(size / blockSizeFor(size, config.chunkSize));
}

/**
 * Fixed-size buffers, reused; `acquire` waits while all are out. Buffers files are read
 * into are page-aligned (`aligned`: reads into them are several times faster, lib/aligned.ts),
 * and so are pack buffers (an fs repository writes a pack with O_DIRECT straight from its
 * buffer). Run buffers are plain: a new mapping cannot reuse memory the allocator already
 * holds (after a restore an agent holds ~30 MiB it freed). Aligned pack buffers once raised
 * the backup after a restore by about that much; measured again when packs went O_DIRECT,
 * that backup peaked at 143–145 MiB on a 5 GiB node in three runs (plain ones: 140–144 in
 * earlier sessions' runs): not more than the noise shows.
 */
class BufferPool {
  private readonly free: Buffer[] = [];
  /** buffers made but never handed out yet */
  private spare: Buffer[] = [];
  private made = 0;
  private readonly waiting: { give: (b: Buffer) => void; fail: (err: unknown) => void }[] = [];

  constructor(
    readonly size: number,
    private readonly max: number,
    private readonly aligned = false,
  ) {}

  acquire(stop: Stop): Promise<Buffer> {
    stop.check();
    const b = this.free.pop();
    if (b) return Promise.resolve(b);
    if (this.made < this.max) {
      // not `held` (lib/memory.ts): the full collections this growth sets off keep the file
      // phase's garbage lower (5 GiB incrementals peaked at 139–143 MiB with it, 137–142 without)
      if (this.aligned && this.spare.length === 0) this.spare = alignedBuffers(this.size, this.max - this.made);
      this.made++;
      return Promise.resolve(this.aligned ? this.spare.pop()! : Buffer.allocUnsafeSlow(this.size));
    }
    return new Promise((resolve, reject) => {
      // forgotten when the wait ends, so a long upload's waits do not pile up on the job's Stop
      const w = {
        give: (b: Buffer) => {
          forget();
          resolve(b);
        },
        fail: reject,
      };
      this.waiting.push(w);
      const forget = stop.onStop((reason) => {
        const i = this.waiting.indexOf(w);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(reason);
      });
    });
  }

  release(b: Buffer): void {
    const w = this.waiting.shift();
    if (w) w.give(b);
    else this.free.push(b);
  }

  /** let go of the free buffers (the pool is done with) */
  drain(): void {
    this.made -= this.free.length;
    this.free.length = 0;
    this.spare = [];
  }
}

/** A pack being filled: encoded blobs back to back in one buffer; its blobs are refs in the table. */
class PackBuilder {
  readonly id = randomBytes(32).toString('hex');
  used = 0;
  readonly blobs: number[] = [];
  constructor(
    readonly buf: Buffer,
    private readonly table: RefTable,
  ) {}

  fits(n: number): boolean {
    return this.used + n <= this.buf.length;
  }

  add(hash: Buffer, parts: Buffer[], length: number): number {
    // (a copy past the end would be cut short without a word: a blob stored damaged)
    if (!this.fits(length)) throw new Error(`a blob of ${length} bytes does not fit in its pack (${this.used} of ${this.buf.length} bytes used)`);
    const ref = this.table.add(hash, this.id, this.used, length);
    for (const p of parts) this.used += p.copy(this.buf, this.used);
    this.blobs.push(ref);
    return ref;
  }

  /** Append this pack's blobs to `into`; their refs (whoever holds them) follow. */
  moveInto(into: PackBuilder): void {
    this.buf.copy(into.buf, into.used, 0, this.used);
    for (const r of this.blobs) {
      this.table.place(r, into.id, this.table.offset(r) + into.used);
      into.blobs.push(r);
    }
    into.used += this.used;
    this.used = 0;
    this.blobs.length = 0;
  }
}

/**
 * Whether LZ4 is worth trying on the next block: after a few that did not shrink, only
 * now and then (one that does resets it). One is kept per kind of file (`kindOf`): small
 * files share their kind's, so a folder of compressed SSTables is not tried file after
 * file; a large file has its own, which starts from its kind's state and reports to it,
 * so the next large file of an incompressible kind is not tried block after block either.
 * Measured on a 256 MiB node of random data (20% of it 16 KiB files), agent main thread
 * in a full backup: 1.16-1.24 s before, 1.01-1.17 s after (two runs each).
 */
export class Compressibility {
  private misses = 0;
  private n = 0;
  constructor(private readonly kind?: Compressibility) {
    if (kind) this.misses = kind.misses;
  }
  shouldTry(): boolean {
    return this.misses < 4 || ++this.n % 32 === 0;
  }
  record(compressed: boolean): void {
    this.misses = compressed ? 0 : this.misses + 1;
    this.kind?.record(compressed);
  }
}

/** at most this many kinds of file get a Compressibility of their own in an upload; the others share one */
const MAX_KINDS = 256;

/** a file's kind, for compressibility: the extension of its name ("sst", "log"; "" for none, or one too long to be one) */
export function kindOf(path: string): string {
  const dot = path.lastIndexOf('.');
  return dot > path.lastIndexOf('/') && path.length - dot <= 9 ? path.slice(dot + 1) : '';
}

interface Stats {
  chunksNew: number;
  bytesNew: number;
  /** bytes named by SHA-256: blocks not known by their fingerprint, small files */
  bytesHashed: number;
}

/** the raw SHA-256 of a block (its hex form is made only where a name or an index needs it), counted in `stats` */
function digest(data: Buffer, stats: Stats): Buffer {
  stats.bytesHashed += data.length;
  return createHash('sha256').update(data).digest();
}

/** Where blobs go: packs (a file's own, or shared) and chunk objects; dedup against what is known. */
class BlobWriter {
  readonly stats: Stats = { chunksNew: 0, bytesNew: 0, bytesHashed: 0 };
  readonly reads = new BufferPool(READ_SIZE, READ_BUFFERS, true);
  readonly smallReads = new SmallReads();
  // a block always fits an empty run (RUN_SIZE > MAX_PACKED_BLOCK + BLOB_OVERHEAD); a run is stored before it overflows
  private readonly runs = new BufferPool(RUN_SIZE, RUN_BUFFERS);
  private readonly packs: BufferPool;
  private readonly budget = new Budget(MAX_IN_FLIGHT);
  private readonly uploads = new Set<Promise<void>>();
  private failure: unknown;
  private shared: PackBuilder | undefined;
  private opening: Promise<void> | undefined;
  private readonly kinds = new Map<string, Compressibility>();
  /** the job's signal, as the loops look at it (lib/stop.ts) */
  readonly stop: Stop;

  /** `known`: blobs known to be stored (or on their way), found by content hash; every ref this upload makes goes there */
  constructor(
    private readonly repo: Repository,
    private readonly target: UploadTarget,
    private readonly signal: AbortSignal,
    readonly known: Known,
  ) {
    this.stop = Stop.of(signal);
    // a shared pack is stored once full, or when what comes next does not fit: it holds at least one small file or run tail
    // aligned: a pack goes to an fs repository with O_DIRECT straight from its buffer (plugins/storage/fs.ts)
    this.packs = new BufferPool(Math.max(repo.config.packSize, Math.max(MERGE_MAX, repo.config.packThreshold) + BLOB_OVERHEAD), PACK_BUFFERS, true);
  }

  /** what LZ4 did on files of `path`'s kind in this upload */
  compressibility(path: string): Compressibility {
    let kind = kindOf(path);
    if (!this.kinds.has(kind) && this.kinds.size >= MAX_KINDS) kind = '';
    let c = this.kinds.get(kind);
    if (!c) this.kinds.set(kind, (c = new Compressibility()));
    return c;
  }

  private track(p: Promise<void>): void {
    const t = p.catch((err: unknown) => {
      this.failure ??= err;
    });
    this.uploads.add(t);
    void t.finally(() => this.uploads.delete(t));
  }

  check(): void {
    if (this.failure !== undefined) throw this.failure;
    this.stop.check();
  }

  /** Store one chunk object (a block of a huge file) in the background; the ref is known at once. */
  async chunk(data: Buffer): Promise<number> {
    this.check();
    const hash = digest(data, this.stats);
    const seen = this.known.table.find(hash);
    if (seen >= 0) return seen;
    const ref = this.known.table.add(hash, undefined);
    await this.budget.reserve(data.length * 2);
    this.track(
      this.repo
        .putChunk(hash.toString('hex'), data, this.signal)
        .then((stored) => {
          if (stored > 0) {
            this.stats.chunksNew++;
            this.stats.bytesNew += stored;
          }
        })
        .finally(() => this.budget.release(data.length * 2)),
    );
    return ref;
  }

  /** Encode `data` into pack `p` unless its content is known; the ref either way. */
  private addTo(p: PackBuilder, hash: Buffer, data: Buffer, comp: Compressibility): number {
    const seen = this.known.table.find(hash);
    if (seen >= 0) return seen;
    const tryIt = comp.shouldTry();
    const enc = this.repo.codec.encodeParts(data, tryIt);
    if (tryIt) comp.record(enc.compressed);
    return p.add(hash, enc.parts, enc.length);
  }

  /** A pack of one file's own blocks. */
  async openRun(): Promise<PackBuilder> {
    this.check();
    return new PackBuilder(await this.runs.acquire(this.stop), this.known.table);
  }

  /** Add a block to a file's own pack; the pack is stored (and `undefined` returned in its place) once another such block might not fit. */
  block(run: PackBuilder, hash: Buffer, data: Buffer, comp: Compressibility): { ref: number; run: PackBuilder | undefined } {
    const ref = this.addTo(run, hash, data, comp);
    if (run.fits(data.length + BLOB_OVERHEAD)) return { ref, run };
    this.store(run, this.runs);
    return { ref, run: undefined };
  }

  /** A file's pack stored before its end: the next block does not fit in it. */
  endRun(run: PackBuilder): void {
    this.store(run, this.runs);
  }

  /** The end of a file: its last pack is stored, or moved into the shared pack when small. */
  async closeRun(run: PackBuilder): Promise<void> {
    if (run.used === 0 || run.used >= MERGE_MAX) {
      this.store(run, this.runs); // an empty one just goes back to the pool
    } else {
      try {
        await this.intoShared(run.used, (p) => run.moveInto(p));
      } finally {
        this.runs.release(run.buf);
      }
    }
  }

  /** Give back a run that will not be finished (its file failed). */
  dropRun(run: PackBuilder): void {
    this.runs.release(run.buf);
  }

  /** Put a small file's content into the shared pack (unless known). */
  async small(hash: Buffer, data: Buffer, comp: Compressibility): Promise<number> {
    this.check();
    const seen = this.known.table.find(hash);
    if (seen >= 0) return seen;
    let ref = -1;
    await this.intoShared(data.length + BLOB_OVERHEAD, (p) => {
      ref = this.addTo(p, hash, data, comp);
    });
    return ref;
  }

  /**
   * Run `fill` on the shared pack once it has room for `room` bytes; nothing else
   * touches the pack between the check and the fill. The pack is stored once full.
   */
  private async intoShared(room: number, fill: (p: PackBuilder) => void): Promise<void> {
    for (;;) {
      this.check();
      const p = this.shared;
      if (p?.fits(room)) {
        fill(p);
        if (p.used >= this.repo.config.packSize) this.flushShared();
        return;
      }
      if (p) this.flushShared();
      this.opening ??= this.packs.acquire(this.stop).then(
        (buf) => {
          this.shared = new PackBuilder(buf, this.known.table);
          this.opening = undefined;
        },
        (err: unknown) => {
          this.opening = undefined;
          throw err;
        },
      );
      await this.opening;
    }
  }

  private flushShared(): void {
    const p = this.shared;
    this.shared = undefined;
    if (p) this.store(p, this.packs);
  }

  /** Store a pack and its pending record in the background; its buffer goes back to `pool` after. */
  private store(p: PackBuilder, pool: BufferPool): void {
    if (p.used === 0) {
      pool.release(p.buf);
      return;
    }
    this.track(
      this.repo
        .putPack({ pack: p.id, blobs: p.blobs.map((r) => this.known.table.packRef(r)) }, p.buf.subarray(0, p.used), this.target, this.signal)
        .then(() => {
          this.stats.chunksNew++;
          this.stats.bytesNew += p.used;
        })
        .finally(() => pool.release(p.buf)),
    );
  }

  /** Store the last shared pack and wait for every upload; then let go of the buffers (~40 MiB) before the index is written. */
  async finish(): Promise<void> {
    await this.opening?.catch(() => undefined);
    this.flushShared();
    while (this.uploads.size > 0) await Promise.all([...this.uploads]);
    this.check();
    this.reads.drain();
    this.runs.drain();
    this.packs.drain();
    collect();
  }
}

/** Counts chunk-object bytes in flight; `reserve` waits until there is room. */
class Budget {
  private used = 0;
  private waiters: (() => void)[] = [];
  constructor(private readonly limit: number) {}

  async reserve(n: number): Promise<void> {
    while (this.used > 0 && this.used + n > this.limit) await new Promise<void>((r) => this.waiters.push(r));
    this.used += n;
  }

  release(n: number): void {
    this.used -= n;
    for (const w of this.waiters.splice(0)) w();
  }
}

interface Uploaded extends Content {
  /** bytes read from the snapshot for it (0: known unchanged) */
  read: number;
  /** cut where its content says: its blocks' lengths (lib/repo/cuts.ts) */
  cuts?: string;
}

/** Where a file's blocks go, in order: chunk objects, or the file's own packs. */
class BlockSink {
  readonly refs: number[] = [];
  private run: PackBuilder | undefined;

  /** `comp`: the file's own, which LZ4's outcomes go to */
  constructor(
    private readonly writer: BlobWriter,
    private readonly asChunks: boolean,
    private readonly comp: Compressibility,
  ) {}

  /** the next block of the file (known, or stored); its ref */
  async add(data: Buffer): Promise<number> {
    if (this.asChunks) {
      const ref = await this.writer.chunk(data);
      this.refs.push(ref);
      return ref;
    }
    const hash = digest(data, this.writer.stats);
    const seen = this.writer.known.table.find(hash);
    if (seen >= 0) {
      this.refs.push(seen);
      return seen;
    }
    // blocks cut by their content differ in size: one may not fit where the last one did
    if (this.run && !this.run.fits(data.length + BLOB_OVERHEAD)) {
      this.writer.endRun(this.run);
      this.run = undefined;
    }
    this.run ??= await this.writer.openRun();
    const added = this.writer.block(this.run, hash, data, this.comp);
    this.refs.push(added.ref);
    this.run = added.run;
    return added.ref;
  }

  keep(ref: number): void {
    this.refs.push(ref);
  }

  async close(): Promise<void> {
    const last = this.run;
    this.run = undefined;
    if (last) await this.writer.closeRun(last);
  }

  /** the file failed: its unfinished pack goes back */
  drop(): void {
    if (this.run) this.writer.dropRun(this.run);
    this.run = undefined;
  }
}

/**
 * What is known of a file patched in place since the previous backup read it: its entry
 * then, and the ranges written since. A block that no range touches and that ends where
 * it ended then is that backup's block.
 */
interface Patched {
  old: OldFile;
  ranges: Ranges;
}

/**
 * One file read in `block`-sized blocks: its descriptor, a read buffer (from the pool,
 * but for chunk objects, which hold their buffer until stored: a fresh one per read) and
 * the sink its blocks go to. `close` gives everything back, finished or not.
 * Every block read is fingerprinted; one whose fingerprint and length are those of the
 * same block in the previous backup (`old`, cut at the same size) is that block, and is
 * neither hashed nor stored again.
 */
class FileBlocks {
  readonly sink: BlockSink;
  readonly readSize: number;
  private readonly fp = Buffer.alloc(FP);

  private constructor(
    private readonly fd: number,
    private readonly buf: Buffer | undefined,
    readonly block: number,
    private readonly writer: BlobWriter,
    asChunks: boolean,
    private readonly fingerprints: Fingerprinter,
    private readonly old: OldFile | undefined,
    comp: Compressibility,
  ) {
    this.sink = new BlockSink(writer, asChunks, comp);
    this.readSize = Math.max(block, READ_SIZE);
  }

  /** one reading nothing (lib/shapes.ts keeps it) */
  static empty(writer: BlobWriter, repo: Repository): FileBlocks {
    return new FileBlocks(-1, undefined, MIN_BLOCK, writer, false, repo.fingerprints, undefined, new Compressibility());
  }

  static async open(abs: string, block: number, repo: Repository, writer: BlobWriter, old?: OldFile): Promise<FileBlocks> {
    const asChunks = block === repo.config.chunkSize;
    // a descriptor, not a FileHandle: each read through one cost the main thread ~20% more (a 1 GiB file in 1 MiB reads: 25 against 21 ms)
    const fd = await openFd(abs, 'r');
    try {
      const buf = asChunks ? undefined : await writer.reads.acquire(writer.stop);
      const comp = new Compressibility(writer.compressibility(abs));
      return new FileBlocks(fd, buf, block, writer, asChunks, repo.fingerprints, old?.block === block ? old : undefined, comp);
    } catch (err) {
      await closeFd(fd);
      throw err;
    }
  }

  /** up to `length` (at most `readSize`) bytes at `position`; shorter at the end of the file */
  async read(position: number, length: number): Promise<Buffer> {
    const into = this.buf ?? Buffer.allocUnsafe(this.readSize);
    const bytesRead = await readOnce(this.fd, into, length, position);
    return into.subarray(0, bytesRead);
  }

  /** the next blocks of the file, from a read at `position`, a block boundary */
  async add(data: Buffer, position: number): Promise<void> {
    lookAtHeap();
    const { table } = this.writer.known;
    for (let off = 0; off < data.length; off += this.block) {
      const b = data.subarray(off, Math.min(off + this.block, data.length));
      this.fingerprints.into(b, this.fp);
      const before = this.before((position + off) / this.block, b.length);
      if (before >= 0 && table.hasFp(before, this.fp)) this.sink.keep(before);
      else table.setFp(await this.sink.add(b), this.fp);
    }
  }

  /** the ref of block `i` in the previous backup if it was `length` bytes long then too, else -1 */
  private before(i: number, length: number): number {
    const old = this.old;
    if (!old || i >= old.count || Math.min(this.block, old.size - i * this.block) !== length) return -1;
    return this.writer.known.lists.at(old.first + i);
  }

  /** the file's upload, all its blocks added */
  async done(size: number, read: number): Promise<Uploaded> {
    await this.sink.close();
    return { ...this.writer.known.content(this.sink.refs, size), block: this.block, read };
  }

  async close(): Promise<void> {
    this.sink.drop();
    if (this.buf) this.writer.reads.release(this.buf);
    await closeFd(this.fd);
  }
}

let looks = 0;
/**
 * Every 64 reads or files, a look at whether the old generation grew enough for a full
 * collection (lib/memory.ts). The codec looks as it encodes; an upload whose blocks are
 * all known encodes nothing (a backup after a restore: every file read, every block the
 * previous backup's), and its garbage grew to V8's own limit: +23 MiB of heap at a 5 GiB
 * node's peak.
 */
function lookAtHeap(): void {
  if (++looks % 64 === 0) collectIfGrown();
}

const shapeKnown = keepShape(new Known(0, 0));
keepShape(new BufferPool(1, 0));
keepShape(new PackBuilder(Buffer.alloc(0), shapeKnown.table));
keepShape(new PartPlanner(new Columns(), shapeKnown));
keepShape(new Compressibility());
keepShape(new Budget(0));
keepShape(createHash('sha256'));
// the walk makes one a file (~34k at 5 GiB), all dead after the job
keepShape(lstatSync('/'));
// the fs store's listings (pending records) make one an entry
keepShape(readdirSync('/', { withFileTypes: true }));
// A Buffer made in native code (a digest, LZ4's output) is a Uint8Array whose prototype
// was then set to Buffer's: a shape of its own, held only through such buffers. With none
// alive between two jobs, every function that had handled one (the ref table's
// copyBytes/add/hasFp, Buffer's compare and toString, the codec's encodeParts, Known's
// content) was thrown away at the first full collection and compiled again in the next
// job (--trace-deopt: "weak objects"; gone with these two kept).
keepShape(createHash('sha256').update('').digest());
keepShape(compressSync(Buffer.alloc(64)));

/** one writer, file sink and file of each shape for good (lib/shapes.ts): made only with a repository, empty, holding nothing of a job */
function keepUploadShapes(repo: Repository, target: UploadTarget): void {
  keepShapeOnce('upload', () => {
    const writer = new BlobWriter(repo, { ...target }, new AbortController().signal, shapeKnown);
    return [writer, new BlockSink(writer, false, new Compressibility()), FileBlocks.empty(writer, repo)];
  });
}

/**
 * The bytes an upload has gone through, told to the job's progress as they grow. An object
 * with a method, not a closure made for each file: optimized code that called such a
 * closure (`uploadFile`, `uploadBlocks`) held on to it and to the job's variables it
 * closed over, and V8 threw that code away once they died after the job ("weak objects"
 * in --trace-deopt), compiling it again in the next job.
 */
class BytesDone {
  bytes = 0;
  constructor(private readonly ctx: JobContext) {}
  /** `n` bytes read */
  add(n: number): void {
    this.bytes += n;
    this.ctx.progress({ bytesDone: this.bytes });
  }
  /** `n` bytes of a file taken as unchanged: told with the file's end */
  skip(n: number): void {
    this.bytes += n;
  }
}
// past 2^30 bytes its count (and the progress it tells) are no longer small integers: a shape of their own
keepShape(Object.assign(new BytesDone({ progress() {} } as unknown as JobContext), { bytes: 2 ** 40 }));
keepShape({ bytesDone: 2 ** 40 });
keepShape({ bytesDone: 2 ** 40, filesDone: 0 });

/** Read a file in `block`-sized blocks (packed, or chunk objects when `block` is the chunk size). */
async function uploadBlocks(abs: string, block: number, old: OldFile | undefined, repo: Repository, writer: BlobWriter, done: BytesDone): Promise<Uploaded> {
  const f = await FileBlocks.open(abs, block, repo, writer, old);
  try {
    let size = 0;
    for (;;) {
      writer.check();
      const data = await f.read(size, f.readSize);
      if (data.length === 0) break;
      await f.add(data, size);
      size += data.length;
      done.add(data.length);
    }
    return await f.done(size, size);
  } finally {
    await f.close();
  }
}

/**
 * A file patched in place since the previous backup (see `Patched`), `size` bytes now, cut
 * at that backup's block size: blocks the patch did not touch are that backup's; only the
 * others are read, a stretch at a time.
 */
async function uploadPatched(abs: string, size: number, patched: Patched, repo: Repository, writer: BlobWriter, done: BytesDone): Promise<Uploaded> {
  const { old, ranges } = patched;
  const block = old.block!;
  const count = Math.ceil(size / block);
  let r = 0;
  /** the previous backup's block `i`, if it is still this file's */
  const kept = (i: number): number | undefined => {
    const start = i * block;
    const end = Math.min(start + block, size);
    if (i >= old.count || end !== Math.min(start + block, old.size)) return undefined;
    while (r < ranges.length && ranges[r]![1] <= start) r++;
    return r < ranges.length && ranges[r]![0] < end ? undefined : writer.known.lists.at(old.first + i);
  };
  const f = await FileBlocks.open(abs, block, repo, writer, old);
  try {
    let read = 0;
    for (let i = 0; i < count; ) {
      writer.check();
      const ref = kept(i);
      if (ref !== undefined) {
        f.sink.keep(ref);
        i++;
        continue;
      }
      let j = i + 1;
      while (j < count && (j + 1 - i) * block <= f.readSize && kept(j) === undefined) j++;
      const start = i * block;
      const length = Math.min(j * block, size) - start;
      const data = await f.read(start, length);
      if (data.length !== length) {
        throw new LockstepError('LOCKSTEP_E_SNAPSHOT_FAILED', `snapshot file ${abs} changed size while it was read (nothing may write into a snapshot)`);
      }
      await f.add(data, start);
      read += length;
      done.add(length);
      i = j;
    }
    return await f.done(size, read);
  } finally {
    await f.close();
  }
}

/** how a file is cut by its content: the average block size (its log2), and the blocks of the file in the previous backup by fingerprint (`OldFiles.cutOf`) */
interface CutAt {
  avgBits: number;
  before?: CutBlocks;
}

/**
 * A file its engine writes anew (see `UploadTarget.cutSets`), read whole and cut where its
 * content says (lib/repo/cuts.ts): a shift moves only the blocks around what changed.
 * Every block is fingerprinted; one whose fingerprint and length are those of a block of
 * the file in the previous backup, wherever it was, is that block, and is neither hashed
 * nor stored again. Every other block is found by its hash among those the upload knows,
 * or stored.
 */
async function uploadCut(abs: string, cut: CutAt, repo: Repository, writer: BlobWriter, done: BytesDone): Promise<Uploaded> {
  const { avgBits, before } = cut;
  const { table } = writer.known;
  const fp = Buffer.alloc(FP);
  const fd = await openFd(abs, 'r');
  const sink = new BlockSink(writer, false, new Compressibility(writer.compressibility(abs)));
  const lengths: number[] = [];
  let size: number;
  try {
    size = await forEachCut(
      fd,
      repo.cutter,
      avgBits,
      async (block) => {
        repo.fingerprints.into(block, fp);
        const was = before ? before.find(fp, block.length) : -1;
        if (was >= 0) sink.keep(was);
        else table.setFp(await sink.add(block), fp);
        lengths.push(block.length);
      },
      (n) => done.add(n),
      () => writer.check(),
    );
    await sink.close();
  } catch (err) {
    sink.drop();
    throw err;
  } finally {
    await closeFd(fd);
  }
  return { ...writer.known.content(sink.refs, size), read: size, cuts: encodeCuts(avgBits, lengths) };
}

async function uploadFile(
  repo: Repository,
  writer: BlobWriter,
  abs: string,
  size: number,
  old: OldFile | undefined,
  done: BytesDone,
  ranges?: Ranges,
  /** the file is cut where its content says, so */
  cutAt?: CutAt,
): Promise<Uploaded> {
  if (size < repo.config.packThreshold) {
    const buf = await writer.reads.acquire(writer.stop);
    try {
      const n = await writer.smallReads.read(abs, buf, repo.config.packThreshold);
      if (n < repo.config.packThreshold) {
        const data = buf.subarray(0, n);
        const hash = digest(data, writer.stats);
        done.add(n);
        const refs = n > 0 ? [await writer.small(hash, data, writer.compressibility(abs))] : [];
        return { ...writer.known.content(refs, n), read: n };
      }
    } finally {
      writer.reads.release(buf);
    }
    // it grew past the threshold since it was listed: cut it into blocks like a large file
  }
  if (cutAt !== undefined) return uploadCut(abs, cutAt, repo, writer, done);
  const block = blockSizeFor(size, repo.config.chunkSize, old?.block);
  if (ranges && old?.block === block && old.size >= repo.config.packThreshold) return uploadPatched(abs, size, { old, ranges }, repo, writer, done);
  return uploadBlocks(abs, block, old, repo, writer, done);
}

export interface UploadTarget {
  backupId: string;
  node: string;
  component: string;
  /** the snapshot's files are hard links of the live ones: linking changed their ctime, so it tells nothing */
  linked?: boolean;
  /** where the agent keeps its copy of the component's last index (index-cache.ts); none: always read from the repository */
  cacheFile?: string;
  /** bytes of indexes the agent may keep in memory for the next upload (kept-index.ts); none: it keeps none */
  keepIndexBytes?: number;
  /** the records of the component's last restore (restored.ts); none: a restored file is read again */
  restoredDir?: string;
  /** snapshot sets whose files the engine writes anew, not in place (a Redis RDB): cut where their content says, not at fixed sizes */
  cutSets?: string[];
  /** the component's plugin and shard: a component never backed up on this node dedups against another node's of the same name and plugin, of the same shard where there is one */
  plugin?: string;
  shard?: string;
}

/** The previous backup's index of a component: its backup, its files by path, every blob it references, and where it was read. */
interface Previous {
  backupId: string;
  /** the previous backup's record of the component: its index */
  component: ManifestComponent;
  files: OldFiles;
  known: Known;
  from: NonNullable<UploadResult['previousIndex']>;
  /** the index is another node's (see peerOf): its files are never taken as this node's unchanged ones */
  node?: string;
}

/**
 * What an upload does once it has returned, by component (repository, node, component):
 * deleting the pending records its index made garbage (~1300 after a 5 GiB full backup,
 * each a request on S3) and writing the local copy of its index (~0.2 s of CPU at 5 GiB).
 * Neither is needed for the backup to be complete; the component's next upload, and the
 * agent's shutdown, wait for both.
 *
 * It starts once the backup's own last step on the component is done: the clean-up of its
 * snapshot (`snapshotCleanedUp`), or the component's next upload, or `QUIET_MAX_MS` after
 * the upload returned when neither comes (a coordinator that died). Started at once, it
 * held the agent's one thread while the coordinator committed and cleaned up: on a 5 GiB
 * node the clean-up step took 160–190 ms after a full backup and 27–108 ms after an
 * incremental; 22–52 and 8–17 ms with it after.
 */
const afterwards = new Map<string, Promise<void>>();
/** by component: start its upload's work after now (the wait for the backup's last step is over) */
const quietNow = new Map<string, () => void>();
const QUIET_MAX_MS = 2000;

const componentKey = (repo: Repository, target: UploadTarget) => `${repo.id}/${target.node}/${target.component}`;

/**
 * By component, how many entries its last upload walked: the next one makes room for about
 * as many at once. Grown by half at a time from nothing, a 5 GiB node's 34k rows were
 * copied into fresh memory ten times (~2300 page faults a walk, each ~3 µs here).
 */
const walked = new Map<string, number>();

/** resolved by `quietNow` for `component`, or after `QUIET_MAX_MS` */
function quiet(component: string): Promise<void> {
  quietNow.get(component)?.();
  return new Promise((resolve) => {
    const go = () => {
      clearTimeout(timer);
      if (quietNow.get(component) === go) quietNow.delete(component);
      resolve();
    };
    const timer = setTimeout(go, QUIET_MAX_MS);
    quietNow.set(component, go);
  });
}

/** the snapshot of `component`'s last backup is cleaned up: its upload's work after it may start */
export function snapshotCleanedUp(component: string): void {
  quietNow.get(component)?.();
}

function afterUpload(key: string, component: string, work: () => Promise<void>, ctx: JobContext): void {
  const waited = quiet(component);
  const done = (afterwards.get(key) ?? Promise.resolve())
    .then(() => waited)
    .then(work)
    .catch((err: unknown) => ctx.log.warn({ err: String(err) }, 'clean-up after an upload failed (the next upload does it)'))
    .finally(() => {
      if (afterwards.get(key) === done) afterwards.delete(key);
      // the upload's rows and refs were kept for the copy past the job's own collection
      setImmediate(collect);
    });
  afterwards.set(key, done);
}

/** every upload's work after it returned, done (or failed); none waits for its backup's last step any more */
export async function uploadsSettled(): Promise<void> {
  for (const go of [...quietNow.values()]) go();
  await Promise.all(afterwards.values());
}

type NewestFirst = AsyncIterable<{ id: string; manifest: Promise<Manifest> }>;

/**
 * The committed backups, newest first (Repository.newestFirst), the listing and the first
 * manifest asked for at once, not once the reader gets to them: an upload starts it before
 * its walk, so an S3 store's round trips go by while the tree is walked.
 */
function newestFirstNow(repo: Repository, except: string): NewestFirst {
  const backups = repo.newestFirst(except);
  const first = backups.next();
  first.catch(() => undefined); // awaited by the reader; an upload that fails first must not leave it unhandled
  return {
    async *[Symbol.asyncIterator]() {
      try {
        for (let r = await first; !r.done; r = await backups.next()) yield r.value;
      } finally {
        await backups.return(undefined);
      }
    },
  };
}

/**
 * The newest committed backup's index of this component, if any (what this run dedups
 * against), read part by part; for a component never backed up on this node, another
 * node's (see `peerOf`), from the same walk through the manifests.
 */
async function previousIndex(repo: Repository, target: UploadTarget, ctx: JobContext, blocks: number, backups: NewestFirst): Promise<Previous | undefined> {
  let backedUpHere = false;
  let peer: { id: string; c: ManifestComponent } | undefined;
  for await (const { id, manifest } of backups) {
    try {
      const m = await manifest;
      const c = m.components.find((x) => x.node === target.node && x.component === target.component);
      if (!c) {
        if (!peer) {
          const p = peerOf(m, target);
          if (p) peer = { id, c: p };
        }
        continue;
      }
      backedUpHere = true;
      if (target.cacheFile) {
        const key = cacheKeyOf(repo, target, id, c.indexSha256);
        const warm = takeKeptIndex(key);
        if (warm) return { backupId: id, component: c, ...warm, from: 'memory' };
        const got = { known: Known.about(blocks), files: new OldFiles() };
        const cached = await readIndexCache(target.cacheFile, key, got.known, got.files).catch((err: unknown) => ({ ok: false as const, why: String(err) }));
        if (cached.ok) return { backupId: id, component: c, ...got, from: 'local' };
        ctx.log.info({ backupId: id, why: cached.why }, 'previous index read from the repository, not from the local copy');
      }
      return { backupId: id, component: c, ...(await readPrevious(repo, c, blocks)), from: 'repository' };
    } catch (err) {
      // a damaged older backup only costs dedup, never this backup
      ctx.log.warn({ backupId: id, err: err instanceof Error ? err.message : String(err) }, 'previous backup unreadable; not used for dedup');
    }
  }
  // (a node whose own backups are all unreadable does not turn to a peer's)
  if (backedUpHere || !peer) return undefined;
  const { id, c } = peer;
  try {
    ctx.log.info({ component: target.component, backupId: id, peer: c.node }, "component's first backup on this node: dedups against another node's index");
    return { backupId: id, component: c, ...(await readPrevious(repo, c, blocks)), from: 'repository', node: c.node };
  } catch (err) {
    ctx.log.warn({ backupId: id, err: err instanceof Error ? err.message : String(err) }, 'peer backup unreadable; not used for dedup');
    return undefined;
  }
}

/**
 * For a component no committed backup holds on this node (a node added to the cluster, a
 * node replaced by a new one restored from a backup, a node renamed), what it dedups
 * against in the newest manifest that has one: a component of the same name and plugin on
 * another node, of the same shard if one is, else the first by node name. So a replica's
 * first backup stores only what differs from its peer's. Its files are read whole (an inode
 * or change time means nothing on another host) and each block that has the peer's
 * fingerprint at the same place in the same file is the peer's block; blocks found
 * elsewhere dedup by hash. Costs reading that index once, where there is one.
 */
function peerOf(m: Manifest, target: UploadTarget): ManifestComponent | undefined {
  const peers = m.components
    .filter((x) => x.component === target.component && x.node !== target.node && (target.plugin === undefined || x.plugin === target.plugin))
    .sort((a, b) => (a.node < b.node ? -1 : 1));
  // a replica (same shard) holds this node's data; another member of the same name may not
  return peers.find((x) => x.shard === target.shard) ?? peers[0];
}

/** A component's index read from the repository into what an upload dedups against */
async function readPrevious(repo: Repository, c: ManifestComponent, blocks: number): Promise<{ known: Known; files: OldFiles }> {
  // what a damaged index gave before its bad part is dropped with it
  const known = Known.about(blocks);
  const files = new OldFiles();
  const head = await repo.readIndexParts(c.indexKey, c.indexSha256, (entries) => {
    for (const e of entries) if (e.type === 'file') files.add(e.path, e, known.oldRefs(e), e.chunks.length);
    // the part's objects (~4× its JSON) are garbage now, most of them already old
    collectIfGrown();
  });
  // an unchanged file carried over from an older index gets this index's kind of hash, from its block hashes
  if (!hashesBlocks(head)) {
    for (let r = 0; r < files.cols.length; r++) {
      const { first, count } = files.cols.blocksOf(r);
      if (count > 1) files.cols.setSha(r, contentHashOf(known.table, known.lists, first, count));
    }
  }
  return { known, files };
}

/** pending records read at once, and how many are read before their blobs are made known (in key order) */
const PENDING_AT_ONCE = 16;
const PENDING_WINDOW = 256;

/**
 * Blobs an earlier run of this component packed without writing its index: made known;
 * the keys of every earlier run's records (deleted once this run's index is written). A
 * record of a backup that committed this component is not read: that backup's index holds
 * its blobs (a full backup leaves ~500 records a GiB, and reading them cost ~0.25 s a GiB).
 * The records of runs that did not commit it are read 16 at a time (a run cut short after 1 TB left
 * ~500,000, read one after the other before: two round trips each on S3), a window of
 * them at a time, their blobs made known in the listing's order, as before.
 */
async function pendingBlobs(repo: Repository, target: UploadTarget, ctx: JobContext, known: Known, listed: string[], previous?: string): Promise<string[]> {
  const keys: string[] = [];
  const prefix = pendingPrefix(target.node, target.component);
  // whether backup `by` committed this component (its index holds the blobs). This
  // component's backup deduped against did: its manifest was read (its records are the usual ones left). A
  // partial backup's manifest lacks the components that failed: their records are what
  // this run resumes from (another node's part of a backup committing while this agent
  // was killed mid-upload)
  const committed = new Map<string, Promise<boolean>>(previous === undefined ? [] : [[previous, Promise.resolve(true)]]);
  const holds = (by: string) =>
    repo.readManifest(by).then(
      (m) => holdsComponent(m, target.node, target.component),
      () => false,
    );
  /** a record's blobs, if its pack is there (undefined: its backup committed it; null: it could not be read) */
  const read = async (key: string): Promise<PendingRecord['blobs'] | undefined | null> => {
    const by = pendingBackupOf(prefix, key);
    if (by !== undefined) {
      if (!committed.has(by)) committed.set(by, holds(by));
      if (await committed.get(by)) return undefined;
    }
    try {
      const rec = await repo.readPending(key);
      // only packs that really made it (the record is written after the pack, but be sure)
      return (await repo.driver.head(packKey(rec.pack))) ? rec.blobs : [];
    } catch (err) {
      if (err instanceof LockstepError && err.code === 'LOCKSTEP_E_REPO_KEY_MISSING') throw err;
      ctx.log.warn({ key, err: err instanceof Error ? err.message : String(err) }, 'pending record unreadable; ignored');
      return null;
    }
  };
  for (let from = 0; from < listed.length; from += PENDING_WINDOW) {
    const window = listed.slice(from, from + PENDING_WINDOW);
    const blobs: (PendingRecord['blobs'] | undefined | null)[] = new Array(window.length);
    await forEachLimit(window, PENDING_AT_ONCE, async (key, i) => {
      blobs[i] = await read(key);
    }, ctx.signal);
    window.forEach((key, i) => {
      const b = blobs[i];
      // an unreadable record stays (and is not counted on)
      if (b === null) return;
      if (b) for (const ref of b) known.table.addRef(ref);
      keys.push(key);
    });
  }
  return keys;
}

/** The upload's rows as an index writes them, each entry made when it is written; from any row on. */
function indexEntries(rows: Columns, known: Known): IndexToWrite['entries'] {
  let aboutBytes = 0;
  for (let r = 0; r < rows.length; r++) aboutBytes += entryJsonAbout(rows.path(r), rows.type(r) === 'file' ? rows.countOf(r) : 0);
  return {
    aboutBytes,
    [Symbol.iterator]: () => rowEntries(rows, known, 0),
    from: (i) => rowEntries(rows, known, i),
  };
}

function* rowEntries(rows: Columns, known: Known, from: number): Generator<EntryToWrite> {
  for (let r = from; r < rows.length; r++) {
    const type = rows.type(r);
    const path = rows.path(r);
    if (type === 'dir') yield { type, path, ...rows.meta(r) };
    else if (type === 'symlink') yield { type, path, ...rows.meta(r), target: rows.target(r) };
    else yield known.entry(rows, r);
  }
}

/** what the agent's copy of the index `indexSha256` of backup `backupId` of the target's component is keyed by (index-cache.ts) */
function cacheKeyOf(repo: Repository, target: UploadTarget, backupId: string, indexSha256: string): CacheKey {
  return { repositoryId: repo.id, node: target.node, component: target.component, backupId, indexSha256 };
}

/**
 * What the previous index's parts are, for an index that reuses those that did not change
 * (part-plan.ts): its head, and what the agent kept of each part beside its copy of it.
 * None when the store cannot copy, there is no previous index of this node's, or nothing
 * was kept of it (or its head does not read: then its parts are not reused, nothing more).
 */
async function previousParts(repo: Repository, target: UploadTarget, previous: Previous | undefined, ctx: JobContext): Promise<{ head: ComponentIndex; identities: PartIdentity[] } | undefined> {
  if (!repo.driver.copy || !target.cacheFile || !previous || previous.node) return undefined;
  const c = previous.component;
  const identities = await readPartIdentities(target.cacheFile, cacheKeyOf(repo, target, previous.backupId, c.indexSha256));
  if (identities.length === 0) return undefined;
  try {
    return { head: await repo.readIndexHead(c.indexKey, c.indexSha256), identities };
  } catch (err) {
    ctx.log.warn({ backupId: previous.backupId, err: err instanceof Error ? err.message : String(err) }, "previous index's head unreadable; its parts are not reused");
    return undefined;
  }
}

/**
 * Every entry of the snapshot's sets walked, a row each (its index path, metadata, change
 * signature; not its Stats, which on Node 20 carry four Dates each); a file's content is
 * added once uploaded.
 *
 * This and `sizeUp` are functions of their own, not loops in `uploadSnapshot`: a loop run
 * for every entry makes the function it is in hot, and a function run once a job that is
 * compiled for its loop is compiled again in every job (the code after the loop has no
 * feedback yet: deoptimized, compiled again). `uploadSnapshot` cost 250–390 ms of
 * compiling a 5 GiB incremental (--trace-opt), on the core the file reads need.
 */
async function walkRows(snapRoot: string, sets: string[], log: JobContext['log'], expected: number): Promise<Columns> {
  const rows = new Columns();
  rows.reserve(expected);
  const onSkip = (rel: string, why: string) => log.warn({ path: rel, why }, 'skipped');
  for (const set of sets) await walkEach(join(snapRoot, set), new RowsOfSet(rows, set), onSkip);
  return rows;
}

/** a set's walked entries, a row each (see `walkRows`) */
class RowsOfSet implements TreeVisitor {
  private readonly prefix: string;
  constructor(
    private readonly rows: Columns,
    private readonly set: string,
  ) {
    this.prefix = `${set}/`;
  }

  entry(rel: string, type: TreeEntry['type'], st: FileStats): void {
    const rows = this.rows;
    const r = rows.add(rel === '' ? this.set : this.prefix + rel, type);
    rows.setMeta(r, metaOf(st));
    rows.setSize(r, st.size);
    rows.setSigOf(r, st.ino, st.ctimeMs, false);
  }
}

/** the snapshot set a row's path is in (its first part) */
const setOf = (path: string) => path.slice(0, path.indexOf('/'));

/**
 * The walked rows' totals, and the rows to upload (all but folders). `blocks`: about how
 * many blocks they come to, for the ref table's room (a file in one of `cutSets` is cut by
 * its content into more, smaller blocks: counted at its fixed size, a 370 MB RDB's 45k
 * blocks were taken for 1.4k, and the table grew by doubling as they came)
 */
function sizeUp(rows: Columns, config: Repository['config'], cutSets: string[] | undefined): { fileCount: number; bytesTotal: number; blocks: number; todo: number[]; dirs: number } {
  let fileCount = 0;
  let bytesTotal = 0;
  let blocks = 0;
  let dirs = 0;
  const todo: number[] = [];
  for (let r = 0; r < rows.length; r++) {
    const type = rows.type(r);
    if (type === 'dir') {
      dirs++;
      continue;
    }
    todo.push(r);
    if (type !== 'file') continue;
    fileCount++;
    const size = rows.sizeOf(r);
    bytesTotal += size;
    if (cutSets !== undefined && size >= config.packThreshold && cutSets.includes(setOf(rows.path(r)))) blocks += Math.ceil(size / 2 ** cutAverageFor(size));
    else blocks += blocksAbout(size, config);
  }
  return { fileCount, bytesTotal, blocks, todo, dirs };
}

/**
 * A change in the same tick of the kernel's coarse clock may not show in ctime: only settled
 * files count as seen. `since` is the moment the content kept for the file was taken: the
 * walk's start for a file taken unchanged from the previous backup, the start of its read
 * for a file read. Any change after that moment is stamped after it, so more than
 * `RACY_MS` after the times the walk saw, in another tick: the next backup sees it. (A
 * change between the walk and the read in the same tick is in what was read.) By the
 * walk's start alone, every file written in the 2 s before a backup was read again by
 * the next one, though read seconds after it settled.
 * A hard link's ctime is the moment the snapshot linked it (it tells nothing, see
 * `seenAs`): only its mtime counts, or no file of a hard-linked snapshot was ever seen and
 * every backup read every file again.
 */
function settled(rows: Columns, r: number, since: number, linked: boolean): boolean {
  const mtimeMs = rows.mtimeMs(r);
  return since - (linked ? mtimeMs : Math.max(rows.ctimeMs(r), mtimeMs)) > RACY_MS;
}

/**
 * The rows of `todo` in order, as the upload's file workers take them: those that are the
 * previous backup's files, unchanged, are settled on the way (that backup's content copied
 * column to column, no object made, counted as done) and only the others (files to read,
 * symlinks) handed out. Through the workers each of ~34k unchanged files (5 GiB) cost an
 * async call, a promise and a progress update; settled all in a pass before the workers
 * start, they held back the reads of the changed big files that come first.
 *
 * Size and mtime alone miss a rewrite that keeps both (same size, mtime set back or in the
 * same millisecond); inode and ctime cannot be set back. A copy kept between backups keeps
 * both. A file the snapshot did not touch in the previous backup's copy (`changes`) is that
 * backup's file. A file of another node's index is never this node's (`ownFiles` false).
 */
class RowsToRead {
  private next = 0;
  /** rows settled as unchanged so far */
  unchanged = 0;

  constructor(
    private readonly rows: Columns,
    private readonly todo: number[],
    private readonly before: OldFiles,
    private readonly changes: SnapshotChanges['sets'] | undefined,
    private readonly ownFiles: boolean,
    private readonly linked: boolean,
    private readonly walkedFrom: number,
    private readonly result: UploadResult,
    private readonly done: BytesDone,
  ) {}

  /** the next row to read (-1: none left), the unchanged ones before it settled */
  take(): number {
    const { rows, todo, before } = this;
    while (this.next < todo.length) {
      const r = todo[this.next++]!;
      const o = this.ownFiles && rows.type(r) === 'file' ? before.row(rows.path(r)) : -1;
      if (o < 0 || before.cols.sizeOf(o) !== rows.sizeOf(r) || before.cols.mtimeMs(o) !== rows.mtimeMs(r) || !unchangedSince(rows, r, before, o, this.changes, this.linked)) return r;
      rows.copyContent(r, before.cols, o);
      rows.setSeen(r, settled(rows, r, this.walkedFrom, this.linked));
      this.unchanged++;
      this.done.skip(rows.sizeOf(r));
      this.result.chunks += rows.countOf(r);
    }
    return -1;
  }
}

// the walk's visitor and the reader of its rows, one of each for good (lib/shapes.ts): every job
// made its own, and the code optimized for them (the walk's, `take`) was compiled again in each
keepShape(new RowsOfSet(new Columns(), 'data'));
keepShape(new RowsToRead(new Columns(), [], new OldFiles(), undefined, true, false, Date.now(), {} as UploadResult, new BytesDone({ progress() {} } as unknown as JobContext)));

/** a file of the same size and mtime as row `o` of the previous backup: whether nothing changed it since (see `RowsToRead`) */
function unchangedSince(rows: Columns, r: number, before: OldFiles, o: number, changes: SnapshotChanges['sets'] | undefined, linked: boolean): boolean {
  if (changes) {
    const path = rows.path(r);
    const slash = path.indexOf('/');
    // a set the snapshot says nothing of is not known to be unchanged
    const inSet = changes.get(path.slice(0, slash));
    if (inSet && !inSet.has(path.slice(slash + 1))) return true;
  }
  return before.cols.seenAs(o, rows.inode(r), rows.ctimeMs(r), linked);
}

export async function uploadSnapshot(repo: Repository, snapRoot: string, sets: string[], target: UploadTarget, ctx: JobContext): Promise<UploadResult> {
  const t0 = performance.now();
  // the last upload of the component has finished what it left for after it returned (its backup is over: it need not wait)
  snapshotCleanedUp(target.component);
  const key = componentKey(repo, target);
  await afterwards.get(key);
  const turn = uploadStarts(repo.id, target.node, target.component);
  ctx.progress({ phase: 'scanning' });
  // the backups and the earlier runs' pending records, listed while the tree is walked (round trips of an S3 store's)
  const backups = newestFirstNow(repo, target.backupId);
  const pendingListed = listKeys(repo.driver, pendingPrefix(target.node, target.component));
  pendingListed.catch(() => undefined); // awaited below; an upload that fails first must not leave it unhandled
  // every stat below comes after this moment
  const walkedFrom = Date.now();
  const tWalk = performance.now();
  const rows = await walkRows(snapRoot, sets, ctx.log, Math.ceil((walked.get(key) ?? 0) * 1.05));
  walked.set(key, rows.length);
  const { fileCount, bytesTotal, blocks, todo, dirs } = sizeUp(rows, repo.config, target.cutSets);
  const tWalked = performance.now();

  // a hash is a hash whatever the block size it was cut at: all of them dedup
  const previous = await previousIndex(repo, target, ctx, blocks, backups);
  dropKeptIndex(target.node, target.component);
  const known = previous?.known ?? new Known(blocks, blocks);
  const before = previous?.files ?? new OldFiles();
  const writer = new BlobWriter(repo, target, ctx.signal, known);
  keepUploadShapes(repo, target);
  // (a peer's backup deduped against is not this component's: its records here are not covered by that index)
  const pendingKeys = await pendingBlobs(repo, target, ctx, known, await pendingListed, previous && !previous.node ? previous.backupId : undefined);
  // what the snapshot changed in the copy the previous backup read (only when that is the backup deduped against)
  const recorded = await readChanges(snapRoot);
  // (another node's backup has the same id as this node's: its changes are not this copy's)
  const changes = recorded && previous && !previous.node && recorded.basedOn === previous.backupId ? recorded.sets : undefined;
  // a file of another node's index is never this node's unchanged file, whatever its inode says
  const ownFiles = !previous?.node;
  // files a restore of that very index put in place and nothing wrote since are its files too
  const restored = previous && ownFiles && target.restoredDir ? await applyRestored(target.restoredDir, { repositoryId: repo.id, backupId: previous.backupId, indexKey: previous.component.indexKey, indexSha256: previous.component.indexSha256 }, before) : { applied: 0 };
  if (restored.applied > 0) ctx.log.info({ component: target.component, files: restored.applied, restoredFrom: previous!.backupId }, 'files restored from the previous backup and untouched since are not read again');
  if (recorded && !changes) ctx.log.info({ basedOn: recorded.basedOn, previous: previous?.backupId }, 'snapshot changes are against another backup: changed files are read whole');
  // read while the files are
  const reusable = previousParts(repo, target, previous, ctx);
  ctx.progress({ phase: 'uploading', bytesTotal, filesTotal: fileCount });
  const tPrevious = performance.now();

  const result: UploadResult = {
    indexKey: indexKey(target.backupId, target.node, target.component),
    indexSha256: '',
    files: fileCount,
    dirs: 0,
    symlinks: 0,
    bytes: bytesTotal,
    chunks: 0,
    chunksNew: 0,
    bytesNew: 0,
    filesUnchanged: 0,
    bytesRead: 0,
    bytesHashed: 0,
    ...(previous ? { previousIndex: previous.from } : {}),
    ...(previous?.node ? { previousNode: previous.node } : {}),
    uploadMs: 0,
  };
  const done = new BytesDone(ctx);
  result.dirs = dirs;
  // most files are unchanged: settled on the way to the next one to read
  const toRead = new RowsToRead(rows, todo, before, changes, ownFiles, target.linked === true, walkedFrom, result, done);
  let filesRead = 0;
  // not `under(snapRoot)`: a closure of this job's called for every file would cost this function its optimized code when it dies (see LiveContext)
  const snapPrefix = prefixOf(snapRoot);
  const cutSets = target.cutSets;
  await forEachTaken(
    () => toRead.take(),
    FILE_CONCURRENCY,
    async (r) => {
      const path = rows.path(r);
      const abs = snapPrefix + path;
      if (rows.type(r) === 'symlink') {
        rows.setTarget(r, await readlink(abs));
        result.symlinks++;
        return;
      }
      const o = before.row(path);
      const slash = path.indexOf('/');
      const change = changes?.get(path.slice(0, slash))?.get(path.slice(slash + 1));
      const cut = cutSets !== undefined && cutSets.includes(setOf(path));
      // (before the file is opened: its reads start after this)
      const readFrom = Date.now();
      // (by the size the walk saw: a file that grew since is cut the same way, into more blocks)
      const was = cut && o >= 0 ? before.cutOf(o, writer.known) : undefined;
      const cutAt = cut ? { avgBits: cutAverageFor(rows.sizeOf(r), was?.avgBits), before: was?.blocks } : undefined;
      const up = await uploadFile(repo, writer, abs, rows.sizeOf(r), o >= 0 && !cut ? before.file(o) : undefined, done, change === 'all' || cut ? undefined : change, cutAt);
      result.bytesRead! += up.read;
      rows.setContent(r, up);
      if (up.cuts !== undefined) rows.setCuts(r, up.cuts);
      rows.setSeen(r, settled(rows, r, readFrom, target.linked === true));
      lookAtHeap();
      result.chunks += rows.countOf(r);
      ctx.progress({ bytesDone: done.bytes, filesDone: toRead.unchanged + ++filesRead });
    },
    ctx.signal,
  );
  result.filesUnchanged = toRead.unchanged;
  ctx.progress({ bytesDone: done.bytes, filesDone: toRead.unchanged + filesRead });
  // the previous backup's files are no longer needed: let them go before the index is written
  before.clear();
  await writer.finish();
  result.chunksNew = writer.stats.chunksNew;
  result.bytesNew = writer.stats.bytesNew;
  result.bytesHashed = writer.stats.bytesHashed;
  ctx.progress({ phase: 'writing index' });
  const tFiles = performance.now();
  const index: IndexToWrite = {
    version: INDEX_VERSION,
    backupId: target.backupId,
    node: target.node,
    component: target.component,
    chunkSize: repo.config.chunkSize,
    sets,
    entries: indexEntries(rows, known),
    ...(rows.anyCut ? { cut: true } : {}),
  };
  // parts of the previous index reused where they still hold what the rows say; and what the next backup may reuse of this one's
  const plan = repo.driver.copy && target.cacheFile ? new PartPlanner(rows, known, await reusable) : undefined;
  result.indexSha256 = await repo.writeIndex(result.indexKey, index, undefined, plan);
  if (plan?.restarted !== undefined) {
    const why = plan.restarted instanceof Error ? plan.restarted.message : String(plan.restarted);
    ctx.log.warn({ component: target.component, previous: previous?.backupId, why }, "a part of the previous backup's index could not be copied: the index was written whole");
  }
  if (plan && plan.identities().length > 0) {
    // (a run of parts that hold an entry in pieces is one identity)
    result.indexParts = plan.identities().reduce((n, p) => n + (p.run?.length ?? 1), 0);
    result.indexPartsReused = plan.reused;
  }
  const tIndex = performance.now();
  result.uploadMs = Math.round(tIndex - t0);
  result.phases = { walkMs: Math.round(tWalked - tWalk), previousMs: Math.round(tPrevious - tWalked), filesMs: Math.round(tFiles - tPrevious), indexMs: Math.round(tIndex - tFiles) };
  const cacheKey = cacheKeyOf(repo, target, target.backupId, result.indexSha256);
  afterUpload(
    key,
    target.component,
    async () => {
      // the index now references what earlier runs' pending records protected. This run's own
      // records stay until the next run: if this backup never commits, they still let it resume.
      // on S3 a thousand a request (a full backup's records are one a pack written)
      await deleteKeys(repo.driver, pendingKeys);
      // the index now holds the signatures of what the last restore put in place
      if (target.restoredDir && restored.restoreId) await forgetRestored(target.restoredDir, restored.restoreId);
      // only ever a saving: without it the next backup reads the index from the repository
      if (!target.cacheFile) return;
      await writeIndexCache(target.cacheFile, cacheKey, rows, known);
      if (plan) await writePartIdentities(target.cacheFile, cacheKey, plan.identities());
      // and without this, the next backup reads that copy
      const { why } = await keepIndex(target.cacheFile, cacheKey, blocks, fileCount, turn, target.keepIndexBytes ?? 0);
      if (why) ctx.log.info({ component: target.component, why }, 'index not kept in memory: the next backup reads its local copy');
    },
    ctx,
  );
  return result;
}
