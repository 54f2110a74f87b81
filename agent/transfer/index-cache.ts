/**
 * The agent's local copy of the last file index it wrote for a component, in the upload's
 * own compact form.
 *
 * An incremental dedups against the component's previous index. Fetched from the
 * repository (~25 MB of JSON for a 5 GiB node, from S3 in many deployments), checked and
 * parsed, it cost more than reading the files that changed (~0.25 s a GiB here, and its
 * parse garbage was the largest part of an incremental's memory). After writing an index
 * the upload writes what it holds of it into the agent's state directory; the next upload
 * takes it instead when it is the copy of exactly the index the newest committed manifest
 * names (same repository, node, component, backup and index SHA-256) and its own SHA-256
 * holds. Anything else (no copy, another backup's, a damaged one) and the index is read
 * from the repository as before: the copy only ever saves time.
 *
 * Layout: "LSIC2\n", the body, a JSON header, its length (u32). The body: pack ids (32
 * bytes each); blobs (hash 32, fingerprint 16, offset f64, length u32, pack i32: 64 bytes);
 * then per file: size, mtime, inode, ctime (f64), block, chunk count (u32), seen (u8), cut
 * by its content (u8, 2 bytes of padding), path length (u32), content hash (32) in 80
 * bytes, its path (UTF-8), its chunks as blob numbers (u32), and for a file cut by its
 * content its `cuts` as the index keeps them but in bytes, not base64 (their length, u32,
 * then the bytes: lib/repo/cuts.ts). (A copy of the first layout, "LSIC1", which had no
 * room for those, is not read: the index is read from the repository.) The header comes
 * last and every file carries its own path and chunks, so the copy is written and read
 * front to back through one 1 MiB buffer and hashed on the way (a 5 GiB node's copy is
 * ~12 MB; none is ever held whole).
 */
