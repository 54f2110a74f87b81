/**
 * Pre-copy then sync (the directory plugin's short downtime): after `syncTree`, the copy
 * must equal the stopped source exactly, whatever changed between the two passes.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, link, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { copyTree, syncTree, walkTree, type Changed, type Seen } from '../../lib/tree.js';

/** every entry's type, mode, size, mtime (ms) and content hash, by path */
async function describeTree(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const e of walkTree(root)) {
    const st = await lstat(e.abs);
    let body = '';
    if (e.type === 'file') body = createHash('sha256').update(await readFile(e.abs)).digest('hex');
    if (e.type === 'symlink') body = await readlink(e.abs);
    const mtime = e.type === 'dir' ? '' : String(Math.floor(st.mtimeMs));
    out[e.rel] = `${e.type} ${(st.mode & 0o7777).toString(8)} ${e.type === 'file' ? st.size : ''} ${mtime} ${body}`;
  }
  return out;
}

/** a writer that rewrites pages in place, appends, creates and deletes files as fast as it can, until SIGTERM */
const WRITER = `
  const fs = require('fs'); const path = require('path'); const dir = process.argv[1];
  let n = 0, stop = false; process.on('SIGTERM', () => { stop = true; });
  (function step() {
    for (let k = 0; k < 20; k++) {
      n++;
      const fd = fs.openSync(path.join(dir, 'page.db'), 'r+');
      fs.writeSync(fd, Buffer.alloc(4096, n % 251), 0, 4096, (n % 16) * 4096); fs.closeSync(fd);
      fs.appendFileSync(path.join(dir, 'wal'), 'entry ' + n + '\\n');
      fs.writeFileSync(path.join(dir, 'sub', 'n' + n), String(n));
      try { fs.unlinkSync(path.join(dir, 'sub', 'n' + (n - 7))); } catch {}
    }
    if (stop) { fs.writeFileSync(path.join(dir, 'last'), String(n)); process.exit(0); }
    setImmediate(step);
  })();`;

/** Run `work` while the writer rewrites `dir` (it has written, and run 200 ms more, before), then stop the writer and wait for its exit. */
async function whileWriting(dir: string, work: () => Promise<unknown>): Promise<void> {
  const wal = join(dir, 'wal');
  const walSize = () => stat(wal).then((st) => st.size, () => 0);
  const from = await walSize();
  const writer = spawn(process.execPath, ['-e', WRITER, dir], { stdio: 'ignore' });
  const exited = new Promise((r) => writer.once('exit', r));
  try {
    // it has written (a busy machine can take longer than that to start a process)
    for (let waited = 0; (await walSize()) <= from; waited += 20) {
      if (waited > 20_000) throw new Error('the writer never wrote');
      await sleep(20);
    }
    await sleep(200);
    await work();
  } finally {
    writer.kill('SIGTERM');
    await exited;
  }
}

/** pretend the pre-copy looked long after the last change: nothing is racy */
function settle(seen: Map<string, Seen>): void {
  for (const [rel, s] of seen) seen.set(rel, { ...s, racy: false });
}

