/**
 * The restore's LZ4 decoder (lib/repo/lz4.ts) against the binding that made the blocks:
 * the same bytes for every kind of data a database holds, and an error, never a write
 * outside the buffer, for a damaged block. The codec decodes through it when given
 * buffers, and names a block that does not decode as damage.
 */
import { describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { compressSync } from 'lz4-napi';
import { BlobBuffers, Lz4Error, lz4DecodeInto, lz4PlainLength } from '../../lib/repo/lz4.js';
import { Codec, newEncryptionParams } from '../../lib/repo/codec.js';
import { LockstepError } from '../../lib/errors.js';

/** 2 KiB random, 2 KiB zeros in every 4 KiB (the benchmark's data) */
function halfZeros(n: number): Buffer {
  const b = randomBytes(n);
  for (let o = 2048; o < n; o += 4096) b.fill(0, o, Math.min(n, o + 2048));
  return b;
}

/** JSON log lines: many short matches at many offsets */
function logLines(n: number): Buffer {
  const lines: string[] = [];
  for (let i = 0, len = 0; len < n; i++) {
    const line = `{"ts":"2026-12-04T15:${String(i % 60).padStart(2, '0')}:00.${i % 1000}Z","level":"info","user":${(i * 2654435761) % 100000},"msg":"GET /items/${(i * 31) % 5000}"}\n`;
    lines.push(line);
    len += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, n);
}

/** short repeating patterns: overlapping matches of every small period */
function periods(n: number): Buffer {
  const b = Buffer.alloc(n);
  let at = 0;
  for (let p = 1; at < n; p = (p % 40) + 1) {
    const unit = randomBytes(p);
    const len = Math.min(n - at, 64 + p * 37);
    for (let i = 0; i < len; i++) b[at + i] = unit[i % p]!;
    at += len;
  }
  return b;
}

const kinds: [string, (n: number) => Buffer][] = [
  ['random', (n) => randomBytes(n)],
  ['zeros', (n) => Buffer.alloc(n)],
  ['half zeros', halfZeros],
  ['log lines', logLines],
  ['short periods', periods],
];

describe('LZ4 block decoding into a given buffer', () => {
  for (const [name, make] of kinds) {
    it(`decodes ${name} as the binding encoded it`, () => {
      for (const size of [1, 15, 16, 300, 4096, 65536, 1024 * 1024 + 7]) {
        const plain = make(size);
        const body = compressSync(plain);
        expect(lz4PlainLength(body)).toBe(size);
        // a dirty, larger buffer: only the plain length is written
        const out = Buffer.alloc(size + 100, 0xaa);
        expect(lz4DecodeInto(body, out)).toBe(size);
        expect(out.subarray(0, size).equals(plain)).toBe(true);
        expect(out.subarray(size).every((x) => x === 0xaa)).toBe(true);
      }
    });
  }

  it('an empty body decodes to nothing', () => {
    expect(lz4DecodeInto(compressSync(Buffer.alloc(0)), Buffer.alloc(0))).toBe(0);
  });

  it('a damaged block is an error, and nothing is written past the buffer', () => {
    const plain = logLines(64 * 1024);
    const body = compressSync(plain);
    const fits = () => Buffer.alloc(plain.length);
    // cut short, anywhere
    for (const cut of [2, 4, 5, 100, body.length - 1]) expect(() => lz4DecodeInto(body.subarray(0, cut), fits())).toThrow(Lz4Error);
    // a length prefix larger than the buffer, or than what the block holds
    const bigger = Buffer.from(body);
    bigger.writeUInt32LE(plain.length + 1, 0);
    expect(() => lz4DecodeInto(bigger, fits())).toThrow(/more than/);
    expect(() => lz4DecodeInto(bigger, Buffer.alloc(plain.length + 1))).toThrow(/decodes to/);
    // a match offset before the start of the output
    const early = Buffer.from([16, 0, 0, 0, 0x1f, 0x41, 5, 0, 0]);
    expect(() => lz4DecodeInto(early, Buffer.alloc(16))).toThrow(/before the start/);
    // flipped bytes: an error or other bytes, never a throw of another kind or a write past the end
    for (let i = 0; i < 300; i++) {
      const bad = Buffer.from(body);
      const at = 4 + ((i * 7919) % (bad.length - 4));
      bad[at] = bad[at]! ^ (1 << i % 8);
      const out = Buffer.alloc(plain.length + 64, 0x55);
      try {
        lz4DecodeInto(bad, out.subarray(0, plain.length));
      } catch (err) {
        expect(err).toBeInstanceOf(Lz4Error);
      }
      expect(out.subarray(plain.length).every((x) => x === 0x55)).toBe(true);
    }
  });
});

describe('blob buffers', () => {
  it('hands a buffer given back out again, and only its own', () => {
    const pool = new BlobBuffers(1024 * 1024);
    const a = pool.take(5000);
    expect(a.length).toBe(5000);
    pool.give(a);
    // twice: still handed out once
    pool.give(a);
    const b = pool.take(7000);
    expect(b.buffer).toBe(a.buffer);
    expect(pool.take(7000).buffer).not.toBe(a.buffer);
    // a buffer it did not make is left alone
    const stranger = Buffer.allocUnsafeSlow(8192);
    pool.give(stranger);
    expect(pool.take(8192).buffer).not.toBe(stranger.buffer);
  });

  it('keeps no more than it is allowed', () => {
    const pool = new BlobBuffers(64 * 1024);
    const taken = [pool.take(60 * 1024), pool.take(60 * 1024)];
    for (const t of taken) pool.give(t);
    // one 64 KiB buffer fits, the second does not
    const again = [pool.take(60 * 1024), pool.take(60 * 1024)];
    expect(again.filter((x) => taken.some((t) => t.buffer === x.buffer))).toHaveLength(1);
  });
});

describe('the codec decoding into blob buffers', () => {
  for (const encrypted of [false, true]) {
    it(`gives the same bytes as without them${encrypted ? ', encrypted' : ''}, and names a damaged block`, async () => {
      const codec = new Codec('lz4', encrypted ? newEncryptionParams(randomBytes(32)).keys : undefined);
      const pool = new BlobBuffers(1024 * 1024);
      const plain = logLines(200 * 1024);
      const stored = await codec.encode(plain);
      const back = await codec.decode(stored, 'blob x', pool);
      expect(createHash('sha256').update(back).digest('hex')).toBe(createHash('sha256').update(plain).digest('hex'));
      pool.give(back);
      // stored as it was (it does not compress): what comes back is the same bytes too
      const noise = randomBytes(100 * 1024);
      const again = await codec.decode(await codec.encode(noise), 'blob y', pool);
      expect(again.equals(noise)).toBe(true);
      pool.give(again);
      if (encrypted) {
        // a flipped byte fails its authentication before anything of it is used
        const bad = Buffer.from(stored);
        bad[bad.length - 100] = bad[bad.length - 100]! ^ 1;
        await expect(codec.decode(bad, 'blob x', pool)).rejects.toThrow(/blob x fails its authentication check/);
        return;
      }
      const bad = Buffer.from(stored);
      // the body's length prefix: claims 16 bytes more than the block decodes to
      bad.writeUInt32LE(plain.length + 16, 4);
      const err = await codec.decode(bad, 'blob x', pool).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LockstepError);
      expect((err as LockstepError).code).toBe('LOCKSTEP_E_REPO_CORRUPT');
      expect((err as LockstepError).message).toContain('blob x does not decompress');
    });
  }
});
