/** lib/aligned.ts: page-aligned buffers, views of one WebAssembly memory. */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alignedBuffer, alignedBuffers } from '../../lib/aligned.js';

describe('aligned buffers', () => {
  it('are the sizes asked for, each at a 64 KiB step of one memory, and do not overlap', () => {
    const size = 1024 * 1024 + 100; // not a whole number of steps
    const bufs = alignedBuffers(size, 3);
    expect(bufs.map((b) => b.length)).toEqual([size, size, size]);
    expect(new Set(bufs.map((b) => b.buffer)).size).toBe(1);
    for (const b of bufs) expect(b.byteOffset % (64 * 1024)).toBe(0);
    bufs.forEach((b, i) => b.fill(i + 1));
    bufs.forEach((b, i) => {
      expect(b[0]).toBe(i + 1);
      expect(b[b.length - 1]).toBe(i + 1);
    });
  });

  it('one buffer reads a file like any other', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lockstep-aligned-'));
    try {
      const body = randomBytes(300_000);
      await writeFile(join(dir, 'f'), body);
      const b = alignedBuffer(512 * 1024);
      const fh = await open(join(dir, 'f'), 'r');
      const { bytesRead } = await fh.read(b, 0, b.length, 0);
      await fh.close();
      expect(bytesRead).toBe(body.length);
      expect(Buffer.compare(b.subarray(0, bytesRead), body)).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
