/**
 * Upload a snapshot straight from the agent into the repository.
 *
 * - Large files are cut into fixed-size chunks stored once each (named by content
 *   hash, global dedup); the chunks of one file are stored in parallel, so a big file
 *   is not one worker's bottleneck.
 * - Small files become blobs in ~16 MiB packs, so S3 does not get one tiny object per
 *   file. They dedup against the component's previous backup and against blobs a
 *   killed run already packed (pending records), which is how an interrupted backup
 *   resumes without sending its completed data again.
 * - A file whose size and mtime equal the previous backup's entry is not read again.
 * - Memory is bounded: at most MAX_IN_FLIGHT bytes of chunk data are held at once.
 * The file index is written last, after every object it references is stored.
 */
import { createReadStream } from 'node:fs';
import { readFile, readlink } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { LockstepError } from '../../lib/errors.js';
import { sha256, type Repository } from '../../lib/repo/repository.js';
import { INDEX_VERSION, refSha, type ChunkRef, type ComponentIndex, type FileEntry, type IndexEntry, type PackRef } from '../../lib/repo/index-file.js';
import { indexKey, packKey, pendingPrefix } from '../../lib/repo/layout.js';
import { metaOf, walkTree, type TreeEntry } from '../../lib/tree.js';
import type { UploadResult } from '../../lib/wire.js';
import type { JobContext } from '../jobs/runner.js';
import { forEachLimit } from './pool.js';

const FILE_CONCURRENCY = 8;
/** chunk bytes held at once (plain and stored forms), which bounds the agent's memory */
const MAX_IN_FLIGHT = 32 * 1024 * 1024;

/** Counts bytes in flight; `reserve` waits until there is room. */
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

interface Stats {
  chunksNew: number;
  bytesNew: number;
}

/** Where blobs go: chunk objects for large files, packs for small ones; dedup against what is known. */
class BlobWriter {
  /** blobs known to be stored, by content hash */
  readonly known = new Map<string, ChunkRef>();
  readonly stats: Stats = { chunksNew: 0, bytesNew: 0 };
  private readonly budget = new Budget(MAX_IN_FLIGHT);
  private readonly uploads = new Set<Promise<void>>();
  private failure: unknown;
  private pack: { id: string; parts: Buffer[]; size: number; blobs: PackRef[] } | undefined;

  constructor(
    private readonly repo: Repository,
    private readonly target: UploadTarget,
    private readonly signal: AbortSignal,
  ) {}

  private track(p: Promise<void>): void {
    const t = p.catch((err: unknown) => {
      this.failure ??= err;
    });
    this.uploads.add(t);
    void t.finally(() => this.uploads.delete(t));
  }

  private check(): void {
    if (this.failure !== undefined) throw this.failure;
    this.signal.throwIfAborted();
  }

  /** Store one chunk of a large file in the background; the ref is known at once. */
  async chunk(data: Buffer): Promise<ChunkRef> {
    this.check();
    const h = sha256(data);
    const seen = this.known.get(h);
    if (seen) return seen;
    this.known.set(h, h);
    await this.budget.reserve(data.length * 2);
    this.track(
      this.repo
        .putChunk(h, data, this.signal)
        .then((stored) => {
          if (stored > 0) {
            this.stats.chunksNew++;
            this.stats.bytesNew += stored;
          }
        })
        .finally(() => this.budget.release(data.length * 2)),
    );
    return h;
  }

  /** Put a small file's content into the current pack (unless known). */
  async small(data: Buffer): Promise<ChunkRef> {
    this.check();
    const h = sha256(data);
    const seen = this.known.get(h);
    if (seen) return seen;
    const stored = await this.repo.codec.encode(data);
    const again = this.known.get(h); // another file with the same content got here first
    if (again) return again;
    this.pack ??= { id: randomBytes(32).toString('hex'), parts: [], size: 0, blobs: [] };
    const ref: PackRef = { sha256: h, pack: this.pack.id, offset: this.pack.size, length: stored.length };
    this.pack.parts.push(stored);
    this.pack.size += stored.length;
    this.pack.blobs.push(ref);
    this.known.set(h, ref);
    if (this.pack.size >= this.repo.config.packSize) await this.flushPack();
    return ref;
  }

