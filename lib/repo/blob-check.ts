/**
 * A blob out of what the repository stored, decoded and checked against its hash: what a
 * restore and a verify trust. One function, used by the repository on the calling thread
 * and by verify's workers (blob-check-pool.ts), so both name damage the same way.
 */
import { createHash } from 'node:crypto';
import { LockstepError, toErrorInfo, type ErrorInfo } from '../errors.js';
import type { Codec } from './codec.js';
import { packKey } from './layout.js';
import type { BlobBuffers } from './lz4.js';

/** a blob's verdict: sound (its decoded length), or what is wrong with it */
export type CheckResult = { length: number } | { error: ErrorInfo };

/** a blob in a pack, as an index names it */
export interface PackedBlob {
  pack: string;
  offset: number;
  length: number;
  sha256: string;
}

/** `stored` decoded (into one of `into`'s buffers when compressed), and checked against `hash`; `where` names it in errors (`key`: its object) */
export async function checkedBlob(codec: Codec, hash: string, key: string, where: string, stored: Buffer, location: string, into?: BlobBuffers): Promise<Buffer> {
  const data = await codec.decode(stored, `${where} in ${location}`, into);
  const actual = createHash('sha256').update(data).digest('hex');
  if (actual !== hash) {
    throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} in ${location} is corrupt (its content hashes to ${actual}, not ${hash})`, {
      hint: 'the repository copy is damaged; restore another backup or repair the storage',
      details: { chunk: hash, object: key },
    });
  }
  return data;
}

/** blob `r` out of `extent`, the stored bytes of its pack from `start` on, decoded and checked */
export async function blobOutOf(codec: Codec, r: PackedBlob, extent: Buffer, start: number, location: string, into?: BlobBuffers): Promise<Buffer> {
  const key = packKey(r.pack);
  const where = `blob ${r.sha256} at ${r.offset}+${r.length} of pack ${key}`;
  const at = r.offset - start;
  if (at < 0 || extent.length < at + r.length) {
    throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} in ${location} is truncated (${Math.max(0, extent.length - Math.max(0, at))} bytes)`, { details: { object: key } });
  }
  return checkedBlob(codec, r.sha256, key, where, extent.subarray(at, at + r.length), location, into);
}

/** each of `blobs` out of `extent` (their pack's stored bytes from `start` on), checked; in their order */
export async function verdictsOf(codec: Codec, blobs: readonly PackedBlob[], extent: Buffer, start: number, location: string): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const b of blobs) {
    try {
      out.push({ length: (await blobOutOf(codec, b, extent, start, location)).length });
    } catch (err) {
      out.push({ error: toErrorInfo(err, 'LOCKSTEP_E_REPO_CORRUPT') });
    }
  }
  return out;
}
