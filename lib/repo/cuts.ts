/**
 * Content-defined cuts: where a file that an engine writes anew (a Redis RDB) is cut into
 * blocks, decided by its bytes, not by fixed offsets.
 *
 * Fixed-size blocks line up from one backup to the next only where pages are rewritten in
 * place. An RDB is written whole by every save, each value compressed on its own: one
 * value of another compressed length, or one key added or removed, moves every byte after
 * it, and no later fixed block is the same (a Redis Cluster with 1% of its values
 * rewritten wrote ~87% of its data again in 32 KiB blocks: `npm run bench:dedup`). Here a
 * cut falls after a byte where a rolling hash of the bytes before it (a gear hash: a table
 * lookup, a shift and an add a byte; it depends on the last 32 bytes only) has enough zero
 * bits, so a shift moves only the blocks around the bytes that changed, and the cuts after
 * them fall where they fell before.
 *
 * A block is `avg / 4` to `avg * 8` bytes (but a file's last), near `avg` on average: its
 * first `avg / 4` bytes are not hashed, and before `avg` a cut needs four more zero bits
 * than after it (FastCDC's normalized chunking). ~0.9 GB/s on one core here. An RDB's
 * changes are spread evenly through it (its keys are in hash order), so the smaller the
 * blocks the fewer a change touches: with 1% of 512-byte values rewritten, blocks of
 * ~72 KiB were 78% new, of ~8 KiB 20%, of ~4 KiB 12%, of ~2 KiB 7.4% (data; ~11% with the
 * index). Each block costs ~90 bytes of index and ~150 of the agent's memory, so
 * `cutAverageFor` keeps a file to about 256k blocks.
 *
 * The gear table is derived from the repository's secret (as the fingerprints are): where
 * a file is cut then tells nothing of its content to anyone without the key.
 */
import { hkdfSync } from 'node:crypto';
import { readOnce } from '../fd.js';

const MIN_AVG_BITS = 11;
const MAX_AVG_BITS = 17;
/** the smallest average before the index recorded each file's (its `cuts` without a head): 8 KiB */
const UNRECORDED_MIN_AVG_BITS = 13;
/** the largest block any file is cut into (8 × the largest average) */
const CUT_MAX = 8 << MAX_AVG_BITS;
/** about how many blocks a file is cut into, at most (but for files over 32 GiB) */
const BLOCKS_ABOUT = 262144;
/** as many before an index's entry could be written in pieces (index-file.ts, version 7) */
const BLOCKS_ABOUT_WHOLE = 65536;

/**
 * The average block size (its log2) to cut a file of `size` bytes at: 2 KiB, more for files
 * over 512 MiB (up to 128 KiB over 16 GiB). `previous`: the average the component's previous
 * backup cut the file at. A file that shrank just below the size where that average was
 * chosen (to no less than half of it) keeps it: cut at another average, no block would be
 * the same, and a file whose size goes up and down around that size would be stored whole
 * again each time it crossed it. (One that grows past it is cut at the larger average at
 * once, and stored again once: a file is never cut into more than about 256k blocks.)
 * `blocks`: about how many blocks a file may be cut into.
 */
export function cutAverageFor(size: number, previous?: number, blocks = BLOCKS_ABOUT): number {
  let bits = MIN_AVG_BITS;
  while (bits < MAX_AVG_BITS && size / 2 ** bits > blocks) bits++;
  if (previous === bits + 1 && size > (2 ** bits * blocks) / 2) return previous;
  return bits;
}

export class Cutter {
  private readonly gear = new Int32Array(256);

  /** `key`: the repository's secret material (as for its fingerprints) */
  constructor(key: Buffer) {
    const bytes = Buffer.from(hkdfSync('sha256', key, 'lockstep', 'lockstep content-defined cuts gear', 1024));
    for (let i = 0; i < 256; i++) this.gear[i] = bytes.readInt32LE(i * 4);
  }

