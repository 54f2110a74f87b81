/**
 * A repository on top of any storage driver: its config object, content-addressed
 * chunks and packs (verified on every read), component indexes and manifests, all
 * stored through the codec (compression, encryption).
 */
import { createHash, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { LockstepError, errnoCode } from '../errors.js';
import { readAll, type ByteRange, type StorageDriver } from '../../plugins/storage/types.js';
import {
  REPO_CONFIG_KEY,
  REPO_FORMAT,
  backupIdOfManifestKey,
  backupPrefix,
  checkOfKey,
  checksPrefix,
  chunkKey,
  indexPartKey,
  manifestKey,
  packKey,
  pendingKey,
  pendingRecordOf,
  probeKey,
  type CheckSummary,
} from './layout.js';
import { blobOutOf, checkedBlob } from './blob-check.js';
import type { BlobBuffers } from './lz4.js';
import {
  INDEX_PARTS_VERSION,
  INDEX_CUTS_VERSION,
  INDEX_PIECES_VERSION,
  PIECE_CHUNKS,
  Pieces,
  parsePiecePart,
  type PartFileEntry,
  type Piece,
  inParts,
  PackNumbers,
  INDEX_VERSION,
  PendingRecordSchema,
  entryJsonAbout,
  entryOf,
  indexParts,
  parseIndex,
  parseIndexPart,
  type ChunkRef,
  type ComponentIndex,
  type IndexEntry,
  type IndexPart,
  type IndexToWrite,
  type PackRef,
  type PartPlan,
  type PendingRecord,
} from './index-file.js';
import { holdsComponent, parseManifest, serializeManifest, type Manifest } from './manifest.js';
import { checkStored, parseJson } from './stored.js';
import { Fingerprinter } from './fingerprint.js';
import { Cutter } from './cuts.js';
import { forEachLimit } from '../../agent/transfer/pool.js';
import { Codec, deriveKeys, keysMatch, newEncryptionParams, type Compression, type EncryptionParams, type Keys } from './codec.js';

export interface RepoConfig {
  format: number;
  id: string;
  createdAt: string;
  chunkSize: number;
  /** files smaller than this go into packs */
  packThreshold: number;
  packSize: number;
  hash: 'sha256';
  compression: Compression;
  encryption: 'none' | EncryptionParams;
}

export const DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024;
export const DEFAULT_PACK_THRESHOLD = 512 * 1024;
export const DEFAULT_PACK_SIZE = 4 * 1024 * 1024;

export interface InitOptions {
  chunkSize?: number;
  compression?: Compression;
  /** the encryption secret; none: the repository is not encrypted */
  secret?: Buffer;
}

export function sha256(buf: Buffer | string): string {
  return createHash('sha256').update(buf).digest('hex');
}

export { readAll };

/**
 * An object or a range of it in one buffer, the cheapest and surest way the driver has:
 * its `getBuffer` where it has one (an S3 read cut off part way is asked for again), else
 * its stream read whole.
 */
export async function readObject(driver: StorageDriver, key: string, range?: ByteRange, signal?: AbortSignal): Promise<Buffer> {
  if (driver.getBuffer) return driver.getBuffer(key, range, signal);
  return readAll(await driver.get(key, range, signal));
}

/** a part of an index a reader may pass over, as its head names it, with the head's pack table (what the part's pack numbers stand for) */
export type PartFilter = (part: IndexPart, packs: readonly string[] | undefined) => boolean;

export class Repository {
  readonly codec: Codec;
  /** block fingerprints of this repository (see fingerprint.ts) */
  readonly fingerprints: Fingerprinter;
  /** where files cut by their content are cut (see cuts.ts) */
  readonly cutter: Cutter;

  private constructor(
    readonly driver: StorageDriver,
    readonly config: RepoConfig,
    keys: Keys | undefined,
  ) {
    this.codec = new Codec(config.compression, keys);
    // what keys both: its MAC key when encrypted, else its id
    const secret = keys?.mac ?? Buffer.from(config.id, 'utf8');
    this.fingerprints = new Fingerprinter(secret);
    this.cutter = new Cutter(secret);
  }

  get location(): string {
    return this.driver.location;
  }

  get id(): string {
    return this.config.id;
  }

  static async init(driver: StorageDriver, opts: InitOptions = {}): Promise<Repository> {
    const enc = opts.secret ? newEncryptionParams(opts.secret) : undefined;
    const config: RepoConfig = {
      format: REPO_FORMAT,
      id: randomUUID(),
      createdAt: new Date().toISOString(),
      chunkSize: opts.chunkSize ?? DEFAULT_CHUNK_SIZE,
      packThreshold: DEFAULT_PACK_THRESHOLD,
      packSize: DEFAULT_PACK_SIZE,
      hash: 'sha256',
      compression: opts.compression ?? 'lz4',
      encryption: enc?.params ?? 'none',
    };
    const body = Buffer.from(`${JSON.stringify(config, null, 2)}\n`);
    // a config there that is this one (its random id and salt): the store took the write and its answer was lost
    const created = (await driver.putIfAbsent(REPO_CONFIG_KEY, body)) || (await readObject(driver, REPO_CONFIG_KEY).catch(() => undefined))?.equals(body) === true;
    if (!created) {
      throw new LockstepError('LOCKSTEP_E_REPO_EXISTS', `a repository already exists at ${driver.location}`, {
        hint: 'lockstep never re-initialises a repository; pick an empty location',
      });
    }
    return new Repository(driver, config, enc?.keys);
  }

  /** Open an existing repository; `secret` is needed (and checked) when it is encrypted. */
  static async open(driver: StorageDriver, opts: { node?: string; secret?: Buffer } = {}): Promise<Repository> {
    const { node } = opts;
    let text: string;
    try {
      text = (await readObject(driver, REPO_CONFIG_KEY)).toString('utf8');
    } catch (err) {
      if (err instanceof LockstepError && err.code === 'LOCKSTEP_E_OBJECT_NOT_FOUND') {
        throw new LockstepError('LOCKSTEP_E_REPO_NOT_INITIALIZED', `no lockstep repository at ${driver.location}`, {
          node,
          cause: err,
          hint: 'run "lockstep repo init" once; on an agent, check the shared directory is mounted',
        });
      }
      throw err;
    }
    const config = parseJson(text, `${driver.location}/${REPO_CONFIG_KEY}`) as RepoConfig;
    if (config.format !== REPO_FORMAT || typeof config.id !== 'string' || !(config.chunkSize > 0) || !(config.packThreshold >= 0) || !(config.packSize > 0)) {
      throw new LockstepError(
        'LOCKSTEP_E_REPO_CORRUPT',
        `${driver.location}: repository format ${String(config.format)} is not one this lockstep reads (${REPO_FORMAT})`,
        { node },
      );
    }
    let keys: Keys | undefined;
    if (config.encryption !== 'none') {
      if (!opts.secret) {
        throw new LockstepError('LOCKSTEP_E_REPO_KEY_MISSING', `repository ${driver.location} is encrypted and no key was given`, {
          node,
          hint: 'set repository.encryption.keyFile or repository.encryption.keyEnv to the key the repository was created with',
        });
      }
      keys = deriveKeys(opts.secret, config.encryption.salt);
      if (!keysMatch(keys, config.encryption)) {
        throw new LockstepError('LOCKSTEP_E_REPO_KEY_WRONG', `the key given does not open repository ${driver.location}`, {
          node,
          hint: 'it is not the key the repository was created with (check the key file or environment variable)',
        });
      }
    } else if (opts.secret) {
      throw new LockstepError('LOCKSTEP_E_REPO_KEY_WRONG', `repository ${driver.location} is not encrypted, but a key was given`, {
        node,
        hint: 'remove repository.encryption from the config, or point it at the encrypted repository',
      });
    }
    return new Repository(driver, config, keys);
  }

  /** Prove this process can write here (and that it sees the repository it expects). */
  async probeWrite(node: string): Promise<void> {
    const key = probeKey(node);
    const body = Buffer.from(JSON.stringify({ node, host: hostname(), at: new Date().toISOString() }));
    // as data is written: a store's storage class and encryption for data are tried here, before a backup freezes anything
    await this.driver.put(key, body, undefined, { data: true });
    await this.driver.delete(key);
  }

  chunkObjectKey(hash: string): string {
    return chunkKey(this.codec.objectName(hash));
  }

  async hasChunk(hash: string): Promise<boolean> {
    return (await this.driver.head(this.chunkObjectKey(hash))) !== undefined;
  }

  /** Store a chunk unless present; the stored size if this call wrote it, else 0. */
  async putChunk(hash: string, data: Buffer, signal?: AbortSignal): Promise<number> {
    if (await this.hasChunk(hash)) return 0;
    const stored = await this.codec.encode(data);
    await this.driver.put(this.chunkObjectKey(hash), stored, signal, { data: true });
    return stored.length;
  }

  /** the object that holds a chunk, or the pack that holds a blob */
  objectKeyOf(ref: ChunkRef): string {
    return typeof ref === 'string' ? this.chunkObjectKey(ref) : packKey(ref.pack);
  }

  /** Store a pack (blobs already encoded, back to back), then the pending record that lets a later run reuse it. */
  async putPack(record: PendingRecord, body: Buffer, at: { node: string; component: string; backupId: string }, signal?: AbortSignal): Promise<void> {
    await this.driver.put(packKey(record.pack), body, signal, { data: true });
    await this.driver.put(pendingKey(at.node, at.component, at.backupId, record.pack), await this.codec.encode(Buffer.from(JSON.stringify(record))));
  }

  async readPending(key: string): Promise<PendingRecord> {
    return checkStored(PendingRecordSchema, parseJson((await this.readDecoded(key)).toString('utf8'), key), key, 'pending record');
  }

  /**
   * Read a chunk or a blob in a pack and check it against its hash. `into`: where a
   * compressed one is decoded (give the blob back there once it is written).
   */
  async getBlob(ref: ChunkRef, signal?: AbortSignal, into?: BlobBuffers): Promise<Buffer> {
    if (typeof ref !== 'string') return (await this.getPackedRun([ref], signal, into))[0]!;
    const key = this.objectKeyOf(ref);
    return checkedBlob(this.codec, ref, key, `chunk ${key}`, await this.read(key, undefined, signal), this.location, into);
  }

  /**
   * Read blobs that lie back to back in one pack with one ranged request, each checked
   * against its hash; in the order given. `into`: as for `getBlob`.
   */
  async getPackedRun(refs: PackRef[], signal?: AbortSignal, into?: BlobBuffers): Promise<Buffer[]> {
    const first = refs[0]!;
    const end = first.offset + refs.reduce((n, r) => n + r.length, 0);
    const extent = await this.getPackExtent(first.pack, first.offset, end, signal);
    const out: Buffer[] = [];
    let at = first.offset;
    for (const r of refs) {
      if (r.pack !== first.pack || r.offset !== at) throw new Error('getPackedRun: blobs are not back to back in one pack');
      out.push(await this.blobFrom(r, extent, first.offset, into));
      at += r.length;
    }
    return out;
  }

  /** The stored bytes [start, end) of a pack, unchecked: take blobs out of it with `blobFrom`. */
  getPackExtent(pack: string, start: number, end: number, signal?: AbortSignal): Promise<Buffer> {
    return this.read(packKey(pack), { start, end: end - 1 }, signal);
  }

  /** A blob out of an extent of its pack that begins at `start`, checked against its hash. */
  blobFrom(r: PackRef, extent: Buffer, start: number, into?: BlobBuffers): Promise<Buffer> {
    return blobOutOf(this.codec, r, extent, start, this.location, into);
  }

  private read(key: string, range?: ByteRange, signal?: AbortSignal): Promise<Buffer> {
    return readObject(this.driver, key, range, signal);
  }

  async readDecoded(key: string): Promise<Buffer> {
    return this.codec.decode(await this.read(key), `${key} in ${this.location}`);
  }

  /**
   * Write a component index and make it durable with every chunk put before it; returns
   * the hash of its plain content for the manifest. Nothing refers to an index until its
   * manifest is written, after this returns, so one flush at the end is enough: the flush
   * started first only lets the disk take the chunks while the index is made (an
   * incremental of a 5 GiB node waited ~150 ms for it before making its index).
   * An index whose entries take more than `partBytes` of JSON is stored as parts (each
   * about that size) and a head that lists them with their hashes: no object, and no
   * string in memory, grows with the node's size (a JSON string cannot pass 512 MiB).
   * With `plan`, on a store that can copy, a part of the previous index whose entries did
   * not change is copied to this index's part, not written again; should a copy fail (the
   * previous backup deleted meanwhile) the whole index is written again, reusing none.
   */
  async writeIndex(key: string, given: ComponentIndex | IndexToWrite, partBytes = INDEX_PART_BYTES, plan?: PartPlan, pieceChunks = PIECE_CHUNKS): Promise<string> {
    const early = this.driver.flush().then(
      () => undefined,
      (err: unknown) => err,
    );
    const { cut, ...rest } = given as IndexToWrite;
    const from = given.entries;
    const about = Array.isArray(from) ? jsonSizeAbout(from) : from.aboutBytes;
    // only today's index versions can be split; an older one is rewritten as it was (tests). One with files cut by their content always is (version 6)
    const split = (given.version === INDEX_VERSION || inParts(given.version)) && (about > partBytes || cut === true);
    // a small index's entries go in its one object
    const index: ComponentIndex = { ...rest, entries: split ? [] : Array.isArray(from) ? from : Array.from(from, entryOf) };
    let written = { parts: [] as IndexPart[], packs: [] as string[] };
    if (split) {
      const reuse = this.driver.copy ? plan : undefined;
      try {
        written = await this.writeParts(key, from, partBytes, reuse, pieceChunks);
      } catch (err) {
        if (!(err instanceof PartCopyFailed)) throw err;
        reuse!.restart(err.reason);
        written = await this.writeParts(key, from, partBytes, reuse, pieceChunks);
        // parts of the first attempt past the last of this one
        for (let n = written.parts.length + 1; n <= err.parts; n++) await this.driver.delete(indexPartKey(key, n));
      }
    }
    const { parts, packs } = written;
    const head: ComponentIndex =
      parts.length > 0
        ? { ...index, version: parts.some((p) => p.more) ? INDEX_PIECES_VERSION : cut === true ? INDEX_CUTS_VERSION : INDEX_PARTS_VERSION, entries: [], parts, packs }
        : { ...index, version: inParts(index.version) ? INDEX_VERSION : index.version, parts: undefined, packs: undefined };
    const plain = Buffer.from(JSON.stringify(head));
    await this.driver.put(key, await this.codec.encode(plain));
    const failed = await early;
    if (failed) throw failed;
    await this.driver.flush();
    return sha256(plain);
  }

  /** an index's entries stored as parts (see `writeIndex`); the parts and the pack table */
  private async writeParts(key: string, from: IndexToWrite['entries'] | IndexEntry[], partBytes: number, plan: PartPlan | undefined, pieceChunks: number): Promise<{ parts: IndexPart[]; packs: string[] }> {
    const parts: IndexPart[] = [];
    const packs = new PackNumbers();
    if (plan) for (const id of plan.packs) packs.of(id);
    // parts stored a few at once, each from a scratch buffer of its own (a part's JSON is
    // encoded into it at once, so the next part can be made meanwhile), and parts of the
    // previous index copied a few at once: on S3 each is a request
    const stores = new InFlight();
    const copies = new InFlight();
    const scratch: { buf?: Buffer }[] = [];
    let entry = 0;
    try {
      for (const p of indexParts(from, partBytes, 1, packs, plan, pieceChunks)) {
        if ('reuse' in p) {
          // a part, or a run of parts that hold an entry in pieces, each copied as it is
          let stop = false;
          for (const old of p.reuse.run ?? [p.reuse]) {
            const to = indexPartKey(key, parts.length + 1);
            const part: IndexPart = { key: to, sha256: old.sha256, entries: old.entries, ...((old as IndexPart).more ? { more: true } : {}) };
            const shares = part.more === true || parts.at(-1)?.more === true;
            parts.push(part);
            plan!.written(entry, part, true, shares);
            entry += part.entries;
            if (!(await copies.room(PART_COPIES_AT_ONCE)) || stores.failed !== undefined) {
              stop = true;
              break;
            }
            copies.add(this.driver.copy!(old.key, to));
          }
          if (stop) break;
          continue;
        }
        const partKey = indexPartKey(key, parts.length + 1);
        const part: IndexPart = { key: partKey, sha256: sha256(p.json), entries: p.entries, ...(p.more ? { more: true } : {}) };
        // a part that holds a piece of an entry it shares with the part before or after it is never reused
        const shares = p.more === true || parts.at(-1)?.more === true;
        parts.push(part);
        plan?.written(entry, part, false, shares);
        entry += part.entries;
        if (!(await stores.room(PART_STORES_AT_ONCE)) || copies.failed !== undefined) break;
        const into = scratch.pop() ?? {};
        const stored = await this.codec.encode(p.json, into);
        stores.add(this.driver.put(partKey, stored), () => scratch.push(into));
      }
    } finally {
      await stores.settled();
      await copies.settled();
    }
    if (stores.failed !== undefined) throw stores.failed;
    if (copies.failed !== undefined) throw new PartCopyFailed(copies.failed, parts.length);
    return { parts, packs: packs.ids };
  }

  /** A component index, checked against the manifest's hash (its parts against the head's), entries all in `entries`. */
  async readIndex(key: string, expectedSha256: string): Promise<ComponentIndex> {
    const entries: IndexEntry[] = [];
    const packIds = new Map<string, string>();
    const head = await this.readIndexParts(key, expectedSha256, (got) => {
      sharePackIds(got, packIds);
      for (const e of got) entries.push(e);
    });
    return { ...head, entries };
  }

  /**
   * A component index's entries given part by part to `each` (one call for an index
   * without parts), each part checked as `readIndex` checks it, so a reader need not
   * hold them all; the index's head is returned, its `entries` empty and no `parts`.
   * A part found bad throws after the parts before it were given.
   */
  async readIndexParts(key: string, expectedSha256: string, each: (entries: IndexEntry[]) => void, pass?: PartFilter): Promise<ComponentIndex> {
    let head: ComponentIndex | undefined;
    for await (const part of this.indexParts(key, expectedSha256, pass)) {
      head = part.head;
      each(part.entries);
    }
    return head!;
  }

  /** An index's head as stored (its `parts` and `packs`, or its entries when it has no parts), checked against the manifest's hash. */
  async readIndexHead(key: string, expectedSha256: string): Promise<ComponentIndex> {
    const body = await this.readDecoded(key);
    if (sha256(body) !== expectedSha256) {
      throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `file index ${key} in ${this.location} does not match the manifest's hash`, { details: { object: key } });
    }
    return parseIndex(body.toString('utf8'), key);
  }

  /**
   * The same as a generator: each part with the index's head (`entries` empty, no `parts`),
   * the next part read and checked while the one before is worked on. Nothing is given
   * before the head was checked against the manifest's hash. `pass`: the parts not to read
   * (asked of each before any is read; at least the head is given).
   */
  async *indexParts(key: string, expectedSha256: string, pass?: PartFilter): AsyncGenerator<{ head: ComponentIndex; entries: IndexEntry[] }> {
    const index = await this.readIndexHead(key, expectedSha256);
    if (!index.parts) {
      yield { head: { ...index, entries: [] }, entries: index.entries };
      return;
    }
    const head: ComponentIndex = { ...index, entries: [], parts: undefined, packs: undefined };
    const parts = index.parts;
    // a head names its parts where they must be: it cannot send a reader elsewhere
    for (const [i, part] of parts.entries()) {
      if (part.key !== indexPartKey(key, i + 1)) {
        throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `file index ${key} in ${this.location} names part ${i + 1} as ${part.key}, not ${indexPartKey(key, i + 1)}`, { details: { object: key } });
      }
    }
    const pieces = index.version === INDEX_PIECES_VERSION ? new Pieces() : undefined;
    const read = async (i: number): Promise<(IndexEntry | PartFileEntry | Piece)[]> => {
      const part = parts[i]!;
      const where = `${part.key} in ${this.location}`;
      const plain = await this.readDecoded(part.key);
      if (sha256(plain) !== part.sha256) {
        throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `part ${i + 1} of file index ${key} (${part.key}) in ${this.location} does not match the index's hash`, { details: { object: part.key } });
      }
      if (part.more && !pieces) throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `file index ${key} in ${this.location} is version ${index.version}, and says its part ${i + 1} goes on in the next`, { details: { object: key } });
      const got = pieces ? parsePiecePart(plain.toString('utf8'), where, index.sets, index.packs!) : parseIndexPart(plain.toString('utf8'), where, index.sets, index.packs);
      const begun = pieces ? got.reduce((n, e) => (e.type === 'more' ? n : n + 1), 0) : got.length;
      if (begun !== part.entries) {
        throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `part ${i + 1} of file index ${key} (${part.key}) holds ${begun} entries, not ${part.entries}`, { details: { object: part.key } });
      }
      return got;
    };
    // a part that shares an entry with the part before or after it is always read (its pieces are joined)
    const shares = (i: number) => parts[i]!.more === true || parts[i - 1]?.more === true;
    const todo = parts.map((_, i) => i).filter((i) => shares(i) || !pass?.(parts[i]!, index.packs));
    if (todo.length === 0) yield { head, entries: [] };
    let next = todo.length > 0 ? read(todo[0]!) : undefined;
    for (let i = 0; next; i++) {
      const got = await next;
      next = i + 1 < todo.length ? read(todo[i + 1]!) : undefined;
      // awaited on the next turn; not an unhandled rejection if the reader stops first
      next?.catch(() => undefined);
      const part = parts[todo[i]!]!;
      const entries = pieces ? pieces.join(got, part, `${part.key} in ${this.location}`) : (got as IndexEntry[]);
      if (pieces && i + 1 === todo.length) pieces.end(`file index ${key} in ${this.location}`);
      yield { head, entries };
    }
  }

  /** The commit point of a backup: create-if-absent, so two writers cannot both commit. */
  async commitManifest(m: Manifest): Promise<void> {
    const plain = serializeManifest(m);
    if (await this.driver.putIfAbsent(manifestKey(m.backupId), await this.codec.encode(plain))) {
      // its folder's entry too (a filesystem): the backup is committed once this returns
      await this.driver.flush();
      return;
    }
    // this very manifest: the store took the write and its answer was lost, so the retry found it there
    const there = await this.readDecoded(manifestKey(m.backupId)).catch(() => undefined);
    if (there?.equals(plain)) return;
    throw new LockstepError('LOCKSTEP_E_BACKUP_EXISTS', `backup ${m.backupId} already exists in ${this.location}`);
  }

  async hasManifest(backupId: string): Promise<boolean> {
    return (await this.driver.head(manifestKey(backupId))) !== undefined;
  }

  async readManifest(backupId: string): Promise<Manifest> {
    let body: Buffer;
    try {
      body = await this.readDecoded(manifestKey(backupId));
    } catch (err) {
      if (err instanceof LockstepError && err.code === 'LOCKSTEP_E_OBJECT_NOT_FOUND') {
        throw new LockstepError('LOCKSTEP_E_BACKUP_NOT_FOUND', `no backup ${backupId} in ${this.location}`, {
          hint: 'list backups with "lockstep backup list"',
        });
      }
      throw err;
    }
    return parseManifest(body.toString('utf8'), manifestKey(backupId));
  }

  /**
   * The manifests of `ids`, in that order, `MANIFESTS_AT_ONCE` requests at a time (not one
   * per backup at once: thousands on S3 with a long history). The first that cannot be
   * read fails the whole (what needs every one: prune).
   */
  async readManifests(ids: readonly string[], signal?: AbortSignal): Promise<Manifest[]> {
    return (await this.readEach(ids, false, signal)).map((r) => (r as { manifest: Manifest }).manifest);
  }

  /**
   * As `readManifests`, but a manifest that is there and damaged (LOCKSTEP_E_REPO_CORRUPT)
   * comes back as its error, in its place, and one removed since the listing is left out:
   * a damaged manifest does not hide the others (`backup list`). Any other failure (the
   * store unreachable, a wrong key) still fails the whole.
   */
  async listManifests(ids: readonly string[]): Promise<ManifestRead[]> {
    return this.readEach(ids, true);
  }

  private async readEach(ids: readonly string[], damagedListed: boolean, signal?: AbortSignal): Promise<ManifestRead[]> {
    const out: (ManifestRead | undefined)[] = new Array(ids.length);
    await forEachLimit(
      ids,
      MANIFESTS_AT_ONCE,
      async (backupId, i) => {
        try {
          out[i] = { backupId, manifest: await this.readManifest(backupId) };
        } catch (err) {
          if (!damagedListed || !(err instanceof LockstepError)) throw err;
          if (err.code === 'LOCKSTEP_E_REPO_CORRUPT') out[i] = { backupId, error: err };
          else if (err.code !== 'LOCKSTEP_E_BACKUP_NOT_FOUND') throw err;
        }
      },
      signal,
    );
    return out.filter((r): r is ManifestRead => r !== undefined);
  }

  /** Ids of committed backups, oldest first. */
  async listBackupIds(): Promise<string[]> {
    return (await this.listBackups()).ids;
  }

  /**
   * Ids of committed backups, oldest first, and what the names of their check records
   * tell (checks.ts). Where the store lists one level at a time (`listShallow`): the
   * folders under backups/, then each folder's own level (is its manifest there? has it
   * checks?), `MANIFESTS_AT_ONCE` at a time, then the checks of those that have some; not
   * every index part of every backup, which is what one plain listing of backups/ goes
   * through (that listing is the way for a store without it).
   */
  async listBackups(): Promise<{ ids: string[]; checks: Map<string, CheckSummary[]> }> {
    const ids: string[] = [];
    const checks = new Map<string, CheckSummary[]>();
    const add = (key: string) => {
      const check = checkOfKey(key);
      if (!check) return;
      const of = checks.get(check.backupId);
      if (of) of.push(check);
      else checks.set(check.backupId, [check]);
    };
    const shallow = this.driver.listShallow?.bind(this.driver);
    if (shallow) {
      const checked: string[] = [];
      await forEachLimit(await this.backupFolders(), MANIFESTS_AT_ONCE, async (id) => {
        let committed = false;
        let hasChecks = false;
        for await (const key of shallow(backupPrefix(id))) {
          if (key === manifestKey(id)) committed = true;
          else if (key === checksPrefix(id)) hasChecks = true;
        }
        if (committed) ids.push(id);
        if (committed && hasChecks) checked.push(id);
      });
      await forEachLimit(checked, MANIFESTS_AT_ONCE, async (id) => {
        for await (const key of this.driver.list(checksPrefix(id))) add(key);
      });
    } else {
      for await (const key of this.driver.list('backups/')) {
        const id = backupIdOfManifestKey(key);
        if (id) ids.push(id);
        else add(key);
      }
    }
    // a record whose backup is gone (pruned while it was checked) is a leftover
    const committed = new Set(ids);
    for (const id of checks.keys()) if (!committed.has(id)) checks.delete(id);
    return { ids: ids.sort(), checks };
  }

  /**
   * Runs that stored data and did not commit their component (killed mid-upload, or their
   * backup committed as partial without it): what their component's next run resumes from
   * (its pending records). One level of `pending/` at a time where the store lists so.
   */
  async interruptedRuns(): Promise<{ node: string; component: string; backupId: string }[]> {
    const runs = new Map<string, { node: string; component: string; backupId: string }>();
    const shallow = this.driver.listShallow?.bind(this.driver);
    if (shallow) {
      const folders = async (prefix: string) => {
        const out: string[] = [];
        for await (const p of shallow(prefix)) if (p.endsWith('/')) out.push(p.slice(prefix.length, -1));
        return out;
      };
      /** whether a folder holds a record (not only what a write killed mid-way left on a filesystem) */
      const holdsRecord = async (prefix: string) => {
        for await (const p of shallow(prefix)) if (!p.endsWith('/')) return true;
        return false;
      };
      for (const node of await folders('pending/')) {
        for (const component of await folders(`pending/${node}/`)) {
          for (const backupId of await folders(`pending/${node}/${component}/`)) {
            if (await holdsRecord(`pending/${node}/${component}/${backupId}/`)) runs.set(`${node}/${component}/${backupId}`, { node, component, backupId });
          }
        }
      }
    } else {
      for await (const key of this.driver.list('pending/')) {
        const rec = pendingRecordOf(key);
        if (rec) runs.set(`${rec.node}/${rec.component}/${rec.backupId}`, { node: rec.node, component: rec.component, backupId: rec.backupId });
      }
    }
    // a backup's manifest: undefined where there is none, null where it cannot be read (its runs not told either way)
    const manifests = new Map<string, Promise<Manifest | undefined | null>>();
    const out: { node: string; component: string; backupId: string }[] = [];
    for (const run of runs.values()) {
      if (!manifests.has(run.backupId)) {
        manifests.set(
          run.backupId,
          this.readManifest(run.backupId).catch((err: unknown) => (err instanceof LockstepError && err.code === 'LOCKSTEP_E_BACKUP_NOT_FOUND' ? undefined : null)),
        );
      }
      const m = await manifests.get(run.backupId)!;
      if (m === null) continue;
      if (!m || !holdsComponent(m, run.node, run.component)) out.push(run);
    }
    return out.sort((a, b) => a.backupId.localeCompare(b.backupId) || a.node.localeCompare(b.node) || a.component.localeCompare(b.component));
  }

  /**
   * The ids of the folders under backups/ (the store lists one level at a time): every
   * committed backup's, and any begun and not (yet) committed, oldest first.
   */
  private async backupFolders(): Promise<string[]> {
    const ids: string[] = [];
    for await (const p of this.driver.listShallow!('backups/')) {
      const id = /^backups\/([^/]+)\/$/.exec(p)?.[1];
      if (id) ids.push(id);
    }
    return ids.sort();
  }

  /**
   * The committed backups but `except`, newest first, each with its manifest (a backup
   * whose manifest cannot be read comes last of its second). Ids sort by the second a
   * backup began, then by name: backups begun in the same second are put in the order of
   * the time their manifests record.
   *
   * Manifests are read ahead of the reader, more the further it goes: none ahead of the
   * first (an upload usually stops there: its node's newest backup), then as many as it
   * has been given, up to `MANIFESTS_AHEAD`. A node's first backup looks through every
   * manifest for its own component; one request at a time, a long history on S3 made
   * that minutes.
   */
  async *newestFirst(except?: string): AsyncGenerator<{ id: string; manifest: Promise<Manifest> }> {
    // one listing of the backups' folders where the store has it: a folder without a manifest is passed over below
    const ids = (this.driver.listShallow ? await this.backupFolders() : await this.listBackupIds()).filter((id) => id !== except).reverse();
    const reads = new Map<number, Promise<Manifest>>();
    const read = (i: number): Promise<Manifest> => {
      let p = reads.get(i);
      if (!p) {
        p = this.readManifest(ids[i]!);
        // a read ahead that the reader never gets to must not be an unhandled rejection
        p.catch(() => undefined);
        reads.set(i, p);
      }
      return p;
    };
    for (let i = 0; i < ids.length; ) {
      let j = i + 1;
      while (j < ids.length && secondOf(ids[j]!) === secondOf(ids[i]!)) j++;
      for (let k = j; k < Math.min(ids.length, j + Math.min(MANIFESTS_AHEAD, i)); k++) read(k);
      const group = ids.slice(i, j).map((id, k) => ({ id, manifest: read(i + k) }));
      for (let k = i; k < j; k++) reads.delete(k);
      // a backup without a manifest (not committed, or removed since the listing) is not one
      const began = await Promise.all(group.map((g) => g.manifest.then((m) => Date.parse(m.startedAt), (err: unknown) => (isBackupNotFound(err) ? undefined : -Infinity))));
      yield* group
        .flatMap((g, k) => (began[k] === undefined ? [] : [{ g, at: began[k] }]))
        .sort((x, y) => y.at - x.at)
        .map((x) => x.g);
      i = j;
    }
  }

  /**
   * The newest complete backup (`latest` on the command line); partial ones are passed
   * over, unless `partialToo` (`restore latest --allow-partial`: a partial backup newer
   * than the last complete one is what the operator asked for, and an older complete one
   * would bring every node back further than needed). A manifest that cannot be read on
   * the way stops the search: the backup it belongs to may be the newest, and an older
   * one must not be taken in its place unsaid.
   */
  async latestComplete(partialToo = false): Promise<Manifest> {
    for await (const { id, manifest } of this.newestFirst()) {
      let m: Manifest;
      try {
        m = await manifest;
      } catch (err) {
        // removed since the listing (a prune, a delete): not there to take
        if (err instanceof LockstepError && err.code === 'LOCKSTEP_E_BACKUP_NOT_FOUND') continue;
        if (!(err instanceof LockstepError) || err.code !== 'LOCKSTEP_E_REPO_CORRUPT') throw err;
        throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `cannot tell which backup is the latest: ${err.message}`, {
          details: { backupId: id },
          hint: `name the backup to use by its id (lockstep backup list), or give ${id} up (lockstep backup delete ${id})`,
          cause: err,
        });
      }
      if (m.status === 'complete' || partialToo) return m;
    }
    throw new LockstepError('LOCKSTEP_E_BACKUP_NOT_FOUND', `no ${partialToo ? '' : 'complete '}backup in ${this.location} to take as the latest`, { hint: 'lockstep backup list shows what there is' });
  }

  /** Remove what a backup that never committed left under its prefix (indexes only; chunks may be shared). */
  async discardUncommitted(backupId: string): Promise<void> {
    if (await this.hasManifest(backupId)) return;
    for await (const key of this.driver.list(backupPrefix(backupId))) await this.driver.delete(key);
  }
}

