/** The `fs` storage driver: a local or shared (NFS, CephFS …) directory. */
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, link, mkdir, open, readdir, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { Type } from '@sinclair/typebox';
import { LockstepError, errnoCode } from '../../lib/errors.js';
import { resolvePath } from '../../lib/config.js';
import { syncFileSystem } from '../../lib/syncfs.js';
import { closeFd, fstatFd, fsyncFd, openFd, readAt } from '../../lib/fd.js';
import { AlignedPool, DIRECT_MIN, DirectFile, directRefused } from '../../lib/direct-io.js';
import { inPendingBackupFolder } from '../../lib/repo/layout.js';
import { forEachLimit } from '../../agent/transfer/pool.js';
import { checkObjectKey, type ByteRange, type ObjectInfo, type StorageDriver, type StorageDriverFactory } from './types.js';

const TMP_MARK = '.lockstep-tmp-';
/** big objects' bytes go to the disk direct (lib/direct-io.ts) through these when they are not in an aligned buffer already */
const scratchBuffers = new AlignedPool(1024 * 1024, 2);
/** files and folders a flush fsyncs one by one; more, and it syncs the whole filesystem */
const FSYNC_MAX = 256;
/** what an fsync fails with on a filesystem that does not do it (as opposed to one that failed to) */
const FSYNC_UNSUPPORTED = new Set(['EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS']);

export class FsDriver implements StorageDriver {
  readonly name = 'fs';
  readonly capabilities = { atomicCreateIfAbsent: true, rangeRead: true };

  /** folders known to exist: one mkdir per folder, not per object */
  private readonly dirs = new Set<string>();
  /** files put since the last flush, and the folders whose entries they (or new folders) changed */
  private unflushed = { files: new Set<string>(), dirs: new Set<string>() };
  /** false once the filesystem refused an fsync as one it does not do: flushes are one syncfs */
  private fsyncs = true;
  /** the last flush asked for (they run one after another) */
  private flushing: Promise<void> = Promise.resolve();
  /** large objects are written with O_DIRECT: as configured, until the filesystem refuses it (tmpfs before Linux 6.6, some FUSE) */
  private direct: boolean;

  constructor(
    readonly location: string,
    options: { directWrites?: boolean } = {},
  ) {
    this.direct = options.directWrites ?? true;
  }

  private async ensureDir(dir: string): Promise<void> {
    if (this.dirs.has(dir)) return;
    const made = await mkdir(dir, { recursive: true });
    // each folder made is an entry of the one above it
    if (made !== undefined) for (let d = dir; d.length >= made.length && d !== dirname(d); d = dirname(d)) this.unflushed.dirs.add(dirname(d));
    this.dirs.add(dir);
  }

  /** `target` is in place: the next flush makes it and its folder's entry durable */
  private placed(target: string): void {
    this.unflushed.files.add(target);
    this.unflushed.dirs.add(dirname(target));
  }

  private path(key: string): string {
    return join(this.location, ...checkObjectKey(key).split('/'));
  }

  private wrap(err: unknown, op: string, key: string): LockstepError {
    const code = errnoCode(err);
    const hint =
      code === 'EACCES' || code === 'EPERM'
        ? 'check the owner and mode of the repository directory'
        : code === 'ENOSPC'
          ? 'the repository disk is full'
          : code === 'ENOTDIR'
            ? `a part of the repository path (${this.location}) is a file, not a folder: check the repository's path`
            : code === 'EROFS'
              ? 'the repository filesystem is mounted read-only'
              : undefined;
    return new LockstepError(
      op === 'read' ? 'LOCKSTEP_E_REPO_UNREADABLE' : 'LOCKSTEP_E_REPO_WRITE_FAILED',
      `repository ${this.location}: cannot ${op} ${key} (${code ?? String(err)})`,
      { cause: err, hint },
    );
  }

