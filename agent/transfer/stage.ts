/**
 * Stage a component's backup beside its live data while the service still runs:
 * every chunk, from the repository or from a local file, is checked against its hash.
 * A live file is copied into staging in one pass and hashed as it is written; the blocks
 * that match the backup stay, the few that do not are patched from the repository. A
 * kept snapshot (the agent's own, which nothing writes) is reused whole on its hash.
 */
import { constants } from 'node:fs';
import { copyFile, lstat, mkdir, open, rm, symlink, type FileHandle } from 'node:fs/promises';
import { createHash, randomInt } from 'node:crypto';
import { LockstepError } from '../../lib/errors.js';
import { sha256, type Repository } from '../../lib/repo/repository.js';
import { contentHash, hashesBlocks, refSha, type ChunkRef, type ComponentIndex, type FileEntry, type IndexEntry, type PackRef } from '../../lib/repo/index-file.js';
import { applyMeta, applyMetaFd, lstatIfAny, under, writeWholeFile } from '../../lib/tree.js';
import { closeFd, fstatFd, ftruncateFd, openFd, readAt, SmallReads, writevAll } from '../../lib/fd.js';
import { AlignedPool, DIRECT_MIN, DirectFile, directWorksIn } from '../../lib/direct-io.js';
import { syncFileSystem } from '../../lib/syncfs.js';
import type { StageResult } from '../../lib/wire.js';
import type { JobContext } from '../jobs/runner.js';
import { forEachOf } from './pool.js';
import { alignedBuffers } from '../../lib/aligned.js';
import { Stop } from '../../lib/stop.js';
import { BlobBuffers } from '../../lib/repo/lz4.js';
import { grown, slotsFor } from '../../lib/repo/ref-table.js';
import { decodeCuts, forEachCut } from '../../lib/repo/cuts.js';

const FILE_CONCURRENCY = 8;

export interface SetTarget {
  /** where the set lives now (and will live after the swap) */
  live: string;
  /** the staging dir beside it */
  staging: string;
  /** the agent's copy of the last snapshot of this set, if it keeps one (another local source) */
  cache?: string;
}

/** where a chunk can be read locally instead of downloaded */
interface LocalChunk {
  path: string;
  offset: number;
  length: number;
  /** in the agent's own kept snapshot, which nothing writes: its scan's hashes still hold */
  kept?: boolean;
}

/** where a file's chunks can be read locally, by their hash (hex) */
interface LocalBlocks {
  get(sha: string): LocalChunk | undefined;
  has(sha: string): boolean;
  set(sha: string, c: LocalChunk): unknown;
}

/**
 * `LocalBlocks` of a file cut by its content, whose blocks are found in at most a few local
 * files (the live file, the kept snapshot's copy): each block's hash, place, offset and
 * length in typed arrays with an open-addressing table by hash, ~50 bytes a block. A Map of
 * hex strings to objects took ~170: ~30 MiB of a restore's peak for an RDB of 180k blocks.
 */
export class CutLocalBlocks implements LocalBlocks {
  private readonly paths: string[] = [];
  private hashes: Buffer;
  private offsets: Float64Array;
  private lengths: Uint32Array;
  /** the path's index in `paths`, times 2, plus 1 when in a kept snapshot */
  private places: Uint16Array;
  /** index + 1; 0 is empty; at most half full */
  private slots: Int32Array;
  private count = 0;
  private readonly key = Buffer.alloc(32);
  // which 4 bytes of a hash pick its slot, chosen at random: content chosen to collide cannot pile up
  private readonly at = randomInt(29);

  constructor(blocks: number) {
    const n = Math.max(16, blocks);
    this.hashes = Buffer.alloc(32 * n);
    this.offsets = new Float64Array(n);
    this.lengths = new Uint32Array(n);
    this.places = new Uint16Array(n);
    this.slots = new Int32Array(slotsFor(n));
  }

  get(sha: string): LocalChunk | undefined {
    const i = this.find(sha);
    if (i < 0) return undefined;
    const place = this.places[i]!;
    return { path: this.paths[place >> 1]!, offset: this.offsets[i]!, length: this.lengths[i]!, kept: (place & 1) === 1 };
  }

  has(sha: string): boolean {
    return this.find(sha) >= 0;
  }

