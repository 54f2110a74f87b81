/**
 * Files and folders as an upload holds them: one row each, in columns.
 *
 * An upload keeps every entry of a snapshot from the walk until the index is written, and
 * in an incremental every file of the previous index as well. As objects (path, meta,
 * size, hex hash, `seen`, a Map entry) a file cost ~425 bytes of heap: ~14 MiB for the
 * 33k files of a 5 GiB node, twice that in an incremental. Here a row is its path string
 * and ~90 bytes of typed arrays. Objects are made only for the row being worked on.
 */
import type { TreeEntry } from '../../lib/tree.js';
import type { FileEntry, JsonBuffer } from '../../lib/repo/index-file.js';
import { grown } from '../../lib/repo/ref-table.js';
import { keepShape } from '../../lib/shapes.js';

const SHA = 32;
const json = (text: string) => Buffer.from(text, 'latin1');
const HEAD = json('{"type":"file","path":');
const MODE = json(',"mode":');
const UID = json(',"uid":');
const GID = json(',"gid":');
const MTIME = json(',"mtimeMs":');
const SIZE = json(',"size":');
const SHA256 = json(',"sha256":');
const BLOCK = json(',"block":');
const SEEN_INO = json(',"seen":{"ino":');
const CUTS = json(',"cuts":');
const CTIME = json(',"ctimeMs":');
const KINDS = ['file', 'dir', 'symlink'] as const satisfies readonly TreeEntry['type'][];
const FILE = 0;
const SYMLINK = 2;

/** `text` as UTF-8 after its length (u32) at `at` in `b`; where it ends */
function withLength(b: Buffer, at: number, text: string): number {
  const n = b.write(text, at + 4, 'utf8');
  b.writeUInt32LE(n, at);
  return at + 4 + n;
}

/** what tells whether a file changed since it was read: its inode and change time then */
export interface SeenSig {
  ino: number;
  ctimeMs: number;
}

export class Columns {
  length = 0;
  private readonly paths: string[] = [];
  private readonly targets = new Map<number, string>();
  /** a file cut where its content says: its blocks' lengths, as its index entry keeps them (lib/repo/cuts.ts) */
  private readonly cutsByRow = new Map<number, string>();
  private kind = new Uint8Array(0);
  private mode = new Uint16Array(0);
  private uid = new Uint32Array(0);
  private gid = new Uint32Array(0);
  private mtime = new Float64Array(0);
  private size = new Float64Array(0);
  private ino = new Float64Array(0);
  private ctime = new Float64Array(0);
  /** whether ino and ctime are a `seen` signature (a file read long enough after it changed) */
  private seen = new Uint8Array(0);
  private block = new Uint32Array(0);
  private first = new Uint32Array(0);
  private count = new Uint32Array(0);
  private sha = Buffer.alloc(0);
  /** whether a file's content was copied from the previous index's row of the same path (`copyContent`) */
  private copied = new Uint8Array(0);

  /** room for `n` rows without growing (each growth copies every column into fresh memory) */
  reserve(n: number): void {
    if (n > this.kind.length) this.grow(n);
  }

  /** a new row at the end; its number */
  add(path: string, type: TreeEntry['type']): number {
    if (this.length === this.kind.length) this.grow(Math.max(1024, Math.ceil(this.length * 1.5)));
    const r = this.length++;
    this.paths.push(path);
    this.kind[r] = KINDS.indexOf(type);
    return r;
  }

  path(r: number): string {
    return this.paths[r]!;
  }

  type(r: number): TreeEntry['type'] {
    return KINDS[this.kind[r]!]!;
  }

  setMeta(r: number, m: { mode: number; uid: number; gid: number; mtimeMs: number }): void {
    this.mode[r] = m.mode;
    this.uid[r] = m.uid;
    this.gid[r] = m.gid;
    this.mtime[r] = m.mtimeMs;
  }

  meta(r: number): { mode: number; uid: number; gid: number; mtimeMs: number } {
    return { mode: this.mode[r]!, uid: this.uid[r]!, gid: this.gid[r]!, mtimeMs: this.mtime[r]! };
  }

  setMtime(r: number, mtimeMs: number): void {
    this.mtime[r] = mtimeMs;
  }

  mtimeMs(r: number): number {
    return this.mtime[r]!;
  }

  /** a file's size, block size (kept only when it has more than one block), content hash and its blocks' run in the ref lists */
  setContent(r: number, c: { size: number; block?: number; sha256: string; first: number; count: number }): void {
    this.setBlocks(r, c.size, c.block ?? 0, c.first, c.count);
    this.sha.write(c.sha256, r * SHA, SHA, 'hex');
  }