  private async flushPack(): Promise<void> {
    const pack = this.pack;
    if (!pack) return;
    this.pack = undefined;
    await this.budget.reserve(pack.size);
    const body = Buffer.concat(pack.parts, pack.size);
    this.track(
      (async () => {
        await this.repo.putPack({ pack: pack.id, blobs: pack.blobs }, body, this.target, this.signal);
        this.stats.chunksNew++;
        this.stats.bytesNew += body.length;
      })().finally(() => this.budget.release(pack.size)),
    );
  }

  /** Store the last pack and wait for every upload. */
  async finish(): Promise<void> {
    await this.flushPack();
    while (this.uploads.size > 0) await Promise.all([...this.uploads]);
    this.check();
  }
}

async function readChunked(abs: string, chunkSize: number, writer: BlobWriter, signal: AbortSignal, onBytes: (n: number) => void) {
  const whole = createHash('sha256');
  const refs: ChunkRef[] = [];
  let size = 0;
  let parts: Buffer[] = [];
  let len = 0;
  const cut = async () => {
    const buf = Buffer.concat(parts, len);
    parts = [];
    len = 0;
    refs.push(await writer.chunk(buf));
  };
  for await (const data of createReadStream(abs, { highWaterMark: 1 << 20, signal })) {
    const b = data as Buffer;
    whole.update(b);
    size += b.length;
    let off = 0;
    while (off < b.length) {
      const take = Math.min(chunkSize - len, b.length - off);
      parts.push(b.subarray(off, off + take));
      len += take;
      off += take;
      if (len === chunkSize) await cut();
    }
    onBytes(b.length);
  }
  if (len > 0) await cut();
  return { sha256: whole.digest('hex'), size, chunks: refs };
}

async function uploadFile(repo: Repository, writer: BlobWriter, abs: string, size: number, signal: AbortSignal, onBytes: (n: number) => void) {
  if (size < repo.config.packThreshold) {
    const buf = await readFile(abs, { signal });
    if (buf.length < repo.config.packThreshold) {
      onBytes(buf.length);
      return { sha256: sha256(buf), size: buf.length, chunks: buf.length > 0 ? [await writer.small(buf)] : [] };
    }
    // it grew past the threshold since it was listed: chunk it like a large file
  }
  return readChunked(abs, repo.config.chunkSize, writer, signal, onBytes);
}

export interface UploadTarget {
  backupId: string;
  node: string;
  component: string;
}

/** The newest committed backup's index of this component, if any (what this run dedups against). */
async function previousIndex(repo: Repository, target: UploadTarget, ctx: JobContext): Promise<ComponentIndex | undefined> {
  const ids = (await repo.listBackupIds()).filter((id) => id !== target.backupId).reverse();
  for (const id of ids) {
    try {
      const m = await repo.readManifest(id);
      const c = m.components.find((x) => x.node === target.node && x.component === target.component);
      if (c) return await repo.readIndex(c.indexKey, c.indexSha256);
    } catch (err) {
      // a damaged older backup only costs dedup, never this backup
      ctx.log.warn({ backupId: id, err: err instanceof Error ? err.message : String(err) }, 'previous backup unreadable; not used for dedup');
    }
  }
  return undefined;
}

/** Blobs an earlier run of this component packed without writing its index. */
async function pendingBlobs(repo: Repository, target: UploadTarget, ctx: JobContext): Promise<{ keys: string[]; blobs: PackRef[] }> {
  const keys: string[] = [];
  const blobs: PackRef[] = [];
  for await (const key of repo.driver.list(pendingPrefix(target.node, target.component))) {
    try {
      const rec = await repo.readPending(key);
      // only packs that really made it (the record is written after the pack, but be sure)
      if (await repo.driver.head(packKey(rec.pack))) blobs.push(...rec.blobs);
      keys.push(key);
    } catch (err) {
      if (err instanceof LockstepError && err.code === 'LOCKSTEP_E_REPO_KEY_MISSING') throw err;
      ctx.log.warn({ key, err: err instanceof Error ? err.message : String(err) }, 'pending record unreadable; ignored');
    }
  }
  return { keys, blobs };
}

