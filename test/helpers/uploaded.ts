/** An upload's state as the agent holds it once its files are done, for tests of what is made of it (the local copy of its index, the index kept in memory). */
import { createHash } from 'node:crypto';
import { Columns } from '../../agent/transfer/columns.js';
import { Known } from '../../agent/transfer/known.js';
import { FP } from '../../lib/repo/fingerprint.js';

const hash = (s: string) => createHash('sha256').update(s).digest();

/** `files` files (3000 unless told) of 1–40 blocks, some blocks shared, a few chunk objects, a dir and a symlink */
export function uploaded(files = 3000): { rows: Columns; known: Known } {
  const known = new Known(10, 10);
  const rows = new Columns();
  rows.setMeta(rows.add('data', 'dir'), { mode: 0o755, uid: 0, gid: 0, mtimeMs: 1 });
  const fp = Buffer.alloc(FP);
  for (let f = 0; f < files; f++) {
    const refs: number[] = [];
    for (let b = 0; b < 1 + (f % 40); b++) {
      const h = hash(`block ${(f * 7 + b) % 20000}`);
      let r = known.table.find(h);
      if (r < 0) {
        r = f % 500 === 0 ? known.table.add(h, undefined) : known.table.add(h, hash(`pack ${f >> 4}`).toString('hex'), b * 40000, 30000 + b);
        if (b % 3 !== 0) {
          fp.fill(b + 1);
          fp.writeUInt32LE(f, 0);
          known.table.setFp(r, fp);
        }
      }
      refs.push(r);
    }
    const r = rows.add(f % 7 === 0 ? `data/fé-ü-${f}` : `data/f${f}`, 'file');
    rows.setMeta(r, { mode: 0o644, uid: 0, gid: 0, mtimeMs: 1_700_000_000_000 + f * 1.5 });
    const c = known.content(refs, refs.length * 32768 - (f % 100));
    rows.setContent(r, { ...c, block: c.count > 1 ? 32768 : undefined });
    rows.setSig(r, { ino: 1000 + f, ctimeMs: 1_700_000_000_001 + f }, f % 3 !== 0);
  }
  rows.setMeta(rows.add('data/link', 'symlink'), { mode: 0o777, uid: 0, gid: 0, mtimeMs: 2 });
  return { rows, known };
}