  /** `setContent` with the content hash as the 32 bytes at `shaAt` in `b` */
  setContentRaw(r: number, size: number, block: number, b: Buffer, shaAt: number, first: number, count: number): void {
    this.setBlocks(r, size, block, first, count);
    b.copy(this.sha, r * SHA, shaAt, shaAt + SHA);
  }

  private setBlocks(r: number, size: number, block: number, first: number, count: number): void {
    this.copied[r] = 0;
    this.cutsByRow.delete(r);
    this.size[r] = size;
    this.block[r] = count > 1 ? block : 0;
    this.first[r] = first;
    this.count[r] = count;
  }

  setSize(r: number, size: number): void {
    this.size[r] = size;
  }

  setSha(r: number, sha256: string): void {
    this.sha.write(sha256, r * SHA, SHA, 'hex');
  }

  content(r: number): { size: number; block?: number; sha256: string; first: number; count: number } {
    const block = this.block[r]!;
    return { size: this.size[r]!, ...(block > 0 ? { block } : {}), sha256: this.sha.toString('hex', r * SHA, r * SHA + SHA), first: this.first[r]!, count: this.count[r]! };
  }

  sizeOf(r: number): number {
    return this.size[r]!;
  }

  /** the size the file was cut into blocks at, 0 for a file of one block or none */
  blockOf(r: number): number {
    return this.block[r]!;
  }

  /** the content hash's 32 raw bytes, at `at` in `out` */
  copySha(r: number, out: Buffer, at: number): void {
    this.sha.copy(out, at, r * SHA, r * SHA + SHA);
  }

  /** row `f` of `from`'s content as row `r`'s, no strings made */
  copyContent(r: number, from: Columns, f: number): void {
    this.size[r] = from.size[f]!;
    this.count[r] = from.count[f]!;
    this.block[r] = from.block[f]!;
    this.first[r] = from.first[f]!;
    for (let i = 0; i < SHA; i++) this.sha[r * SHA + i] = from.sha[f * SHA + i]!;
    this.copied[r] = 1;
    const cuts = from.cutsByRow.get(f);
    if (cuts === undefined) this.cutsByRow.delete(r);
    else this.cutsByRow.set(r, cuts);
  }

  /** the file's blocks were cut by its content, these lengths (after its content is set) */
  setCuts(r: number, cuts: string): void {
    this.cutsByRow.set(r, cuts);
  }

  /** the lengths of the file's blocks, if it was cut by its content (as `setCuts` took them) */
  cutsOf(r: number): string | undefined {
    return this.cutsByRow.get(r);
  }

  /** whether any file is cut by its content */
  get anyCut(): boolean {
    return this.cutsByRow.size > 0;
  }

  /** whether row `r`'s content is the previous index's, copied by `copyContent` (its blocks are that index's refs) */
  isCopied(r: number): boolean {
    return this.copied[r] === 1;
  }

  /**
   * Everything row `r`'s index entry says but its content's refs, at `at` in `b` (room for
   * `identityBytes(r)`); where it ends. Two rows whose bytes are the same, and whose
   * content is the same refs, make the same entry.
   */
  identityInto(r: number, b: Buffer, at: number): number {
    const kind = this.kind[r]!;
    b[at] = kind;
    b.writeUInt16LE(this.mode[r]!, at + 1);
    b.writeUInt32LE(this.uid[r]!, at + 3);
    b.writeUInt32LE(this.gid[r]!, at + 7);
    b.writeDoubleLE(this.mtime[r]!, at + 11);
    at = withLength(b, at + 19, this.paths[r]!);
    if (kind === FILE) {
      b.writeDoubleLE(this.size[r]!, at);
      b.writeUInt32LE(this.block[r]!, at + 8);
      b.writeUInt32LE(this.count[r]!, at + 12);
      this.sha.copy(b, at + 16, r * SHA, r * SHA + SHA);
      at += 16 + SHA;
      // (the same content has the same cuts; a file cut by its content is not one cut at a fixed size)
      b[at++] = this.cutsByRow.has(r) ? 1 : 0;
      b[at++] = this.seen[r]!;
      if (this.seen[r]) {
        b.writeDoubleLE(this.ino[r]!, at);
        b.writeDoubleLE(this.ctime[r]!, at + 8);
        at += 16;
      }
    } else if (kind === SYMLINK) at = withLength(b, at, this.target(r));
    return at;
  }

  /** at most how many bytes `identityInto` writes for row `r` */
  identityBytes(r: number): number {
    return 129 + 3 * (this.paths[r]!.length + (this.kind[r] === SYMLINK ? this.target(r).length : 0));
  }

  /** how many blocks the file's content is */
  countOf(r: number): number {
    return this.count[r]!;
  }

