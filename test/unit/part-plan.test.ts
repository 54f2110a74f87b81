/**
 * Which parts of the previous index an upload reuses (agent/transfer/part-plan.ts): only a
 * part whose rows say exactly what they said then, with every file's content taken from the
 * previous index; and none once the previous pack table has grown far past what is named.
 */
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { Columns } from '../../agent/transfer/columns.js';
import { Known } from '../../agent/transfer/known.js';
import { PartPlanner, rowsDigest } from '../../agent/transfer/part-plan.js';
import type { ComponentIndex } from '../../lib/repo/index-file.js';

const hex = (s: string) => createHash('sha256').update(s).digest('hex');

/** a folder and `files` files of two blocks each in `packs` packs (taken from the previous index when `copied`) */
function upload(files: number, packs: number, copied = true): { rows: Columns; known: Known; old: Columns } {
  const known = new Known(16, 16);
  const rows = new Columns();
  const old = new Columns();
  for (const cols of [rows, old]) {
    const d = cols.add('data', 'dir');
    cols.setMeta(d, { mode: 0o755, uid: 0, gid: 0, mtimeMs: 1 });
  }
  for (let i = 0; i < files; i++) {
    const refs = [0, 1].map((b) => known.table.add(Buffer.from(hex(`${i}/${b}`), 'hex'), hex(`pack${i % packs}`), b * 100, 100));
    const content = known.content(refs, 200);
    for (const cols of [old, rows]) {
      const r = cols.add(`data/f${i}`, 'file');
      cols.setMeta(r, { mode: 0o644, uid: 0, gid: 0, mtimeMs: 2 });
      cols.setSigOf(r, 100 + i, 3, true);
      if (cols === rows && copied) cols.copyContent(r, old, r);
      else cols.setContent(r, { ...content, block: 100 });
    }
  }
  return { rows, known, old };
}

/** the previous index's head: one part of all rows, its pack table `packs` long */
function previous(rows: Columns, packs: number): { head: ComponentIndex; identities: { key: string; first: string; digest: string }[] } {
  const head = {
    version: 5,
    backupId: 'b0',
    node: 'node1',
    component: 'data',
    chunkSize: 4 << 20,
    sets: ['data'],
    entries: [],
    parts: [{ key: 'backups/b0/nodes/node1/data.parts/000001.json', sha256: hex('part'), entries: rows.length }],
    packs: Array.from({ length: packs }, (_, i) => hex(`pack${i}`)),
  } as ComponentIndex;
  return { head, identities: [{ key: head.parts![0]!.key, first: 'data', digest: rowsDigest(rows, 0, rows.length) }] };
}

