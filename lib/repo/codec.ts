/**
 * How a payload (chunk, pack member, index, manifest) is stored: optionally compressed
 * with LZ4, optionally encrypted with AES-256-GCM. Every stored payload starts with a
 * 4-byte header so a reader knows what it holds:
 *
 *   "LS" | version (1) | flags (bit 0: lz4, bit 1: aes-256-gcm)
 *   [12-byte IV] body [16-byte GCM tag]            (the IV and tag only when encrypted)
 *
 * Keys: one secret (from a key file or an environment variable) gives, through HKDF
 * with the repository's salt, an encryption key and a MAC key. The MAC key names
 * chunks when encrypted (HMAC of the content hash), so names reveal no plaintext hash,
 * and makes the key check stored in the repository config.
 *
 * LZ4 was chosen by measurement (4 MiB buffers, one core; ratio / compress / decompress):
 *   text-like   lz4 0.58 / 149 MB/s / 651 MB/s   deflate-1 0.38 / 95 MB/s / 337 MB/s
 *   random      lz4 1.00 / 287 MB/s / 1575 MB/s  deflate-1 1.00 / 44 MB/s / 2372 MB/s
 *   DB pages    lz4 0.26 / 601 MB/s / 1348 MB/s  deflate-1 0.26 / 201 MB/s / 829 MB/s
 * It compresses on the calling thread (see below); data that does not shrink by 1/16 is
 * stored as is.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual, type DecipherGCM } from 'node:crypto';
import { compressSync, uncompressSync } from 'lz4-napi';
import { lz4DecodeInto, lz4PlainLength, type BlobBuffers } from './lz4.js';
import { LockstepError } from '../errors.js';
import { deadNative, nativeGarbage } from '../memory.js';

const MAGIC0 = 0x4c; // L
const MAGIC1 = 0x53; // S
const VERSION = 1;
const FLAG_LZ4 = 1;
const FLAG_AES = 2;
const IV_LEN = 12;
const TAG_LEN = 16;
/**
 * below the agent's allocator threshold (32 KiB): the cipher's output for each slice comes
 * from the allocator's heap, not a fresh mapping (lz4.ts)
 */
const CRYPT_SLICE = 16 * 1024;
/**
 * LZ4 always runs on the calling thread (~1 ms a MiB), whatever the size: through the
 * binding's thread-pool calls its buffers are allocated by a pool thread in the binding's
 * own allocator (mimalloc) and freed on the main thread, and mimalloc takes such memory
 * back only when the owning thread allocates again. Measured with lz4-napi 2.10: 20 round
 * trips of a 20 MiB chunk (stored ~6 MiB) left RSS 548 MiB higher with the thread pool
 * above 4 MiB, 57 MiB inline (test/unit/codec-memory.test.ts); an agent's RSS after each
 * 5 GiB backup grew by 5-20 MiB while index parts went that way. Only a repository with
 * chunks over 4 MiB (chunkSize up to 64 MiB) still took that path, and grew without
 * bound; inline, a 64 MiB chunk holds the thread ~60 ms.
 */

export type Compression = 'none' | 'lz4';

export interface EncryptionParams {
  algorithm: 'aes-256-gcm';
  kdf: 'hkdf-sha256';
  salt: string;
  /** HMAC of a fixed text under the MAC key: tells a wrong key from a corrupt object */
  keyCheck: string;
}

export interface Keys {
  enc: Buffer;
  mac: Buffer;
}

export interface CodecSettings {
  compression: Compression;
  keys?: Keys;
}

const KEY_CHECK_TEXT = 'lockstep repository key check';

export function deriveKeys(secret: Buffer, saltHex: string): Keys {
  const salt = Buffer.from(saltHex, 'hex');
  return {
    enc: Buffer.from(hkdfSync('sha256', secret, salt, 'lockstep aes-256-gcm', 32)),
    mac: Buffer.from(hkdfSync('sha256', secret, salt, 'lockstep hmac-sha256', 32)),
  };
}

export function keyCheck(keys: Keys): string {
  return createHmac('sha256', keys.mac).update(KEY_CHECK_TEXT).digest('hex');
}

export function newEncryptionParams(secret: Buffer): { params: EncryptionParams; keys: Keys } {
  const salt = randomBytes(16).toString('hex');
  const keys = deriveKeys(secret, salt);
  return { params: { algorithm: 'aes-256-gcm', kdf: 'hkdf-sha256', salt, keyCheck: keyCheck(keys) }, keys };
}

