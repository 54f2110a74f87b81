/**
 * Block fingerprints: a fast, keyed 128-bit check of whether a block of a changed file is
 * still what the previous backup stored at the same place.
 *
 * A database rewrites a few pages of a big file between two backups; the file's size or
 * mtime tell only that something in it changed, so all of it is read. Naming every block
 * by SHA-256 again cost ~0.6 ns a byte (about half of an incremental's CPU). Instead each
 * block's XXH3-128 under a secret of the repository (~0.05 ns a byte) is kept in the index
 * beside its chunk (`fp`), and a block whose fingerprint equals the one stored for the
 * same block of the file last time is that block: only blocks that differ are hashed,
 * compressed and stored.
 *
 * XXH3 is not a cryptographic hash, so the secret is what keeps anyone who writes data into
 * the database from choosing a block that matches an old one: 192 bytes derived from the
 * encryption key when the repository is encrypted (never stored), else from its id. Two
 * different blocks match by chance with a probability of 2^-128.
 */
import { hkdfSync } from 'node:crypto';
import { xxh3 } from '@node-rs/xxhash';

/** bytes of a fingerprint */
export const FP = 16;
/** XXH3 takes a secret of at least 136 bytes; 192 is its own default size */
const SECRET_BYTES = 192;

export class Fingerprinter {
  private readonly secret: Buffer;
  /** the last fingerprint, before it is copied out */
  private readonly bytes = new Uint8Array(FP);
  private readonly view = new DataView(this.bytes.buffer);

  /** `key`: the repository's secret material (its MAC key when encrypted, else its id) */
  constructor(key: Buffer) {
    this.secret = Buffer.from(hkdfSync('sha256', key, 'lockstep', 'lockstep block fingerprint xxh3-128', SECRET_BYTES));
  }

  /**
   * The fingerprint of `data`, written at `at` in `out`: the XXH3-128 value, 16 bytes
   * little-endian; never all zeros, which means "unknown" (a zero value is stored with
   * its byte 8 set). A 64-bit setter keeps the low 64 bits of what it is given, so the
   * value is split with one BigInt operation, not the ~10 that masking and
   * `writeBigUInt64LE` made (a 5 GiB incremental fingerprints ~65k blocks).
   */
  into(data: Uint8Array, out: Uint8Array, at = 0): void {
    const v = xxh3.xxh128WithSecret(data, this.secret);
    this.view.setBigUint64(0, v, true);
    this.view.setBigUint64(8, v >> 64n, true);
    const b = this.bytes;
    if (v === 0n) b[8] = 1;
    for (let i = 0; i < FP; i++) out[at + i] = b[i]!;
  }
}

/** whether the 16 bytes at `at` in `b` are all zeros (no fingerprint known) */
export function unknownFp(b: Uint8Array, at: number): boolean {
  for (let i = at; i < at + FP; i++) if (b[i] !== 0) return false;
  return true;
}
