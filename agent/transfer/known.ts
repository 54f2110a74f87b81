/**
 * What an upload knows: every blob stored (compactly, lib/repo/ref-table.ts) with each
 * file's run of them, and the previous backup's files.
 */
import { contentHashOf, RefLists, RefTable, slotsFor } from '../../lib/repo/ref-table.js';
import { FP, unknownFp } from '../../lib/repo/fingerprint.js';
import { decodeCuts } from '../../lib/repo/cuts.js';
import type { ChunkRef, FileEntry, FileEntryText, JsonBuffer, PackNumbers } from '../../lib/repo/index-file.js';
import { Columns } from './columns.js';
import { keepShape } from '../../lib/shapes.js';

/** A file's content as the upload holds it: its blocks are `count` refs in `Known.lists` from `first`. */
export interface Content {
  sha256: string;
  size: number;
  block?: number;
  first: number;
  count: number;
}

/** A file as the previous backup stored it, and what told then whether it changed. */
export interface OldFile extends Content {
  mtimeMs: number;
  seen?: { ino: number; ctimeMs: number };
}

/**
 * The previous backup's files, a row each, found by path. An upload compares a file with
 * its row's columns and copies them when it is unchanged; only a changed file's row
 * becomes an `OldFile`.
 */
export class OldFiles {
  cols = new Columns();
  private rows = new Map<string, number>();

  /** room for `n` files (a copy of an index says how many it holds) */
  reserve(n: number): void {
    this.cols.reserve(n);
  }

  /** the file at `path` whose `count` blocks are refs in the lists from `first` */
  add(path: string, f: Pick<FileEntry, 'size' | 'mtimeMs' | 'block' | 'cuts' | 'sha256' | 'seen'>, first: number, count: number): void {
    const r = this.cols.add(path, 'file');
    this.cols.setMeta(r, { mode: 0, uid: 0, gid: 0, mtimeMs: f.mtimeMs });
    this.cols.setContent(r, { size: f.size, block: f.block, sha256: f.sha256, first, count });
    if (f.cuts !== undefined) this.cols.setCuts(r, f.cuts);
    if (f.seen) this.cols.setSig(r, f.seen, true);
    this.rows.set(path, r);
  }

  /**
   * `add` of a file whose content hash is the 32 bytes at `shaAt` in `b` (raw, not hex),
   * whose `seen` signature, if it has one, is `ino` and `ctimeMs`, and whose `cuts`, if it
   * was cut by its content, are these: no object or hex string
   * made for it (the agent's copy of an index, ~34k files at 5 GiB)
   */
  addRaw(path: string, size: number, mtimeMs: number, block: number, b: Buffer, shaAt: number, first: number, count: number, seen: boolean, ino: number, ctimeMs: number, cuts?: string): void {
    const r = this.cols.add(path, 'file');
    this.cols.setMtime(r, mtimeMs);
    this.cols.setContentRaw(r, size, block, b, shaAt, first, count);
    if (cuts !== undefined) this.cols.setCuts(r, cuts);
    if (seen) this.cols.setSigOf(r, ino, ctimeMs, true);
    this.rows.set(path, r);
  }

  /** the row of the file at `path` in the previous backup, -1 if it was not there */
  row(path: string): number {
    return this.rows.get(path) ?? -1;
  }

  /** let go of every file (an upload past its files: the rows are ~4 MiB and a Map of 34k paths at 5 GiB) */
  clear(): void {
    this.cols = new Columns();
    this.rows = new Map();
  }

  /**
   * How the file in row `r` was cut where its content says: the average block size (its
   * log2), and its blocks by fingerprint (none when not one has a fingerprint: an index
   * written before they were kept). Undefined if it was not cut so.
   */
  cutOf(r: number, known: Known): { avgBits: number; blocks?: CutBlocks } | undefined {
    const text = this.cols.cutsOf(r);
    const { first, count } = this.cols.blocksOf(r);
    const cuts = text === undefined ? undefined : decodeCuts(text, count, this.cols.sizeOf(r));
    if (!cuts) return undefined;
    const blocks = new CutBlocks(count);
    for (let i = 0; i < count; i++) blocks.add(known, known.lists.at(first + i), cuts.lengths[i]!);
    return { avgBits: cuts.avgBits, ...(blocks.size > 0 ? { blocks } : {}) };
  }

  /** the file in row `r` */
  file(r: number): OldFile {
    return { ...this.cols.content(r), mtimeMs: this.cols.mtimeMs(r), seen: this.cols.seenSig(r) };
  }
}

/**
 * The blocks of a file cut by its content in the previous backup, found by fingerprint and
 * length wherever they lay: their refs, lengths and fingerprints in typed arrays with an
 * open-addressing table by fingerprint, ~40 bytes a block (a Map by the fingerprint as a
 * string, of objects, took ~100: ~25 MiB for a file of 256k blocks).
 */
export class CutBlocks {
  size = 0;
  private readonly refs: Int32Array;
  private readonly lengths: Uint32Array;
  private readonly fps: Buffer;
  /** index + 1 into the arrays; 0 is empty; at most half full */
  private readonly slots: Int32Array;

  constructor(blocks: number) {
    this.refs = new Int32Array(blocks);
    this.lengths = new Uint32Array(blocks);
    this.fps = Buffer.alloc(FP * blocks);
    this.slots = new Int32Array(slotsFor(blocks));
  }

