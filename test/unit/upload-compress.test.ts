/**
 * When the upload tries LZ4: small files of a kind (name extension) that did not shrink
 * the last few times are tried only now and then, and a kind that does compress is
 * compressed, even right after many files of another kind that did not.
 */
import { describe, expect, it, vi } from 'vitest';
import { mkdir, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { FsDriver } from '../../plugins/storage/fs.js';
import { Repository } from '../../lib/repo/repository.js';
import { uploadSnapshot, kindOf, Compressibility } from '../../agent/transfer/upload.js';
import { tempFolders } from '../helpers/temp.js';
import { quietJobContext as context } from '../helpers/job.js';

const temp = tempFolders();

/** text that LZ4 shrinks to a small part of it, different for each `i` */
const compressible = (i: number, n: number) => Buffer.from(`row ${i}: ${'the same words again and again, '.repeat(n / 32)}`).subarray(0, n);

describe('compressibility by kind of file', () => {
  it('names a kind by the extension of the file name', () => {
    expect(kindOf('data/sst/00/000001.sst')).toBe('sst');
    expect(kindOf('data/wal/000001.log')).toBe('log');
    expect(kindOf('data/base/16384/16385')).toBe('');
    expect(kindOf('data/v1.2/PGDATA')).toBe('');
    expect(kindOf('data/x.averyverylongname')).toBe('');
  });

  it('tries a kind that does not compress only now and then, and again as soon as one does', () => {
    const kind = new Compressibility();
    let tries = 0;
    for (let i = 0; i < 320; i++) {
      if (kind.shouldTry()) {
        tries++;
        kind.record(false);
      }
    }
    expect(tries).toBeLessThanOrEqual(4 + 10);
    // a large file of that kind starts where its kind is, and tells it what it found
    const file = new Compressibility(kind);
    let until = 0;
    while (!file.shouldTry()) until++;
    expect(until).toBeLessThan(32);
    file.record(true);
    expect(kind.shouldTry() && kind.shouldTry()).toBe(true);
  });

  it('does not try LZ4 on every small file of a kind that does not compress; compresses a kind that does', async () => {
    const snap = await temp('snap');
    const repo = await Repository.init(new FsDriver(await temp('repo')));
    await mkdir(join(snap, 'data', 'a'), { recursive: true });
    await mkdir(join(snap, 'data', 'b'), { recursive: true });
    const plainLogs = 64 * 16384;
    for (let i = 0; i < 256; i++) await writeFile(join(snap, 'data', 'a', `${String(i).padStart(4, '0')}.sst`), randomBytes(16384));
    for (let i = 0; i < 64; i++) await writeFile(join(snap, 'data', 'b', `${String(i).padStart(4, '0')}.log`), compressible(i, 16384));
    const tried = { sst: 0, log: 0 };
    const encode = repo.codec.encodeParts.bind(repo.codec);
    vi.spyOn(repo.codec, 'encodeParts').mockImplementation((plain: Buffer, tryCompress?: boolean) => {
      const out = encode(plain, tryCompress);
      if (tryCompress !== false) tried[plain.subarray(0, 4).toString() === 'row ' ? 'log' : 'sst']++;
      return out;
    });
    const r = await uploadSnapshot(repo, snap, ['data'], { backupId: '20261203-120000-one', node: 'n1', component: 'c' }, context());
    expect(r.files).toBe(256 + 64);
    // 256 random files: the first few, then one in 32 (8 files at a time may each start a try before the first misses are in)
    expect(tried.sst).toBeGreaterThan(0);
    expect(tried.sst).toBeLessThanOrEqual(4 + 8 + 256 / 32);
    expect(tried.log).toBe(64);
    // every byte stored is counted: random files stay as they are, the text shrinks to a small part of itself
    expect(r.bytesNew).toBeGreaterThan(256 * 16384);
    expect(r.bytesNew).toBeLessThan(256 * 16384 + plainLogs / 4);
  });
});
