/**
 * An upload writes each file's index entry straight from its columns and ref table: the
 * bytes must be those JSON.stringify makes of the entry as an object, whatever the row
 * holds (odd paths, fractional times, one block or many, fingerprints or none, a `seen`
 * signature or none).
 */
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { Columns } from '../../agent/transfer/columns.js';
import { Known } from '../../agent/transfer/known.js';
import { entryOf, indexParts, type FileEntryText, type IndexEntry } from '../../lib/repo/index-file.js';
import { encodeCuts } from '../../lib/repo/cuts.js';

const hash = (s: string) => createHash('sha256').update(s).digest();

interface Row {
  path: string;
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  size: number;
  blocks: number;
  block?: number;
  seen?: { ino: number; ctimeMs: number };
  fps: boolean;
  /** cut by its content: its blocks' lengths (lib/repo/cuts.ts) */
  cuts?: string;
}

const rows: Row[] = [
  { path: 'data/plain', mode: 0o644, uid: 0, gid: 0, mtimeMs: 1_700_000_000_000, size: 0, blocks: 0, fps: false },
  { path: 'data/one block', mode: 0o600, uid: 1000, gid: 1000, mtimeMs: 1_700_000_000_123.4567, size: 5, blocks: 1, seen: { ino: 12345678, ctimeMs: 1_700_000_000_999.75 }, fps: true },
  { path: 'data/dir/é€😀 "quoted" \\ back\ttab', mode: 0o755, uid: 4_000_000_000, gid: 65534, mtimeMs: 0.5, size: 3 * 32768, blocks: 3, block: 32768, seen: { ino: 2 ** 40, ctimeMs: 3 }, fps: true },
  { path: 'data/many', mode: 0o640, uid: 7, gid: 8, mtimeMs: 1_764_700_000_000.001, size: 2 ** 40 + 17, blocks: 4, block: 1 << 20, fps: false },
  { path: 'data/some fps', mode: 0o640, uid: 7, gid: 8, mtimeMs: 1, size: 3 * 65536, blocks: 3, block: 65536, seen: { ino: 1, ctimeMs: 1_764_700_000_000.5 }, fps: true },
  { path: 'data/dump.rdb', mode: 0o600, uid: 0, gid: 0, mtimeMs: 2, size: 30_000, blocks: 3, seen: { ino: 3, ctimeMs: 4 }, fps: false, cuts: encodeCuts(12, [9000, 12_000, 9000]) },
  { path: 'data/dump with fps.rdb', mode: 0o600, uid: 0, gid: 0, mtimeMs: 2, size: 30_000, blocks: 3, seen: { ino: 3, ctimeMs: 4 }, fps: true, cuts: encodeCuts(11, [9000, 12_000, 9000]) },
];

function uploadOf(list: Row[]): { cols: Columns; known: Known } {
  const cols = new Columns();
  const known = new Known(0, 0);
  for (const [n, row] of list.entries()) {
    const r = cols.add(row.path, 'file');
    cols.setMeta(r, row);
    cols.setSig(r, row.seen ?? { ino: 99, ctimeMs: 99 }, row.seen !== undefined);
    const refs = Array.from({ length: row.blocks }, (_, b) => {
      const ref = known.table.add(hash(`${n}/${b}`), b % 2 === 0 ? hash(`pack${n}`).toString('hex') : undefined, b * 40_000, 39_999);
      // "some fps": only its middle block's fingerprint is known
      if (row.fps && (row.path !== 'data/some fps' || b === 1)) known.table.setFp(ref, hash(`fp${n}/${b}`));
      return ref;
    });
    cols.setContent(r, { ...known.content(refs, row.size), block: row.block });
    if (row.cuts) cols.setCuts(r, row.cuts);
  }
  return { cols, known };
}

describe('a file entry written from the columns', () => {
  it('is the bytes JSON.stringify makes of the entry, for every kind of row', () => {
    const { cols, known } = uploadOf(rows);
    const entries = Array.from({ length: cols.length }, (_, r) => known.entry(cols, r));
    const written = [...indexParts(entries, 1 << 20)];
    expect(written).toHaveLength(1);
    const objects = entries.map((e) => entryOf(e));
    expect(written[0]!.json.toString('utf8')).toBe(JSON.stringify(objects));
    // and the objects are the rows
    const parsed = JSON.parse(written[0]!.json.toString('utf8')) as (IndexEntry & { type: 'file' })[];
    for (const [i, row] of rows.entries()) {
      const e = parsed[i]!;
      expect(e.path).toBe(row.path);
      expect([e.mode, e.uid, e.gid, e.mtimeMs, e.size]).toEqual([row.mode, row.uid, row.gid, row.mtimeMs, row.size]);
      expect(e.block).toBe(row.blocks > 1 ? row.block : undefined);
      expect(e.seen).toEqual(row.seen);
      expect(e.chunks).toHaveLength(row.blocks);
      expect(e.fp !== undefined).toBe(row.fps && row.blocks > 1);
      expect(e.cuts).toBe(row.cuts);
    }
    expect(parsed[2]!.chunks[0]).toEqual({ sha256: hash('2/0').toString('hex'), pack: hash('pack2').toString('hex'), offset: 0, length: 39_999 });
    expect(parsed[2]!.chunks[1]).toBe(hash('2/1').toString('hex'));
  });

  it('is cut into parts between entries as before', () => {
    const many: Row[] = Array.from({ length: 300 }, (_, i) => ({ ...rows[i % rows.length]!, path: `data/f${i}` }));
    const { cols, known } = uploadOf(many);
    const entries = () => Array.from({ length: cols.length }, (_, r): FileEntryText => known.entry(cols, r));
    // a part's bytes are valid until the writer has made two more: each is read at once
    const parts: IndexEntry[][] = [];
    for (const p of indexParts(entries(), 8 * 1024, 2)) parts.push(JSON.parse(p.json.toString('utf8')) as IndexEntry[]);
    expect(parts.length).toBeGreaterThan(3);
    expect(parts.flat()).toEqual(JSON.parse(JSON.stringify(entries().map((e) => entryOf(e)))));
  });
});