  set(sha: string, c: LocalChunk): void {
    let i = this.find(sha);
    if (i < 0) {
      if (this.count === this.lengths.length) this.grow();
      i = this.count++;
      this.key.copy(this.hashes, i * 32);
      this.insert(i);
    }
    let p = this.paths.indexOf(c.path);
    if (p < 0) p = this.paths.push(c.path) - 1;
    this.offsets[i] = c.offset;
    this.lengths[i] = c.length;
    this.places[i] = p * 2 + (c.kept ? 1 : 0);
  }

  /** the index of `sha` (hex), -1 if absent; its bytes left in `key` */
  private find(sha: string): number {
    if (this.key.write(sha, 'hex') !== 32) return -1;
    for (let s = this.key.readUInt32LE(this.at) & (this.slots.length - 1); ; s = (s + 1) & (this.slots.length - 1)) {
      const i = this.slots[s]! - 1;
      if (i < 0) return -1;
      if (this.hashes.compare(this.key, 0, 32, i * 32, i * 32 + 32) === 0) return i;
    }
  }

  private insert(i: number): void {
    let s = this.hashes.readUInt32LE(i * 32 + this.at) & (this.slots.length - 1);
    while (this.slots[s] !== 0) s = (s + 1) & (this.slots.length - 1);
    this.slots[s] = i + 1;
  }

  private grow(): void {
    const n = this.lengths.length * 2;
    this.hashes = grown(this.hashes, Buffer.alloc(32 * n));
    this.offsets = grown(this.offsets, new Float64Array(n));
    this.lengths = grown(this.lengths, new Uint32Array(n));
    this.places = grown(this.places, new Uint16Array(n));
    this.slots = new Int32Array(slotsFor(n));
    for (let i = 0; i < this.count; i++) this.insert(i);
  }
}

const ALIGNED_SIZE = 1024 * 1024;

/**
 * Read buffers, reused. A fresh buffer per file read counts against V8's external memory,
 * and every few dozen megabytes of it forces a full garbage collection: staging that
 * reused thousands of local files spent a third of its time collecting. A read of up to
 * 1 MiB gets one of `keepMax / 1 MiB` page-aligned buffers of one mapping while there are
 * some (lib/aligned.ts: reads into them run several times faster; only the pages a read
 * touches become resident).
 */
class Scratch {
  /** decoded blobs, given back once written (lib/repo/lz4.ts) */
  readonly blobs: BlobBuffers;
  /** local files of one block, read whole */
  readonly smallReads = new SmallReads();
  private readonly free: Buffer[] = [];
  /** aligned buffers never handed out yet (made on first use) */
  private spare: Buffer[] | undefined;
  private bytes = 0;
  constructor(private readonly keepMax: number) {
    this.blobs = new BlobBuffers(keepMax);
  }

  take(n: number): Buffer {
    const i = this.free.findIndex((b) => b.length >= n);
    if (i < 0) {
      if (n <= ALIGNED_SIZE) {
        this.spare ??= alignedBuffers(ALIGNED_SIZE, Math.floor(this.keepMax / ALIGNED_SIZE));
        const b = this.spare.pop();
        if (b) return b;
      }
      return Buffer.allocUnsafeSlow(Math.max(n, 64 * 1024));
    }
    const [b] = this.free.splice(i, 1);
    this.bytes -= b!.length;
    return b!;
  }

  give(b: Buffer): void {
    if (this.bytes + b.length > this.keepMax) return;
    this.free.push(b);
    this.bytes += b.length;
  }
}

/**
 * What one pass over a local file gives: its hash as the index defines it, where each of
 * its blocks lies, and which blocks are not the backup's block at the same place.
 */
interface LocalRead {
  size: number;
  sha256: string;
  blocks: Map<string, LocalChunk>;
  /** blocks (by index) that are not the backup's block at that place, or that the file is too short to hold */
  wrong: number[];
  /** the copy (`copyTo`) already has the entry's metadata: the file came in one read and was written in one go */
  metaSet: boolean;
}

/**
 * Read a local file once: its hash (the index's kind: `contentHash` or the whole content)
 * and, for a file of several blocks, the hash of each block at the file's own block size:
 * with fixed-size blocks, unchanged blocks of a changed file line up. With `copyTo`, what
 * is read is written there as it is hashed: the service may write the live file
 * meanwhile, but what lands in the copy is exactly what was hashed, so a block that
 * matches is the backup's whatever happened later. `kept`: the file is in the agent's kept
 * snapshot, which nothing writes, so its hashes stand for later reads of it.
 * Undefined when the file is no use (missing, not a regular file, a one-block file of
 * another size).
 */
