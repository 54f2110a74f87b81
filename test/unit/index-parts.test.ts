/**
 * A big file index is stored as parts with a small head: written and read back whole,
 * through the real fs driver and codec (plain and encrypted), and a missing, swapped or
 * misplaced part is corruption naming the part.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { randomBytes, createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsDriver } from '../../plugins/storage/fs.js';
import { Repository, sha256 } from '../../lib/repo/repository.js';
import { INDEX_PARTS_V4, INDEX_PARTS_VERSION, INDEX_VERSION, indexParts, type ComponentIndex, type IndexEntry, type IndexPart, type PartPlan } from '../../lib/repo/index-file.js';
import { indexKey, indexPartKey } from '../../lib/repo/layout.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const hex = (s: string) => createHash('sha256').update(s).digest('hex');

/** `files` files of three packed blocks each, under one folder */
function bigIndex(files: number): ComponentIndex {
  const meta = { mode: 0o640, uid: 0, gid: 0, mtimeMs: 1_700_000_000_000.5 };
  const entries: IndexEntry[] = [{ type: 'dir', path: 'data', ...meta }];
  for (let i = 0; i < files; i++) {
    const chunks = [0, 1, 2].map((b) => ({ sha256: hex(`${i}/${b}`), pack: hex(`pack${i >> 4}`), offset: b * 32772, length: 32772 }));
    entries.push({ type: 'file', path: i % 7 === 0 ? `data/f${i}-é€😀 "q"` : `data/f${i}`, ...meta, size: 3 * 32768, sha256: hex(`file${i}`), block: 32768, chunks, seen: { ino: i, ctimeMs: 1.25 } });
  }
  return { version: INDEX_VERSION, backupId: '20261203-040000-parts', node: 'node1', component: 'data', chunkSize: 4 << 20, sets: ['data'], entries };
}

async function repoAt(secret?: Buffer): Promise<{ dir: string; repo: Repository }> {
  const dir = await mkdtemp(join(tmpdir(), 'lockstep-index-'));
  dirs.push(dir);
  return { dir, repo: await Repository.init(new FsDriver(dir), { secret }) };
}

const key = indexKey('20261203-040000-parts', 'node1', 'data');
const storedPath = (dir: string, k: string) => join(dir, ...k.split('/'));

describe('file index parts', () => {
  for (const encrypted of [false, true]) {
    it(`a big index is written as parts and read back whole${encrypted ? ' (encrypted)' : ''}`, async () => {
      const { dir, repo } = await repoAt(encrypted ? randomBytes(32) : undefined);
      const index = bigIndex(3000);
      const sha = await repo.writeIndex(key, index, 100_000);
      const head = JSON.parse((await repo.readDecoded(key)).toString('utf8')) as ComponentIndex;
      expect(head.version).toBe(INDEX_PARTS_VERSION);
      expect(head.entries).toEqual([]);
      expect(head.parts!.length).toBeGreaterThan(10);
      expect(head.parts!.reduce((n, p) => n + p.entries, 0)).toBe(index.entries.length);
      expect(sha256(await repo.readDecoded(key))).toBe(sha);
      // no part is much bigger than asked for
      for (const p of head.parts!) expect((await repo.readDecoded(p.key)).length).toBeLessThan(100_000 + 1000);
      // version 5: the head lists each pack once; a part names them by number, a blob as [sha256, pack, offset, length]
      const ids = [...new Set(index.entries.flatMap((e) => (e.type === 'file' ? e.chunks.map((c) => (typeof c === 'string' ? c : c.pack)) : [])))];
      expect([...head.packs!].sort()).toEqual(ids.sort());
      const part = JSON.parse((await repo.readDecoded(head.parts![0]!.key)).toString('utf8')) as { type: string; chunks: unknown[] }[];
      const file = index.entries.find((e) => e.type === 'file' && e.path === 'data/f1') as Extract<IndexEntry, { type: 'file' }>;
      const ref = file.chunks[1] as Exclude<(typeof file.chunks)[number], string>;
      expect(part.find((e) => e.type === 'file' && (e as unknown as IndexEntry).path === 'data/f1')!.chunks[1]).toEqual([ref.sha256, head.packs!.indexOf(ref.pack), ref.offset, ref.length]);
      const back = await repo.readIndex(key, sha);
      expect(back.entries).toEqual(index.entries);
      expect(back.backupId).toBe(index.backupId);
      expect(back.packs).toBeUndefined();
      // stored through the codec: an encrypted part shows no path in the clear
      const raw = await readFile(storedPath(dir, indexPartKey(key, 2)));
      expect(raw.includes(Buffer.from('data/f'))).toBe(!encrypted);
    });
  }

  it('a small index stays one object (version 3)', async () => {
    const { repo } = await repoAt();
    const index = bigIndex(20);
    const sha = await repo.writeIndex(key, index);
    const head = JSON.parse((await repo.readDecoded(key)).toString('utf8')) as ComponentIndex;
    expect(head.version).toBe(INDEX_VERSION);
    expect(head.parts).toBeUndefined();
    expect(head.entries).toEqual(index.entries);
    expect((await repo.readIndex(key, sha)).entries).toEqual(index.entries);
  });

  it('an index in parts written before version 5 (refs as objects) is still read', async () => {
    const { repo } = await repoAt();
    const index = bigIndex(1500);
    const parts: IndexPart[] = [];
    for (const p of indexParts(index.entries, 100_000)) {
      const partKey = indexPartKey(key, parts.length + 1);
      parts.push({ key: partKey, sha256: sha256(p.json), entries: p.entries });
      await repo.driver.put(partKey, await repo.codec.encode(Buffer.from(p.json)));
    }
    expect(parts.length).toBeGreaterThan(3);
    const head = Buffer.from(JSON.stringify({ ...index, version: INDEX_PARTS_V4, entries: [], parts }));
    await repo.driver.put(key, await repo.codec.encode(head));
    expect((await repo.readIndex(key, sha256(head))).entries).toEqual(index.entries);
  });

  it('a part naming a pack its head does not list is corruption', async () => {
    const { repo } = await repoAt();
    await repo.writeIndex(key, bigIndex(500), 100_000);
    const head = JSON.parse((await repo.readDecoded(key)).toString('utf8')) as ComponentIndex;
    const forged = Buffer.from(JSON.stringify({ ...head, packs: head.packs!.slice(0, 2) }));
    await repo.driver.put(key, await repo.codec.encode(forged));
    await expect(repo.readIndex(key, sha256(forged))).rejects.toMatchObject({ code: 'LOCKSTEP_E_REPO_CORRUPT', message: expect.stringContaining('names pack 2; its index lists 2') });
    // and a version-5 head without its table
    const { packs: _, ...bare } = head;
    const noTable = Buffer.from(JSON.stringify(bare));
    await repo.driver.put(key, await repo.codec.encode(noTable));
    await expect(repo.readIndex(key, sha256(noTable))).rejects.toMatchObject({ code: 'LOCKSTEP_E_REPO_CORRUPT', message: expect.stringContaining('without a pack table') });
  });

  it('a missing, swapped or misplaced part is corruption that names the part', async () => {
    const { dir, repo } = await repoAt();
    const sha = await repo.writeIndex(key, bigIndex(2000), 100_000);
    const p2 = storedPath(dir, indexPartKey(key, 2));
    const p3 = storedPath(dir, indexPartKey(key, 3));
    const saved = await readFile(p2);
    await writeFile(p2, await readFile(p3));
    await expect(repo.readIndex(key, sha)).rejects.toMatchObject({ code: 'LOCKSTEP_E_REPO_CORRUPT', message: expect.stringContaining(`part 2 of file index ${key} (${indexPartKey(key, 2)})`) });
    await unlink(p2);
    await expect(repo.readIndex(key, sha)).rejects.toMatchObject({ message: expect.stringContaining(indexPartKey(key, 2)) });
    await writeFile(p2, saved);
    await expect(repo.readIndex(key, sha)).resolves.toMatchObject({ backupId: '20261203-040000-parts' });
    // a head (with a matching hash) cannot send a reader to another object
    const head = JSON.parse((await repo.readDecoded(key)).toString('utf8')) as ComponentIndex;
    head.parts![0]!.key = 'backups/other/manifest.json';
    const forged = Buffer.from(JSON.stringify(head));
    await repo.driver.put(key, await repo.codec.encode(forged));
    await expect(repo.readIndex(key, sha256(forged))).rejects.toMatchObject({ message: expect.stringContaining('names part 1 as backups/other/manifest.json') });
  });
});