/** about how many bytes of JSON `entries` make (a little more, rather than less) */
function jsonSizeAbout(entries: IndexEntry[]): number {
  let n = 0;
  for (const e of entries) n += entryJsonAbout(e.path, e.type === 'file' ? e.chunks.length : 0);
  return n;
}

/** a manifest read, or why it could not be */
export type ManifestRead = { backupId: string; manifest: Manifest } | { backupId: string; error: LockstepError };

/** the second an id says its backup began in */
const secondOf = (id: string) => id.slice(0, 'yyyymmdd-hhmmss'.length);

/**
 * `reads` (of ids in their order) oldest first, as `Repository.newestFirst` has them the
 * other way round: by the second each began, and within a second by the time its manifest
 * records (an unreadable one first), not by name. `backup list` said a backup begun just
 * before another in the same second was the newer when its name sorted after, while
 * `latest` named the other.
 */
export function oldestFirst(reads: readonly ManifestRead[]): ManifestRead[] {
  const began = (r: ManifestRead) => ('error' in r ? -Infinity : Date.parse(r.manifest.startedAt));
  return [...reads].sort((a, b) => {
    const sa = secondOf(a.backupId);
    const sb = secondOf(b.backupId);
    if (sa !== sb) return sa < sb ? -1 : 1;
    const ta = began(a);
    const tb = began(b);
    return ta === tb ? 0 : ta < tb ? -1 : 1;
  });
}