async function readLocal(
  path: string,
  e: FileEntry,
  index: ComponentIndex,
  scratch: Scratch,
  stop: Stop,
  opts: { copyTo?: string; kept?: boolean } = {},
): Promise<LocalRead | undefined> {
  const st = lstatIfAny(path);
  if (!st?.isFile()) return undefined;
  const several = e.chunks.length > 1;
  // a one-block file is only any use whole
  if (!several && st.size !== e.size) return undefined;
  const block = e.block ?? index.chunkSize;
  const readSize = Math.max(block, Math.floor((1024 * 1024) / block) * block);
  const whole = several && hashesBlocks(index) ? undefined : createHash('sha256');
  // a one-block file is read whole at once; the blocks of a larger one line up with its reads
  const buf = scratch.take(several ? readSize : Math.min(readSize, st.size + 1));
  const room = several ? readSize : buf.length;
  const out: LocalRead = { size: 0, sha256: '', blocks: new Map(), wrong: [], metaSet: false };
  // a one-block file whole in one read (inline while from the page cache); else (or when it
  // could not be read so) it is read as below
  const one = several ? -1 : await scratch.smallReads.read(path, buf, room).catch(() => -1);
  if (one >= 0 && one < room) {
    try {
      if (opts.copyTo) {
        writeWholeFile(opts.copyTo, [buf.subarray(0, one)], e);
        out.metaSet = true;
      }
      whole!.update(buf.subarray(0, one));
    } finally {
      scratch.give(buf);
    }
    out.size = one;
    out.sha256 = whole!.digest('hex');
    return out;
  }
  const src = await openFd(path, 'r').catch(() => undefined);
  if (src === undefined) {
    scratch.give(buf);
    return undefined;
  }
  const shas: string[] = [];
  let fd: number | undefined;
  try {
    for (;;) {
      stop.check();
      const n = await readAt(src, buf, room, out.size);
      if (opts.copyTo && out.size === 0 && n < room) {
        // the whole file came in one read (a read returned nothing): written in one go, inline, with the entry's metadata
        writeWholeFile(opts.copyTo, [buf.subarray(0, n)], e);
        out.metaSet = true;
      } else if (opts.copyTo) {
        fd ??= await openFd(opts.copyTo, 'wx', 0o600);
        if (n > 0) await writevAll(fd, [buf.subarray(0, n)], out.size);
      }
      if (n === 0) break;
      whole?.update(buf.subarray(0, n));
      if (several) {
        for (let off = 0; off < n; off += block) {
          const length = Math.min(block, n - off);
          const h = sha256(buf.subarray(off, off + length));
          shas.push(h);
          if (!out.blocks.has(h)) out.blocks.set(h, { path, offset: out.size + off, length, kept: opts.kept });
          const want = e.chunks[(out.size + off) / block];
          if (want !== undefined && refSha(want) !== h) out.wrong.push((out.size + off) / block);
        }
      }
      out.size += n;
      if (out.metaSet) break;
    }
  } finally {
    await closeFd(src);
    if (fd !== undefined) await closeFd(fd);
    scratch.give(buf);
  }
  // blocks the file is too short to hold
  for (let i = Math.ceil(out.size / block); several && i < e.chunks.length; i++) out.wrong.push(i);
  out.sha256 = whole ? whole.digest('hex') : contentHash(shas);
  return out;
}

/**
 * The blocks of local files (`places`: the live file, the kept snapshot's copy) that a file
 * cut by its content (`e.cuts`) is made of, into `local` by their hash: each file cut as the
 * backup cut it (the repository's cutter, the average block size the backup recorded), each
 * block hashed where it lies. Its bytes may have moved since, so a block is found wherever
 * it lies, not at a fixed place; `download` reads each back and checks it against its hash
 * again. Nothing from a place where there is no such file.
 */