describe('part plan', () => {
  it('reuses a part whose rows are the same and whose files were taken from the previous index', () => {
    const { rows, known } = upload(20, 4);
    const plan = new PartPlanner(rows, known, previous(rows, 4));
    expect(plan.packs).toHaveLength(4);
    expect(plan.reusableAt(0)).toMatchObject({ key: 'backups/b0/nodes/node1/data.parts/000001.json', entries: rows.length });
    expect(plan.reusableAt(1)).toBeUndefined();
  });

  it('not when a row says something else, or a file was read again', () => {
    const changed = (change: (rows: Columns) => void) => {
      const { rows, known } = upload(20, 4);
      const prev = previous(rows, 4);
      change(rows);
      return new PartPlanner(rows, known, prev).reusableAt(0);
    };
    expect(changed(() => undefined)).toBeDefined();
    expect(changed((rows) => rows.setMeta(5, { mode: 0o600, uid: 0, gid: 0, mtimeMs: 2 }))).toBeUndefined();
    expect(changed((rows) => rows.setMtime(0, 9))).toBeUndefined();
    expect(changed((rows) => rows.setSigOf(7, 107, 4, true))).toBeUndefined();
    expect(changed((rows) => rows.setSeen(7, false))).toBeUndefined();
    const { rows, known, old } = upload(20, 4, false);
    // the same bytes, but the content not taken from the previous index: its refs may differ
    const prev = previous(rows, 4);
    expect(new PartPlanner(rows, known, prev).reusableAt(0)).toBeUndefined();
    for (let r = 1; r < rows.length; r++) rows.copyContent(r, old, r);
    expect(new PartPlanner(rows, known, prev).reusableAt(0)).toBeDefined();
  });

  it('a previous pack table far longer than the packs named is not carried on: nothing reused, numbered anew', () => {
    const { rows, known } = upload(20, 4);
    expect(new PartPlanner(rows, known, previous(rows, 2 * 4 + 256)).packs).toHaveLength(2 * 4 + 256);
    const plan = new PartPlanner(rows, known, previous(rows, 2 * 4 + 257));
    expect(plan.packs).toEqual([]);
    expect(plan.reusableAt(0)).toBeUndefined();
  });

  it('keeps what it wrote for the next upload; a restart forgets it and reuses nothing', () => {
    const { rows, known } = upload(20, 4);
    const plan = new PartPlanner(rows, known, previous(rows, 4));
    const part = plan.reusableAt(0)!;
    plan.written(0, { ...part, key: 'backups/b1/nodes/node1/data.parts/000001.json' }, true);
    expect(plan.identities()).toEqual([{ key: 'backups/b1/nodes/node1/data.parts/000001.json', first: 'data', digest: rowsDigest(rows, 0, rows.length) }]);
    expect(plan.reused).toBe(1);
    plan.restart(new Error('gone'));
    expect(plan.identities()).toEqual([]);
    expect(plan.reused).toBe(0);
    expect(plan.packs).toEqual([]);
    expect(plan.beginsPart(0)).toBe(false);
  });

  it('parts that hold an entry in pieces are one run: kept as one, reused together only as the head lists them', () => {
    const { rows, known } = upload(20, 4);
    const key = (b: string, n: number) => `backups/${b}/nodes/node1/data.parts/00000${n}.json`;
    const parts = [
      { key: key('b1', 1), sha256: hex('p1'), entries: 10 },
      { key: key('b1', 2), sha256: hex('p2'), entries: 5, more: true as const },
      { key: key('b1', 3), sha256: hex('p3'), entries: 0, more: true as const },
      { key: key('b1', 4), sha256: hex('p4'), entries: 6 },
    ];
    const plan = new PartPlanner(rows, known);
    plan.written(0, parts[0]!, false);
    plan.written(10, parts[1]!, false, true);
    plan.written(15, parts[2]!, false, true);
    plan.written(15, parts[3]!, false, true);
    const ids = plan.identities();
    expect(ids).toEqual([
      { key: key('b1', 1), first: 'data', digest: rowsDigest(rows, 0, 10) },
      { key: key('b1', 2), first: 'data/f9', digest: rowsDigest(rows, 10, 21), run: parts.slice(1) },
    ]);
    const head = (p: typeof parts) => ({ ...previous(rows, 4).head, version: 7, parts: p }) as ComponentIndex;
    // the next upload, every row the same: the run is reused whole, from where it began
    const next = new PartPlanner(rows, known, { head: head(parts), identities: ids });
    expect(next.reusableAt(10)).toEqual({ key: key('b1', 2), sha256: hex('p2'), entries: 11, run: parts.slice(1) });
    // a run the head lists otherwise (a part of it not the same) is not reused
    const other = [...parts.slice(0, 3), { ...parts[3]!, sha256: hex('other') }];
    expect(new PartPlanner(rows, known, { head: head(other), identities: ids }).reusableAt(10)).toBeUndefined();
    // reused, it is kept again as one run under its new keys
    next.written(10, { ...parts[1]!, key: key('b2', 2) }, true, true);
    next.written(15, { ...parts[2]!, key: key('b2', 3) }, true, true);
    next.written(15, { ...parts[3]!, key: key('b2', 4) }, true, true);
    expect(next.identities()).toEqual([{ key: key('b2', 2), first: 'data/f9', digest: rowsDigest(rows, 10, 21), run: [key('b2', 2), key('b2', 3), key('b2', 4)].map((k, i) => ({ ...parts[i + 1]!, key: k })) }]);
    expect(next.reused).toBe(3);
  });
});
