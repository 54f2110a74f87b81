/**
 * Blob references held compactly, for an upload that knows every block of a big node:
 * what its previous backup stored, what earlier runs packed, what it stores itself.
 *
 * As objects (a `PackRef` with its hex hash, in a Map by that hash, in an array per
 * file) a block cost ~400 bytes of heap; 130k blocks of a 5 GiB node held ~50 MiB, and an
 * incremental held its previous index as well. Here a reference is a number: its raw
 * 32-byte hash, its pack (a number into a table of pack ids; -1 for a chunk object), the
 * offset and length of its stored form and its fingerprint (fingerprint.ts), in growing
 * arrays, and a slot in an open-addressing table by hash: ~90 bytes a block. A file's blocks are a run of numbers in `RefLists`.
 * An index is written from them as JSON text (`writeJson`); `ChunkRef` objects are made only
 * for a pending record or an index small enough to be one object.
 */
import { createHash, randomInt } from 'node:crypto';
import { digitsInto, hexInto, type ChunkRef, type JsonBuffer, type PackNumbers, type PackRef } from './index-file.js';
import { FP, unknownFp } from './fingerprint.js';

const HASH = 32;
const NO_PACK = -1;

const QUOTE = 0x22;
const CLOSE = 0x7d;
const OPEN_LIST = 0x5b;
const CLOSE_LIST = 0x5d;
const COMMA = 0x2c;
const JSON_SHA = Buffer.from('{"sha256":"', 'latin1');
const JSON_PACK = Buffer.from('","pack":"', 'latin1');
const JSON_OFFSET = Buffer.from('","offset":', 'latin1');
const JSON_LENGTH = Buffer.from(',"length":', 'latin1');
/** the longest a ref's JSON can be: its parts, a hash, a pack id of up to 128 characters, two numbers of up to 16 digits */
const REF_JSON_MAX = JSON_SHA.length + 2 * HASH + JSON_PACK.length + 128 + JSON_OFFSET.length + 16 + JSON_LENGTH.length + 16 + 1;
export class RefTable {
  /** how many refs there are; ref `i` is 0 ≤ i < count */
  count = 0;
  private hashes = Buffer.allocUnsafeSlow(HASH * 1024);
  private packs = new Int32Array(1024);
  private offsets = new Float64Array(1024);
  private lengths = new Uint32Array(1024);
  /** each blob's fingerprint (fingerprint.ts), zeros while unknown */
  private fps = Buffer.alloc(FP * 1024);
  private readonly packIds: string[] = [];
  /** each pack id's bytes (as JSON writes them) */
  private readonly packIdBytes: Buffer[] = [];
  private readonly packNumbers = new Map<string, number>();
  private lastPack = -1;
  /** open addressing by hash: ref + 1, 0 is empty; at most half full */
  private slots = new Int32Array(2048);
  // a random key mixed into the slot of a hash: content chosen to collide cannot pile up
  private readonly seedA = randomInt(2 ** 31) | 1;
  private readonly seedB = randomInt(2 ** 31);

  /** make room for `n` refs in all (an upload knows about how many blocks it will see): no growing by doubling, no room wasted */
  reserve(n: number): void {
    if (n > this.packs.length) this.resize(n);
    const slots = slotsFor(n);
    if (slots > this.slots.length) {
      this.slots = new Int32Array(slots);
      for (let r = 0; r < this.count; r++) this.insert(r);
    }
  }

  /** the ref of this 32-byte hash, or -1 */
  find(hash: Uint8Array, at = 0): number {
    for (let s = this.slotOf(hash, at); ; s = (s + 1) & (this.slots.length - 1)) {
      const r = this.slots[s]! - 1;
      if (r < 0) return -1;
      if (this.hashes.compare(hash, at, at + HASH, r * HASH, r * HASH + HASH) === 0) return r;
    }
  }

  /** A new ref to a blob in `pack` (a pack id), or to a chunk object (`pack` undefined); found by its hash from now on unless one already is. */
  add(hash: Uint8Array, pack: string | undefined, offset = 0, length = 0): number {
    return this.addAt(hash, 0, this.packNumberOf(pack), offset, length);
  }

  /** this table's number for the pack `id` (-1 for none: a chunk object), for `addAt` */
  packNumberOf(id: string | undefined): number {
    return id === undefined ? NO_PACK : this.packNumber(id);
  }

  /** `add` of the hash at `at` in `b`, its pack given by its number (`packNumberOf`): no view made of each hash read from a buffer of many */
  addAt(b: Uint8Array, at: number, pack: number, offset: number, length: number): number {
    if (length > 0xffffffff) throw new RangeError(`a blob of ${length} bytes is too long for a pack`);
    if (pack < NO_PACK || pack >= this.packIds.length) throw new RangeError(`pack number ${pack} is not one of this table's`);
    this.roomForOne();
    const r = this.count++;
    copyBytes(b, at, this.hashes, r * HASH, HASH);
    this.packs[r] = pack;
    this.offsets[r] = offset;
    this.lengths[r] = length;
    if (this.count * 2 > this.slots.length) this.rehash();
    else this.insert(r);
    return r;
  }