async function cutLocal(places: { path: string; kept: boolean }[], e: FileEntry, repo: Repository, stop: Stop, local: LocalBlocks): Promise<void> {
  // (checked as the index was read)
  const cuts = e.cuts === undefined ? undefined : decodeCuts(e.cuts, e.chunks.length, e.size);
  if (!cuts) return;
  const wanted = new Set(e.chunks.map(refSha));
  for (const { path, kept } of places) {
    if (!lstatIfAny(path)?.isFile()) continue;
    const fd = await openFd(path, 'r').catch(() => undefined);
    if (fd === undefined) continue;
    const found = (block: Buffer, offset: number) => {
      const h = sha256(block);
      if (wanted.has(h) && !local.has(h)) local.set(h, { path, offset, length: block.length, kept });
    };
    try {
      await forEachCut(fd, repo.cutter, cuts.avgBits, found, undefined, () => stop.check());
    } finally {
      await closeFd(fd);
    }
  }
}

/**
 * Put the backup's block in place of each wrong one (each checked against its hash as it
 * is read from the repository), cut the file to its size, set its metadata. Returns the
 * bytes fetched.
 */
async function patch(repo: Repository, e: FileEntry, index: ComponentIndex, dest: string, wrong: number[], blobs: BlobBuffers, signal: AbortSignal): Promise<number> {
  const block = e.block ?? index.chunkSize;
  const fd = await openFd(dest, 'r+');
  let fetched = 0;
  try {
    for (const i of wrong) {
      const data = await repo.getBlob(e.chunks[i]!, signal, blobs);
      fetched += await writevAll(fd, [data], i * block);
      blobs.give(data);
    }
    await ftruncateFd(fd, e.size);
    sizeCheck(e, (await fstatFd(fd)).size);
    await applyMetaFd(fd, e);
  } finally {
    await closeFd(fd);
  }
  return fetched;
}

function split(path: string): { set: string; rel: string } {
  const i = path.indexOf('/');
  return i < 0 ? { set: path, rel: '' } : { set: path.slice(0, i), rel: path.slice(i + 1) };
}

/** a stretch of a file's chunks fetched with one read */
interface Stretch {
  from: number;
  to: number;
  /** where the stretch lies in a local file, when it does */
  local?: LocalChunk;
}

/**
 * the most bytes one read fetches (several blocks back to back). 8 files at once, each with
 * one stretch fetched ahead: 4 MiB held ~45 MiB more at a restore's peak than 2 MiB and was
 * no faster from a local repository (1 GiB: 5.6–6.0 s either way); 2 MiB keeps an S3
 * restore's GETs big enough to amortise their latency
 */
const STRETCH_MAX = 2 * 1024 * 1024;

/**
 * Stretches fetched ahead, shared by the files being written from the repository. Each
 * file has its next stretch on the way while it writes one, as it always had; it asks for
 * one more each time it had to wait for a stretch (the store is slower than the disk: a
 * round trip to S3 for each), up to its share of `limit`. A file written alone (etcd's one
 * database file, the last big files of a node) from a remote store so keeps several GETs
 * in flight; from a local repository, whose reads mostly keep up, hardly more is held
 * (a 5 GiB node's restores peaked at a median of 210 MiB against 206; a fixed eight
 * ahead: 225-242).
 */
class AheadBudget {
  /** files being written from the repository */
  writing = 0;
  constructor(readonly limit: number) {}

  /** stretches one file may keep on the way now */
  share(): number {
    return Math.max(1, Math.floor(this.limit / this.writing));
  }
}

/**
 * The next stretch from chunk `from`: blocks that lie back to back in one local file, or
 * back to back in one pack of the repository, or a single chunk.
 */
function nextStretch(chunks: ChunkRef[], from: number, local: LocalBlocks): Stretch {
  const first = local.get(refSha(chunks[from]!));
  let to = from + 1;
  if (first) {
    let length = first.length;
    for (; to < chunks.length && length < STRETCH_MAX; to++) {
      const c = local.get(refSha(chunks[to]!));
      if (!c || c.path !== first.path || c.offset !== first.offset + length) break;
      length += c.length;
    }
    return { from, to, local: { path: first.path, offset: first.offset, length, kept: first.kept } };
  }
  const head = chunks[from]!;
  if (typeof head === 'string') return { from, to };
  let end = head.offset + head.length;
  for (; to < chunks.length && end - head.offset < STRETCH_MAX; to++) {
    const c = chunks[to]!;
    if (typeof c === 'string' || c.pack !== head.pack || c.offset !== end || local.has(c.sha256)) break;
    end += c.length;
  }
  return { from, to };
}

