/**
 * Stage a component's backup beside its live data while the service still runs:
 * every chunk and every whole file is checked against its hash; a local file that
 * already has the right content is copied instead of downloaded.
 */
import { createReadStream, constants } from 'node:fs';
import { copyFile, lstat, mkdir, open, rm, symlink, type FileHandle } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { LockstepError } from '../../lib/errors.js';
import type { Repository } from '../../lib/repo/repository.js';
import { refSha, type ChunkRef, type ComponentIndex, type FileEntry, type IndexEntry, type PackRef } from '../../lib/repo/index-file.js';
import { applyMeta } from '../../lib/tree.js';
import type { StageResult } from '../../lib/wire.js';
import type { JobContext } from '../jobs/runner.js';
import { forEachLimit } from './pool.js';

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
}

/** Hash local files in block-sized pieces: with fixed-size blocks, unchanged blocks of a changed file line up. */
async function localChunks(paths: string[], block: number, signal: AbortSignal): Promise<Map<string, LocalChunk>> {
  const out = new Map<string, LocalChunk>();
  const readSize = Math.max(block, Math.floor((1024 * 1024) / block) * block);
  const buf = Buffer.allocUnsafe(readSize);
  for (const path of paths) {
    const fh = await open(path, 'r').catch(() => undefined);
    if (!fh) continue;
    try {
      for (let offset = 0; ; ) {
        signal.throwIfAborted();
        const { bytesRead } = await fh.read(buf, 0, readSize, offset);
        if (bytesRead === 0) break;
        for (let off = 0; off < bytesRead; off += block) {
          const length = Math.min(block, bytesRead - off);
          const h = createHash('sha256').update(buf.subarray(off, off + length)).digest('hex');
          if (!out.has(h)) out.set(h, { path, offset: offset + off, length });
        }
        offset += bytesRead;
      }
    } finally {
      await fh.close();
    }
  }
  return out;
}

function split(path: string): { set: string; rel: string } {
  const i = path.indexOf('/');
  return i < 0 ? { set: path, rel: '' } : { set: path.slice(0, i), rel: path.slice(i + 1) };
}

async function hashFile(path: string, signal: AbortSignal): Promise<string> {
  const h = createHash('sha256');
  for await (const b of createReadStream(path, { highWaterMark: 1 << 20, signal })) h.update(b as Buffer);
  return h.digest('hex');
}

/** The live file at the same place, if it already has the backed-up content. */
async function reusable(live: string, e: FileEntry, signal: AbortSignal): Promise<boolean> {
  const st = await lstat(live).catch(() => undefined);
  if (!st?.isFile() || st.size !== e.size) return false;
  return (await hashFile(live, signal)) === e.sha256;
}

/** a stretch of a file's chunks fetched with one read */
interface Stretch {
  from: number;
  to: number;
  /** where the stretch lies in a local file, when it does */
  local?: LocalChunk;
}

/** the most bytes one read fetches (several blocks back to back) */
const STRETCH_MAX = 4 * 1024 * 1024;

/**
 * The next stretch from chunk `from`: blocks that lie back to back in one local file, or
 * back to back in one pack of the repository, or a single chunk.
 */
function nextStretch(chunks: ChunkRef[], from: number, local: Map<string, LocalChunk>): Stretch {
  const first = local.get(refSha(chunks[from]!));
  let to = from + 1;
  if (first) {
    let length = first.length;
    for (; to < chunks.length && length < STRETCH_MAX; to++) {
      const c = local.get(refSha(chunks[to]!));
      if (!c || c.path !== first.path || c.offset !== first.offset + length) break;
      length += c.length;
    }
    return { from, to, local: { path: first.path, offset: first.offset, length } };
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
  constructor(private readonly local: Map<string, LocalChunk>) {}

  /** The stretch's blocks read from the local file, each checked against its hash; undefined if any changed since it was hashed. */
  async read(at: LocalChunk, chunks: ChunkRef[]): Promise<Buffer[] | undefined> {
    let fh = this.handles.get(at.path);
    if (!fh) this.handles.set(at.path, (fh = open(at.path, 'r').catch(() => undefined)));
    const h = await fh;
    if (!h) return undefined;
    const buf = Buffer.allocUnsafe(at.length);
    const { bytesRead } = await h.read(buf, 0, at.length, at.offset);
    if (bytesRead !== at.length) return undefined;
    const out: Buffer[] = [];
    let off = 0;
    for (const c of chunks) {
      const sha = refSha(c);
      const len = this.local.get(sha)?.length ?? 0;
      if (len === 0 || off + len > at.length) return undefined;
      const part = buf.subarray(off, off + len);
      if (createHash('sha256').update(part).digest('hex') !== sha) return undefined;
      out.push(part);
      off += len;
    }
    return off === at.length ? out : undefined;
  }

  async close(): Promise<void> {
    for (const p of this.handles.values()) await (await p)?.close();
  }
}

/** Write the file from its chunks: local ones where they exist, the rest from the repository; one stretch fetched ahead. */
async function download(
  repo: Repository,
  e: FileEntry,
  dest: string,
  signal: AbortSignal,
  local: Map<string, LocalChunk>,
  onBytes: (n: number, fromRepository: boolean) => void,
): Promise<void> {
  const whole = createHash('sha256');
  const files = new LocalFiles(local);
  const fetch = async (s: Stretch): Promise<{ data: Buffer[]; fromRepository: boolean }> => {
    const part = e.chunks.slice(s.from, s.to);
    const near = s.local ? await files.read(s.local, part) : undefined;
    if (near) return { data: near, fromRepository: false };
    const data: Buffer[] = [];
    // blocks a local stretch was meant to give are fetched one by one (they may lie anywhere)
    if (s.local || part.length === 1) for (const c of part) data.push(await repo.getBlob(c, signal));
    else data.push(...(await repo.getPackedRun(part as PackRef[], signal)));
    return { data, fromRepository: true };
  };
  const fh = await open(dest, 'wx', 0o600);
  try {
    let at = 0;
    let ahead = at < e.chunks.length ? fetch(nextStretch(e.chunks, at, local)) : undefined;
    while (ahead) {
      const got = await ahead;
      at += got.data.length;
      ahead = at < e.chunks.length ? fetch(nextStretch(e.chunks, at, local)) : undefined;
      ahead?.catch(() => undefined); // awaited next round; not an unhandled rejection meanwhile
      for (const d of got.data) whole.update(d);
      await fh.writev(got.data);
      onBytes(got.data.reduce((n, d) => n + d.length, 0), got.fromRepository);
    }
    await fh.sync();
  } finally {
    await fh.close();
    await files.close();
  }
  const actual = whole.digest('hex');
  if (actual !== e.sha256) {
    throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `file ${e.path} restored from the repository hashes to ${actual}, the backup recorded ${e.sha256}`, {
      details: { file: e.path },
    });
  }
}

