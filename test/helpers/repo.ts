/** Test helpers that look inside a local (fs) repository the way an operator's tools would. */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { FsDriver } from '../../plugins/storage/fs.js';
import { Repository, sha256 } from '../../lib/repo/repository.js';
import type { ChunkRef, ComponentIndex } from '../../lib/repo/index-file.js';
import type { StageResult, UploadResult } from '../../lib/wire.js';
import { MANIFEST_VERSION, type Manifest, type ManifestComponent } from '../../lib/repo/manifest.js';
import type { BackupReport } from '../../lib/report.js';
import { stageIndex } from '../../agent/transfer/stage.js';
import { quietJobContext } from './job.js';

export async function openFsRepo(dir: string, secret?: Buffer): Promise<Repository> {
  return Repository.open(new FsDriver(dir), { secret });
}

/** a component index with all its entries (not checked against a manifest) */
export async function readIndexAt(dir: string, key: string, secret?: Buffer): Promise<ComponentIndex> {
  const repo = await openFsRepo(dir, secret);
  return repo.readIndex(key, sha256(await repo.readDecoded(key)));
}

/** the file and byte range on disk that hold a chunk or pack blob */
export function whereIs(dir: string, ref: ChunkRef, repo: Repository): { path: string; offset: number; length?: number } {
  const path = join(dir, ...repo.objectKeyOf(ref).split('/'));
  return typeof ref === 'string' ? { path, offset: 0 } : { path, offset: ref.offset, length: ref.length };
}

/** an fs store whose listing gives sizes, as S3's does (`listSized`), counting the HEAD requests made of it and the pages (of a thousand) listed */
export class SizedListingFs extends FsDriver {
  heads = 0;
  pages = 0;
  async *listSized(prefix: string): AsyncIterable<{ key: string; size: number }> {
    let n = 0;
    this.pages++;
    for await (const key of this.list(prefix)) {
      if (++n % 1000 === 1 && n > 1) this.pages++;
      yield { key, size: (await super.head(key))!.size };
    }
  }
  /** counts HEADs of the repository's objects; the lock's own (its probe tells the store's time) are not counted */
  override head(key: string) {
    if (!key.startsWith('locks/')) this.heads++;
    return super.head(key);
  }
}

/** that store with S3's listing from any key (`listPage`, in key order), counting the pages it gives */
export class PagedListingFs extends SizedListingFs {
  /** pages being listed now, and the most at once */
  listing = 0;
  mostListing = 0;
  async listPage(prefix: string, after: string, max: number): Promise<{ objects: { key: string; size: number }[]; more: boolean }> {
    this.pages++;
    this.mostListing = Math.max(this.mostListing, ++this.listing);
    try {
      const keys = (await collected(this.list(prefix))).filter((k) => k > after).sort();
      // sizes as a listing has them: not HEAD requests (a key deleted since it was listed is not given, as a store's listing would not)
      const sized = await Promise.all(keys.slice(0, max).map(async (key) => ({ key, size: (await FsDriver.prototype.head.call(this, key))?.size })));
      return { objects: sized.filter((o): o is { key: string; size: number } => o.size !== undefined), more: keys.length > max };
    } finally {
      this.listing--;
    }
  }
}

/** everything an async iterable gives, in order */
export async function collected<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const v of it) out.push(v);
  return out;
}

/** set `data` of upload `up` staged by the agent's restore code into a fresh folder (`temp` makes the folders): where it is, and what staging said */
export async function stagedData(repo: Repository, up: { indexKey: string; indexSha256: string }, temp: (label: string) => Promise<string>): Promise<{ staging: string; result: StageResult }> {
  const staging = join(await temp('stage'), 'data');
  const result = await stageIndex(repo, repo.indexParts(up.indexKey, up.indexSha256), { data: { live: join(await temp('live'), 'data'), staging } }, quietJobContext());
  return { staging, result };
}

/** `backupId` committed, complete, with the given nodes' uploads of component `db` */
export async function commitUploads(repo: Repository, backupId: string, ups: { node: string; plugin: string; up: UploadResult; shard?: string }[]): Promise<void> {
  const components: ManifestComponent[] = ups.map(({ node, plugin, up, shard }) => ({ node, component: 'db', plugin, shard: shard ?? 's1', indexKey: up.indexKey, indexSha256: up.indexSha256, files: up.files, bytes: up.bytes }));
  const at = new Date().toISOString();
  const m: Manifest = { version: MANIFEST_VERSION, backupId, name: backupId.slice(16), cluster: 'test', repositoryId: repo.id, status: 'complete', startedAt: at, committedAt: at, topology: [], components, report: {} as BackupReport };
  await repo.commitManifest(m);
}

/** the bytes of the repository's packs and chunk objects in `dir` (an fs repository), but for those still being written */
export async function objectBytes(dir: string): Promise<number> {
  let n = 0;
  for (const sub of ['chunks', 'packs']) {
    const entries = await readdir(join(dir, sub), { recursive: true, withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (!e.isFile() || e.name.includes('.lockstep-tmp-')) continue;
      n += (await stat(join(e.parentPath, e.name)).catch(() => ({ size: 0 }))).size;
    }
  }
  return n;
}