/** Local files read for their unchanged blocks, each opened once. */
class LocalFiles {
  private readonly handles = new Map<string, Promise<FileHandle | undefined>>();
  constructor(
    private readonly local: LocalBlocks,
    private readonly scratch: Scratch,
  ) {}

  /**
   * The stretch's blocks read from the local file, each checked against its hash (but for
   * a kept snapshot, whose scan stands); undefined if any changed since it was hashed.
   * `buffer` goes back to the scratch pool once the parts are written.
   */
  async read(at: LocalChunk, chunks: ChunkRef[]): Promise<{ parts: Buffer[]; buffer: Buffer } | undefined> {
    let fh = this.handles.get(at.path);
    if (!fh) this.handles.set(at.path, (fh = open(at.path, 'r').catch(() => undefined)));
    const h = await fh;
    if (!h) return undefined;
    const buf = this.scratch.take(at.length);
    const parts = await this.check(h, buf, at, chunks);
    if (parts) return { parts, buffer: buf };
    this.scratch.give(buf);
    return undefined;
  }

  private async check(h: FileHandle, buf: Buffer, at: LocalChunk, chunks: ChunkRef[]): Promise<Buffer[] | undefined> {
    const { bytesRead } = await h.read(buf, 0, at.length, at.offset);
    if (bytesRead !== at.length) return undefined;
    const out: Buffer[] = [];
    let off = 0;
    for (const c of chunks) {
      const sha = refSha(c);
      const len = this.local.get(sha)?.length ?? 0;
      if (len === 0 || off + len > at.length) return undefined;
      const part = buf.subarray(off, off + len);
      if (!at.kept && sha256(part) !== sha) return undefined;
      out.push(part);
      off += len;
    }
    return off === at.length ? out : undefined;
  }

  async close(): Promise<void> {
    for (const p of this.handles.values()) await (await p)?.close();
  }
}

/** the largest stretch of a shared pack read at once, and all of them held at a time */
const EXTENT_MAX = 8 * 1024 * 1024;
const EXTENTS_HELD_MAX = 64 * 1024 * 1024;

/**
 * Small files share packs. The stretch of each pack that one part of the index's one-blob
 * files use is read once, held while files still need it, and each file's blob taken out
 * of it: one read per pack instead of one open-read-close per file (a pack whose files
 * straddle two parts is read once for each).
 */
class SharedPacks {
  private readonly extents = new Map<string, { start: number; end: number; users: number }>();
  private readonly held = new Map<string, { data: Promise<Buffer>; bytes: number }>();

  /** `files`: one part of the index's; `budget`: what all parts' extents hold (files of several parts may be staged at once) */
  constructor(
    private readonly repo: Repository,
    files: FileEntry[],
    private readonly budget: { held: number },
  ) {
    for (const f of files) {
      const r = f.chunks.length === 1 ? f.chunks[0]! : undefined;
      if (r === undefined || typeof r === 'string') continue;
      const x = this.extents.get(r.pack);
      if (!x) this.extents.set(r.pack, { start: r.offset, end: r.offset + r.length, users: 1 });
      else {
        x.start = Math.min(x.start, r.offset);
        x.end = Math.max(x.end, r.offset + r.length);
        x.users++;
      }
    }
    for (const [pack, x] of this.extents) if (x.users < 2 || x.end - x.start > EXTENT_MAX) this.extents.delete(pack);
  }

  /** the blob from its pack's shared extent; undefined when it is not in one (or too much is held: read it alone) */
  async blob(r: PackRef, signal: AbortSignal, into: BlobBuffers): Promise<Buffer | undefined> {
    const x = this.extents.get(r.pack);
    if (!x) return undefined;
    let h = this.held.get(r.pack);
    if (!h) {
      const bytes = x.end - x.start;
      if (this.budget.held + bytes > EXTENTS_HELD_MAX) return undefined;
      h = { data: this.repo.getPackExtent(r.pack, x.start, x.end, signal), bytes };
      this.held.set(r.pack, h);
      this.budget.held += bytes;
    }
    try {
      return await this.repo.blobFrom(r, await h.data, x.start, into);
    } finally {
      this.done(r.pack);
    }
  }

  /** a file that needed no download (reused locally) no longer keeps its pack's extent */
  skip(e: FileEntry): void {
    const r = e.chunks.length === 1 ? e.chunks[0]! : undefined;
    if (r !== undefined && typeof r !== 'string' && this.extents.has(r.pack)) this.done(r.pack);
  }