  /** the ref of a `ChunkRef` read from an index or pending record: the known one for its hash, else a new one */
  addRef(ref: ChunkRef): number {
    // the hash is decoded where the next ref would go (nothing is allocated for it), then looked up
    this.roomForOne();
    const at = this.count * HASH;
    this.hashes.write(typeof ref === 'string' ? ref : ref.sha256, at, HASH, 'hex');
    const known = this.find(this.hashes, at);
    if (known >= 0) return known;
    const hash = this.hashes.subarray(at, at + HASH);
    return typeof ref === 'string' ? this.add(hash, undefined) : this.add(hash, ref.pack, ref.offset, ref.length);
  }

  /** move a blob to `offset` in another pack (a file's last small pack merged into the shared one) */
  place(r: number, pack: string, offset: number): void {
    this.packs[r] = this.packNumber(pack);
    this.offsets[r] = offset;
  }

  offset(r: number): number {
    return this.offsets[r]!;
  }

  length(r: number): number {
    return this.lengths[r]!;
  }

  /** the number in this table of the pack ref `r`'s blob is in, -1 for a chunk object (numbers run from 0 to `packCount`) */
  packOf(r: number): number {
    const p = this.packs[r]!;
    return p === NO_PACK ? -1 : p;
  }

  /** how many packs the table's refs are in */
  get packCount(): number {
    return this.packIds.length;
  }

  /** the pack ref `r`'s blob is in (undefined: a chunk object) */
  packId(r: number): string | undefined {
    const p = this.packs[r]!;
    return p === NO_PACK ? undefined : this.packIds[p];
  }

  /** copy ref `r`'s raw 32-byte hash to `at` in `out` */
  copyHash(r: number, out: Uint8Array, at: number): void {
    copyBytes(this.hashes, r * HASH, out, at, HASH);
  }

  /** ref `r`'s blob has the fingerprint at `at` in `fp` (unless that is unknown) */
  setFp(r: number, fp: Uint8Array, at = 0): void {
    if (!unknownFp(fp, at)) copyBytes(fp, at, this.fps, r * FP, FP);
  }

  /** whether ref `r`'s blob is known to have the fingerprint at `at` in `fp` */
  hasFp(r: number, fp: Uint8Array, at = 0): boolean {
    return !unknownFp(this.fps, r * FP) && this.fps.compare(fp, at, at + FP, r * FP, r * FP + FP) === 0;
  }

  /** write ref `r`'s fingerprint (zeros: unknown) at `at` in `out` */
  fpInto(r: number, out: Uint8Array, at: number): void {
    copyBytes(this.fps, r * FP, out, at, FP);
  }

  sha(r: number): string {
    return this.hashes.toString('hex', r * HASH, r * HASH + HASH);
  }

  /** the ref as an index holds it: a chunk object's hash, or where in which pack */
  ref(r: number): ChunkRef {
    const p = this.packs[r]!;
    if (p === NO_PACK) return this.sha(r);
    return { sha256: this.sha(r), pack: this.packIds[p]!, offset: this.offsets[r]!, length: this.lengths[r]! };
  }

  /**
   * Write ref `r` as JSON (the bytes `JSON.stringify(this.ref(r))` makes) at the end of
   * `out`, straight from the table: an index holds ~130k refs a 5 GiB node, and making a
   * string of each first cost ~2 µs a ref. With `packs`, a packed blob is written as a
   * version-5 index part holds it, its pack numbered in `packs`.
   */
  writeJson(r: number, out: JsonBuffer, packs?: PackNumbers): void {
    const p = this.packs[r]!;
    const b = out.room(REF_JSON_MAX);
    let at = out.length;
    if (p === NO_PACK) {
      b[at++] = QUOTE;
      at = hexInto(this.hashes, r * HASH, b, at);
      b[at++] = QUOTE;
    } else if (packs) {
      // as a version-5 index part holds it: [sha256, pack number, offset, length]
      b[at++] = OPEN_LIST;
      b[at++] = QUOTE;
      at = hexInto(this.hashes, r * HASH, b, at);
      b[at++] = QUOTE;
      b[at++] = COMMA;
      at = digitsInto(packs.ofTable(p, this.packIds), b, at);
      b[at++] = COMMA;
      at = digitsInto(this.offsets[r]!, b, at);
      b[at++] = COMMA;
      at = digitsInto(this.lengths[r]!, b, at);
      b[at++] = CLOSE_LIST;
    } else {
      b.set(JSON_SHA, at);
      at = hexInto(this.hashes, r * HASH, b, at + JSON_SHA.length);
      b.set(JSON_PACK, at);
      at += JSON_PACK.length;
      const id = this.packIdBytes[p]!;
      b.set(id, at);
      at += id.length;
      b.set(JSON_OFFSET, at);
      at = digitsInto(this.offsets[r]!, b, at + JSON_OFFSET.length);
      b.set(JSON_LENGTH, at);
      at = digitsInto(this.lengths[r]!, b, at + JSON_LENGTH.length);
      b[at++] = CLOSE;
    }
    out.length = at;
  }