/** manifests `Repository.newestFirst` reads ahead of its reader at most */
const MANIFESTS_AHEAD = 8;
/** manifests `Repository.readManifests` reads at once */
const MANIFESTS_AT_ONCE = 16;

/**
 * One string per pack id: JSON.parse makes a copy at every reference (~80 bytes each,
 * and a pack holds up to a hundred blocks), which a big index held in memory pays for.
 */
function sharePackIds(entries: IndexEntry[], ids: Map<string, string>): void {
  for (const e of entries) {
    if (e.type !== 'file') continue;
    for (const c of e.chunks) {
      if (typeof c === 'string') continue;
      const id = ids.get(c.pack);
      if (id === undefined) ids.set(c.pack, c.pack);
      else c.pack = id;
    }
  }
}

/**
 * the JSON of one index object or part stays about this small: a reader holds one part
 * parsed at a time (~4× its JSON as objects), so this bounds what reading an index costs.
 * 512 KiB, not 2 MiB: an incremental makes again every part that holds a changed entry
 * (agent/transfer/part-plan.ts), so smaller parts leave less to make: a 7 GB node of 52k
 * files, 1% changed, wrote its index in 239–285 ms against 313–369 with 2 MiB parts
 * (~440–550 before parts were reused). S3 sees four times the part objects (~45 for 52k files).
 */