  private done(pack: string): void {
    const x = this.extents.get(pack);
    if (!x || --x.users > 0) return;
    // the last file that needs it lets it go
    this.extents.delete(pack);
    const h = this.held.get(pack);
    if (h) {
      this.held.delete(pack);
      this.budget.held -= h.bytes;
    }
  }
}

/**
 * Write the file from its chunks: local ones where they exist, the rest from the
 * repository; stretches fetched ahead as `ahead` allows, written in order. Every chunk is
 * checked against its own hash on the way (`checkBlob`, `LocalFiles.read`), so the file is
 * its backed-up content by construction; its length is checked at the end. The file is made durable with the
 * whole staging area (`syncStaging`), not one fsync per file.
 */
async function download(
  repo: Repository,
  e: FileEntry,
  dest: string,
  signal: AbortSignal,
  local: LocalBlocks,
  shared: SharedPacks,
  scratch: Scratch,
  writes: AlignedPool | undefined,
  ahead: AheadBudget,
  onBytes: (n: number, fromRepository: boolean) => void,
): Promise<void> {
  const files = new LocalFiles(local, scratch);
  const fetch = async (s: Stretch): Promise<{ data: Buffer[]; fromRepository: boolean; buffer?: Buffer }> => {
    const part = e.chunks.slice(s.from, s.to);
    const near = s.local ? await files.read(s.local, part) : undefined;
    if (near) return { data: near.parts, fromRepository: false, buffer: near.buffer };
    if (e.chunks.length === 1 && typeof part[0] !== 'string') {
      const blob = await shared.blob(part[0]!, signal, scratch.blobs);
      if (blob) return { data: [blob], fromRepository: true };
    }
    const data: Buffer[] = [];
    // blocks a local stretch was meant to give are fetched one by one (they may lie anywhere)
    if (s.local || part.length === 1) for (const c of part) data.push(await repo.getBlob(c, signal, scratch.blobs));
    else data.push(...(await repo.getPackedRun(part as PackRef[], signal, scratch.blobs)));
    return { data, fromRepository: true };
  };
  /** a stretch is written: its buffers go back */
  const done = (got: { data: Buffer[]; buffer?: Buffer }) => {
    if (got.buffer) scratch.give(got.buffer);
    else for (const b of got.data) scratch.blobs.give(b);
  };
  const goesDirect = writes !== undefined && e.size >= DIRECT_MIN;
  const first = e.chunks.length > 0 ? nextStretch(e.chunks, 0, local) : undefined;
  // a small file that one fetch brings whole is written in one go, inline
  if (!goesDirect && e.size <= STRETCH_MAX && (first === undefined || first.to === e.chunks.length)) {
    const got = first ? await fetch(first) : { data: [], fromRepository: false };
    let size: number;
    try {
      size = writeWholeFile(dest, got.data, e);
    } finally {
      done(got);
      await files.close();
    }
    if (size > 0) onBytes(size, got.fromRepository);
    sizeCheck(e, size);
    return;
  }
  // a large file goes to the disk direct (lib/direct-io.ts) where the staging filesystem takes it
  const direct = goesDirect ? await DirectFile.open(dest, 0o600, writes) : undefined;
  const fd = direct?.fd ?? (await openFd(dest, 'wx', 0o600));
  let size = 0;
  /** the stretches on the way, in the file's order, each with whether it has come */
  const coming: { got: ReturnType<typeof fetch>; came: boolean }[] = [];
  /** how many this file keeps on the way: one more each time it waited */
  let depth = 1;
  let next = 0;
  const ask = (s: Stretch) => {
    next = s.to;
    const c = { got: fetch(s), came: false };
    // (a failure is awaited in its turn; not an unhandled rejection meanwhile)
    c.got.then(() => (c.came = true), () => undefined);
    coming.push(c);
  };
  const askMore = () => {
    while (next < e.chunks.length && coming.length < Math.min(depth, ahead.share())) ask(nextStretch(e.chunks, next, local));
  };
  ahead.writing++;
  try {
    if (first) ask(first);
    for (let turn = 0; coming.length > 0; turn++) {
      const c = coming.shift()!;
      // (the first is always waited for)
      if (turn > 0 && !c.came && depth < ahead.limit) depth++;
      askMore();
      const got = await c.got;
      const n = direct ? await direct.append(got.data) : await writevAll(fd, got.data, size);
      done(got);
      size += n;
      onBytes(n, got.fromRepository);
    }
    // the last block written and the file cut to its length before its mtime is set
    await direct?.end();
    await applyMetaFd(fd, e);
  } finally {
    // (what was still on the way after a failure is left to the collector)
    ahead.writing--;
    await (direct ? direct.close() : closeFd(fd));
    await files.close();
  }
  sizeCheck(e, size);
}

