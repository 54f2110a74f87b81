/**
 * File I/O on plain descriptors through the callback API. For the many small reads and
 * writes of a backup or a restore it costs about half the CPU of a FileHandle per file
 * (measured), so the hot paths use these; everything else uses fs/promises.
 */
import { close, closeSync, fchmod, fchown, fstat, fsync, ftruncate, futimes, open, openSync, read, readSync, writev, writevSync, type Stats } from 'node:fs';
import { promisify } from 'node:util';
import { keepShape } from './shapes.js';

export const openFd = promisify(open) as (path: string, flags: string | number, mode?: number) => Promise<number>;
export const closeFd = promisify(close);
export const fstatFd = promisify(fstat) as (fd: number) => Promise<Stats>;
// fs.read and fs.writev promisify to { bytesRead | bytesWritten, … }
const readFd = promisify(read) as unknown as (fd: number, buf: Buffer, offset: number, length: number, position: number) => Promise<{ bytesRead: number }>;
const writevFd = promisify(writev) as unknown as (fd: number, bufs: Buffer[], position: number) => Promise<{ bytesWritten: number }>;
/**
 * What `readFd` resolves to, one kept for good (lib/shapes.ts): Node's promisified read
 * builds it property by property, and with none alive between two jobs `readOnce` was
 * compiled again in each.
 */
const readResult: { bytesRead?: number; buffer?: Buffer } = {};
readResult.bytesRead = 0;
readResult.buffer = Buffer.alloc(0);
keepShape(readResult);
export const fchmodFd = promisify(fchmod);
export const fchownFd = promisify(fchown);
export const futimesFd = promisify(futimes);
export const ftruncateFd = promisify(ftruncate) as (fd: number, len: number) => Promise<void>;
export const fsyncFd = promisify(fsync);

/** Read up to `max` bytes from `position` into `buf`; a short read is not the end until a read returns nothing. */
export async function readAt(fd: number, buf: Buffer, max: number, position = 0): Promise<number> {
  let at = 0;
  while (at < max) {
    const { bytesRead: n } = await readFd(fd, buf, at, max - at, position + at);
    if (n === 0) break;
    at += n;
  }
  return at;
}

/** One read of up to `length` bytes at `position` into the start of `buf`; how many (fewer only at the end of the file) */
export async function readOnce(fd: number, buf: Buffer, length: number, position: number): Promise<number> {
  return (await readFd(fd, buf, 0, length, position)).bytesRead;
}

/** Open, read up to `max` bytes from `position`, close. */
export async function readFileAt(path: string, buf: Buffer, max: number, position = 0): Promise<number> {
  const fd = await openFd(path, 'r');
  try {
    return await readAt(fd, buf, max, position);
  } finally {
    await closeFd(fd);
  }
}

/** a turn of the event loop: what inline work kept waiting (replies, timers, I/O done) runs */
export const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** an inline read slower than this (ms) came from the disk, not the page cache (a small file's takes ~0.02 ms from it) */
const INLINE_SLOW_MS = 2;
/** small files read through the thread pool after an inline read was slow */
export const SLOW_SKIP = 64;
/** small files read inline between two turns of the event loop (~1-2 ms of work) */
export const SMALL_TURN = 32;

/**
 * Small files read whole (open, read until the end, close). Through the thread pool each of
 * those calls costs the main thread a hand-off (~40 µs here): most of a small file's cost.
 * So they are read inline while the reads come from the page cache (~0.02 ms a file), with
 * a turn of the event loop every `SMALL_TURN` files: a 6.9 GB node of 49k files, 20% of its
 * bytes in files of 2-62 KiB, backed up whole in 17.3-18.7 s, not 21.2-22.6 s, with 25% less
 * CPU. A read slower than `INLINE_SLOW_MS` came from the disk: the next `SLOW_SKIP` files go
 * through the thread pool (a cold disk is read by several threads at once, and stalls the
 * agent for one read in every `SLOW_SKIP`), then inline is tried again.
 */
export class SmallReads {
  private skip = 0;
  private sinceTurn = 0;

  /** files still to be read through the thread pool (after a slow inline read) */
  get throughPool(): number {
    return this.skip;
  }

  /** up to `max` bytes of the file at `path` into `buf`; how many */
  async read(path: string, buf: Buffer, max: number): Promise<number> {
    if (this.skip > 0) {
      this.skip--;
      return readFileAt(path, buf, max);
    }
    if (++this.sinceTurn >= SMALL_TURN) {
      this.sinceTurn = 0;
      await yieldToLoop();
    }
    const t = performance.now();
    const n = readFileAtSync(path, buf, max);
    if (performance.now() - t > INLINE_SLOW_MS) this.skip = SLOW_SKIP;
    return n;
  }
}

/** `readFileAt` inline (see `SmallReads`) */
export function readFileAtSync(path: string, buf: Buffer, max: number, position = 0): number {
  const fd = openSync(path, 'r');
  try {
    let at = 0;
    while (at < max) {
      const n = readSync(fd, buf, at, max - at, position + at);
      if (n === 0) break;
      at += n;
    }
    return at;
  } finally {
    closeSync(fd);
  }
}

/** Write every buffer at `position`, continuing after a short write. */
export async function writevAll(fd: number, bufs: Buffer[], position: number): Promise<number> {
  const total = bufs.reduce((n, b) => n + b.length, 0);
  let written = 0;
  let rest = bufs;
  while (written < total) {
    const { bytesWritten: n } = await writevFd(fd, rest, position + written);
    written += n;
    if (written < total) rest = unwritten(rest, n);
  }
  return written;
}

/** `writevAll` inline, for a small file's few buffers (see lib/tree.ts `writeWholeFile`) */
export function writevAllSync(fd: number, bufs: Buffer[], position: number): number {
  const total = bufs.reduce((n, b) => n + b.length, 0);
  let written = 0;
  let rest = bufs;
  while (written < total) {
    const n = writevSync(fd, rest, position + written);
    written += n;
    if (written < total) rest = unwritten(rest, n);
  }
  return written;
}

/** what is left of `bufs` after a write that took `n` bytes of them (it wrote something: else EIO) */
function unwritten(bufs: Buffer[], n: number): Buffer[] {
  if (n === 0) throw Object.assign(new Error('write wrote nothing'), { code: 'EIO' });
  let skip = n;
  const left: Buffer[] = [];
  for (const b of bufs) {
    if (skip >= b.length) skip -= b.length;
    else {
      left.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
  }
  return left;
}
