/**
 * The index an agent keeps in memory for a component's next upload: it is what the local
 * copy reads back, taken only for the very index the next upload dedups against (and only
 * once), let go when the next upload is of another repository, never kept past its budget,
 * by an upload a later one overtook, or from a copy that does not read back.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeIndexCache, type CacheKey } from '../../agent/transfer/index-cache.js';
import { dropKeptIndex, dropKeptIndexes, keepIndex, keptBytes, keptIndexes, takeKeptIndex, uploadStarts } from '../../agent/transfer/kept-index.js';
import { uploaded } from '../helpers/uploaded.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
afterEach(() => dropKeptIndexes());

const FILES = 300;
const BLOCKS = 6000;
const BUDGET = 64 * 1024 * 1024;

/** index `backupId` of node1's `component` in repo-1, its copy written as an upload writes it; the upload's turn */
async function written(component: string, backupId = 'b1'): Promise<{ key: CacheKey; file: string; turn: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'lockstep-kept-'));
  dirs.push(dir);
  const key: CacheKey = { repositoryId: 'repo-1', node: 'node1', component, backupId, indexSha256: 'c'.repeat(64) };
  const turn = uploadStarts(key.repositoryId, key.node, key.component);
  const { rows, known } = uploaded(FILES);
  const file = join(dir, 'copy.idx');
  await writeIndexCache(file, key, rows, known);
  return { key, file, turn };
}

describe('index kept in memory for the next upload', () => {
  it('is the copy read back, taken once, by the index it is', async () => {
    const { key, file, turn } = await written('a');
    await keepIndex(file, key, BLOCKS, FILES, turn, BUDGET);
    expect(keptIndexes()).toEqual({ count: 1, bytes: keptBytes(BLOCKS, FILES) });
    const { rows } = uploaded(FILES);
    const got = takeKeptIndex(key);
    expect(got).toBeDefined();
    for (let r = 0; r < rows.length; r++) {
      if (rows.type(r) !== 'file') continue;
      const o = got!.files.row(rows.path(r));
      expect(o, rows.path(r)).toBeGreaterThanOrEqual(0);
      expect(got!.files.file(o).sha256).toBe(rows.content(r).sha256);
    }
    expect(got!.files.row('data/link')).toBe(-1);
    // the upload that took it adds to it: nobody else gets it
    expect(takeKeptIndex(key)).toBeUndefined();
    expect(keptIndexes().count).toBe(0);
  });

  it('is not taken for another backup or index hash, and is let go then', async () => {
    for (const other of [{ backupId: 'b2' }, { indexSha256: 'd'.repeat(64) }]) {
      const { key, file, turn } = await written('b');
      await keepIndex(file, key, BLOCKS, FILES, turn, BUDGET);
      expect(takeKeptIndex({ ...key, ...other })).toBeUndefined();
      expect(keptIndexes().count).toBe(0);
      expect(takeKeptIndex(key)).toBeUndefined();
    }
  });

  it('is let go when the next upload of its component is into another repository', async () => {
    const { key, file, turn } = await written('c');
    await keepIndex(file, key, BLOCKS, FILES, turn, BUDGET);
    uploadStarts('repo-2', key.node, key.component);
    expect(keptIndexes().count).toBe(0);
    expect(takeKeptIndex(key)).toBeUndefined();
  });

  it('stays when another component uploads, and within its budget only', async () => {
    const a = await written('d');
    await keepIndex(a.file, a.key, BLOCKS, FILES, a.turn, BUDGET);
    // a second component's, while the first is kept: both fit in two of them, not in less
    const b = await written('e');
    const tooSmall = await keepIndex(b.file, b.key, BLOCKS, FILES, b.turn, 2 * keptBytes(BLOCKS, FILES) - 1);
    expect(tooSmall).toEqual({ kept: false, why: 'about 0.6 MiB with 0.6 MiB kept for other components: more than keepIndexMiB (1.1)' });
    expect(keptIndexes().count).toBe(1);
    await keepIndex(b.file, b.key, BLOCKS, FILES, b.turn, 2 * keptBytes(BLOCKS, FILES));
    expect(keptIndexes().count).toBe(2);
    expect(takeKeptIndex(a.key)).toBeDefined();
    expect(takeKeptIndex(b.key)).toBeDefined();
    // none at all with a budget of 0 (keepIndexMiB: 0)
    const c = await written('f');
    await keepIndex(c.file, c.key, BLOCKS, FILES, c.turn, 0);
    expect(keptIndexes().count).toBe(0);
  });

  it('is not kept by an upload a later one of its component overtook', async () => {
    const { key, file, turn } = await written('g');
    uploadStarts(key.repositoryId, key.node, key.component);
    await keepIndex(file, key, BLOCKS, FILES, turn, BUDGET);
    expect(keptIndexes().count).toBe(0);
  });

  it('is not kept from a copy that does not read back', async () => {
    const { key, file, turn } = await written('h');
    const bytes = await readFile(file);
    bytes[bytes.length - 100]! ^= 0xff;
    await writeFile(file, bytes);
    expect((await keepIndex(file, key, BLOCKS, FILES, turn, BUDGET)).why).toMatch(/^damaged/);
    expect(keptIndexes().count).toBe(0);
  });

  it('goes when its upload found no backup to take it for (all of them pruned)', async () => {
    const { key, file, turn } = await written('j');
    await keepIndex(file, key, BLOCKS, FILES, turn, BUDGET);
    dropKeptIndex(key.node, key.component);
    expect(keptIndexes().count).toBe(0);
  });

  it('goes, all of it, when a restore starts', async () => {
    const { key, file, turn } = await written('i');
    await keepIndex(file, key, BLOCKS, FILES, turn, BUDGET);
    dropKeptIndexes();
    expect(keptIndexes()).toEqual({ count: 0, bytes: 0 });
  });
});
