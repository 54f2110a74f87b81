/**
 * Writing files with O_DIRECT: from lockstep's buffer straight to the disk, not through the
 * page cache.
 *
 * Buffered, every byte written is first copied into a page of cache, and a page the kernel
 * has not used before costs most: on the 2-core virtual machines lockstep is measured on,
 * a 5 GiB node's 2.8 GB of packs cost ~32 s of kernel time that way and 4.6 s direct; a
 * 2 GiB restore's thread pool 17–19 s, and 11–12 s with its large files direct (the rest
 * is creating its small files and reading packs). Direct writes also leave other programs'
 * pages (the database's) in the cache, and no dirty pages for a later syncfs to wait on.
 *
 * O_DIRECT wants the buffer, the file offset and the length on `DIRECT_ALIGN` boundaries:
 * bytes are gathered in an aligned buffer (lib/aligned.ts) and written a whole buffer at a
 * time; the last, partial one is padded and the file cut back to its length. A filesystem
 * that does not take O_DIRECT (some FUSE ones, tmpfs before Linux 6.6) says EINVAL when the
 * file is opened, or at the first write: `openDirect` gives undefined then, and callers
 * write through the cache instead.
 */
import { constants } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { DIRECT_ALIGN, alignedBuffer, alignedBuffers, paddedView, roundUpDirect } from './aligned.js';
import { closeFd, ftruncateFd, openFd, writevAll } from './fd.js';
import { errnoCode } from './errors.js';

/** files from this size on are written direct; smaller ones cost a few pages of cache, and a disk round trip each direct */
export const DIRECT_MIN = 128 * 1024;
const DIRECT_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DIRECT;

/** whether an error of a direct open or write is the filesystem refusing O_DIRECT (write it through the cache instead) */
export const directRefused = (err: unknown): boolean => errnoCode(err) === 'EINVAL';

/** a new file `path` opened for direct writes; undefined when its filesystem refuses O_DIRECT */
export async function openDirect(path: string, mode: number): Promise<number | undefined> {
  try {
    return await openFd(path, DIRECT_FLAGS, mode);
  } catch (err) {
    if (directRefused(err)) return undefined;
    throw err;
  }
}

/** whether files made in `dir` can be written direct: a probe file opened, one block written, removed */
export async function directWorksIn(dir: string): Promise<boolean> {
  const probe = join(dir, `.lockstep-direct-probe-${randomBytes(6).toString('hex')}`);
  const fd = await openDirect(probe, 0o600);
  if (fd === undefined) return false;
  try {
    await writevAll(fd, [alignedBuffer(DIRECT_ALIGN)], 0);
    return true;
  } catch (err) {
    if (directRefused(err)) return false;
    throw err;
  } finally {
    await closeFd(fd);
    await unlink(probe);
  }
}

/** Aligned buffers of one size, made together on first use and reused; `acquire` waits while all are out. */
export class AlignedPool {
  private free: Buffer[] | undefined;
  private readonly waiting: ((b: Buffer) => void)[] = [];

  constructor(
    readonly size: number,
    private readonly count: number,
  ) {
    // a whole buffer is written at a time: it must end on a block boundary
    if (size % DIRECT_ALIGN !== 0) throw new Error(`an aligned pool's buffers are whole blocks, not ${size} bytes`);
  }

  acquire(): Promise<Buffer> {
    this.free ??= alignedBuffers(this.size, this.count);
    const b = this.free.pop();
    return b ? Promise.resolve(b) : new Promise((resolve) => this.waiting.push(resolve));
  }

  release(b: Buffer): void {
    const next = this.waiting.shift();
    if (next) next(b);
    else this.free!.push(b);
  }
}

/**
 * Bytes appended to a file opened with `openDirect`, gathered in one aligned buffer of
 * `pool` and written a whole buffer at a time from the start of the file. `end` writes the
 * rest (padded to a block) and cuts the file to the bytes appended; `close` gives the
 * buffer back and closes the file, ended or not.
 */
export class DirectFile {
  private buf: Buffer | undefined;
  private used = 0;
  private written = 0;

  private constructor(
    readonly fd: number,
    private readonly pool: AlignedPool,
  ) {}

  static async open(path: string, mode: number, pool: AlignedPool): Promise<DirectFile | undefined> {
    const fd = await openDirect(path, mode);
    return fd === undefined ? undefined : new DirectFile(fd, pool);
  }

  /** bytes appended so far */
  get size(): number {
    return this.written + this.used;
  }

  async append(parts: readonly Buffer[]): Promise<number> {
    let n = 0;
    for (const p of parts) {
      for (let at = 0; at < p.length; ) {
        this.buf ??= await this.pool.acquire();
        const copied = p.copy(this.buf, this.used, at);
        at += copied;
        this.used += copied;
        if (this.used === this.buf.length) await this.flush(this.used);
      }
      n += p.length;
    }
    return n;
  }

  /**
   * The whole file at once, into a file nothing was appended to: straight from `body`'s own
   * memory when it is an aligned buffer with room to pad (lib/aligned.ts `paddedView`, an
   * upload's pack), else through the pool's buffer.
   */
  async writeWhole(body: Buffer): Promise<void> {
    const view = this.size === 0 ? paddedView(body) : undefined;
    if (!view) {
      await this.append([body]);
      return this.end();
    }
    await writevAll(this.fd, [view], 0);
    if (view.length !== body.length) await ftruncateFd(this.fd, body.length);
    this.written = body.length;
  }

  async end(): Promise<void> {
    if (this.used === 0) return;
    const size = this.size;
    await this.flush(roundUpDirect(this.used));
    if (this.written !== size) await ftruncateFd(this.fd, size);
    this.written = size;
  }

  async close(): Promise<void> {
    if (this.buf) this.pool.release(this.buf);
    this.buf = undefined;
    await closeFd(this.fd);
  }

  private async flush(length: number): Promise<void> {
    await writevAll(this.fd, [this.buf!.subarray(0, length)], this.written);
    this.written += length;
    this.used = 0;
  }
}
