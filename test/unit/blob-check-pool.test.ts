/**
 * Verify's worker threads (lib/repo/blob-check-pool.ts, the built worker under dist/, which
 * `npm test` builds first) say of every blob what the repository says on its own thread:
 * sound with its length, or the same damage in the same words; encrypted or not, a stretch
 * given whole (moved to the worker) or as a view of a larger buffer (copied).
 */
import { describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { FsDriver } from '../../plugins/storage/fs.js';
import { Repository } from '../../lib/repo/repository.js';
import { verdictsOf, type PackedBlob } from '../../lib/repo/blob-check.js';
import { BlobCheckPool } from '../../lib/repo/blob-check-pool.js';
import { tempFolders } from '../helpers/temp.js';

const temp = tempFolders();
const WORKER = new URL('../../dist/lib/repo/blob-check-worker.js', import.meta.url);

/** a stretch of a pack: blobs back to back, one flipped, one with the wrong hash, one cut short by the stretch's end */
function stretch(repo: Repository, start: number): { extent: Buffer; blobs: PackedBlob[] } {
  const parts: Buffer[] = [];
  const blobs: PackedBlob[] = [];
  let at = start;
  for (let i = 0; i < 6; i++) {
    const plain = i % 2 ? Buffer.alloc(40_000 + i, i) : randomBytes(30_000 + i);
    const stored = Buffer.concat(repo.codec.encodeParts(plain).parts);
    parts.push(stored);
    blobs.push({ pack: 'ab'.repeat(32), offset: at, length: stored.length, sha256: createHash('sha256').update(plain).digest('hex') });
    at += stored.length;
  }
  const extent = Buffer.concat(parts);
  extent[blobs[1]!.offset - start + 20]! ^= 0x10;
  blobs[2]!.sha256 = 'f'.repeat(64);
  return { extent: extent.subarray(0, extent.length - 100), blobs };
}

describe('blob check workers', () => {
  for (const encrypted of [false, true]) {
    it(`give every blob the verdict the repository gives it (${encrypted ? 'encrypted' : 'plain'} repository)`, async () => {
      const repo = await Repository.init(new FsDriver(await temp('repo')), encrypted ? { secret: randomBytes(32) } : {});
      const pool = BlobCheckPool.open(repo.codec, 2, WORKER);
      expect(pool, 'the built worker (npm run build)').toBeDefined();
      try {
        const start = 4096;
        const { extent, blobs } = stretch(repo, start);
        // what the repository says of each on this thread (Repository.blobFrom takes the same path)
        const want = await verdictsOf(repo.codec, blobs, extent, start, repo.location);
        expect(want.map((v) => ('error' in v ? v.error.code : 'ok'))).toEqual(['ok', 'LOCKSTEP_E_REPO_CORRUPT', 'LOCKSTEP_E_REPO_CORRUPT', 'ok', 'ok', 'LOCKSTEP_E_REPO_CORRUPT']);
        // a view into a larger buffer is copied; the whole buffer is moved (and gone here)
        const inLarger = Buffer.concat([Buffer.alloc(7), extent]).subarray(7);
        expect(await pool!.check(inLarger, start, blobs, repo.location)).toEqual(want);
        const whole = Buffer.from(extent);
        const several = await Promise.all([pool!.check(whole, start, blobs, repo.location), pool!.check(Buffer.from(extent), start, blobs, repo.location)]);
        expect(several).toEqual([want, want]);
        expect(whole.length).toBe(0);
      } finally {
        await pool?.close();
      }
    });
  }
});