export async function uploadSnapshot(repo: Repository, snapRoot: string, sets: string[], target: UploadTarget, ctx: JobContext): Promise<UploadResult> {
  const t0 = performance.now();
  ctx.progress({ phase: 'scanning' });
  const walked: { set: string; e: TreeEntry }[] = [];
  for (const set of sets) {
    for await (const e of walkTree(join(snapRoot, set), (rel, why) => ctx.log.warn({ path: rel, why }, 'skipped'))) walked.push({ set, e });
  }
  const files = walked.filter((w) => w.e.type === 'file');
  const bytesTotal = files.reduce((n, w) => n + w.e.stat.size, 0);

  const writer = new BlobWriter(repo, target, ctx.signal);
  const previous = await previousIndex(repo, target, ctx);
  const before = new Map<string, FileEntry>();
  if (previous?.chunkSize === repo.config.chunkSize) {
    for (const e of previous.entries) {
      if (e.type !== 'file') continue;
      before.set(e.path, e);
      for (const c of e.chunks) writer.known.set(refSha(c), c);
    }
  }
  const pending = await pendingBlobs(repo, target, ctx);
  for (const b of pending.blobs) if (!writer.known.has(b.sha256)) writer.known.set(b.sha256, b);
  ctx.progress({ phase: 'uploading', bytesTotal, filesTotal: files.length });

  const entries: IndexEntry[] = new Array(walked.length);
  const result: UploadResult = {
    indexKey: indexKey(target.backupId, target.node, target.component),
    indexSha256: '',
    files: files.length,
    dirs: 0,
    symlinks: 0,
    bytes: bytesTotal,
    chunks: 0,
    chunksNew: 0,
    bytesNew: 0,
    filesUnchanged: 0,
    uploadMs: 0,
  };
  let bytesDone = 0;
  let filesDone = 0;
  const relOf = (w: { set: string; e: TreeEntry }) => (w.e.rel === '' ? w.set : `${w.set}/${w.e.rel}`);
  walked.forEach((w, i) => {
    const meta = metaOf(w.e.stat);
    if (w.e.type === 'dir') {
      entries[i] = { type: 'dir', path: relOf(w), ...meta };
      result.dirs++;
    }
  });
  await forEachLimit(
    walked.map((w, i) => ({ w, i })).filter(({ w }) => w.e.type !== 'dir'),
    FILE_CONCURRENCY,
    async ({ w, i }) => {
      const meta = metaOf(w.e.stat);
      const path = relOf(w);
      if (w.e.type === 'symlink') {
        entries[i] = { type: 'symlink', path, ...meta, target: await readlink(w.e.abs) };
        result.symlinks++;
        return;
      }
      const old = before.get(path);
      let up: { sha256: string; size: number; chunks: ChunkRef[] };
      if (old && old.size === w.e.stat.size && old.mtimeMs === meta.mtimeMs) {
        up = old;
        result.filesUnchanged!++;
        bytesDone += old.size;
      } else {
        up = await uploadFile(repo, writer, w.e.abs, w.e.stat.size, ctx.signal, (n) => {
          bytesDone += n;
          ctx.progress({ bytesDone });
        });
      }
      entries[i] = { type: 'file', path, ...meta, size: up.size, sha256: up.sha256, chunks: up.chunks };
      result.chunks += up.chunks.length;
      ctx.progress({ bytesDone, filesDone: ++filesDone });
    },
    ctx.signal,
  );
  await writer.finish();
  result.chunksNew = writer.stats.chunksNew;
  result.bytesNew = writer.stats.bytesNew;
  ctx.progress({ phase: 'writing index' });
  const index: ComponentIndex = {
    version: INDEX_VERSION,
    backupId: target.backupId,
    node: target.node,
    component: target.component,
    chunkSize: repo.config.chunkSize,
    sets,
    entries,
  };
  result.indexSha256 = await repo.writeIndex(result.indexKey, index);
  // the index now references what earlier runs' pending records protected. This run's own
  // records stay until the next run: if this backup never commits, they still let it resume.
  for (const key of pending.keys) await repo.driver.delete(key);
  result.uploadMs = Math.round(performance.now() - t0);
  return result;
}
