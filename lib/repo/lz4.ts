/**
 * LZ4 block decoding into a buffer the caller gives (the codec stores what lz4-napi's
 * `compressSync` makes: the plain length, 4 bytes little-endian, then one LZ4 block).
 *
 * The binding's `uncompressSync` returns a fresh buffer a blob. The agent's allocator maps
 * every block of 32 KiB or more on its own (docs/performance.md, "Memory after a restore"), so each of
 * those buffers was mapped, faulted in page by page and unmapped again (which stops the
 * other core to flush its TLB): a restore of 8.5 GB (64k files) took 65–66 s that way and
 * 44–48 s when the allocator was let keep such blocks. Decoding into buffers that are
 * reused keeps the small agent and gets most of the speed back (see `BlobBuffers`).
 *
 * Every read and write is bounds-checked: a damaged block is an error, never a write
 * outside `dst` or a read outside `src`.
 */

/** what is wrong with a block that does not decode */
export class Lz4Error extends Error {}

/** the plain length an LZ4 body (`compressSync`'s form) says it has; -1 if too short to say */
export function lz4PlainLength(body: Uint8Array): number {
  if (body.length < 4) return -1;
  return (body[0]! | (body[1]! << 8) | (body[2]! << 16)) + body[3]! * 2 ** 24;
}

/** below this many bytes a copy is a loop, not a call */
const SHORT = 32;

/**
 * Decode `body` (plain length, then an LZ4 block) into `dst`, which must hold the plain
 * length; returns that length. Throws `Lz4Error` when the block is damaged.
 */
export function lz4DecodeInto(body: Uint8Array, dst: Uint8Array): number {
  const want = lz4PlainLength(body);
  if (want < 0) throw new Lz4Error('shorter than its length prefix');
  if (want > dst.length) throw new Lz4Error(`says it holds ${want} bytes, more than the ${dst.length} given`);
  const end = body.length;
  let s = 4;
  let d = 0;
  if (want === 0 && end === 4) return 0;
  for (;;) {
    if (s >= end) throw new Lz4Error('ends inside a sequence');
    const token = body[s++]!;
    let lit = token >>> 4;
    if (lit === 15) {
      let b: number;
      do {
        if (s >= end) throw new Lz4Error('ends inside a literal length');
        b = body[s++]!;
        lit += b;
      } while (b === 255);
    }
    if (s + lit > end || d + lit > want) throw new Lz4Error('a literal run goes past the end');
    if (lit < SHORT) for (let i = 0; i < lit; i++) dst[d + i] = body[s + i]!;
    else dst.set(body.subarray(s, s + lit), d);
    s += lit;
    d += lit;
    // the last sequence is literals only
    if (s === end) break;
    if (s + 2 > end) throw new Lz4Error('ends inside a match offset');
    const offset = body[s]! | (body[s + 1]! << 8);
    s += 2;
    if (offset === 0 || offset > d) throw new Lz4Error(`a match refers ${offset} bytes back, before the start`);
    let len = (token & 15) + 4;
    if ((token & 15) === 15) {
      let b: number;
      do {
        if (s >= end) throw new Lz4Error('ends inside a match length');
        b = body[s++]!;
        len += b;
      } while (b === 255);
    }
    if (d + len > want) throw new Lz4Error('a match goes past the plain length');
    const from = d - offset;
    if (len < SHORT) {
      // byte by byte: an overlapping match repeats what it copies, as the format means
      for (let i = 0; i < len; i++) dst[d + i] = dst[from + i]!;
      d += len;
    } else if (offset === 1) {
      dst.fill(dst[from]!, d, d + len);
      d += len;
    } else {
      // what lies between `from` and `d` repeats with the offset's period: copy it, twice as much each time
      for (let left = len; left > 0; ) {
        const n = Math.min(left, d - from);
        dst.copyWithin(d, from, from + n);
        d += n;
        left -= n;
      }
    }
  }
  if (d !== want) throw new Lz4Error(`decodes to ${d} bytes, not the ${want} it says`);
  return d;
}

/**
 * the smallest buffer `BlobBuffers` makes, and the largest it keeps. 32 KiB, the agent's
 * allocator's threshold for mapping a block on its own: a buffer is then unmapped when
 * freed (only the pages a blob touched were ever resident), never left in the middle of
 * the allocator's heap, which would keep the agent larger after the restore.
 */
const CLASS_MIN = 32 * 1024;
const CLASS_MAX = 8 * 1024 * 1024;

/**
 * Buffers for decoded blobs, given back once their bytes are written and handed out again:
 * the caller takes one per blob (`take`), and gives it back (`give`) when nothing reads it
 * any more. Sizes are powers of two; at most `keepMax` bytes are kept free. `give` takes
 * any buffer and keeps only its own (a blob stored as it was, neither compressed nor
 * encrypted, is a view of its pack's bytes, not one of these).
 */
export class BlobBuffers {
  private readonly free = new Map<number, ArrayBufferLike[]>();
  /** every free one, so one given twice is not handed out twice */
  private readonly freeSet = new Set<ArrayBufferLike>();
  private readonly own = new WeakSet<ArrayBufferLike>();
  private kept = 0;

  constructor(private readonly keepMax: number) {}

  /** a buffer of `n` bytes (its contents are whatever it held) */
  take(n: number): Buffer {
    if (n > CLASS_MAX) return Buffer.allocUnsafeSlow(n);
    let size = CLASS_MIN;
    while (size < n) size *= 2;
    const ab = this.free.get(size)?.pop();
    if (ab) {
      this.freeSet.delete(ab);
      this.kept -= size;
      return Buffer.from(ab, 0, n);
    }
    const b = Buffer.allocUnsafeSlow(size);
    this.own.add(b.buffer);
    return b.subarray(0, n);
  }

  /** `b` is read no more: kept for the next `take` when it is one of these and there is room */
  give(b: Buffer): void {
    const ab = b.buffer;
    if (!this.own.has(ab) || this.freeSet.has(ab) || this.kept + ab.byteLength > this.keepMax) return;
    const list = this.free.get(ab.byteLength) ?? [];
    list.push(ab);
    this.free.set(ab.byteLength, list);
    this.freeSet.add(ab);
    this.kept += ab.byteLength;
  }
}