export const INDEX_PART_BYTES = 512 * 1024;
/** parts of a previous index copied at once */
const PART_COPIES_AT_ONCE = 8;

/** parts of an index stored at once */
const PART_STORES_AT_ONCE = 4;

/** Requests in flight, at most so many at once; the first failure is kept, the others are waited for. */
class InFlight {
  private readonly running = new Set<Promise<void>>();
  failed: unknown;

  add(work: Promise<void>, done?: () => void): void {
    const p: Promise<void> = work.then(
      () => {
        this.running.delete(p);
        done?.();
      },
      (err: unknown) => {
        this.running.delete(p);
        this.failed ??= err;
      },
    );
    this.running.add(p);
  }

  /** wait until fewer than `limit` run; false once one failed */
  async room(limit: number): Promise<boolean> {
    while (this.running.size >= limit && this.failed === undefined) await Promise.race(this.running);
    return this.failed === undefined;
  }

  async settled(): Promise<void> {
    await Promise.all(this.running);
  }
}

/** a part of the previous index could not be copied: the index is written again without reusing any */
class PartCopyFailed extends Error {
  constructor(
    readonly reason: unknown,
    /** how many parts it had stored or copied (or begun to) */
    readonly parts: number,
  ) {
    super('a part of the previous index could not be copied');
  }
}

export function isNotFound(err: unknown): boolean {
  return (err instanceof LockstepError && err.code === 'LOCKSTEP_E_OBJECT_NOT_FOUND') || errnoCode(err) === 'ENOENT';
}

const isBackupNotFound = (err: unknown) => err instanceof LockstepError && err.code === 'LOCKSTEP_E_BACKUP_NOT_FOUND';
