/**
 * The upload's compact blob references: every hash added is found again (through growth
 * and rehashing), an unknown one is not, the first ref of a hash stays the one found, a
 * ref reads back as the index would hold it, a file's content hash from its refs is
 * the index's `contentHash`, and a blob's fingerprint is kept (and a block's fingerprint
 * depends on its bytes and the repository's secret).
 */
import { describe, expect, it } from 'vitest';
import { createHash, hkdfSync } from 'node:crypto';
import { xxh3 } from '@node-rs/xxhash';
import { RefLists, RefTable, contentHashOf } from '../../lib/repo/ref-table.js';
import { contentHash, entryOf, indexParts, JsonBuffer, PackNumbers, type FileEntry, type FileEntryText } from '../../lib/repo/index-file.js';
import { FP, Fingerprinter } from '../../lib/repo/fingerprint.js';

const hash = (s: string) => createHash('sha256').update(s).digest();
const pack = (n: number) => hash(`pack${n}`).toString('hex');

describe('RefTable', () => {
  it('finds each of 100k refs by hash after growing, and no hash it was not given', () => {
    const t = new RefTable();
    t.reserve(30_000); // told too few: it grows past them
    for (let i = 0; i < 100_000; i++) expect(t.add(hash(`b${i}`), i % 3 === 0 ? undefined : pack(i >> 6), i * 100, 1000 + i)).toBe(i);
    expect(t.count).toBe(100_000);
    for (let i = 0; i < 100_000; i += 7) expect(t.find(hash(`b${i}`))).toBe(i);
    for (let i = 0; i < 1000; i++) expect(t.find(hash(`absent${i}`))).toBe(-1);
    expect(t.ref(3)).toBe(hash('b3').toString('hex'));
    expect(t.ref(99_998)).toEqual({ sha256: hash('b99998').toString('hex'), pack: pack(99_998 >> 6), offset: 9_999_800, length: 100_998 });
  });

  it('keeps the first ref of a hash as the one found; addRef reuses a known hash', () => {
    const t = new RefTable();
    const a = t.add(hash('same'), pack(1), 0, 10);
    const b = t.add(hash('same'), pack(2), 50, 10);
    expect(b).not.toBe(a);
    expect(t.find(hash('same'))).toBe(a);
    for (let i = 0; i < 5000; i++) t.add(hash(`x${i}`), pack(3), i, 1); // rehashes several times
    expect(t.find(hash('same'))).toBe(a);
    expect(t.addRef({ sha256: hash('same').toString('hex'), pack: pack(9), offset: 7, length: 10 })).toBe(a);
    const c = t.addRef(hash('new chunk').toString('hex'));
    expect(t.ref(c)).toBe(hash('new chunk').toString('hex'));
  });

  it('keeps a fingerprint per blob through growth; an unknown one matches nothing', () => {
    const t = new RefTable();
    const f = new Fingerprinter(Buffer.from('repository id'));
    const fp = Buffer.alloc(FP);
    for (let i = 0; i < 5000; i++) {
      const r = t.add(hash(`f${i}`), pack(1), i, 1);
      if (i % 2 === 0) {
        f.into(Buffer.from(`block ${i}`), fp);
        t.setFp(r, fp);
      }
    }
    const out = Buffer.alloc(FP);
    for (let i = 0; i < 5000; i += 3) {
      f.into(Buffer.from(`block ${i}`), fp);
      expect(t.hasFp(i, fp)).toBe(i % 2 === 0);
      t.fpInto(i, out, 0);
      expect(out.equals(i % 2 === 0 ? fp : Buffer.alloc(FP))).toBe(true);
    }
    // zeros mean "unknown": they never match, nor replace a known fingerprint
    f.into(Buffer.from('block 0'), fp);
    t.setFp(0, Buffer.alloc(FP));
    expect(t.hasFp(0, fp)).toBe(true);
    expect(t.hasFp(1, Buffer.alloc(FP))).toBe(false);
    // a known one that differs in any byte is another block
    for (const at of [0, 7, FP - 1]) {
      const other = Buffer.from(fp);
      other[at]! ^= 1;
      expect(t.hasFp(0, other)).toBe(false);
    }
    // read at an offset in a bigger buffer
    expect(t.hasFp(0, Buffer.concat([Buffer.alloc(5), fp]), 5)).toBe(true);
  });

  it('a fingerprint is the XXH3-128 value under the secret derived from the key, 16 bytes little-endian (as repositories store it)', () => {
    const key = Buffer.from('repository id');
    const secret = Buffer.from(hkdfSync('sha256', key, 'lockstep', 'lockstep block fingerprint xxh3-128', 192));
    const f = new Fingerprinter(key);
    const out = Buffer.alloc(FP + 3);
    for (let i = 0; i < 200; i++) {
      const data = Buffer.from(`block ${i} `.repeat(i * 7));
      const v = xxh3.xxh128WithSecret(data, secret);
      const want = Buffer.alloc(FP);
      want.writeBigUInt64LE(v & 0xffffffffffffffffn, 0);
      want.writeBigUInt64LE(v >> 64n, 8);
      f.into(data, out, 3);
      expect(out.subarray(3).equals(want), `block ${i}`).toBe(true);
    }
  });

  it('a fingerprint depends on the data and on the repository secret, and is never all zeros', () => {
    const of = (key: string, data: Buffer) => {
      const out = Buffer.alloc(FP);
      new Fingerprinter(Buffer.from(key)).into(data, out);
      return out.toString('hex');
    };
    const page = Buffer.alloc(32768, 7);
    const other = Buffer.from(page);
    other[20000] = 8;
    expect(of('a', page)).toBe(of('a', Buffer.from(page)));
    expect(of('a', other)).not.toBe(of('a', page));
    expect(of('b', page)).not.toBe(of('a', page));
    expect(of('a', Buffer.alloc(0))).not.toBe('0'.repeat(32));
  });

  it('moves a blob to another pack', () => {
    const t = new RefTable();
    const r = t.add(hash('tail'), pack(1), 4096, 300);
    t.place(r, pack(2), 4096 + 1_000_000);
    expect(t.packRef(r)).toEqual({ sha256: hash('tail').toString('hex'), pack: pack(2), offset: 1_004_096, length: 300 });
    expect(() => t.packRef(t.add(hash('chunk'), undefined))).toThrow(/chunk object/);
  });

  it("a file's content hash from its refs is the index's content hash", () => {
    const t = new RefTable();
    const lists = new RefLists();
    const refs = [0, 1, 2, 3].map((i) => t.add(hash(`blk${i}`), pack(0), i * 10, 10));
    const shas = [0, 1, 2, 3].map((i) => hash(`blk${i}`).toString('hex'));
    lists.push([refs[3]!]);
    const start = lists.push(refs);
    expect(contentHashOf(t, lists, start, 4)).toBe(contentHash(shas));
    expect(contentHashOf(t, lists, start + 2, 1)).toBe(shas[2]);
    expect(contentHashOf(t, lists, start, 0)).toBe(contentHash([]));
  });

  it('a ref as JSON text is what JSON.stringify makes of it; a file entry given as text is written as the same bytes', () => {
    const t = new RefTable();
    const refs = [t.add(hash('packed'), pack(1), 12, 34), t.add(hash('chunk object'), undefined), t.add(hash('far'), pack(2), 2 ** 53, 0xffffffff), t.add(hash('zero'), pack(3), 0, 0)];
    const out = new JsonBuffer(4);
    for (const r of refs) {
      out.length = 0;
      out.put('x');
      t.writeJson(r, out);
      expect(out.bytes().toString()).toBe(`x${JSON.stringify(t.ref(r))}`);
    }
    const file = { type: 'file', path: 'data/x "é"', mode: 0o640, uid: 1, gid: 2, mtimeMs: 1.5, size: 10, sha256: hash('f').toString('hex'), block: 32768, seen: { ino: 3, ctimeMs: 4.5 } } as const;
    const asObject: FileEntry = { ...file, chunks: refs.map((r) => t.ref(r)) };
    const asText: FileEntryText = { file, chunks: 4, chunk: (i) => t.ref(refs[i]!), writeChunk: (i, o) => t.writeJson(refs[i]!, o) };
    const written = (e: FileEntry | FileEntryText) => [...indexParts([e], 1 << 20)].map((p) => p.json.toString()).join();
    expect(written(asText)).toBe(written(asObject));
    expect(entryOf(asText)).toEqual(asObject);
    // as a version-5 part holds them: the same bytes from the table and from the objects, packs numbered as first met
    const compact = (e: FileEntry | FileEntryText) => {
      const packs = new PackNumbers();
      return { json: [...indexParts([e], 1 << 20, 1, packs)].map((p) => p.json.toString()).join(), ids: packs.ids };
    };
    const fromText = compact({ ...asText, writeChunk: (i, o, p) => t.writeJson(refs[i]!, o, p) });
    expect(fromText).toEqual(compact(asObject));
    expect(fromText.ids).toEqual([pack(1), pack(2), pack(3)]);
    const chunks = (JSON.parse(fromText.json) as FileEntry[])[0]!.chunks;
    expect(chunks).toEqual([[hash('packed').toString('hex'), 0, 12, 34], hash('chunk object').toString('hex'), [hash('far').toString('hex'), 1, 2 ** 53, 0xffffffff], [hash('zero').toString('hex'), 2, 0, 0]]);
  });
});
