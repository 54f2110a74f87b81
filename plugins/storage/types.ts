/**
 * A storage driver: the few operations a repository needs from a place that stores
 * objects (a local or shared directory, S3 …). Keys are '/'-separated relative paths.
 * Cross-cutting behaviour (retries, rate limits, metrics) wraps a driver; it is not
 * repeated inside one.
 */
import type { Readable } from 'node:stream';
import type { TSchema } from '@sinclair/typebox';
import { LockstepError } from '../../lib/errors.js';
import type { ConfigProblem } from '../../lib/config.js';

/** a stream (a driver's `get`) read whole into one buffer */
export async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/** every key a driver lists under `prefix`, in one array */
export async function listKeys(driver: Pick<StorageDriver, 'list'>, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const key of driver.list(prefix)) keys.push(key);
  return keys;
}

/** Every driver's guard: a key is relative and never climbs out (no "..", no empty part). */
export function checkObjectKey(key: string): string {
  if (key.split('/').some((p) => p === '..' || p === '') || key.startsWith('/')) {
    throw new LockstepError('LOCKSTEP_E_INTERNAL', `invalid object key "${key}"`);
  }
  return key;
}

/** the most keys one batch delete request takes (S3's DeleteObjects limit; see `deleteMany`) */
export const DELETE_MANY_MAX = 1000;

export interface StorageCapabilities {
  /** putIfAbsent is atomic on the store itself (not emulated by check-then-write) */
  atomicCreateIfAbsent: boolean;
  /** get honours byte ranges */
  rangeRead: boolean;
}

export interface ObjectInfo {
  size: number;
  /**
   * when the object was last written, in ms since the epoch by the store's own clock (S3:
   * LastModified, whole seconds; a filesystem: the mtime its server set); undefined where
   * the store does not tell. The repository lock judges leases by it, so hosts whose clocks
   * disagree cannot take over a live lock (lib/repo/lock.ts)
   */
  modified?: number;
}

export interface ByteRange {
  start: number;
  /** inclusive */
  end: number;
}

export interface PutOptions {
  /**
   * the object holds backup data (a pack or a chunk object): written once, read by restore
   * and verify only. A store with a storage class for data (S3 `storageClass`) puts it
   * there; everything else (config, manifests, indexes, locks, records) stays in the
   * store's default class
   */
  data?: boolean;
}

export interface StorageDriver {
  readonly name: string;
  /** where it points, for messages; never contains a secret */
  readonly location: string;
  readonly capabilities: StorageCapabilities;
  /**
   * create or replace an object; readers never see a half-written object. It may not be
   * durable until `flush` (batching durability is what makes many small writes fast)
   */
  put(key: string, body: Buffer | Readable, signal?: AbortSignal, opts?: PutOptions): Promise<void>;
  /** make every object put so far durable */
  flush(): Promise<void>;
  /**
   * create only if absent, durably: true if this call created it, false if it existed.
   * `durable: false` for a write deleted at once (the lock's probe of the store), which
   * need not wait for the disk
   */
  putIfAbsent(key: string, body: Buffer, opts?: { durable?: boolean }): Promise<boolean>;
  /** throws LOCKSTEP_E_OBJECT_NOT_FOUND if absent */
  get(key: string, range?: ByteRange, signal?: AbortSignal): Promise<Readable>;
  /**
   * optional: the same, read whole into one buffer, for drivers that can do that cheaper
   * than a stream (the many small ranged reads of a restore)
   */
  getBuffer?(key: string, range?: ByteRange, signal?: AbortSignal): Promise<Buffer>;
  /** undefined only when absent; any other failure throws */
  head(key: string): Promise<ObjectInfo | undefined>;
  /** keys under the prefix, in no particular order */
  list(prefix: string): AsyncIterable<string>;
  /**
   * optional: one level under `prefix` (which ends in '/'): the keys right under it, and each
   * folder below it once, as its prefix (ending in '/'); in no particular order. S3: a listing
   * with the delimiter '/'; fs: one folder read. A repository lists its backups this way: a
   * plain listing of `backups/` goes through every index part of every backup, thousands of
   * pages on a big, long-kept repository.
   */
  listShallow?(prefix: string): AsyncIterable<string>;
  /**
   * optional: `list` with each object's size, for a store whose listing has it at no cost
   * (S3: a page holds a thousand): verify and prune then need no HEAD request per object.
   */
  listSized?(prefix: string): AsyncIterable<{ key: string; size: number }>;
  /**
   * optional: one page of a sized listing that starts anywhere: up to `max` keys under
   * `prefix` that sort after `after`, in key order (S3 lists by the keys' bytes), each with
   * its size, and whether more follow. For a store that can: verify then lists only around
   * the objects a backup references, not the whole repository (lib/repo/listed-sizes.ts).
   */
  listPage?(prefix: string, after: string, max: number): Promise<{ objects: { key: string; size: number }[]; more: boolean }>;
  /** absent keys are not an error */
  delete(key: string): Promise<void>;
  /**
   * optional: delete `keys`, `DELETE_MANY_MAX` of them a request, for a store that has a
   * batch delete (S3 DeleteObjects). Absent keys are not an error. Gives back the keys it
   * did not delete (the store refused them one by one, or has no batch delete: then all of
   * them, without a request from then on); the caller deletes those with `delete`, which
   * retries and names what fails. Throws only when the request itself failed for good.
   */
  deleteMany?(keys: readonly string[], signal?: AbortSignal): Promise<string[]>;
  /**
   * optional: make `to` an object with the bytes of `from`, inside the store (no bytes
   * through this process); replaces `to` if it exists; durable as `put` is (after `flush`).
   * Throws LOCKSTEP_E_OBJECT_NOT_FOUND when `from` is absent. A repository that has it
   * stores the parts of a file index that did not change since the previous backup by
   * copying them.
   */
  copy?(from: string, to: string, signal?: AbortSignal): Promise<void>;
  /**
   * optional: remove what writers killed mid-write left behind (temp files), older than
   * `olderThanMs`; with `dryRun` only count them
   */
  sweepTemporary?(olderThanMs: number, dryRun: boolean): Promise<{ files: number; bytes: number }>;
  /**
   * optional: whether the store keeps what is deleted or replaced as old versions (S3
   * bucket versioning, which object lock needs): 'enabled'; 'suspended' (what was
   * written while it was on keeps its old versions); 'off'. Undefined where the store
   * would not say (a key not allowed to ask, or no answer): advisory, it never rejects. A
   * deleted object's space is then not freed until the store expires old versions.
   */
  versioning?(): Promise<'enabled' | 'suspended' | 'off' | undefined>;
}

export interface StorageDriverFactory<S extends TSchema = TSchema> {
  readonly name: string;
  /** schema of the driver's settings in a config file (besides `driver`) */
  readonly configSchema: S;
  open(settings: Record<string, unknown>, baseDir: string): StorageDriver;
  /** optional: problems the schema cannot tell (settings that contradict each other, values that would break later), each with its path under `prefix` */
  checkSettings?(settings: Record<string, unknown>, prefix: string): ConfigProblem[];
}
