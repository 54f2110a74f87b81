/**
 * Stage a component's backup beside its live data while the service still runs:
 * every chunk and every whole file is checked against its hash; a local file that
 * already has the right content is copied instead of downloaded.
 */
import { createReadStream, constants } from 'node:fs';
import { copyFile, lstat, mkdir, open, rm, symlink } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { LockstepError } from '../../lib/errors.js';
import type { Repository } from '../../lib/repo/repository.js';
import { refSha, type ComponentIndex, type FileEntry, type IndexEntry } from '../../lib/repo/index-file.js';
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

/** Hash local files in chunk-sized blocks: with fixed-size chunks, unchanged blocks of a changed file line up. */
async function localChunks(paths: string[], chunkSize: number, signal: AbortSignal): Promise<Map<string, LocalChunk>> {
  const out = new Map<string, LocalChunk>();
  const buf = Buffer.allocUnsafe(chunkSize);
  for (const path of paths) {
    const fh = await open(path, 'r').catch(() => undefined);
    if (!fh) continue;
    try {
      for (let offset = 0; ; ) {
        signal.throwIfAborted();
        const { bytesRead } = await fh.read(buf, 0, chunkSize, offset);
        if (bytesRead === 0) break;
        const h = createHash('sha256').update(buf.subarray(0, bytesRead)).digest('hex');
        if (!out.has(h)) out.set(h, { path, offset, length: bytesRead });
        offset += bytesRead;
        if (bytesRead < chunkSize) break;
      }
    } finally {
      await fh.close();
    }
  }
  return out;
}

async function readLocal(c: LocalChunk, expected: string): Promise<Buffer | undefined> {
  const fh = await open(c.path, 'r').catch(() => undefined);
  if (!fh) return undefined;
  try {
    const buf = Buffer.allocUnsafe(c.length);
    const { bytesRead } = await fh.read(buf, 0, c.length, c.offset);
    // the file may have changed since it was hashed: use it only if it still matches
    return bytesRead === c.length && createHash('sha256').update(buf).digest('hex') === expected ? buf : undefined;
  } finally {
    await fh.close();
  }
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

/** Write the file from its chunks: local ones where they exist, the rest from the repository. */
async function download(
  repo: Repository,
  e: FileEntry,
  dest: string,
  signal: AbortSignal,
  local: Map<string, LocalChunk>,
  onBytes: (n: number, fromRepository: boolean) => void,
): Promise<void> {
  const whole = createHash('sha256');
  const fh = await open(dest, 'wx', 0o600);
  try {
    for (const chunk of e.chunks) {
      const sha = refSha(chunk);
      const near = local.get(sha);
      const localData = near ? await readLocal(near, sha) : undefined;
      const data = localData ?? (await repo.getBlob(chunk, signal));
      whole.update(data);
      await fh.write(data);
      onBytes(data.length, localData === undefined);
    }
    await fh.sync();
  } finally {
    await fh.close();
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
          const local = e.chunks.length > 1 ? await localChunks(candidates, index.chunkSize, ctx.signal) : new Map<string, LocalChunk>();
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