/** a file written from the backup is the length the backup recorded, or the repository is damaged */
function sizeCheck(e: FileEntry, size: number): void {
  if (size !== e.size) {
    throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `file ${e.path} restored from the repository has ${size} bytes, the backup recorded ${e.size}`, {
      details: { file: e.path },
    });
  }
}

/** One syncfs(2) per filesystem the staging dirs are on: every staged file durable before any swap. */
async function syncStaging(targets: SetTarget[]): Promise<void> {
  const seen = new Set<number>();
  for (const t of targets) {
    const dev = (await lstat(t.staging)).dev;
    if (seen.has(dev)) continue;
    seen.add(dev);
    await syncFileSystem(t.staging, `flushing staged files under ${t.staging}`);
  }
}

/** the parts of a component's index, as `Repository.indexParts` gives them */
export type IndexParts = AsyncIterable<{ head: ComponentIndex; entries: IndexEntry[] }>;

/**
 * Stage what `parts` name into the targets' staging dirs. The index is taken part by part
 * (~2 MiB of JSON each, the next read while this one is worked on): a restore holds the
 * parts that the eight files being staged come from (two, unless files are big enough to
 * fill a part each) and the next one, not the whole index (a 5 GiB node's index is ~36 MB
 * as objects, a 500 GiB node's ~3.6 GB). A part's folders are made before its files are
 * started (the index lists a folder before what is in it). `totals`: what the whole index
 * holds, for progress.
 */
