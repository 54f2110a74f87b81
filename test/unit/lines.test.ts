/** lib/lines.ts: a record written a line at a time, whole or not at all, and read back a line at a time. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readHeaded, readLines, writeHeaded, writeLines } from '../../lib/lines.js';
import { tempDir } from '../helpers/cluster.js';
import { collected } from '../helpers/repo.js';

describe('records of a line a value', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads back what was written, in order, however many', async () => {
    const file = join(dir, 'many.json');
    async function* values() {
      yield { head: 'x\ny' };
      for (let i = 0; i < 100_000; i++) yield [`path/${i}`, i, i + 0.5];
    }
    expect(await writeLines(file, values())).toBe(100_001);
    const back = await collected(readLines(file));
    expect(back.length).toBe(100_001);
    expect(back[0]).toEqual({ head: 'x\ny' });
    expect(back[100_000]).toEqual(['path/99999', 99999, 99999.5]);
  });

  it('a write that fails leaves the record before it, and no temporary file', async () => {
    const file = join(dir, 'kept.json');
    await writeLines(file, (async function* () { yield 1; })());
    const failing = (async function* () {
      yield 2;
      throw new Error('walk failed');
    })();
    await expect(writeLines(file, failing)).rejects.toThrow('walk failed');
    expect(await collected(readLines(file))).toEqual([1]);
    expect((await readdir(dir)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('a line that is not JSON fails the read there, after the lines before it', async () => {
    const file = join(dir, 'bad.json');
    await writeFile(file, '{"a":1}\n{"b":\n{"c":3}\n');
    const seen: unknown[] = [];
    await expect(async () => {
      for await (const v of readLines(file)) seen.push(v);
    }).rejects.toThrow(SyntaxError);
    expect(seen).toEqual([{ a: 1 }]);
    expect(await readFile(file, 'utf8')).toContain('"c":3');
    await expect(collected(readLines(join(dir, 'missing.json')))).rejects.toThrow(/ENOENT/);
  });

  it('a headed record: its entries when the head is the one asked for, none when not; a bad line ends them quietly', async () => {
    const file = join(dir, 'headed.json');
    expect(await writeHeaded(file, { of: 'a' }, (async function* () { yield 1; yield 2; })())).toBe(2);
    const of = (want: string) => (head: unknown) => (head as { of?: string } | null)?.of === want;
    expect(await collected(readHeaded(file, of('a')))).toEqual([1, 2]);
    expect(await collected(readHeaded(file, of('b')))).toEqual([]);
    await writeFile(file, '{"of":"a"}\n1\n{"bad":\n3\n');
    expect(await collected(readHeaded(file, of('a')))).toEqual([1]);
    expect(await collected(readHeaded(join(dir, 'missing.json'), of('a')))).toEqual([]);
  });
});