  packRef(r: number): PackRef {
    const ref = this.ref(r);
    if (typeof ref === 'string') throw new Error(`ref ${r} is a chunk object, not a packed blob`);
    return ref;
  }

  private packNumber(id: string): number {
    // a file's blocks come pack after pack: most refs are in the pack of the one before
    if (id === this.packIds[this.lastPack]) return this.lastPack;
    let n = this.packNumbers.get(id);
    if (n === undefined) {
      n = this.packIds.push(id) - 1;
      this.packIdBytes.push(Buffer.from(id, 'latin1'));
      this.packNumbers.set(id, n);
    }
    this.lastPack = n;
    return n;
  }

  /** the first slot to look in for the hash at `at` in `b` */
  private slotOf(b: Uint8Array, at: number): number {
    const lo = b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24);
    const hi = b[at + 4]! | (b[at + 5]! << 8) | (b[at + 6]! << 16) | (b[at + 7]! << 24);
    return (Math.imul(lo ^ this.seedB, this.seedA) ^ Math.imul(hi, 0x9e3779b1)) & (this.slots.length - 1);
  }

  /** put ref `r` in its slot, unless a ref of the same hash is there (the first one stays the one found) */
  private insert(r: number): void {
    const at = r * HASH;
    for (let s = this.slotOf(this.hashes, at); ; s = (s + 1) & (this.slots.length - 1)) {
      const o = this.slots[s]! - 1;
      if (o < 0) {
        this.slots[s] = r + 1;
        return;
      }
      if (this.hashes.compare(this.hashes, at, at + HASH, o * HASH, o * HASH + HASH) === 0) return;
    }
  }

  private rehash(): void {
    this.slots = new Int32Array(this.slots.length * 2);
    for (let r = 0; r < this.count; r++) this.insert(r);
  }

  /** room for one more ref: grown by half when full */
  private roomForOne(): void {
    if (this.count === this.packs.length) this.resize(Math.ceil(this.count * 1.5));
  }

  private resize(n: number): void {
    const hashes = Buffer.allocUnsafeSlow(n * HASH);
    this.hashes.copy(hashes, 0, 0, this.count * HASH);
    this.hashes = hashes;
    this.packs = grown(this.packs, new Int32Array(n));
    this.offsets = grown(this.offsets, new Float64Array(n));
    this.lengths = grown(this.lengths, new Uint32Array(n));
    this.fps = grown(this.fps, Buffer.alloc(n * FP));
  }
}

/** the slots of an open-addressing table that holds `n` entries at most half full: a power of two, 16 or more */
export function slotsFor(n: number): number {
  let slots = 16;
  while (slots < n * 2) slots *= 2;
  return slots;
}

/** `to` (a bigger typed array) holding `from`'s values at their places */
export function grown<T extends Uint8Array | Uint16Array | Int32Array | Uint32Array | Float64Array>(from: T, to: T): T {
  to.set(from);
  return to;
}

/** Runs of refs, one per file, back to back in one growing array. */
export class RefLists {
  private refs = new Uint32Array(4096);
  private length = 0;

  /** make room for `n` refs in all */
  reserve(n: number): void {
    if (n > this.refs.length) this.refs = grown(this.refs, new Uint32Array(n));
  }

  /** store a run; its start (the run is `start`, `start + 1`, … for its length) */
  push(run: ArrayLike<number>): number {
    if (this.length + run.length > this.refs.length) this.refs = grown(this.refs, new Uint32Array(Math.ceil((this.length + run.length) * 1.5)));
    const start = this.length;
    for (let i = 0; i < run.length; i++) this.refs[start + i] = run[i]!;
    this.length += run.length;
    return start;
  }

  at(i: number): number {
    return this.refs[i]!;
  }
}

/**
 * An index's `sha256` of a file whose blocks are `count` refs from `start`: that block's hash
 * for one block, else the SHA-256 of the blocks' raw hashes in order (`contentHash`).
 */
export function contentHashOf(table: RefTable, lists: RefLists, start: number, count: number): string {
  if (count === 1) return table.sha(lists.at(start));
  const h = createHash('sha256');
  // the hashes gathered a batch at a time: one update each, no object made per block
  for (let i = 0; i < count; ) {
    const n = Math.min(count - i, HASH_BATCH);
    for (let k = 0; k < n; k++) table.copyHash(lists.at(start + i + k), hashBatch, k * HASH);
    h.update(n === HASH_BATCH ? hashBatch : hashBatch.subarray(0, n * HASH));
    i += n;
  }
  return h.digest('hex');
}

const HASH_BATCH = 1024;
const hashBatch = Buffer.allocUnsafeSlow(HASH_BATCH * HASH);

/**
 * `n` bytes from `from` in `src` to `at` in `out`, by hand: Buffer.copy and set with a
 * subarray make a view object per call, and an upload copies a hash or a fingerprint
 * per block, ~130k times for a 5 GiB node, more than once.
 */
function copyBytes(src: Uint8Array, from: number, out: Uint8Array, at: number, n: number): void {
  for (let i = 0; i < n; i++) out[at + i] = src[from + i]!;
}
