/**
 * A reproducible, database-like dataset for one node, and a reproducible 1% change of
 * it. The same node name, size and seed always give the same bytes.
 *
 * Per node of S bytes:
 *   large/blob-{0,1}.bin   40% of S in two large files (hundreds of MB at full size)
 *   db/table-{0,1}.db      20% in fixed 8 KiB pages, rewritten in place by a change
 *   wal/NNNNNN.log         20% in append-only 16 MiB segments, the last one partly full
 *   sst/NN/NNNNNN.sst      20% in small files of 2–62 KiB, 256 per folder
 * Every 4 KiB holds 2 KiB of pseudo-random bytes and 2 KiB of zeros, so the data
 * compresses about 2:1, like a typical database file.
 */
import { createCipheriv, createHash, type Cipher } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const PAGE = 8192;
const SEGMENT = 16 * 1024 * 1024;
const WRITE = 1024 * 1024;

/** a seeded stream of pseudo-random bytes (AES-256-CTR keystream) and numbers */
export class Prng {
  private readonly cipher: Cipher;
  private readonly zeros = Buffer.alloc(WRITE);

  constructor(label: string) {
    const key = createHash('sha256').update(`lockstep-bench/${label}`).digest();
    this.cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  }

  /** n bytes, half random and half zeros in every 4 KiB */
  data(n: number): Buffer {
    const out = this.cipher.update(n <= WRITE ? this.zeros.subarray(0, n) : Buffer.alloc(n));
    for (let off = 2048; off < n; off += 4096) out.fill(0, off, Math.min(n, off + 2048));
    return out;
  }

  /** an integer in [0, n) */
  int(n: number): number {
    return this.cipher.update(this.zeros.subarray(0, 4)).readUInt32LE(0) % n;
  }
}

export interface NodeLayout {
  large: number;
  table: number;
  wal: number;
  small: number;
}

export function layout(bytes: number): NodeLayout {
  const pages = (x: number) => Math.max(PAGE, Math.floor(x / PAGE) * PAGE);
  return { large: pages(bytes * 0.2), table: pages(bytes * 0.1), wal: Math.floor(bytes * 0.2), small: Math.floor(bytes * 0.2) };
}

async function writeStream(path: string, bytes: number, prng: Prng, flag = 'w'): Promise<void> {
  const fh = await open(path, flag);
  try {
    for (let done = 0; done < bytes; ) {
      const n = Math.min(WRITE, bytes - done);
      await fh.write(prng.data(n));
      done += n;
    }
  } finally {
    await fh.close();
  }
}

/** Write node `node`'s dataset of about `bytes` bytes into `dir` (which must be empty). */
export async function generate(dir: string, node: string, bytes: number): Promise<void> {
  const prng = new Prng(`${node}/base`);
  const l = layout(bytes);
  for (const sub of ['large', 'db', 'wal', 'sst']) await mkdir(join(dir, sub), { recursive: true });
  for (let i = 0; i < 2; i++) await writeStream(join(dir, 'large', `blob-${i}.bin`), l.large, prng);
  for (let i = 0; i < 2; i++) await writeStream(join(dir, 'db', `table-${i}.db`), l.table, prng);
  for (let seg = 1, left = l.wal; left > 0; seg++, left -= SEGMENT) {
    await writeStream(join(dir, 'wal', segmentName(seg)), Math.min(SEGMENT, left), prng);
  }
  await writeSmallFiles(join(dir, 'sst'), l.small, prng, '');
}

const segmentName = (n: number) => `${String(n).padStart(6, '0')}.log`;

async function writeSmallFiles(root: string, bytes: number, prng: Prng, prefix: string): Promise<number> {
  let written = 0;
  for (let i = 0; written < bytes; i++) {
    const folder = join(root, `${prefix}${String(Math.floor(i / 256)).padStart(2, '0')}`);
    if (i % 256 === 0) await mkdir(folder, { recursive: true });
    const size = Math.min(bytes - written, 2048 + prng.int(60) * 1024);
    await writeFile(join(folder, `${String(i).padStart(6, '0')}.sst`), prng.data(size));
    written += size;
  }
  return written;
}

async function rewritePages(path: string, count: number, prng: Prng): Promise<number> {
  const fh = await open(path, 'r+');
  try {
    const pages = Math.floor((await fh.stat()).size / PAGE);
    for (let i = 0; i < count; i++) await fh.write(prng.data(PAGE), 0, PAGE, prng.int(pages) * PAGE);
  } finally {
    await fh.close();
  }
  return count * PAGE;
}

/**
 * Change about 1% of a node of `bytes` bytes, as a database would between two backups:
 * 30% of it as 8 KiB pages rewritten in place in the tables, 10% as pages rewritten in
 * the large files, 40% appended to the write-ahead log (a new segment when one fills),
 * 20% as new small files. Returns the bytes changed.
 */
export async function changeOnePercent(dir: string, node: string, bytes: number, round: number): Promise<number> {
  const prng = new Prng(`${node}/change-${round}`);
  const target = bytes * 0.01;
  const pages = (share: number) => Math.max(1, Math.round((target * share) / PAGE / 2));
  let changed = 0;
  for (let i = 0; i < 2; i++) changed += await rewritePages(join(dir, 'db', `table-${i}.db`), pages(0.3), prng);
  for (let i = 0; i < 2; i++) changed += await rewritePages(join(dir, 'large', `blob-${i}.bin`), pages(0.1), prng);
  let append = Math.round(target * 0.4);
  changed += append;
  const segments = (await readdir(join(dir, 'wal'))).sort();
  let seg = Number.parseInt(segments.at(-1) ?? '000000', 10);
  let room = seg > 0 ? SEGMENT - (await stat(join(dir, 'wal', segmentName(seg)))).size : 0;
  while (append > 0) {
    if (room <= 0) {
      seg += 1;
      room = SEGMENT;
    }
    const n = Math.min(room, append);
    await writeStream(join(dir, 'wal', segmentName(seg)), n, prng, 'a');
    append -= n;
    room -= n;
  }
  changed += await writeSmallFiles(join(dir, 'sst'), Math.round(target * 0.2), prng, `new${round}-`);
  return changed;
}

/** sha256 over every file's relative path, mode bits and content, in path order: equal digests = equal trees */
export async function treeDigest(dir: string): Promise<string> {
  const h = createHash('sha256');
  async function walk(rel: string): Promise<void> {
    const entries = (await readdir(join(dir, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of entries) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        h.update(`d ${p}\n`);
        await walk(p);
      } else if (e.isFile()) {
        const st = await stat(join(dir, p));
        h.update(`f ${p} ${(st.mode & 0o777).toString(8)} ${st.size}\n`);
        for await (const chunk of createReadStream(join(dir, p), { highWaterMark: WRITE })) h.update(chunk as Buffer);
      }
    }
  }
  await walk('');
  return h.digest('hex');
}
