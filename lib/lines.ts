/**
 * A local record of one JSON value a line, written and read a line at a time: a record of
 * every file of a data directory (a restore's, for the backup after it) costs no more
 * memory for a million files than for ten. Written to `<file>.tmp` and renamed over
 * `file`: a reader sees the whole record or the one before, never half of one.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { rename, rm } from 'node:fs/promises';
import { createInterface } from 'node:readline';

/** Write each of `values` as a line of `file` (mode 0600), replacing it once all are written. */
export async function writeLines(file: string, values: AsyncIterable<unknown>): Promise<number> {
  const tmp = `${file}.tmp`;
  const out = createWriteStream(tmp, { mode: 0o600 });
  let n = 0;
  try {
    for await (const v of values) {
      if (!out.write(`${JSON.stringify(v)}\n`)) await once(out, 'drain');
      n++;
    }
    out.end();
    await once(out, 'finish');
  } catch (err) {
    out.destroy();
    // the file is opened in the background: removed once the stream has closed, or an open still on its way makes it again
    if (!out.closed) await once(out, 'close').catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
  await rename(tmp, file);
  return n;
}

/** The values of `file`'s lines, in order; throws on a line that is not JSON or a file that cannot be read. */
export async function* readLines(file: string): AsyncGenerator<unknown> {
  const input = createReadStream(file, { encoding: 'utf8' });
  const lines = createInterface({ input, crlfDelay: Infinity });
  try {
    for await (const line of lines) if (line !== '') yield JSON.parse(line) as unknown;
  } finally {
    lines.close();
    input.destroy();
  }
}

/**
 * A record whose first line tells what it is of (`head`), its entries after: written as
 * `writeLines` writes. Returns how many entries it holds.
 */
export async function writeHeaded(file: string, head: unknown, entries: AsyncIterable<unknown>): Promise<number> {
  async function* lines(): AsyncGenerator<unknown> {
    yield head;
    yield* entries;
  }
  return (await writeLines(file, lines())) - 1;
}

/**
 * The entries of a record `writeHeaded` wrote, if `accept` takes its head; none if not. For
 * records that are only ever a saving: one that cannot be read (any more, or from some line
 * on) gives the entries before, each line being whole, and no error.
 */
export async function* readHeaded(file: string, accept: (head: unknown) => boolean): AsyncGenerator<unknown> {
  let head = true;
  try {
    for await (const line of readLines(file)) {
      if (!head) yield line;
      else if (accept(line)) head = false;
      else return;
    }
  } catch {
    // what it gave so far stands
  }
}
