/**
 * Upload a snapshot straight from the agent into the repository: every file cut into
 * fixed-size chunks named by their sha256 and stored once; a file index written last.
 */
import { createReadStream } from 'node:fs';
import { readFile, readlink } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { sha256, type Repository } from '../../lib/repo/repository.js';
import { INDEX_VERSION, type ComponentIndex, type IndexEntry } from '../../lib/repo/index-file.js';
import { indexKey } from '../../lib/repo/layout.js';
import { metaOf, walkTree, type TreeEntry } from '../../lib/tree.js';
import type { UploadResult } from '../../lib/wire.js';
import type { JobContext } from '../jobs/runner.js';
import { forEachLimit } from './pool.js';

const FILE_CONCURRENCY = 8;

interface FileUpload {
  sha256: string;
  /** bytes actually read (the file may have changed since it was listed) */
  size: number;
  chunks: string[];
  chunksNew: number;
  bytesNew: number;
}

async function uploadFile(repo: Repository, abs: string, size: number, signal: AbortSignal, onBytes: (n: number) => void): Promise<FileUpload> {
  const chunkSize = repo.config.chunkSize;
  if (size <= chunkSize) {
    // one chunk: read it whole (a stream would allocate a full read buffer per small file)
    const buf = await readFile(abs, { signal });
    if (buf.length > chunkSize) return uploadFile(repo, abs, buf.length, signal, onBytes); // it grew
    const h = sha256(buf);
    const isNew = buf.length > 0 && (await repo.putChunk(h, buf));
    onBytes(buf.length);
    return { sha256: h, size: buf.length, chunks: buf.length > 0 ? [h] : [], chunksNew: isNew ? 1 : 0, bytesNew: isNew ? buf.length : 0 };
  }
  const whole = createHash('sha256');
  const out: FileUpload = { sha256: '', size: 0, chunks: [], chunksNew: 0, bytesNew: 0 };
  let parts: Buffer[] = [];
  let len = 0;
  const flush = async () => {
    const buf = Buffer.concat(parts, len);
    parts = [];
    len = 0;
    const h = sha256(buf);
    out.chunks.push(h);
    if (await repo.putChunk(h, buf)) {
      out.chunksNew++;
      out.bytesNew += buf.length;
    }
  };
  for await (const data of createReadStream(abs, { highWaterMark: 1 << 20, signal })) {
    const b = data as Buffer;
    whole.update(b);
    out.size += b.length;
    let off = 0;
    while (off < b.length) {
      const take = Math.min(chunkSize - len, b.length - off);
      parts.push(b.subarray(off, off + take));
      len += take;
      off += take;
      if (len === chunkSize) await flush();
    }
    onBytes(b.length);
  }
  if (len > 0) await flush();
  out.sha256 = whole.digest('hex');
  return out;
}

export interface UploadTarget {
  backupId: string;
  node: string;
  component: string;
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
      if (w.e.type === 'symlink') {
        entries[i] = { type: 'symlink', path: relOf(w), ...meta, target: await readlink(w.e.abs) };
        result.symlinks++;
        return;
      }
      const up = await uploadFile(repo, w.e.abs, w.e.stat.size, ctx.signal, (n) => {
        bytesDone += n;
        ctx.progress({ bytesDone });
      });
      entries[i] = { type: 'file', path: relOf(w), ...meta, size: up.size, sha256: up.sha256, chunks: up.chunks };
      result.chunks += up.chunks.length;
      result.chunksNew += up.chunksNew;
      result.bytesNew += up.bytesNew;
      ctx.progress({ filesDone: ++filesDone });
    },
    ctx.signal,
  );
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
  result.uploadMs = Math.round(performance.now() - t0);
  return result;
}