export async function stageIndex(repo: Repository, index: ComponentIndex, targets: Record<string, SetTarget>, ctx: JobContext): Promise<StageResult> {
  const t0 = performance.now();
  // sets the component does not restore (captured config files, say) stay in the repository
  const entries = index.entries.filter((e) => targets[split(e.path).set] !== undefined);
  const files = entries.filter((e): e is FileEntry => e.type === 'file');
  const result: StageResult = { files: files.length, bytes: files.reduce((n, f) => n + f.size, 0), bytesDownloaded: 0, filesReused: 0, stageMs: 0 };
  ctx.progress({ phase: 'staging', bytesTotal: result.bytes, filesTotal: files.length });

  const place = (e: IndexEntry) => {
    const { set, rel } = split(e.path);
    const t = targets[set];
    if (!t) throw new LockstepError('LOCKSTEP_E_STAGE_FAILED', `the backup has a set "${set}" this component does not have`, { node: index.node });
    return {
      staging: rel === '' ? t.staging : join(t.staging, rel),
      live: rel === '' ? t.live : join(t.live, rel),
      cache: t.cache ? (rel === '' ? t.cache : join(t.cache, rel)) : undefined,
    };
  };

  // directories first, in order (parents before children)
  const dirs = entries.filter((e) => e.type === 'dir');
  for (const d of dirs) await mkdir(place(d).staging, { recursive: false, mode: 0o700 });

  let bytesDone = 0;
  let filesDone = 0;
  await forEachLimit(
    entries.filter((e) => e.type !== 'dir'),
    FILE_CONCURRENCY,
    async (e) => {
      const p = place(e);
      if (e.type === 'symlink') {
        await symlink(e.target, p.staging);
      } else if (e.type === 'file') {
        let reused = false;
        const candidates = [p.live, ...(p.cache ? [p.cache] : [])];
        for (const candidate of candidates) {
          if (reused || !(await reusable(candidate, e, ctx.signal))) continue;
          await copyFile(candidate, p.staging, constants.COPYFILE_FICLONE | constants.COPYFILE_EXCL);
          // the local file may change while we copy: check the copy itself, else go on
          reused = (await hashFile(p.staging, ctx.signal)) === e.sha256;
          if (!reused) await rm(p.staging);
        }
        if (reused) {
          result.filesReused++;
          bytesDone += e.size;
        } else {
          // a changed file: its unchanged chunks still come from local copies
          const local = e.chunks.length > 1 ? await localChunks(candidates, e.block ?? index.chunkSize, ctx.signal) : new Map<string, LocalChunk>();
          await download(repo, e, p.staging, ctx.signal, local, (n, fromRepository) => {
            if (fromRepository) result.bytesDownloaded += n;
            else result.bytesReusedLocally = (result.bytesReusedLocally ?? 0) + n;
            bytesDone += n;
            ctx.progress({ bytesDone });
          });
        }
        ctx.progress({ bytesDone, filesDone: ++filesDone });
      }
      await applyMeta(p.staging, e.type, e);
    },
    ctx.signal,
  );
  for (let i = dirs.length - 1; i >= 0; i--) await applyMeta(place(dirs[i]!).staging, 'dir', dirs[i]!);
  result.stageMs = Math.round(performance.now() - t0);
  return result;
}
