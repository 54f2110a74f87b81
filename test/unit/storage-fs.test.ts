import { afterAll, describe, expect, it } from 'vitest';
import { randomBytes, randomFillSync } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fsDriver } from '../../plugins/storage/fs.js';
import { storageConformance } from '../conformance/storage.js';
import { alignedBuffers } from '../../lib/aligned.js';
import { LockstepError } from '../../lib/errors.js';
import { cachedBytes as cached } from '../helpers/page-cache.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

storageConformance('fs', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lockstep-fs-'));
  dirs.push(dir);
  return fsDriver.open({ path: dir }, '/');
});

describe('fs driver listing', () => {
  it('a folder removed while the tree is listed does not make the listing empty', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lockstep-fs-'));
    dirs.push(dir);
    const d = fsDriver.open({ path: dir }, '/');
    const keys = Array.from({ length: 400 }, (_, i) => `pending/node1/data/b${String(i).padStart(3, '0')}/p.json`);
    for (const k of keys) await d.put(k, Buffer.from('{}'));
    const listAll = async () => {
      const out: string[] = [];
      for await (const k of d.list('pending/')) out.push(k);
      return out;
    };
    // backups' records (and with each its folder) go while the tree is listed, ten at a time
    const kept = keys.slice(0, 200);
    for (let round = 0; round < 20; round++) {
      const listing = listAll();
      await Promise.all(keys.slice(200 + round * 10, 210 + round * 10).map((k) => d.delete(k)));
      const got = new Set(await listing);
      for (const k of kept) expect(got.has(k), k).toBe(true);
    }
  });
});

describe('fs driver listing, folder by folder', () => {
  it('reads a folder only when the listing gets to it (not the whole tree first): a file deleted in one not yet read is not listed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lockstep-fs-'));
    dirs.push(dir);
    const d = fsDriver.open({ path: dir }, '/');
    await d.put('packs/aa/1', Buffer.from('1'));
    await d.put('packs/bb/2', Buffer.from('2'));
    const got: string[] = [];
    for await (const k of d.list('packs/')) {
      // the other folder, not read yet, loses its file
      if (got.length === 0) await d.delete(k === 'packs/aa/1' ? 'packs/bb/2' : 'packs/aa/1');
      got.push(k);
    }
    expect(got).toHaveLength(1);
  });
});

describe('fs driver errors', () => {
  it('a repository path that runs through a file is named as such', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lockstep-fs-'));
    dirs.push(dir);
    await writeFile(join(dir, 'not-a-folder'), 'x');
    const err = await fsDriver
      .open({ path: join(dir, 'not-a-folder', 'repo') }, '/')
      .get('lockstep-repo.json')
      .then(() => undefined, (e: unknown) => e);
    expect((err as LockstepError).code).toBe('LOCKSTEP_E_REPO_UNREADABLE');
    expect((err as LockstepError).hint).toMatch(/is a file, not a folder: check the repository's path/);
  });
});

describe('fs driver folders', () => {
  it("a backup's folders go with its last object, a pending run's with its last record; others stay", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lockstep-fs-'));
    dirs.push(dir);
    const d = fsDriver.open({ path: dir }, '/');
    const backup = ['backups/b1/manifest.json', 'backups/b1/nodes/n1/data.json', 'backups/b1/nodes/n1/data.parts/000001.json', 'backups/b1/nodes/n2/data.json', 'backups/b1/checks/c.json'];
    for (const k of [...backup, 'backups/b2/manifest.json', 'packs/ab/abcd', 'pending/n1/data/b1/p.json', 'pending/n1/data/b1/q.json']) await d.put(k, Buffer.from('x'));
    const folders = () => readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1)).sort();

    await d.delete('backups/b1/nodes/n1/data.parts/000001.json');
    expect(folders()).not.toContain('backups/b1/nodes/n1/data.parts');
    expect(folders()).toContain('backups/b1/nodes/n1');
    await d.delete('backups/b1/nodes/n1/data.json');
    expect(folders()).not.toContain('backups/b1/nodes/n1');
    expect(folders()).toContain('backups/b1/nodes');
    for (const k of backup) await d.delete(k);
    await d.delete('pending/n1/data/b1/p.json');
    expect(folders()).toContain('pending/n1/data/b1');
    await d.delete('pending/n1/data/b1/q.json');
    await d.delete('packs/ab/abcd');
    expect(folders()).toEqual(['backups', 'backups/b2', 'packs', 'packs/ab', 'pending', 'pending/n1', 'pending/n1/data']);
    // a folder that went is made again for the next object put there
    await d.put('backups/b1/checks/d.json', Buffer.from('y'));
    expect((await d.getBuffer!('backups/b1/checks/d.json')).toString()).toBe('y');
  });
});

describe('fs driver direct writes', () => {
  const objectFile = (dir: string, key: string) => join(dir, ...key.split('/'));

  it('objects of every size read back whole, from aligned buffers and plain ones, and large ones skip the page cache', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lockstep-fs-'));
    dirs.push(dir);
    const d = fsDriver.open({ path: dir }, '/');
    // plain buffers: below the direct threshold, at it, one byte past a block, several scratch pieces
    const plain = [1000, 128 * 1024, 128 * 1024 + 1, 3 * 1024 * 1024 + 4095].map((n) => randomBytes(n));
    // aligned: a pack-like buffer written from its own memory, and one at the very end of its memory (no room to pad: copied)
    const [a, b] = alignedBuffers(5 * 1024 * 1024 + 17, 2);
    randomFillSync(a!);
    randomFillSync(b!);
    const tight = b!.subarray(b!.length - 200 * 1024 - 5); // not on a 4 KiB boundary either
    const bodies = [...plain, a!, tight];
    for (const [i, body] of bodies.entries()) await d.put(`packs/t/${i}`, body);
    // written straight to the disk: none of a large object is in the page cache (until read); a small one is
    expect(cached(objectFile(dir, 'packs/t/4'))).toBe(0);
    expect(cached(objectFile(dir, 'packs/t/3'))).toBe(0);
    expect(cached(objectFile(dir, 'packs/t/0'))).toBeGreaterThan(0);
    for (const [i, body] of bodies.entries()) {
      const got = await d.getBuffer(`packs/t/${i}`);
      expect(got.length, `object ${i}`).toBe(body.length);
      expect(Buffer.compare(got, body), `object ${i}`).toBe(0);
    }
    // no temp file stays behind
    expect(readdirSync(join(dir, 'packs', 't')).sort()).toEqual(bodies.map((_, i) => String(i)).sort());
  });

  it('directWrites: false writes through the page cache', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lockstep-fs-'));
    dirs.push(dir);
    const d = fsDriver.open({ path: dir, directWrites: false }, '/');
    const body = randomBytes(1024 * 1024 + 3);
    await d.put('packs/t/x', body);
    expect(cached(objectFile(dir, 'packs/t/x'))).toBe(body.length + 4093);
    expect(Buffer.compare(await d.getBuffer('packs/t/x'), body)).toBe(0);
  });
});