describe('pre-copy, then sync what changed', () => {
  let root: string;
  let src: string;
  let copy: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'lockstep-sync-'));
    src = join(root, 'src');
    copy = join(root, 'copy');
    await mkdir(join(src, 'sub', 'deep'), { recursive: true });
    await mkdir(join(src, 'goes'));
    await mkdir(join(src, 'becomes-file'));
    for (let i = 0; i < 50; i++) await writeFile(join(src, 'sub', `f${i}`), `file ${i}\n`.repeat(100));
    await writeFile(join(src, 'page.db'), Buffer.alloc(65536, 1));
    await writeFile(join(src, 'goes', 'x'), 'x');
    await writeFile(join(src, 'becomes-file', 'y'), 'y');
    await writeFile(join(src, 'mode'), 'm');
    await symlink('sub/f1', join(src, 'link'));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('copies again exactly what changed: in-place rewrites of the same size, new, deleted, retyped, chmod, relinked', async () => {
    const seen = new Map<string, Seen>();
    const pre = await copyTree(src, copy, 'copy', undefined, seen);
    expect(pre.files).toBe(54);
    // changes a running service makes after the pre-copy (same size and within the same second: only ctime tells)
    const fh = Buffer.alloc(8192, 7);
    await writeFile(join(src, 'page.db'), Buffer.concat([fh, Buffer.alloc(65536 - 8192, 1)]));
    await rm(join(src, 'goes'), { recursive: true });
    await rm(join(src, 'becomes-file'), { recursive: true });
    await writeFile(join(src, 'becomes-file'), 'now a file');
    await writeFile(join(src, 'sub', 'deep', 'new'), 'new');
    await unlink(join(src, 'sub', 'f3'));
    await chmod(join(src, 'mode'), 0o600);
    await unlink(join(src, 'link'));
    await symlink('sub/f2', join(src, 'link'));

    const synced = await syncTree(src, copy, seen);
    expect(await describeTree(copy)).toEqual(await describeTree(src));
    expect(synced.removed).toBe(4); // goes, goes/x, becomes-file/y, sub/f3
    expect(await readdir(join(copy, 'sub'))).not.toContain('f3');
  });

  it('skips what did not change once it is no longer racy', async () => {
    const seen = new Map<string, Seen>();
    await copyTree(src, copy, 'copy', undefined, seen);
    settle(seen);
    await writeFile(join(src, 'sub', 'f7'), 'changed\n');
    const synced = await syncTree(src, copy, seen);
    expect(synced.files).toBe(1);
    expect(synced.bytes).toBe(8);
    expect(await describeTree(copy)).toEqual(await describeTree(src));
  });

  it('a kept copy is brought up to date backup after backup: each sync records what it saw for the next', async () => {
    const seen = new Map<string, Seen>();
    await copyTree(src, copy, 'copy', undefined, seen);
    await syncTree(src, copy, seen);
    settle(seen);
    // the next backup: its pre-copy over the kept copy, while a writer runs, then the final sync
    await whileWriting(src, () => syncTree(src, copy, seen, undefined, true));
    await syncTree(src, copy, seen);
    expect(await describeTree(copy)).toEqual(await describeTree(src));
    // the backup after that: only what changed since is copied (the seen map was kept up to date)
    settle(seen);
    await writeFile(join(src, 'sub', 'f9'), 'changed again\n');
    await rm(join(src, 'sub', 'f10'));
    const third = await syncTree(src, copy, seen);
    expect(third.files).toBe(1);
    expect(third.removed).toBe(1);
    expect(await describeTree(copy)).toEqual(await describeTree(src));
  });

  it('with a change record: changed files are patched in place, and every byte outside what it records is as before', async () => {
    const seen = new Map<string, Seen>();
    await copyTree(src, copy, 'copy', undefined, seen);
    settle(seen);
    // a copy file with a second name is not patched (the other name would change too)
    await link(join(copy, 'sub', 'f5'), join(root, 'other-name'));
    await writeFile(join(src, 'sub', 'f5'), 'changed\n');
    const before = new Map<string, { ino: number; body: Buffer }>();
    for await (const e of walkTree(copy)) if (e.type === 'file') before.set(e.rel, { ino: e.stat.ino, body: await readFile(e.abs) });

    const changed: Changed = new Map();
    await whileWriting(src, () => syncTree(src, copy, seen, undefined, true, changed));
    await syncTree(src, copy, seen, undefined, false, changed);
    expect(await describeTree(copy)).toEqual(await describeTree(src));

    for await (const e of walkTree(copy)) {
      if (e.type !== 'file') continue;
      const was = before.get(e.rel);
      const c = changed.get(e.rel);
      if (!was) {
        expect(c, e.rel).toBe('all');
        continue;
      }
      if (c === 'all') continue;
      const now = await readFile(e.abs);
      // untouched, or patched: the same file, and the same bytes wherever no range says otherwise
      expect(e.stat.ino, e.rel).toBe(was.ino);
      const covered = new Uint8Array(Math.min(now.length, was.body.length));
      for (const [a, b] of c ?? []) covered.fill(1, a, b);
      for (let i = 0; i < covered.length; i++) if (!covered[i] && now[i] !== was.body[i]) throw new Error(`${e.rel}: byte ${i} changed outside the recorded ranges`);
    }
    // page.db is rewritten in 4 KiB pages by the writer: patched, not copied
    expect(Array.isArray(changed.get('page.db'))).toBe(true);
    expect(changed.get('sub/f5')).toBe('all');
    expect(changed.get('sub/f0')).toBeUndefined();
  });

  it('a tree written all through the pre-copy ends equal to the source once the writer stops', async () => {
    const seen = new Map<string, Seen>();
    await whileWriting(src, () => copyTree(src, copy, 'copy', undefined, seen));
    await syncTree(src, copy, seen);
    expect(await describeTree(copy)).toEqual(await describeTree(src));
    expect(Number(await readFile(join(copy, 'last'), 'utf8'))).toBeGreaterThan(20);
  });
});