export async function stageIndex(repo: Repository, parts: IndexParts, targets: Record<string, SetTarget>, ctx: JobContext, totals = { files: 0, bytes: 0 }): Promise<StageResult> {
  const t0 = performance.now();
  const result: StageResult = { files: 0, bytes: 0, bytesDownloaded: 0, filesReused: 0, stageMs: 0 };
  ctx.progress({ phase: 'staging', bytesTotal: totals.bytes, filesTotal: totals.files });

  const joiners = new Map<string, { staging: (rel: string) => string; live: (rel: string) => string; cache?: (rel: string) => string }>();
  // the index's head: the same with every part (set once the first part is read)
  let index!: ComponentIndex;
  const place = (e: IndexEntry) => {
    const { set, rel } = split(e.path);
    let j = joiners.get(set);
    if (!j) {
      const t = targets[set];
      if (!t) throw new LockstepError('LOCKSTEP_E_STAGE_FAILED', `the backup has a set "${set}" this component does not have`, { node: index.node });
      j = { staging: under(t.staging), live: under(t.live), cache: t.cache ? under(t.cache) : undefined };
      joiners.set(set, j);
    }
    return { staging: j.staging(rel), live: j.live(rel), cache: j.cache?.(rel) };
  };

  // write buffers, one a file, for sets whose staging dir takes direct writes
  // (256 KiB: a 2 GiB restore took as long as with 1 MiB ones, and peaked no higher than buffered)
  let writes: AlignedPool | undefined;
  const direct = new Map<string, boolean>();
  // read buffers for every file at once, kept up to 32 MiB
  const scratch = new Scratch(32 * 1024 * 1024);
  const ahead = new AheadBudget(FILE_CONCURRENCY);
  // what the shared packs' extents hold, over all parts
  const extentsHeld = { held: 0 };
  // every folder, for its metadata once what is in it is staged (children after parents)
  const dirs: IndexEntry[] = [];
  let bytesDone = 0;
  let filesDone = 0;

  /** each file and symlink to stage, with what it needs; a part's folders made before them */
  async function* items(): AsyncGenerator<{ e: IndexEntry; shared: SharedPacks }> {
    for await (const { head, entries: all } of parts) {
      index = head;
      // sets the component does not restore (captured config files, say) stay in the repository
      const entries = all.filter((e) => targets[split(e.path).set] !== undefined);
      for (const d of entries) {
        if (d.type !== 'dir') continue;
        await mkdir(place(d).staging, { recursive: false, mode: 0o700 });
        dirs.push(d);
        const { set, rel } = split(d.path);
        if (rel === '' && !direct.has(set)) {
          direct.set(set, await directWorksIn(targets[set]!.staging).catch(() => false));
          if (direct.get(set)) writes ??= new AlignedPool(256 * 1024, FILE_CONCURRENCY);
        }
      }
      const files = entries.filter((e): e is FileEntry => e.type === 'file');
      result.files += files.length;
      for (const f of files) result.bytes += f.size;
      const shared = new SharedPacks(repo, files, extentsHeld);
      for (const e of entries) if (e.type !== 'dir') yield { e, shared };
    }
  }

  const stop = Stop.of(ctx.signal);
  await forEachOf(
    items(),
    FILE_CONCURRENCY,
    async ({ e, shared }) => {
      const p = place(e);
      if (e.type === 'symlink') {
        await symlink(e.target, p.staging);
      } else if (e.type === 'file') {
        let reused = false;
        let metaSet = false;
        const local: LocalBlocks = e.cuts !== undefined ? new CutLocalBlocks(e.chunks.length) : new Map<string, LocalChunk>();
        // a file cut by its content is written whole: its blocks found in the live file (and the kept snapshot) by their hash
        if (e.cuts !== undefined) await cutLocal([{ path: p.live, kept: false }, ...(p.cache ? [{ path: p.cache, kept: true }] : [])], e, repo, stop, local);
        // the live file first, in one pass: what matches stays, a few wrong blocks are patched
        // (a file cut by its content has no fixed block size to compare or patch it by: above)
        const live = e.cuts === undefined ? await readLocal(p.live, e, index, scratch, stop, { copyTo: p.staging }) : undefined;
        if (live && live.wrong.length === 0 && live.size === e.size && live.sha256 === e.sha256) {
          reused = true;
          metaSet = live.metaSet;
        } else if (live && e.chunks.length > 1 && live.wrong.length * 2 <= e.chunks.length) {
          const fetched = await patch(repo, e, index, p.staging, live.wrong, scratch.blobs, ctx.signal);
          result.bytesDownloaded += fetched;
          result.bytesReusedLocally = (result.bytesReusedLocally ?? 0) + e.size - fetched;
          bytesDone += e.size;
          ctx.progress({ bytesDone, filesDone: ++filesDone });
          return; // its metadata went on through its descriptor
        } else if (live) {
          // mostly changed: written again from the repository, its unchanged blocks read back from the live file
          await rm(p.staging);
          for (const [h, c] of live.blocks) local.set(h, c);
        }
        if (!reused && p.cache && e.cuts === undefined) {
          const scan = await readLocal(p.cache, e, index, scratch, stop, { kept: true });
          if (scan && scan.size === e.size && scan.sha256 === e.sha256) {
            // nothing writes the kept snapshot: the file just hashed is the file copied
            // (a copy, not a link: the staged file may go live and be written)
            await copyFile(p.cache, p.staging, constants.COPYFILE_FICLONE | constants.COPYFILE_EXCL);
            reused = true;
          } else if (scan) {
            for (const [h, c] of scan.blocks) if (!local.has(h)) local.set(h, c);
          }
        }
        if (reused) {
          shared.skip(e);
          result.filesReused++;
          bytesDone += e.size;
        } else {
          const writesHere = direct.get(split(e.path).set) ? writes : undefined;
          await download(repo, e, p.staging, ctx.signal, local, shared, scratch, writesHere, ahead, (n, fromRepository) => {
            if (fromRepository) result.bytesDownloaded += n;
            else result.bytesReusedLocally = (result.bytesReusedLocally ?? 0) + n;
            bytesDone += n;
            ctx.progress({ bytesDone });
          });
          ctx.progress({ bytesDone, filesDone: ++filesDone });
          return; // its metadata went on through its descriptor
        }
        ctx.progress({ bytesDone, filesDone: ++filesDone });
        if (metaSet) return;
      }
      await applyMeta(p.staging, e.type, e);
    },
    ctx.signal,
  );
  for (let i = dirs.length - 1; i >= 0; i--) await applyMeta(place(dirs[i]!).staging, 'dir', dirs[i]!);
  await syncStaging([...direct.keys()].map((set) => targets[set]!));
  result.stageMs = Math.round(performance.now() - t0);
  return result;
}