import { createHash, type Hash } from 'node:crypto';
import { mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { alignedBuffer } from '../../lib/aligned.js';
import type { Columns } from './columns.js';
import type { Known, OldFiles } from './known.js';
import { PackNumbers } from '../../lib/repo/index-file.js';
import { keepShapeOnce } from '../../lib/shapes.js';

const MAGIC = 'LSIC2\n';
const PACK = 32;
const REF = 64;
const FILE = 80;

/** what a copy must be of to stand for an index */
export interface CacheKey {
  repositoryId: string;
  node: string;
  component: string;
  backupId: string;
  indexSha256: string;
}

interface Header extends CacheKey {
  packs: number;
  refs: number;
  files: number;
  /** bytes from the end of the magic to the header */
  bodyBytes: number;
  bodySha256: string;
}

/** Write the copy of the index `key` names: `rows` are its entries, their blocks refs in `known`. */
export async function writeIndexCache(file: string, key: CacheKey, rows: Columns, known: Known): Promise<void> {
  const { table } = known;
  const { number, refs, refCount, packs, fileRows } = numberRefs(rows, known);
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp`;
  const out = new SectionWriter(await open(tmp, 'w', 0o600));
  keepShapeOnce('section-writer', () => new SectionWriter(out.fh, Buffer.alloc(0)));
  try {
    await out.put(MAGIC.length, (b, at) => b.write(MAGIC, at, 'latin1'));
    out.startBody();
    await out.items(packs.ids.length, PACK, (k, b, at) => b.write(packs.ids[k]!, at, PACK, 'hex'));
    await out.items(refCount, REF, (k, b, at) => {
      const ref = refs[k]!;
      table.copyHash(ref, b, at);
      table.fpInto(ref, b, at + 32);
      b.writeDoubleLE(table.offset(ref), at + 48);
      b.writeUInt32LE(table.length(ref), at + 56);
      const pack = table.packId(ref);
      b.writeInt32LE(pack === undefined ? -1 : packs.of(pack), at + 60);
    });
    await writeFiles(out, rows, fileRows, number, known.lists);
    const bodySha256 = await out.endBody();
    const header: Header = { ...key, packs: packs.ids.length, refs: refCount, files: fileRows.length, bodyBytes: out.bodyBytes, bodySha256 };
    const text = Buffer.from(JSON.stringify(header));
    await out.put(text.length + 4, (b, at) => b.writeUInt32LE(text.length, at + text.copy(b, at)));
    await out.close();
  } catch (err) {
    await out.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await rename(tmp, file);
}

/**
 * The blobs the files of `rows` reference, numbered in the order first met, and their
 * packs; the rows that are files.
 *
 * This, `writeFiles` and the loops `readCopy` calls are functions of their own, not loops
 * in the function that runs once a job: such a function, made hot by its loop, was
 * compiled for it in every job and again for the code after it (no feedback there yet),
 * 0.3–0.45 s of compiling each 5 GiB incremental (--trace-opt) on the core the reads need.
 */
function numberRefs(rows: Columns, known: Known): { number: Int32Array; refs: Int32Array; refCount: number; packs: PackNumbers; fileRows: number[] } {
  const { table, lists } = known;
  // only the blobs this index references, numbered in the order first met
  const number = new Int32Array(table.count).fill(-1);
  // in the order first met (a typed array: ~130k refs at 5 GiB)
  const refs = new Int32Array(table.count);
  let refCount = 0;
  const packs = new PackNumbers();
  const fileRows: number[] = [];
  for (let r = 0; r < rows.length; r++) {
    if (rows.type(r) !== 'file') continue;
    fileRows.push(r);
    const { first, count } = rows.blocksOf(r);
    for (let i = 0; i < count; i++) {
      const ref = lists.at(first + i);
      if (number[ref]! >= 0) continue;
      number[ref] = refCount;
      refs[refCount++] = ref;
      const pack = table.packId(ref);
      if (pack !== undefined) packs.of(pack);
    }
  }
  return { number, refs, refCount, packs, fileRows };
}

/** every file row: its record, its path, its chunks as blob numbers */
async function writeFiles(out: SectionWriter, rows: Columns, fileRows: number[], number: Int32Array, lists: Known['lists']): Promise<void> {
  for (const r of fileRows) {
    const path = Buffer.from(rows.path(r));
    const wait = out.put(FILE + path.length, (b, at) => fileRecord(b, at, rows, r, path));
    if (wait) await wait;
    const { first, count } = rows.blocksOf(r);
    await out.items(count, 4, (i, b, at) => b.writeUInt32LE(number[lists.at(first + i)]!, at));
    const cuts = rows.cutsOf(r);
    if (cuts !== undefined) await writeCuts(out, Buffer.from(cuts, 'base64'));
  }
}

/** a file's cuts in bytes, after their length; a piece at a time (a file of 8 GiB has ~64k lengths, one of 1 TB ~8M) */
async function writeCuts(out: SectionWriter, cuts: Buffer): Promise<void> {
  const wait = out.put(4, (b, at) => b.writeUInt32LE(cuts.length, at));
  if (wait) await wait;
  for (let at = 0; at < cuts.length; at += CUTS_PIECE) {
    const piece = cuts.subarray(at, at + CUTS_PIECE);
    const more = out.put(piece.length, (b, to) => piece.copy(b, to));
    if (more) await more;
  }
}

/** the bytes of a file's cuts written or read at once, at most */
const CUTS_PIECE = 64 * 1024;

/** file row `r`'s record (and its path after it) at `at` in `b`, straight from the columns: no object or hex string made */
function fileRecord(b: Buffer, at: number, rows: Columns, r: number, path: Buffer): void {
  b.fill(0, at, at + FILE);
  b.writeDoubleLE(rows.sizeOf(r), at);
  b.writeDoubleLE(rows.mtimeMs(r), at + 8);
  b.writeDoubleLE(rows.inode(r), at + 16);
  b.writeDoubleLE(rows.ctimeMs(r), at + 24);
  b.writeUInt32LE(rows.blockOf(r), at + 32);
  b.writeUInt32LE(rows.countOf(r), at + 36);
  b.writeUInt8(rows.isSeen(r) ? 1 : 0, at + 40);
  b.writeUInt8(rows.cutsOf(r) !== undefined ? 1 : 0, at + 41);
  b.writeUInt32LE(path.length, at + 44);
  rows.copySha(r, b, at + 48);
  path.copy(b, at + FILE);
}

/** A file written in pieces through one 1 MiB buffer, hashing what is between `startBody` and `endBody`. */
class SectionWriter {
  private used = 0;
  private at = 0;
  private hashFrom = -1;
  private sha: Hash | undefined;
  /** bytes hashed so far */
  bodyBytes = 0;

  constructor(
    readonly fh: FileHandle,
    private readonly buf = Buffer.allocUnsafe(1024 * 1024),
  ) {}

  /** `count` items of `size` bytes each (at most the buffer), item `k` filled in by `fill` at `at` in `b` */
  async items(count: number, size: number, fill: (k: number, b: Buffer, at: number) => void): Promise<void> {
    for (let k = 0; k < count; k++) {
      if (this.used + size > this.buf.length) await this.flush();
      fill(k, this.buf, this.used);
      this.used += size;
    }
  }

  /** `n` bytes, filled in by `fill` at `at` in `b`; most go into the buffer without waiting */
  put(n: number, fill: (b: Buffer, at: number) => void): Promise<void> | undefined {
    if (this.used + n <= this.buf.length) {
      fill(this.buf, this.used);
      this.used += n;
      return undefined;
    }
    return this.putAfterFlush(n, fill);
  }

  private async putAfterFlush(n: number, fill: (b: Buffer, at: number) => void): Promise<void> {
    await this.flush();
    if (n <= this.buf.length) {
      fill(this.buf, 0);
      this.used = n;
      return;
    }
    const big = Buffer.allocUnsafe(n);
    fill(big, 0);
    this.hash(big);
    await this.fh.write(big, 0, n, this.at);
    this.at += n;
  }

  startBody(): void {
    this.hashFrom = this.used;
    this.sha = createHash('sha256');
  }

  async endBody(): Promise<string> {
    await this.flush();
    const digest = this.sha!.digest('hex');
    this.sha = undefined;
    return digest;
  }

  private async flush(): Promise<void> {
    if (this.used === 0) return;
    this.hash(this.buf.subarray(Math.max(0, this.hashFrom), this.used));
    this.hashFrom = 0;
    await this.fh.write(this.buf, 0, this.used, this.at);
    this.at += this.used;
    this.used = 0;
  }

  private hash(b: Buffer): void {
    if (!this.sha) return;
    this.sha.update(b);
    this.bodyBytes += b.length;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.fh.close();
  }
}

/** A file read front to back through one 1 MiB buffer (page-aligned: lib/aligned.ts), hashing what it gives. */
class SectionReader {
  private start = 0;
  private end = 0;
  private readonly sha = createHash('sha256');

  constructor(
    private readonly fh: FileHandle,
    private at: number,
    private left: number,
    readonly buf = alignedBuffer(1024 * 1024),
  ) {}

  /** whether the next `n` bytes (at most the buffer) are there to take: at once when buffered (no wait) */
  need(n: number): boolean | Promise<boolean> {
    return this.end - this.start >= n || this.fill(n);
  }

  /** where in `buf` the next `n` bytes are (after `need(n)` said they are there) */
  next(n: number): number {
    const at = this.start;
    this.start += n;
    return at;
  }

  private async fill(n: number): Promise<boolean> {
    if (n > this.buf.length || n > this.left + this.end - this.start) return false;
    this.buf.copy(this.buf, 0, this.start, this.end);
    this.end -= this.start;
    this.start = 0;
    while (this.end < n) {
      const { bytesRead } = await this.fh.read(this.buf, this.end, Math.min(this.buf.length - this.end, this.left), this.at);
      if (bytesRead === 0) return false;
      this.sha.update(this.buf.subarray(this.end, this.end + bytesRead));
      this.end += bytesRead;
      this.at += bytesRead;
      this.left -= bytesRead;
    }
    return true;
  }

  /** whether everything was taken, and its SHA-256 */
  done(): { all: boolean; sha256: string } {
    return { all: this.left === 0 && this.start === this.end, sha256: this.sha.digest('hex') };
  }
}

/**
 * Fill `known` and `files` from the copy at `file` if it is the copy of the index `key`
 * names and undamaged; false (with `why`) if not, and they may then hold part of it.
 */
export async function readIndexCache(file: string, key: CacheKey, known: Known, files: OldFiles): Promise<{ ok: true } | { ok: false; why: string }> {
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch {
    return { ok: false, why: 'no local copy' };
  }
  try {
    return await readCopy(fh, key, known, files);
  } finally {
    await fh.close();
  }
}

async function readCopy(fh: FileHandle, key: CacheKey, known: Known, files: OldFiles): Promise<{ ok: true } | { ok: false; why: string }> {
  const size = (await fh.stat()).size;
  const small = Buffer.alloc(Math.min(size, 64 * 1024));
  if (size < MAGIC.length + 4) return { ok: false, why: 'not a copy of an index' };
  await fh.read(small, 0, MAGIC.length, 0);
  if (small.toString('latin1', 0, MAGIC.length) !== MAGIC) return { ok: false, why: 'not a copy of an index' };
  await fh.read(small, 0, 4, size - 4);
  const headerBytes = small.readUInt32LE(0);
  const bodyEnd = size - 4 - headerBytes;
  if (bodyEnd < MAGIC.length || headerBytes > small.length) return { ok: false, why: 'damaged (header length)' };
  await fh.read(small, 0, headerBytes, bodyEnd);
  let h: Header;
  try {
    h = JSON.parse(small.toString('utf8', 0, headerBytes)) as Header;
  } catch {
    return { ok: false, why: 'damaged header' };
  }
  for (const k of ['repositoryId', 'node', 'component', 'backupId', 'indexSha256'] as const) {
    if (h[k] !== key[k]) return { ok: false, why: `a copy of another index (${k} ${String(h[k])})` };
  }
  if (![h.packs, h.refs, h.files].every((n) => Number.isSafeInteger(n) && n >= 0) || h.bodyBytes !== bodyEnd - MAGIC.length) return { ok: false, why: 'damaged (wrong length)' };

  // what was taken in before a damage shows is let go by the caller
  const damaged = (what: string) => ({ ok: false as const, why: `damaged (${what})` });
  const body = new SectionReader(fh, MAGIC.length, h.bodyBytes);
  keepShapeOnce('section-reader', () => new SectionReader(fh, 0, 0, Buffer.alloc(0)));
  const packIds = await readPacks(body, h.packs);
  if (!packIds) return damaged('packs');
  const refOf = new Uint32Array(h.refs);
  const refsWrong = await readRefs(body, h.refs, packIds, known, refOf);
  if (refsWrong) return damaged(refsWrong);
  // each file takes at least a record: a damaged count cannot reserve more than the copy holds
  files.reserve(Math.min(h.files, Math.floor(h.bodyBytes / FILE)));
  const filesWrong = await readFiles(body, h.files, refOf, known, files);
  if (filesWrong) return damaged(filesWrong);
  const end = body.done();
  if (!end.all) return damaged('wrong length');
  if (end.sha256 !== h.bodySha256) return damaged('hash');
  return { ok: true };
}

/** the copy's `count` pack ids; undefined if it ends first */
async function readPacks(body: SectionReader, count: number): Promise<string[] | undefined> {
  const b = body.buf;
  const packIds: string[] = [];
  for (let n = 0; n < count; n++) {
    const ready = body.need(PACK);
    if (ready !== true && !(await ready)) return undefined;
    const at = body.next(PACK);
    packIds.push(b.toString('hex', at, at + PACK));
  }
  return packIds;
}

/** the copy's `count` blobs made known, blob `k` as ref `refOf[k]`; what is damaged, if anything */
async function readRefs(body: SectionReader, count: number, packIds: string[], known: Known, refOf: Uint32Array): Promise<string | undefined> {
  const b = body.buf;
  const { table } = known;
  // the copy's pack numbers as the table's
  const packOf = packIds.map((id) => table.packNumberOf(id));
  for (let k = 0; k < count; ) {
    // as many blobs as are buffered, without a wait for each
    const batch = Math.min(count - k, Math.floor(b.length / REF));
    const ready = body.need(batch * REF);
    if (ready !== true && !(await ready)) return 'blobs';
    for (const last = k + batch; k < last; k++) {
      const at = body.next(REF);
      const pack = b.readInt32LE(at + 60);
      if (pack < -1 || pack >= packOf.length) return 'pack number';
      const ref = table.addAt(b, at, pack < 0 ? -1 : packOf[pack]!, b.readDoubleLE(at + 48), b.readUInt32LE(at + 56));
      table.setFp(ref, b, at + 32);
      refOf[k] = ref;
    }
  }
  return undefined;
}

/** the copy's `count` files into `files`, their chunks as refs (`refOf`); what is damaged, if anything */
async function readFiles(body: SectionReader, count: number, refOf: Uint32Array, known: Known, files: OldFiles): Promise<string | undefined> {
  const b = body.buf;
  // the file's record, kept while its path and chunks are read (a read may move what is in the buffer)
  const rec = Buffer.allocUnsafe(FILE);
  const chunks: number[] = [];
  for (let k = 0; k < count; k++) {
    const ready = body.need(FILE);
    if (ready !== true && !(await ready)) return 'files';
    const at = body.next(FILE);
    b.copy(rec, 0, at, at + FILE);
    const blocks = rec.readUInt32LE(36);
    const pathBytes = rec.readUInt32LE(44);
    const pathReady = body.need(pathBytes);
    if (pathReady !== true && !(await pathReady)) return 'paths';
    const pathAt = body.next(pathBytes);
    const path = b.toString('utf8', pathAt, pathAt + pathBytes);
    chunks.length = 0;
    for (let i = 0; i < blocks; ) {
      const batch = Math.min(blocks - i, Math.floor(b.length / 4));
      const listReady = body.need(batch * 4);
      if (listReady !== true && !(await listReady)) return 'chunk lists';
      for (const last = i + batch; i < last; i++) {
        const n = b.readUInt32LE(body.next(4));
        if (n >= refOf.length) return 'blob number';
        chunks.push(refOf[n]!);
      }
    }
    let cuts: string | undefined;
    if (rec[41] === 1) {
      cuts = await readCuts(body);
      // (checked as they are used: lib/repo/cuts.ts `decodeCuts`, which refuses lengths that are not the file's)
      if (cuts === undefined) return 'cuts';
    }
    const first = known.lists.push(chunks);
    files.addRaw(path, rec.readDoubleLE(0), rec.readDoubleLE(8), rec.readUInt32LE(32), rec, 48, first, blocks, rec[40] === 1, rec.readDoubleLE(16), rec.readDoubleLE(24), cuts);
  }
  return undefined;
}

/** a file's cuts (`writeCuts`), as base64 again; undefined if the copy ends first */
async function readCuts(body: SectionReader): Promise<string | undefined> {
  const b = body.buf;
  const lengthReady = body.need(4);
  if (lengthReady !== true && !(await lengthReady)) return undefined;
  const cuts = Buffer.allocUnsafe(b.readUInt32LE(body.next(4)));
  for (let at = 0; at < cuts.length; ) {
    const n = Math.min(cuts.length - at, CUTS_PIECE);
    const ready = body.need(n);
    if (ready !== true && !(await ready)) return undefined;
    const from = body.next(n);
    at += b.copy(cuts, at, from, from + n);
  }
  return cuts.toString('base64');
}
