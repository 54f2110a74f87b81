/**
 * A repository may cut files into chunks of up to 64 MiB (chunkSize). Encoding and decoding such
 * chunks must not leave memory behind: LZ4 run through its binding's thread pool kept
 * about what it had compressed resident (the allocator of the pool thread that made the
 * output never took it back), so an agent grew with every big chunk.
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Codec } from '../../lib/repo/codec.js';

const MiB = 1024 * 1024;

// a full collection before each look at RSS: what is measured is what stays, not what the
// collector had not yet freed
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

describe('codec memory', () => {
  it('encodes and decodes 20 MiB chunks without growing with how many', async () => {
    const codec = new Codec('lz4', undefined);
    // compressible rows (stored at ~0.3 of their size: still over 4 MiB), as most database files are
    const noise = randomBytes(MiB).toString('hex');
    const rows: string[] = [];
    for (let i = 0, n = 0; n < 20 * MiB; i++) {
      const row = `{"row":${i},"status":"active","owner":"service-account","value":"${noise.slice((i * 16) % (noise.length - 16), ((i * 16) % (noise.length - 16)) + 16)}"}\n`;
      rows.push(row);
      n += row.length;
    }
    const plain = Buffer.from(rows.join(''));
    const roundTrip = async () => {
      const stored = await codec.encode(plain);
      expect(stored.length).toBeLessThan(plain.length);
      const back = await codec.decode(stored, 'chunk');
      expect(back.equals(plain)).toBe(true);
    };
    for (let i = 0; i < 5; i++) await roundTrip();
    gc();
    const before = process.memoryUsage().rss;
    // 400 MiB compressed and as much decompressed
    for (let i = 0; i < 20; i++) await roundTrip();
    gc();
    const grew = (process.memoryUsage().rss - before) / MiB;
    // through the thread pool this grew by ~550 MiB (~27 MiB a round trip). Inline, what the
    // allocator keeps after a collection wanders: 24-82 MiB in runs of this test alone, up to
    // 127 without the collection while the whole suite ran
    expect(grew).toBeLessThan(250);
  });
});