  /**
   * Where the block that starts at `start` of `buf` ends, for blocks of about `2^avgBits`
   * bytes: an index in `(start, end]`, or -1 when `buf` ends (at `end`) before the block can
   * be told to end and more of the file follows (`last` false). At the file's end (`last`)
   * the rest is a block however short.
   */
  next(buf: Uint8Array, start: number, end: number, last: boolean, avgBits: number): number {
    const gear = this.gear;
    const avg = 2 ** avgBits;
    const max = start + avg * 8;
    const stop = Math.min(end, max);
    const strictUntil = Math.min(stop, start + avg);
    // the hash's top bits mix the most bytes: the cut looks at those
    const strict = ~0 << (30 - avgBits);
    const loose = ~0 << (34 - avgBits);
    let h = 0;
    let i = start + avg / 4;
    for (; i < strictUntil; i++) {
      h = ((h << 1) + gear[buf[i]!]!) | 0;
      if ((h & strict) === 0) return i + 1;
    }
    for (; i < stop; i++) {
      h = ((h << 1) + gear[buf[i]!]!) | 0;
      if ((h & loose) === 0) return i + 1;
    }
    if (stop === max) return max;
    return last ? end : -1;
  }
}

/** what a file is read into to be cut: a read, after the rest of the last that was not yet a block */
const CUT_READ = 1024 * 1024;

/**
 * Every block of the file open as `fd`, cut by `cutter` for blocks of about `2^avgBits`
 * bytes, in order: `each` is given a view of the block (good until what it returns has
 * settled) and its offset in the file. `read` is told the bytes of each read; `check`
 * runs before each (it throws to stop). The file's size.
 */
export async function forEachCut(
  fd: number,
  cutter: Cutter,
  avgBits: number,
  each: (block: Buffer, offset: number) => void | Promise<void>,
  read?: (n: number) => void,
  check?: () => void,
): Promise<number> {
  const buf = Buffer.allocUnsafeSlow(CUT_READ + CUT_MAX);
  // the file's offset of buf[0]
  let base = 0;
  let start = 0;
  let end = 0;
  let last = false;
  for (;;) {
    // every block that ends in what was read (all the rest at the file's end)
    while (start < end) {
      const cut = cutter.next(buf, start, end, last, avgBits);
      if (cut < 0) break;
      await each(buf.subarray(start, cut), base + start);
      start = cut;
    }
    if (last) return base + end;
    check?.();
    buf.copyWithin(0, start, end);
    base += start;
    end -= start;
    start = 0;
    const n = await readOnce(fd, buf.subarray(end), buf.length - end, base + end);
    if (n === 0) last = true;
    end += n;
    read?.(n);
  }
}

/**
 * A file's block lengths as an index keeps them: the average they were cut at (its log2),
 * then each length, little-endian u32s, base64. (An index written before the average was
 * recorded has the lengths alone: see `decodeCuts`.)
 */
export function encodeCuts(avgBits: number, lengths: number[]): string {
  const b = Buffer.alloc((lengths.length + 1) * 4);
  b.writeUInt32LE(avgBits, 0);
  for (let i = 0; i < lengths.length; i++) b.writeUInt32LE(lengths[i]!, (i + 1) * 4);
  return b.toString('base64');
}

/** what `encodeCuts` was given */
export interface Cuts {
  avgBits: number;
  lengths: number[];
}

/**
 * What `encodeCuts` made of a file of `count` blocks and `size` bytes; undefined when
 * `text` is not an average within bounds and `count` lengths, none 0, adding up to `size`.
 * Lengths alone (an index written before the average was recorded) were cut at the
 * average the size called for then.
 */
export function decodeCuts(text: string, count: number, size: number): Cuts | undefined {
  const b = Buffer.from(text, 'base64');
  let at = 0;
  let avgBits: number;
  if (b.length === count * 4) {
    avgBits = Math.max(UNRECORDED_MIN_AVG_BITS, cutAverageFor(size, undefined, BLOCKS_ABOUT_WHOLE));
  } else if (b.length === (count + 1) * 4) {
    avgBits = b.readUInt32LE(0);
    if (avgBits < MIN_AVG_BITS || avgBits > MAX_AVG_BITS) return undefined;
    at = 4;
  } else {
    return undefined;
  }
  const lengths: number[] = new Array(count);
  let total = 0;
  for (let i = 0; i < count; i++) {
    const n = b.readUInt32LE(at + i * 4);
    if (n === 0) return undefined;
    lengths[i] = n;
    total += n;
  }
  return total === size ? { avgBits, lengths } : undefined;
}
