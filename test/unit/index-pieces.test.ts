/**
 * Version 7: a file entry of many chunks is written in pieces that end their parts, so no
 * part grows with a file's blocks; read back, the pieces are one entry again, with its
 * fingerprints and block lengths whole. A piece out of place is corruption naming the part.
 * Through the real fs driver and codec.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsDriver } from '../../plugins/storage/fs.js';
import { Repository, sha256 } from '../../lib/repo/repository.js';
import { INDEX_CUTS_VERSION, INDEX_PIECES_VERSION, INDEX_VERSION, type ComponentIndex, type FileEntry, type IndexEntry, type IndexToWrite, type PartPlan } from '../../lib/repo/index-file.js';
import { encodeCuts } from '../../lib/repo/cuts.js';
import { indexKey } from '../../lib/repo/layout.js';
import { SharedParts } from '../../lib/repo/prune.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const hex = (s: string) => createHash('sha256').update(s).digest('hex');
const meta = { mode: 0o640, uid: 0, gid: 0, mtimeMs: 1_700_000_000_000 };
const key = indexKey('20261206-040000-pieces', 'node1', 'data');

/** a file cut by its content into `blocks` packed blocks of 100 + i % 50 bytes, with fingerprints */
function cutFile(path: string, blocks: number): FileEntry {
  const lengths = Array.from({ length: blocks }, (_, i) => 100 + (i % 50));
  const fp = Buffer.alloc(16 * blocks);
  for (let i = 0; i < blocks; i++) fp.writeUInt32LE(i + 1, 16 * i);
  return {
    type: 'file',
    path,
    ...meta,
    size: lengths.reduce((a, b) => a + b, 0),
    sha256: hex(path),
    cuts: encodeCuts(11, lengths),
    fp: fp.toString('base64'),
    chunks: lengths.map((length, i) => ({ sha256: hex(`${path}/${i}`), pack: hex(`pack${i >> 6}`), offset: (i % 64) * 200, length })),
    seen: { ino: 7, ctimeMs: 2 },
  };
}

function index(entries: IndexEntry[]): IndexToWrite {
  return { version: INDEX_VERSION, backupId: '20261206-040000-pieces', node: 'node1', component: 'data', chunkSize: 4 << 20, sets: ['data'], entries: Object.assign(entries, { aboutBytes: 0 }), cut: true };
}

async function repoAt(): Promise<Repository> {
  const dir = await mkdtemp(join(tmpdir(), 'lockstep-pieces-'));
  dirs.push(dir);
  return Repository.init(new FsDriver(dir));
}

const headOf = async (repo: Repository) => JSON.parse((await repo.readDecoded(key)).toString('utf8')) as ComponentIndex;
const partOf = async (repo: Repository, k: string) => JSON.parse((await repo.readDecoded(k)).toString('utf8')) as Record<string, unknown>[];
/** part `n` of the index (1-based) replaced by `items`, the head rewritten to match; the head's hash */
async function forgePart(repo: Repository, n: number, items: unknown[], partChange: Record<string, unknown> = {}): Promise<string> {
  const head = await headOf(repo);
  const plain = Buffer.from(JSON.stringify(items));
  const part = head.parts![n - 1]!;
  await repo.driver.put(part.key, await repo.codec.encode(plain));
  head.parts![n - 1] = { ...part, sha256: sha256(plain), ...partChange };
  const text = Buffer.from(JSON.stringify(head));
  await repo.driver.put(key, await repo.codec.encode(text));
  return sha256(text);
}