  /** write to a temp file beside the target (fsync'd when `durable`); the caller renames or links it */
  private async writeTemp(target: string, body: Buffer | Readable, durable: boolean, signal?: AbortSignal): Promise<string> {
    await this.ensureDir(dirname(target));
    const tmp = `${target}${TMP_MARK}${randomBytes(6).toString('hex')}`;
    try {
      if (Buffer.isBuffer(body)) {
        if (this.direct && body.length >= DIRECT_MIN && (await this.writeDirect(tmp, body, durable))) return tmp;
        const fh = await open(tmp, 'wx', 0o644);
        try {
          await fh.writeFile(body);
          if (durable) await fh.sync();
        } finally {
          await fh.close();
        }
      } else {
        await pipeline(body, createWriteStream(tmp, { flags: 'wx', mode: 0o644 }), { signal });
        if (durable) {
          const fh = await open(tmp, 'r+');
          await fh.sync().finally(() => fh.close());
        }
      }
      return tmp;
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
  }

  /**
   * `body` into the new file `tmp` with O_DIRECT (lib/direct-io.ts): packs (128 KiB and
   * more) neither fill the page cache nor leave dirty pages for the index's syncfs. False,
   * with no file left, when the filesystem does not take O_DIRECT; from then on this driver
   * writes through the cache.
   */
  private async writeDirect(tmp: string, body: Buffer, durable: boolean): Promise<boolean> {
    const file = await DirectFile.open(tmp, 0o644, scratchBuffers);
    if (!file) {
      this.direct = false;
      return false;
    }
    let refused = false;
    try {
      await file.writeWhole(body);
      if (durable) await fsyncFd(file.fd);
    } catch (err) {
      if (!directRefused(err)) throw err;
      refused = true;
    } finally {
      await file.close();
    }
    if (!refused) return true;
    this.direct = false;
    await unlink(tmp);
    return false;
  }

  async put(key: string, body: Buffer | Readable, signal?: AbortSignal): Promise<void> {
    const target = this.path(key);
    try {
      const tmp = await this.writeTemp(target, body, false, signal);
      await rename(tmp, target);
      this.placed(target);
    } catch (err) {
      throw this.wrap(err, 'write', key);
    }
  }

  /**
   * A hard link to `from`'s file, made beside `to` and renamed over it: objects are never
   * written in place, so the two names can share one file (a copy where links are refused).
   */
  async copy(from: string, to: string): Promise<void> {
    const target = this.path(to);
    const tmp = `${target}${TMP_MARK}${randomBytes(6).toString('hex')}`;
    try {
      await this.ensureDir(dirname(target));
      await link(this.path(from), tmp).catch((err: unknown) => {
        if (errnoCode(err) === 'ENOENT') throw err;
        return copyFile(this.path(from), tmp);
      });
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw errnoCode(err) === 'ENOENT' ? this.openError(err, from) : this.wrap(err, 'write', to);
    }
    try {
      await rename(tmp, target);
      this.placed(target);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw this.wrap(err, 'write', to);
    }
  }

  /**
   * What was put since the last flush made durable: up to `FSYNC_MAX` files and folders an
   * fsync each (16 at once), more with one syncfs(2) of the whole filesystem. An
   * incremental puts a few dozen objects; syncfs would also write back every dirty page of
   * everything else on that filesystem (the database's own data, when the repository shares
   * its disk): a 5 GiB incremental's index phase took 93-117 ms with it, 79-90 with the
   * fsyncs. A full backup puts thousands: one syncfs is cheaper than an fsync each.
   */
  async flush(): Promise<void> {
    // one at a time: a flush that returns has made durable everything put before it was
    // called, also what a flush still running (another upload's) had taken to sync
    const mine = this.flushing.then(() => this.flushNow());
    this.flushing = mine.catch(() => undefined);
    return mine;
  }

  private async flushNow(): Promise<void> {
    const { files, dirs } = this.unflushed;
    this.unflushed = { files: new Set(), dirs: new Set() };
    try {
      if (!this.fsyncs || files.size + dirs.size > FSYNC_MAX) await this.syncWhole();
      else {
        try {
          // the files first, then the folders that name them
          await this.fsyncEach([...files]);
          await this.fsyncEach([...dirs]);
        } catch (err) {
          // a filesystem that has no fsync of a file or folder (some FUSE and network ones): syncfs from now on
          if (!FSYNC_UNSUPPORTED.has(errnoCode(err) ?? '')) throw err;
          this.fsyncs = false;
          await this.syncWhole();
        }
      }
    } catch (err) {
      // not flushed: the next flush tries them again
      for (const f of files) this.unflushed.files.add(f);
      for (const d of dirs) this.unflushed.dirs.add(d);
      throw this.wrap(err, 'flush', '(all objects)');
    }
  }

  protected async syncWhole(): Promise<void> {
    await syncFileSystem(this.location, `flushing repository ${this.location}`);
  }

  /** fsync each path (a file or a folder), 16 at once; one gone since (deleted) needs none */
  protected async fsyncEach(paths: string[]): Promise<void> {
    await forEachLimit(paths, 16, async (path) => {
      let fd: number;
      try {
        fd = await openFd(path, 'r');
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') return;
        throw err;
      }
      try {
        await fsyncFd(fd);
      } finally {
        await closeFd(fd);
      }
    });
  }

  async putIfAbsent(key: string, body: Buffer, opts: { durable?: boolean } = {}): Promise<boolean> {
    const target = this.path(key);
    let tmp: string | undefined;
    try {
      tmp = await this.writeTemp(target, body, opts.durable ?? true);
      await link(tmp, target); // atomic: fails with EEXIST if present
      this.placed(target);
      return true;
    } catch (err) {
      if (errnoCode(err) === 'EEXIST') return false;
      throw this.wrap(err, 'write', key);
    } finally {
      if (tmp) await unlink(tmp).catch(() => undefined);
    }
  }

  /** opening an object for reading failed: missing (LOCKSTEP_E_OBJECT_NOT_FOUND) or unreadable */
  private openError(err: unknown, key: string): LockstepError {
    if (errnoCode(err) === 'ENOENT') {
      return new LockstepError('LOCKSTEP_E_OBJECT_NOT_FOUND', `repository ${this.location}: ${key} is missing`, { cause: err });
    }
    return this.wrap(err, 'read', key);
  }

  async get(key: string, range?: ByteRange, _signal?: AbortSignal): Promise<Readable> {
    const p = this.path(key);
    try {
      // open first so a missing object fails here, not mid-stream
      const fh = await open(p, 'r');
      return createReadStream('', { fd: fh, start: range?.start, end: range?.end, highWaterMark: 1 << 20 });
    } catch (err) {
      throw this.openError(err, key);
    }
  }

  async getBuffer(key: string, range?: ByteRange, _signal?: AbortSignal): Promise<Buffer> {
    let fd: number;
    try {
      fd = await openFd(this.path(key), 'r');
    } catch (err) {
      throw this.openError(err, key);
    }
    try {
      const size = range ? range.end - range.start + 1 : (await fstatFd(fd)).size;
      const buf = Buffer.allocUnsafe(size);
      const n = await readAt(fd, buf, size, range?.start ?? 0);
      return n === size ? buf : buf.subarray(0, n);
    } catch (err) {
      throw this.wrap(err, 'read', key);
    } finally {
      await closeFd(fd).catch(() => undefined);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const st = await stat(this.path(key));
      return { size: st.size, modified: st.mtimeMs };
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw this.wrap(err, 'read', key);
    }
  }

  /**
   * Files under `root` (full paths), folder by folder, depth first: one folder's entries held
   * at a time, not the whole tree's (a recursive readdir of a repository of 3 million packs
   * held ~140 bytes an entry, ~420 MB, before the first was handed on). A folder that goes
   * while the tree is read (a backup's pending records deleted, and their folder with the
   * last) is passed over: what was in it is gone. Temp files (`TMP_MARK`) only with `temps`.
   */
  private async *files(root: string, temps: boolean): AsyncGenerator<string> {
    const folders = [root];
    for (let folder = folders.pop(); folder !== undefined; folder = folders.pop()) {
      let entries;
      try {
        entries = await readdir(folder, { withFileTypes: true });
      } catch (err) {
        const code = errnoCode(err);
        // gone meanwhile (or never there: the root of an empty prefix)
        if (code === 'ENOENT' || (code === 'ENOTDIR' && folder !== root)) continue;
        throw err;
      }
      for (const e of entries) {
        if (e.isDirectory()) folders.push(join(folder, e.name));
        else if (e.isFile() && e.name.includes(TMP_MARK) === temps) yield join(folder, e.name);
      }
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    const base = prefix.replace(/\/+$/, '');
    const root = base === '' ? this.location : this.path(base);
    try {
      for await (const full of this.files(root, false)) yield full.slice(this.location.length + 1).split(sep).join('/');
    } catch (err) {
      throw this.wrap(err, 'read', prefix);
    }
  }

  async *listShallow(prefix: string): AsyncIterable<string> {
    const base = prefix.replace(/\/+$/, '');
    let entries;
    try {
      entries = await readdir(base === '' ? this.location : this.path(base), { withFileTypes: true });
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return;
      throw this.wrap(err, 'read', prefix);
    }
    const at = base === '' ? '' : `${base}/`;
    for (const e of entries) {
      if (e.isDirectory()) yield `${at}${e.name}/`;
      else if (e.isFile() && !e.name.includes(TMP_MARK)) yield `${at}${e.name}`;
    }
  }

  async delete(key: string): Promise<void> {
    const file = this.path(key);
    try {
      await unlink(file);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw this.wrap(err, 'delete', key);
    }
    // a run's pending records sit in a folder of their own (pending/<node>/<component>/<backup>/),
    // and a backup's objects under backups/<id>/: the folders go with their last object, or
    // empty ones would pile up, a few for every backup ever pruned. A backup's id is never
    // used again, so no writer still counts on its folders.
    const parts = key.split('/');
    // the shallowest folder that may go: pending/<node>/<component>/<backup>, backups/<id>
    const last = inPendingBackupFolder(key) ? 4 : parts[0] === 'backups' ? 2 : parts.length;
    for (let n = parts.length - 1; n >= last; n--) {
      const dir = this.path(parts.slice(0, n).join('/'));
      this.dirs.delete(dir);
      if (!(await rmdir(dir).then(() => true, () => false))) break;
    }
  }

  /** temp files of writes that never finished (a writer killed between write and rename) */
  async sweepTemporary(olderThanMs: number, dryRun: boolean): Promise<{ files: number; bytes: number }> {
    const out = { files: 0, bytes: 0 };
    try {
      for await (const full of this.files(this.location, true)) {
        const st = await stat(full).catch(() => undefined);
        if (!st || Date.now() - st.mtimeMs < olderThanMs) continue;
        if (!dryRun) await unlink(full).catch(() => undefined);
        out.files++;
        out.bytes += st.size;
      }
    } catch (err) {
      throw this.wrap(err, 'read', '');
    }
    return out;
  }
}

const fsSettings = Type.Object(
  {
    path: Type.String({ minLength: 1 }),
    /** write objects of 128 KiB and more with O_DIRECT (falls back to buffered where the filesystem refuses it) */
    directWrites: Type.Boolean({ default: true }),
  },
  { additionalProperties: false },
);

export const fsDriver = {
  name: 'fs',
  configSchema: fsSettings,
  open(settings, baseDir) {
    return new FsDriver(resolvePath(baseDir, String(settings.path)), { directWrites: settings.directWrites !== false });
  },
} satisfies StorageDriverFactory<typeof fsSettings>;