  /** the block `ref` of `known`, `length` bytes long, unless its fingerprint is not known (or is already here) */
  add(known: Known, ref: number, length: number): void {
    const i = this.size;
    known.table.fpInto(ref, this.fps, i * FP);
    if (unknownFp(this.fps, i * FP)) return;
    for (let s = this.slotOf(this.fps, i * FP); ; s = (s + 1) & (this.slots.length - 1)) {
      const j = this.slots[s]! - 1;
      if (j >= 0 && this.fps.compare(this.fps, i * FP, i * FP + FP, j * FP, j * FP + FP) === 0 && this.lengths[j] === length) return;
      if (j >= 0) continue;
      this.slots[s] = i + 1;
      this.refs[i] = ref;
      this.lengths[i] = length;
      this.size++;
      return;
    }
  }

  /** the ref of the block whose fingerprint is `fp` and which is `length` bytes long, or -1 */
  find(fp: Buffer, length: number): number {
    for (let s = this.slotOf(fp, 0); ; s = (s + 1) & (this.slots.length - 1)) {
      const j = this.slots[s]! - 1;
      if (j < 0) return -1;
      if (this.lengths[j] === length && this.fps.compare(fp, 0, FP, j * FP, j * FP + FP) === 0) return this.refs[j]!;
    }
  }

  /** a fingerprint is keyed XXH3 output: its first four bytes are as good a slot as any */
  private slotOf(b: Buffer, at: number): number {
    return b.readUInt32LE(at) & (this.slots.length - 1);
  }
}

/**
 * Every blob the upload knows to be stored (the previous backup's, earlier runs' pending
 * ones, its own), compactly (lib/repo/ref-table.ts), and each file's run of them.
 */
export class Known {
  readonly table = new RefTable();
  readonly lists = new RefLists();

  /** room for `blocks` refs and `runs` refs in files' runs, told up front */
  constructor(blocks: number, runs: number) {
    this.table.reserve(blocks);
    this.lists.reserve(runs);
  }

  /** for an upload of about `blocks` blocks that starts from a previous index: about as many refs (most of them the same), each in a run of the old index and of the new */
  static about(blocks: number): Known {
    return new Known(Math.ceil(blocks * 1.05), 2 * blocks);
  }

  /** the content of `size` bytes cut into blocks whose refs are `refs`, in order */
  content(refs: number[], size: number): Content {
    const first = this.lists.push(refs);
    return { sha256: contentHashOf(this.table, this.lists, first, refs.length), size, first, count: refs.length };
  }

  /** the chunks of a file entry read back, made refs (with their fingerprints, when it has them): where their run starts */
  oldRefs(e: FileEntry): number {
    const fps = e.fp === undefined ? undefined : Buffer.from(e.fp, 'base64');
    const usable = fps?.length === FP * e.chunks.length;
    return this.lists.push(
      e.chunks.map((c, i) => {
        const r = this.table.addRef(c);
        if (usable) this.table.setFp(r, fps, i * FP);
        return r;
      }),
    );
  }

  /** the index entry of file row `r` of `rows`, for as long as it is written */
  entry(rows: Columns, r: number): FileEntryText {
    const { first, count } = rows.blocksOf(r);
    return new RowEntry(this.table, this.lists, rows, r, first, count, count > 1 ? this.fpText(first, count) : undefined);
  }

  /** the fingerprints of `count` blocks from `first` as an index holds them; none when not one is known */
  private fpText(first: number, count: number): string | undefined {
    const out = Buffer.allocUnsafe(count * FP);
    let known = false;
    for (let i = 0; i < count; i++) {
      this.table.fpInto(this.lists.at(first + i), out, i * FP);
      known ||= !unknownFp(out, i * FP);
    }
    return known ? out.toString('base64') : undefined;
  }
}

const FP_KEY = Buffer.from(',"fp":"', 'latin1');

/**
 * A file row's index entry, written straight from the columns and the ref table: ~34k of
 * them at 5 GiB, each made into an object and a string by JSON.stringify cost ~0.15 s of an
 * incremental's index. The entry as an object is made only when asked for (an index small
 * enough to be one object).
 */
class RowEntry implements FileEntryText {
  constructor(
    private readonly table: RefTable,
    private readonly lists: RefLists,
    private readonly rows: Columns,
    private readonly r: number,
    private readonly first: number,
    readonly chunks: number,
    /** its blocks' fingerprints (base64), none when it has one block or none is known */
    private readonly fp: string | undefined,
  ) {}

  get file(): Omit<FileEntry, 'chunks'> {
    const f = this.rows.fileEntry(this.r);
    return this.fp === undefined ? f : { ...f, fp: this.fp };
  }

  chunk(i: number): ChunkRef {
    return this.table.ref(this.lists.at(this.first + i));
  }

  writeChunk(i: number, out: JsonBuffer, packs?: PackNumbers): void {
    this.table.writeJson(this.lists.at(this.first + i), out, packs);
  }

  writeHead(out: JsonBuffer): void {
    this.rows.writeFileEntry(this.r, out);
    if (this.fp === undefined) return;
    // base64 needs no escaping in JSON
    out.raw(FP_KEY);
    out.put(this.fp);
    out.byte(0x22);
  }
}

keepShape(new OldFiles());
keepShape(new CutBlocks(0));
keepShape(new RowEntry(new RefTable(), new RefLists(), new Columns(), 0, 0, 0, undefined));