export function keysMatch(keys: Keys, params: EncryptionParams): boolean {
  const a = Buffer.from(keyCheck(keys), 'hex');
  const b = Buffer.from(params.keyCheck, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** LZ4 output is kept only when it saves at least 1/16 */
function shrinks(packed: Buffer, plain: Buffer): boolean {
  return packed.length < plain.length - (plain.length >> 4);
}

export class Codec {
  constructor(
    readonly compression: Compression,
    private readonly keys: Keys | undefined,
  ) {}

  get encrypted(): boolean {
    return this.keys !== undefined;
  }

  /** what makes the same codec in a worker thread of this process (blob-check-pool.ts) */
  get settings(): CodecSettings {
    return { compression: this.compression, ...(this.keys ? { keys: this.keys } : {}) };
  }

  static fromSettings(s: CodecSettings): Codec {
    // a Buffer posted to a worker arrives as a plain Uint8Array
    return new Codec(s.compression, s.keys ? { enc: Buffer.from(s.keys.enc), mac: Buffer.from(s.keys.mac) } : undefined);
  }

  /** the name a content hash is stored under: itself, or its HMAC when encrypted */
  objectName(sha256: string): string {
    return this.keys ? createHmac('sha256', this.keys.mac).update(sha256).digest('hex') : sha256;
  }

  /** the stored form of `body` (already compressed or not, per `flags`) as parts, in order */
  private seal(body: Buffer, flags: number): Buffer[] {
    const header = Buffer.from([MAGIC0, MAGIC1, VERSION, flags | (this.keys ? FLAG_AES : 0)]);
    if (!this.keys) return [header, body];
    const iv = randomBytes(IV_LEN);
    const cipher = createCipheriv('aes-256-gcm', this.keys.enc, iv);
    cipher.setAAD(header);
    // a slice at a time, as `decryptInto`: one output for a whole blob was a fresh mapping of
    // the agent's allocator each time (encrypted 64 KiB blocks encoded at 0.12 GB/s, in slices 0.31)
    const parts = [header, iv];
    for (let at = 0; at < body.length; at += CRYPT_SLICE) parts.push(cipher.update(body.subarray(at, Math.min(at + CRYPT_SLICE, body.length))));
    parts.push(cipher.final(), cipher.getAuthTag());
    return parts;
  }

  private wantsLz4(plain: Buffer): boolean {
    return this.compression === 'lz4' && plain.length >= 64;
  }

  /**
   * The stored form of `plain`. With `scratch`, it is made in `scratch.buf` (grown when too
   * small) and is a view of it, good until the next encode into the same scratch: an index
   * of a 5 GiB node is ~10 MB of parts, and a fresh buffer for each part's stored form was
   * ~4k page faults an incremental (~12 µs each on the machines measured): writing the
   * index of a 5 GiB incremental took 406–501 ms that way, 350–384 ms in two scratch
   * buffers (three runs each, alternately).
   */
  async encode(plain: Buffer, scratch?: { buf?: Buffer }): Promise<Buffer> {
    let body = plain;
    if (this.wantsLz4(plain)) {
      const packed = compressSync(plain);
      if (shrinks(packed, plain)) body = packed;
    }
    const parts = this.seal(body, body === plain ? 0 : FLAG_LZ4);
    // the LZ4 output now, and the stored form once the caller has written it unless it is in the scratch
    nativeGarbage(body === plain ? 0 : body.length);
    if (!scratch) {
      const stored = Buffer.concat(parts);
      nativeGarbage(stored.length);
      return stored;
    }
    const length = parts.reduce((n, p) => n + p.length, 0);
    if (!scratch.buf || scratch.buf.length < length) scratch.buf = Buffer.allocUnsafeSlow(Math.max(length, (scratch.buf?.length ?? 0) * 2));
    let at = 0;
    for (const p of parts) at += p.copy(scratch.buf, at);
    return scratch.buf.subarray(0, length);
  }

  /**
   * Encode a small payload (a block, a small file; up to about 1 MiB) on the calling
   * thread, as parts for the caller to copy where they go (no concatenation).
   * `tryCompress` false skips the LZ4 attempt (the caller has seen this data does not
   * compress). `compressed` tells whether LZ4 paid off.
   */
  encodeParts(plain: Buffer, tryCompress = true): { parts: Buffer[]; length: number; compressed: boolean } {
    let body = plain;
    if (tryCompress && this.wantsLz4(plain)) {
      const packed = compressSync(plain);
      if (shrinks(packed, plain)) body = packed;
    }
    const parts = this.seal(body, body === plain ? 0 : FLAG_LZ4);
    const length = parts.reduce((n, p) => n + p.length, 0);
    // the parts are copied where they go and dropped
    nativeGarbage(body === plain && !this.keys ? 0 : length);
    return { parts, length, compressed: body !== plain };
  }

  /**
   * `where` names the object in errors. `into`: a compressed or encrypted body is decoded
   * into one of its buffers (lz4.ts: the bindings' own output buffers are slow to come by in
   * the agent), which the caller gives back once it is done with the result.
   */
  async decode(stored: Buffer, where: string, into?: BlobBuffers): Promise<Buffer> {
    if (stored.length < 4 || stored[0] !== MAGIC0 || stored[1] !== MAGIC1 || stored[2] !== VERSION) {
      throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} is not a lockstep object (bad header)`, { details: { object: where } });
    }
    const flags = stored[3]!;
    let body = stored.subarray(4);
    if (flags & FLAG_AES) {
      if (!this.keys) throw new LockstepError('LOCKSTEP_E_REPO_KEY_MISSING', `${where} is encrypted and no key was given`);
      if (body.length < IV_LEN + TAG_LEN) throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} is truncated`, { details: { object: where } });
      const decipher = createDecipheriv('aes-256-gcm', this.keys.enc, body.subarray(0, IV_LEN));
      decipher.setAAD(stored.subarray(0, 4));
      decipher.setAuthTag(body.subarray(body.length - TAG_LEN));
      try {
        body = into ? decryptInto(decipher, body.subarray(IV_LEN, body.length - TAG_LEN), into) : decryptWhole(decipher, body.subarray(IV_LEN, body.length - TAG_LEN));
      } catch (err) {
        throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} fails its authentication check (damaged or altered)`, { cause: err, details: { object: where } });
      }
    } else if (this.keys) {
      throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} is not encrypted in an encrypted repository (altered?)`, { details: { object: where } });
    }
    if (flags & FLAG_LZ4) {
      const sealed = flags & FLAG_AES && into ? body : undefined;
      try {
        body = into ? decodeInto(body, into) : uncompressSync(body);
        // the decrypted, still compressed form was one of `into`'s too
        if (sealed) into!.give(sealed);
      } catch (err) {
        throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} does not decompress`, { cause: err, details: { object: where } });
      }
    }
    // decoded blobs are not counted for nativeGarbage: a 5 GiB restore (index read part by
    // part) peaked 30–45 MiB lower counting them and the pack extents they came from, but
    // took 15–25% longer; only its full collections lowered the peak (young ones alone: no
    // lower, still slower), since blobs in flight outlive a young collection
    return body;
  }
}

/** an LZ4 body decoded into a buffer of `into`'s (given back when it does not decode) */
function decodeInto(body: Buffer, into: BlobBuffers): Buffer {
  const n = lz4PlainLength(body);
  // a damaged length prefix must not ask for an absurd buffer: LZ4 expands at most ~255 times
  if (n < 0 || n > body.length * 255 + 16) throw new Error(`an LZ4 body of ${body.length} bytes cannot hold ${n}`);
  const out = into.take(n);
  try {
    lz4DecodeInto(body, out);
  } catch (err) {
    into.give(out);
    throw err;
  }
  return out;
}

/** a whole sealed body decrypted (GCM adds nothing at the end: no second copy of every blob) */
function decryptWhole(decipher: DecipherGCM, sealed: Buffer): Buffer {
  const head = decipher.update(sealed);
  const tail = decipher.final();
  return tail.length === 0 ? head : Buffer.concat([head, tail]);
}

/**
 * A sealed body decrypted into one of `into`'s buffers, a slice at a time. Nothing of it is
 * used unless the tag checks (`final` throws otherwise; the buffer goes back).
 */
function decryptInto(decipher: DecipherGCM, sealed: Buffer, into: BlobBuffers): Buffer {
  const out = into.take(sealed.length);
  try {
    let w = 0;
    for (let at = 0; at < sealed.length; at += CRYPT_SLICE) w += decipher.update(sealed.subarray(at, Math.min(at + CRYPT_SLICE, sealed.length))).copy(out, w);
    if (decipher.final().length !== 0 || w !== sealed.length) throw new Error(`AES-GCM gave ${w} bytes for ${sealed.length}`);
  } catch (err) {
    into.give(out);
    throw err;
  } finally {
    deadNative(sealed.length);
  }
  return out;
}
