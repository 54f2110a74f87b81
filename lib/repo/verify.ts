/**
 * `lockstep backup verify`: every object a backup references exists (and packs are
 * long enough for their blobs); with read-data, blobs are read back, decrypted,
 * decompressed and hashed. Every problem names the backup, node, component, file and
 * chunk, and the object in the repository.
 */
import { createHash, randomBytes } from 'node:crypto';
import { forEachLimit } from '../../agent/transfer/pool.js';
import { refSha, type ChunkRef, type PackRef } from './index-file.js';
import { isNotFound, type Repository } from './repository.js';

const CONCURRENCY = 16;
/** the most of one pack read at once when reading its blobs back */
const EXTENT_MAX = 8 * 1024 * 1024;

/** Whether a blob is in a PERCENT sample: by a hash of the seed and the blob, so a seed always picks the same blobs. */
function sampled(seed: string, sha: string, percent: number): boolean {
  if (percent >= 100) return true;
  return createHash('sha256').update(seed).update(sha).digest().readUInt32BE(0) < (percent / 100) * 2 ** 32;
}

/** a blob's place in the repository: a chunk object, or a pack and offset */
const blobIdOf = (ref: ChunkRef) => (typeof ref === 'string' ? ref : `${ref.pack}:${ref.offset}`);

/** Blobs of one pack that lie close together, read with one ranged request. */
function extents(refs: PackRef[]): PackRef[][] {
  const sorted = [...refs].sort((a, b) => a.offset - b.offset);
  const out: PackRef[][] = [];
  for (const r of sorted) {
    const cur = out.at(-1);
    if (cur && r.offset + r.length - cur[0]!.offset <= EXTENT_MAX) cur.push(r);
    else out.push([r]);
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
}

interface Use {
  node: string;
  component: string;
  file: string;
  ref: ChunkRef;
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
  /**
   * object key → the first file that uses it, how many references it has, and (packs) the
   * furthest byte any blob needs; blob → the first file that uses it and how many do, for
   * the blobs read back (the sample only). Not every reference: a backup of many nodes of
   * hundreds of GiB has hundreds of millions. Indexes are read part by part.
   */
  const objects = new Map<string, { first: Use; count: number; end: number }>();
  const blobs = new Map<string, { first: Use; count: number }>();
  for (const c of m.components) {
    try {
      await repo.readIndexParts(c.indexKey, c.indexSha256, (entries) => {
        for (const e of entries) {
          if (e.type !== 'file') continue;
          report.files++;
          for (const ref of e.chunks) {
            const key = repo.objectKeyOf(ref);
            let o = objects.get(key);
            if (!o) objects.set(key, (o = { first: { node: c.node, component: c.component, file: e.path, ref }, count: 0, end: 0 }));
            o.count++;
            if (typeof ref !== 'string') o.end = Math.max(o.end, ref.offset + ref.length);
            if (percent === 0) continue;
            const blob = blobIdOf(ref);
            const b = blobs.get(blob);
            if (b) b.count++;
            else if (sampled(report.seed ?? '', refSha(ref), percent)) blobs.set(blob, { first: { node: c.node, component: c.component, file: e.path, ref }, count: 1 });
          }
        }
      });
    } catch (err) {
      const kind = isNotFound(err) ? 'missing' : 'index';
      report.problems.push({ kind, node: c.node, component: c.component, object: c.indexKey, message: err instanceof Error ? err.message : String(err) });
    }
  }

  const problem = (kind: VerifyProblem['kind'], object: string, u: Use, count: number, message: string) => {
    report.problems.push({
      kind,
      node: u.node,
      component: u.component,
      file: u.file,
      alsoIn: count > 1 ? count - 1 : undefined,
      chunk: refSha(u.ref),
      object,
      message,
    });
  };

  const missing = new Set<string>();
  await forEachLimit(
    [...objects],
    CONCURRENCY,
    async ([key, o]) => {
      const info = await repo.driver.head(key);
      report.objectsChecked++;
      if (!info) {
        missing.add(key);
        problem('missing', key, o.first, o.count, `${key} is missing: file ${o.first.file} on ${o.first.node} cannot be restored`);
      } else if (info.size < o.end) {
        problem('truncated', key, o.first, o.count, `${key} is ${info.size} bytes, its blobs need ${o.end}`);
      }
    },
    opts.signal,
  );

  if (percent > 0) {
    const chosen = [...blobs.values()].map((b) => b.first).filter((u) => !missing.has(repo.objectKeyOf(u.ref)));
    const failed = (u: Use, err: unknown) => {
      const key = repo.objectKeyOf(u.ref);
      const kind = isNotFound(err) ? 'missing' : 'corrupt';
      problem(kind, key, u, blobs.get(blobIdOf(u.ref))?.count ?? 1, `file ${u.file} on ${u.node}: ${err instanceof Error ? err.message : String(err)}`);
    };
    const readOne = async (u: Use) => {
      try {
        const data = await repo.getBlob(u.ref, opts.signal);
        report.blobsRead++;
        report.bytesRead += data.length;
      } catch (err) {
        failed(u, err);
      }
    };
    // chunk objects one by one; blobs of a pack by stretches of it, each blob checked on its own
    const byPack = new Map<string, Use[]>();
    const single: Use[] = [];
    for (const u of chosen) {
      if (typeof u.ref === 'string') single.push(u);
      else byPack.set(u.ref.pack, [...(byPack.get(u.ref.pack) ?? []), u]);
    }
    const stretches = [...byPack.values()].flatMap((uses) => {
      const of = new Map(uses.map((u) => [u.ref as PackRef, u]));
      return extents([...of.keys()]).map((refs) => refs.map((r) => of.get(r)!));
    });
    await forEachLimit(single, CONCURRENCY, readOne, opts.signal);
    await forEachLimit(
      stretches,
      CONCURRENCY,
      async (uses) => {
        const refs = uses.map((u) => u.ref as PackRef);
        const start = refs[0]!.offset;
        const end = Math.max(...refs.map((r) => r.offset + r.length));
        let extent: Buffer;
        try {
          extent = await repo.getPackExtent(refs[0]!.pack, start, end, opts.signal);
        } catch {
          // the stretch cannot be read whole: each blob alone says what is wrong with it
          for (const u of uses) await readOne(u);
          return;
        }
        for (const u of uses) {
          try {
            const data = await repo.blobFrom(u.ref as PackRef, extent, start);
            report.blobsRead++;
            report.bytesRead += data.length;
          } catch (err) {
            failed(u, err);
          }
        }
      },
      opts.signal,
    );
  }
  report.status = report.problems.length > 0 ? 'damaged' : 'ok';
  report.durationMs = Math.round(performance.now() - t0);
  return report;
}