  blocksOf(r: number): { first: number; count: number } {
    return { first: this.first[r]!, count: this.count[r]! };
  }

  /** the file's inode and change time; `seen`: they tell next time whether it changed */
  setSig(r: number, sig: SeenSig, seen: boolean): void {
    this.setSigOf(r, sig.ino, sig.ctimeMs, seen);
  }

  /** `setSig` without the object */
  setSigOf(r: number, ino: number, ctimeMs: number, seen: boolean): void {
    this.ino[r] = ino;
    this.ctime[r] = ctimeMs;
    this.setSeen(r, seen);
  }

  sig(r: number): SeenSig {
    return { ino: this.ino[r]!, ctimeMs: this.ctime[r]! };
  }

  inode(r: number): number {
    return this.ino[r]!;
  }

  ctimeMs(r: number): number {
    return this.ctime[r]!;
  }

  /** whether the row's inode and change time (as set) tell next time whether it changed */
  setSeen(r: number, seen: boolean): void {
    this.seen[r] = seen ? 1 : 0;
  }

  /** whether the row was seen with inode `ino` and, unless `anyCtime`, change time `ctimeMs` */
  seenAs(r: number, ino: number, ctimeMs: number, anyCtime: boolean): boolean {
    return this.seen[r] === 1 && this.ino[r] === ino && (anyCtime || this.ctime[r] === ctimeMs);
  }

  /** whether the row's inode and change time are a signature for the next backup (`seenSig`) */
  isSeen(r: number): boolean {
    return this.seen[r] === 1;
  }

  /** the signature kept for the next backup, if the file had settled when read */
  seenSig(r: number): SeenSig | undefined {
    return this.seen[r] ? this.sig(r) : undefined;
  }

  /** row `r`, a file, as its index entry but for its chunks (and their fingerprints) */
  fileEntry(r: number): Omit<FileEntry, 'chunks' | 'fp'> {
    const block = this.block[r]!;
    const seen = this.seenSig(r);
    const sha256 = this.sha.toString('hex', r * SHA, r * SHA + SHA);
    const cuts = this.cutsByRow.get(r);
    return { type: 'file', path: this.path(r), ...this.meta(r), size: this.size[r]!, sha256, ...(block > 0 ? { block } : {}), ...(cuts !== undefined ? { cuts } : {}), ...(seen ? { seen } : {}) };
  }

  /** `fileEntry(r)` written as JSON at the end of `out` but for its closing brace: the bytes JSON.stringify makes of it, no object made */
  writeFileEntry(r: number, out: JsonBuffer): void {
    out.raw(HEAD);
    out.put(JSON.stringify(this.paths[r]));
    out.raw(MODE);
    out.number(this.mode[r]!);
    out.raw(UID);
    out.number(this.uid[r]!);
    out.raw(GID);
    out.number(this.gid[r]!);
    out.raw(MTIME);
    out.number(this.mtime[r]!);
    out.raw(SIZE);
    out.number(this.size[r]!);
    out.raw(SHA256);
    out.hex32(this.sha, r * SHA);
    if (this.block[r]! > 0) {
      out.raw(BLOCK);
      out.number(this.block[r]!);
    }
    const cuts = this.cutsByRow.get(r);
    if (cuts !== undefined) {
      out.raw(CUTS);
      out.put(JSON.stringify(cuts));
    }
    if (this.seen[r]) {
      out.raw(SEEN_INO);
      out.number(this.ino[r]!);
      out.raw(CTIME);
      out.number(this.ctime[r]!);
      out.byte(0x7d);
    }
  }

  setTarget(r: number, target: string): void {
    this.targets.set(r, target);
  }

  target(r: number): string {
    return this.targets.get(r) ?? '';
  }

  private grow(n: number): void {
    this.kind = grown(this.kind, new Uint8Array(n));
    this.mode = grown(this.mode, new Uint16Array(n));
    this.uid = grown(this.uid, new Uint32Array(n));
    this.gid = grown(this.gid, new Uint32Array(n));
    this.mtime = grown(this.mtime, new Float64Array(n));
    this.size = grown(this.size, new Float64Array(n));
    this.ino = grown(this.ino, new Float64Array(n));
    this.ctime = grown(this.ctime, new Float64Array(n));
    this.seen = grown(this.seen, new Uint8Array(n));
    this.block = grown(this.block, new Uint32Array(n));
    this.first = grown(this.first, new Uint32Array(n));
    this.count = grown(this.count, new Uint32Array(n));
    this.sha = grown(this.sha, Buffer.alloc(n * SHA));
    this.copied = grown(this.copied, new Uint8Array(n));
  }
}

keepShape(new Columns());