describe('file index entries in pieces (version 7)', () => {
  const small = (i: number): IndexEntry => ({ type: 'file', path: `data/s${i}`, ...meta, size: 10, sha256: hex(`s${i}`), chunks: [hex(`s${i}`)] });
  const entries = (tail = 0): IndexEntry[] => [
    { type: 'dir', path: 'data', ...meta },
    small(1),
    cutFile('data/dump.rdb', 1000),
    small(2),
    cutFile('data/other.rdb', 250),
    ...Array.from({ length: tail }, (_, i) => small(i + 3)),
  ];

  it('a long entry goes over parts, each piece ending its own, and reads back whole', async () => {
    const repo = await repoAt();
    const given = entries();
    const sha = await repo.writeIndex(key, index([...given]), 64 * 1024, undefined, 300);
    const head = await headOf(repo);
    expect(head.version).toBe(INDEX_PIECES_VERSION);
    // the 1000 blocks in 4 pieces (3 of them end their part), the 250 in one
    expect(head.parts!.filter((p) => p.more).length).toBe(3);
    expect(head.parts!.reduce((n, p) => n + p.entries, 0)).toBe(given.length);
    const second = await partOf(repo, head.parts![1]!.key);
    expect(second[0]).toMatchObject({ type: 'more', more: true });
    expect((second[0]!.chunks as unknown[]).length).toBe(300);
    // each piece has its own lengths and fingerprints: the first the average too
    const first = await partOf(repo, head.parts![0]!.key);
    const begun = first.at(-1)!;
    expect(begun).toMatchObject({ path: 'data/dump.rdb', more: true });
    expect(Buffer.from(begun.cuts as string, 'base64').length).toBe(4 + 4 * 300);
    expect(Buffer.from(second[0]!.cuts as string, 'base64').length).toBe(4 * 300);
    expect(Buffer.from(second[0]!.fp as string, 'base64').length).toBe(16 * 300);
    const back = await repo.readIndex(key, sha);
    expect(back.entries).toEqual(given);
  });

  it('the parts that share an entry are told to the plan as such (never to be reused)', async () => {
    const repo = await repoAt();
    const told: [number, number, boolean][] = [];
    const plan: PartPlan = { packs: [], reusableAt: () => undefined, beginsPart: () => false, written: (from, part, _reused, shares) => told.push([from, part.entries, shares === true]), restart: () => undefined };
    await repo.writeIndex(key, index(entries(2000)), 64 * 1024, plan, 300);
    const head = await headOf(repo);
    expect(told.length).toBe(head.parts!.length);
    // a part shares when it goes on, or the one before it did
    expect(told.map(([, , shares]) => shares)).toEqual(head.parts!.map((p, i) => p.more === true || head.parts![i - 1]?.more === true));
    expect(told.filter(([, , shares]) => !shares).length).toBeGreaterThan(3);
    // entries counted from where each part's own begin
    expect(told.map(([from]) => from)).toEqual(head.parts!.map((_, i) => head.parts!.slice(0, i).reduce((n, p) => n + p.entries, 0)));
  });

  it('an index whose entries are all short enough is written as before (version 6)', async () => {
    const repo = await repoAt();
    const given = entries();
    const sha = await repo.writeIndex(key, index([...given]), 64 * 1024, undefined, 1000);
    expect((await headOf(repo)).version).toBe(INDEX_CUTS_VERSION);
    expect((await repo.readIndex(key, sha)).entries).toEqual(given);
  });

  it('a part that shares an entry is read even when the reader would pass it over', async () => {
    const repo = await repoAt();
    const sha = await repo.writeIndex(key, index(entries(2000)), 64 * 1024, undefined, 300);
    // prune passes over parts of the same hash as the last index's of the node: here every part
    const shared = new SharedParts();
    const first = shared.next('node1/data');
    await repo.readIndexParts(key, sha, () => undefined, first.pass);
    first.done();
    const seen: IndexEntry[] = [];
    await repo.readIndexParts(key, sha, (got) => seen.push(...got), shared.next('node1/data').pass);
    // whatever was passed over, what was given is whole
    const dump = seen.find((e) => e.path === 'data/dump.rdb') as FileEntry;
    expect(dump.chunks.length).toBe(1000);
    // the parts that share no entry were passed over (the 2000 small files' but the first few)
    const head = await headOf(repo);
    expect(head.parts!.length).toBeGreaterThan(6);
    expect(seen.length).toBeLessThan(1000);
    expect(seen.find((e) => e.path === 'data/s2')).toBeDefined();
  });

  it('pieces out of place are corruption naming the part', async () => {
    const repo = await repoAt();
    await repo.writeIndex(key, index(entries()), 64 * 1024, undefined, 300);
    const head = await headOf(repo);
    const p2 = await partOf(repo, head.parts![1]!.key);
    const p1 = await partOf(repo, head.parts![0]!.key);
    // the part after one that goes on begins with an entry instead
    let sha = await forgePart(repo, 2, [{ type: 'dir', path: 'data/x', ...meta }], { entries: 1, more: undefined });
    await expect(repo.readIndex(key, sha)).rejects.toMatchObject({ code: 'LOCKSTEP_E_REPO_CORRUPT', message: expect.stringContaining(`does not go on with file "data/dump.rdb"`) });
    const [h1, h2] = head.parts!.map(({ entries, more }) => ({ entries, more }));
    await forgePart(repo, 2, p2, h2);
    // a part said to go on whose last entry does not (nor are its lengths the whole file's)
    sha = await forgePart(repo, 1, p1.map((e) => ({ ...e, more: undefined })));
    await expect(repo.readIndex(key, sha)).rejects.toMatchObject({ code: 'LOCKSTEP_E_REPO_CORRUPT', message: expect.stringContaining(`${head.parts![0]!.key} in `) });
    // one whose last entry goes on, not said to in the head
    sha = await forgePart(repo, 1, p1, { more: undefined });
    await expect(repo.readIndex(key, sha)).rejects.toMatchObject({ code: 'LOCKSTEP_E_REPO_CORRUPT', message: expect.stringContaining('ends in a file that goes on, and is not said to') });
    // a piece whose lengths do not add up to the file's size, once joined
    const cuts = Buffer.from(p2[0]!.cuts as string, 'base64');
    cuts.writeUInt32LE(cuts.readUInt32LE(0) + 1, 0);
    await forgePart(repo, 1, p1, h1);
    sha = await forgePart(repo, 2, [{ ...p2[0], cuts: cuts.toString('base64') }]);
    await expect(repo.readIndex(key, sha)).rejects.toMatchObject({ code: 'LOCKSTEP_E_REPO_CORRUPT', message: expect.stringContaining('file "data/dump.rdb" has block lengths') });
    // an index that ends in the middle of a file
    await forgePart(repo, 2, p2, h2);
    const cutShort = await headOf(repo);
    cutShort.parts = cutShort.parts!.slice(0, 2);
    const text = Buffer.from(JSON.stringify(cutShort));
    await repo.driver.put(key, await repo.codec.encode(text));
    await expect(repo.readIndex(key, sha256(text))).rejects.toMatchObject({ code: 'LOCKSTEP_E_REPO_CORRUPT', message: expect.stringContaining('ends in the middle of file "data/dump.rdb"') });
  });

  it('a piece in an index of an earlier version is corruption', async () => {
    const repo = await repoAt();
    await repo.writeIndex(key, index(entries()), 64 * 1024, undefined, 300);
    const head = { ...(await headOf(repo)), version: INDEX_CUTS_VERSION };
    const text = Buffer.from(JSON.stringify(head));
    await repo.driver.put(key, await repo.codec.encode(text));
    await expect(repo.readIndex(key, sha256(text))).rejects.toMatchObject({ code: 'LOCKSTEP_E_REPO_CORRUPT', message: expect.stringContaining('says its part 1 goes on in the next') });
  });
});