describe('index parts with a plan (reuse of the previous index)', () => {
  const meta = { mode: 0o755, uid: 0, gid: 0, mtimeMs: 1 };
  const entries = Array.from({ length: 100 }, (_, i): IndexEntry => ({ type: 'dir', path: `data/d${String(i).padStart(3, '0')}`, ...meta }));
  const source = Object.assign([...entries], { from: (i: number) => entries.slice(i)[Symbol.iterator]() });
  const entryBytes = JSON.stringify(entries[0]).length + 1;

  /** what indexParts gives: [first entry, entries, reused key?] of each part */
  function layout(plan: PartPlan, partBytes: number): [number, number, string?][] {
    const out: [number, number, string?][] = [];
    let at = 0;
    for (const p of indexParts(source, partBytes, 2, undefined, plan)) {
      if ('reuse' in p) {
        out.push([at, p.reuse.entries, p.reuse.key]);
        at += p.reuse.entries;
      } else {
        // a part made holds exactly the entries from `at` on
        expect((JSON.parse(p.json.toString('utf8')) as IndexEntry[]).map((e) => e.path)).toEqual(entries.slice(at, at + p.entries).map((e) => e.path));
        out.push([at, p.entries]);
        at += p.entries;
      }
    }
    expect(at).toBe(entries.length);
    return out;
  }

  it('a reusable part is given in place of its entries; parts end where the previous ones began, unless still small', () => {
    const asked: number[] = [];
    const plan: PartPlan = {
      packs: [],
      reusableAt: (i) => {
        asked.push(i);
        return i === 20 ? { key: 'old/part-3', sha256: 'a'.repeat(64), entries: 10 } : i === 30 ? { key: 'old/part-4', sha256: 'b'.repeat(64), entries: 5 } : undefined;
      },
      // the previous index's parts began at 50 and 51 (a part of one entry: not kept that small) and 70
      beginsPart: (i) => i === 50 || i === 51 || i === 70,
      written: () => undefined,
      restart: () => undefined,
    };
    // ~16 entries a part by size; a quarter of that is 4 entries
    const got = layout(plan, entryBytes * 16);
    expect(got).toContainEqual([20, 10, 'old/part-3']);
    expect(got).toContainEqual([30, 5, 'old/part-4']);
    const starts = got.map(([at]) => at);
    // the part before the reused ones ends at 20; made parts begin after them, at 35
    expect(starts).toEqual(expect.arrayContaining([20, 30, 35, 50, 70]));
    expect(starts).not.toContain(51);
    // the entries a reused part holds are never asked about
    expect(asked.filter((i) => i > 20 && i < 35)).toEqual([30]);
    // without a plan, by size alone
    const plain = [...indexParts(source, entryBytes * 16)].map((p) => ('entries' in p ? p.entries : 0));
    expect(plain.reduce((a, b) => a + b, 0)).toBe(100);
    expect(plain.length).toBeLessThan(got.length);
  });
});
