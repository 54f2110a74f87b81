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
 * Layout: "LSIC1\n", the body, a JSON header, its length (u32). The body: pack ids (32 bytes each); blobs
 * (hash 32, fingerprint 16, offset f64, length u32, pack i32: 64 bytes); files (size,
 * mtime, inode, ctime as f64, block and chunk count u32, seen u8, 7 bytes of padding,
 * content hash 32: 80 bytes); each file's chunks as blob numbers (u32); paths as a JSON
 * array. The header comes last: the body is written in pieces through one small buffer
 * (a 5 GiB node's copy is ~12 MB) and hashed on the way.
 */
import { createHash, type Hash } from 'node:crypto';
import { mkdir, open, readFile, rename, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Columns } from './columns.js';
import type { Known, OldFiles } from './known.js';

const MAGIC = 'LSIC1\n';
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
  runs: number;
  pathBytes: number;
  bodySha256: string;
}

/** Write the copy of the index just written: `rows` are its entries, their blocks refs in `known`. */
export async function writeIndexCache(file: string, key: CacheKey, rows: Columns, known: Known): Promise<void> {
  const { table, lists } = known;
  // only the blobs this index references, numbered in the order first met
  const number = new Int32Array(table.count).fill(-1);
  const refs: number[] = [];
  const packNumbers = new Map<string, number>();
  const fileRows: number[] = [];
  let runs = 0;
  for (let r = 0; r < rows.length; r++) {
    if (rows.type(r) !== 'file') continue;
    fileRows.push(r);
    const { first, count } = rows.blocksOf(r);
    runs += count;
    for (let i = 0; i < count; i++) {
      const ref = lists.at(first + i);
      if (number[ref]! >= 0) continue;
      number[ref] = refs.push(ref) - 1;
      const pack = table.packId(ref);
      if (pack !== undefined && !packNumbers.has(pack)) packNumbers.set(pack, packNumbers.size);
    }
  }
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp`;
  const out = new SectionWriter(await open(tmp, 'w', 0o600));
  try {
    await out.put(MAGIC.length, (b, at) => b.write(MAGIC, at, 'latin1'));
    out.startBody();
    const packIds = [...packNumbers.keys()];
    await out.items(packIds.length, PACK, (k, b, at) => b.write(packIds[k]!, at, PACK, 'hex'));
    await out.items(refs.length, REF, (k, b, at) => {
      const ref = refs[k]!;
      table.copyHash(ref, b, at);
      table.fpInto(ref, b, at + 32);
      b.writeDoubleLE(table.offset(ref), at + 48);
      b.writeUInt32LE(table.length(ref), at + 56);
      const pack = table.packId(ref);
      b.writeInt32LE(pack === undefined ? -1 : packNumbers.get(pack)!, at + 60);
    });
    await out.items(fileRows.length, FILE, (k, b, at) => {
      const r = fileRows[k]!;
      const c = rows.content(r);
      const sig = rows.sig(r);
      b.fill(0, at, at + FILE);
      b.writeDoubleLE(c.size, at);
      b.writeDoubleLE(rows.mtimeMs(r), at + 8);
      b.writeDoubleLE(sig.ino, at + 16);
      b.writeDoubleLE(sig.ctimeMs, at + 24);
      b.writeUInt32LE(c.block ?? 0, at + 32);
      b.writeUInt32LE(c.count, at + 36);
      b.writeUInt8(rows.seenSig(r) ? 1 : 0, at + 40);
      b.write(c.sha256, at + 48, 32, 'hex');
    });
    // each file's chunks in turn, as one run of blob numbers
    let f = 0;
    let i = 0;
    await out.items(runs, 4, (_k, b, at) => {
      for (;;) {
        const { first, count } = rows.blocksOf(fileRows[f]!);
        if (i < count) {
          b.writeUInt32LE(number[lists.at(first + i++)]!, at);
          return;
        }
        f++;
        i = 0;
      }
    });
    const paths = Buffer.from(JSON.stringify(fileRows.map((r) => rows.path(r))));
    await out.put(paths.length, (b, at) => paths.copy(b, at));
    const header: Header = { ...key, packs: packNumbers.size, refs: refs.length, files: fileRows.length, runs, pathBytes: paths.length, bodySha256: await out.endBody() };
    const text = Buffer.from(JSON.stringify(header));
    await out.put(text.length + 4, (b, at) => b.writeUInt32LE(text.length, at + text.copy(b, at)));
    await out.close();
  } catch (err) {
    await out.close().catch(() => undefined);
    throw err;
  }
  await rename(tmp, file);
}

/** A file written in pieces through one 1 MiB buffer, hashing what is between `startBody` and `endBody`. */
class SectionWriter {
  private readonly buf = Buffer.allocUnsafe(1024 * 1024);
  private used = 0;
  private at = 0;
  private hashFrom = -1;
  private sha: Hash | undefined;

  constructor(private readonly fh: FileHandle) {}

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
    this.sha?.update(big);
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
    this.sha?.update(this.buf.subarray(Math.max(0, this.hashFrom), this.used));
    this.hashFrom = 0;
    await this.fh.write(this.buf, 0, this.used, this.at);
    this.at += this.used;
    this.used = 0;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.fh.close();
  }
}

/**
 * Fill `known` and `files` from the copy at `file` if it is the copy of the index `key`
 * names and undamaged; false (with `why`) if not, and they may then hold part of it.
 */
export async function readIndexCache(file: string, key: CacheKey, known: Known, files: OldFiles): Promise<{ ok: true } | { ok: false; why: string }> {
  let buf: Buffer;
  try {
    buf = await readFile(file);
  } catch {
    return { ok: false, why: 'no local copy' };
  }
  if (buf.length < MAGIC.length + 4 || buf.toString('latin1', 0, MAGIC.length) !== MAGIC) return { ok: false, why: 'not a copy of an index' };
  const headerBytes = buf.readUInt32LE(buf.length - 4);
  const bodyEnd = buf.length - 4 - headerBytes;
  if (bodyEnd < MAGIC.length) return { ok: false, why: 'damaged (header length)' };
  let h: Header;
  try {
    h = JSON.parse(buf.toString('utf8', bodyEnd, buf.length - 4)) as Header;
  } catch {
    return { ok: false, why: 'damaged header' };
  }
  for (const k of ['repositoryId', 'node', 'component', 'backupId', 'indexSha256'] as const) {
    if (h[k] !== key[k]) return { ok: false, why: `a copy of another index (${k} ${String(h[k])})` };
  }
  const start = MAGIC.length;
  const ends = [h.packs * PACK, h.refs * REF, h.files * FILE, h.runs * 4, h.pathBytes].reduce<number[]>((acc, n) => [...acc, acc.at(-1)! + n], [start]);
  if (![h.packs, h.refs, h.files, h.runs, h.pathBytes].every((n) => Number.isSafeInteger(n) && n >= 0) || ends.at(-1) !== bodyEnd) return { ok: false, why: 'damaged (wrong length)' };
  if (createHash('sha256').update(buf.subarray(start, bodyEnd)).digest('hex') !== h.bodySha256) return { ok: false, why: 'damaged (hash)' };

  const [packsAt, refsAt, filesAt, runsAt, pathsAt] = ends;
  const packIds = Array.from({ length: h.packs }, (_, n) => buf.toString('hex', packsAt! + n * PACK, packsAt! + (n + 1) * PACK));
  const refOf = new Uint32Array(h.refs);
  for (let k = 0; k < h.refs; k++) {
    const at = refsAt! + k * REF;
    const pack = buf.readInt32LE(at + 60);
    if (pack >= h.packs) return { ok: false, why: 'damaged (pack number)' };
    const ref = known.table.add(buf.subarray(at, at + 32), pack < 0 ? undefined : packIds[pack], buf.readDoubleLE(at + 48), buf.readUInt32LE(at + 56));
    known.table.setFp(ref, buf, at + 32);
    refOf[k] = ref;
  }
  const paths = JSON.parse(buf.toString('utf8', pathsAt, bodyEnd)) as string[];
  if (!Array.isArray(paths) || paths.length !== h.files) return { ok: false, why: 'damaged (paths)' };
  let run = runsAt!;
  const chunks: number[] = [];
  for (let k = 0; k < h.files; k++) {
    const at = filesAt! + k * FILE;
    const count = buf.readUInt32LE(at + 36);
    chunks.length = 0;
    if (run + count * 4 > pathsAt!) return { ok: false, why: 'damaged (chunk lists)' };
    for (let i = 0; i < count; i++, run += 4) {
      const k2 = buf.readUInt32LE(run);
      if (k2 >= h.refs) return { ok: false, why: 'damaged (blob number)' };
      chunks.push(refOf[k2]!);
    }
    const block = buf.readUInt32LE(at + 32);
    const seen = buf[at + 40] === 1 ? { ino: buf.readDoubleLE(at + 16), ctimeMs: buf.readDoubleLE(at + 24) } : undefined;
    files.add(
      paths[k]!,
      { size: buf.readDoubleLE(at), mtimeMs: buf.readDoubleLE(at + 8), block: block > 0 ? block : undefined, sha256: buf.toString('hex', at + 48, at + 80), seen },
      known.lists.push(chunks),
      count,
    );
  }
  return { ok: true };
}
