import { afterAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fsDriver } from '../../plugins/storage/fs.js';
import { storageConformance } from '../conformance/storage.js';

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
