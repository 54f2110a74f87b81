/**
 * Walking and copying directory trees with their metadata (mode, owner, mtime,
 * symlinks verbatim). Used for snapshots (copy or hard-link) and by transfers.
 */
import { closeSync, constants, fchmodSync, fchownSync, futimesSync, lstatSync, openSync } from 'node:fs';
import { copyFile, lchown, link, lutimes, mkdir, open, readdir, readlink, realpath, rm, stat, symlink, utimes, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { fchmodFd, fchownFd, futimesFd, writevAllSync, yieldToLoop } from './fd.js';
import { alignedBuffers } from './aligned.js';
import { stopOf, type Stop } from './stop.js';
import { runCommand } from './exec.js';
import { RESTORE_ID_RE } from './ids.js';
import type { Stats } from 'node:fs';

export interface TreeEntry {
  /** relative to the walked root, '/'-separated; '' is the root itself */
  rel: string;
  abs: string;
  type: 'dir' | 'file' | 'symlink';
  stat: Stats;
}

export const isRoot = process.getuid?.() === 0;

/**
 * `root` joined with relative paths that are already normal ('/'-separated names, no '.',
 * '..' or empty parts: what `walkTree` and an index give), '' being `root` itself. By
 * concatenation: path.join normalizes the whole string again, ~2.4 KiB of short-lived
 * strings a path, and an upload of 34k files made ~90 MiB of them.
 */
export function under(root: string): (rel: string) => string {
  const prefix = prefixOf(root);
  return (rel) => (rel === '' ? root : prefix + rel);
}

/** what a normal relative path is appended to, to be under `root` (`under` without its closure, for hot loops: see walkTree) */
export function prefixOf(root: string): string {
  return root === '' || root.endsWith('/') ? root : `${root}/`;
}

/**
 * Depth-first, parents before children, names sorted. Sockets, fifos and devices are
 * reported through `onSkip` (a data directory should not hold them), and so are entries
 * that vanish between their folder's listing and their lstat (a running service deleting
 * files): a live tree is walked as it is, not failed.
 */
export async function* walkTree(root: string, onSkip?: (rel: string, why: string) => void): AsyncGenerator<TreeEntry> {
  yield { rel: '', abs: root, type: 'dir', stat: await rootStat(root) };
  for await (const f of folders(root, onSkip)) {
    for (let i = 0; i < f.rels.length; i++) yield { rel: f.rels[i]!, abs: f.abss[i]!, type: f.types[i]!, stat: f.stats[i]! };
  }
}

/** what `walkEach` tells of every entry; a class's method, not a closure (see `folders`) */
export interface TreeVisitor {
  /** `rel` as in `TreeEntry` ('' is the root) */
  entry(rel: string, type: TreeEntry['type'], stat: Stats): void;
}

/**
 * `walkTree`'s entries, in its order, told to `visitor` a folder at a time: no entry object
 * and no turn of the generator for each (a 34k-file walk made ~20 MiB less garbage, and
 * ~15% of its time went to them).
 */
export async function walkEach(root: string, visitor: TreeVisitor, onSkip?: (rel: string, why: string) => void): Promise<void> {
  visitor.entry('', 'dir', await rootStat(root));
  for await (const f of folders(root, onSkip)) {
    for (let i = 0; i < f.rels.length; i++) visitor.entry(f.rels[i]!, f.types[i]!, f.stats[i]!);
  }
}

/** the walked root's own stat (it may be a symlink to the directory: a snapshot that reads in place) */
async function rootStat(root: string): Promise<Stats> {
  const st = await stat(root);
  if (!st.isDirectory()) throw Object.assign(new Error(`${root} is not a directory`), { code: 'ENOTDIR' });
  return st;
}

/** one folder's entries that are walked (in name order), as `walkTree` tells them */
interface Folder {
  rels: string[];
  abss: string[];
  types: TreeEntry['type'][];
  stats: Stats[];
}

/**
 * What a restore onto a data directory that is a mount point keeps inside it for a while
 * (agent/jobs/swap.ts: its staging, the old data, the old data being removed), by name; a
 * walk leaves these out at its root: they are not the data.
 */
export const RESTORE_INSIDE = new RegExp(`^\\.lockstep-(?:staging|old|removing)-${RESTORE_ID_RE.source.slice(1)}`);

/** every folder under `root` (but the root itself), depth-first, parents before children; at the root, a restore's own folders left out (`RESTORE_INSIDE`) */
async function* folders(root: string, onSkip?: (rel: string, why: string) => void): AsyncGenerator<Folder> {
  // below the root, the walk goes by the directory's own path: a symlink in the path of
  // every lstat cost ~10% of a 34k-file walk
  const real = await realpath(root);
  // no closure of this walk's own is called in its loops: optimized code that calls one
  // records it, and is thrown away once it dies with the walk (then compiled again next walk)
  const prefix = prefixOf(real);
  // the listing of the folder on top of the stack is asked for while this one's entries are
  // looked at (in the thread pool, while the lstats run inline): the walk no longer waits
  // for each folder's listing (~0.8 ms each, ~0.1 s of a 5 GiB node's walk)
  const ahead = new Map<string, Promise<string[]>>();
  const stack: string[] = [''];
  while (stack.length > 0) {
    const dirRel = stack.pop()!;
    const listed = ahead.get(dirRel);
    ahead.delete(dirRel);
    const listedNames = await (listed ?? listNames(real, prefix, dirRel, onSkip));
    const names = dirRel === '' ? listedNames.filter((n) => !RESTORE_INSIDE.test(n)) : listedNames;
    const next = stack.at(-1);
    if (next !== undefined && !ahead.has(next)) {
      const p = listNames(real, prefix, next, onSkip);
      // awaited when its folder's turn comes; a walk that fails first must not leave it unhandled
      p.catch(() => undefined);
      ahead.set(next, p);
    }
    const rels: string[] = new Array(names.length);
    const abss: string[] = new Array(names.length);
    for (let i = 0; i < names.length; i++) {
      const rel = dirRel === '' ? names[i]! : `${dirRel}/${names[i]!}`;
      rels[i] = rel;
      abss[i] = prefix + rel;
    }
    const stats = await lstatAll(abss);
    const f: Folder = { rels: [], abss: [], types: [], stats: [] };
    const subdirs: string[] = [];
    for (let i = 0; i < rels.length; i++) {
      const rel = rels[i]!;
      const st = stats[i];
      let type: TreeEntry['type'];
      if (!st) {
        onSkip?.(rel, 'vanished during the walk');
        continue;
      } else if (st.isDirectory()) {
        type = 'dir';
        subdirs.push(rel);
      } else if (st.isFile()) type = 'file';
      else if (st.isSymbolicLink()) type = 'symlink';
      else {
        onSkip?.(rel, 'not a regular file, directory or symlink');
        continue;
      }
      f.rels.push(rel);
      f.abss.push(abss[i]!);
      f.types.push(type);
      f.stats.push(st);
    }
    yield f;
    for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]!);
  }
}

/** a folder's names, sorted; none (reported through `onSkip`) when it vanished, unless it is the root (`dirRel` '') */
function listNames(root: string, prefix: string, dirRel: string, onSkip?: (rel: string, why: string) => void): Promise<string[]> {
  return readdir(dirRel === '' ? root : prefix + dirRel).then(
    (n) => n.sort(),
    (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT' || dirRel === '') throw err;
      onSkip?.(dirRel, 'vanished during the walk');
      return [];
    },
  );
}

/**
 * lstat of many paths, in order (undefined: gone). Synchronous lstat, a batch at a time
 * with a turn of the event loop between batches: through the thread pool each lstat
 * costs ~40 µs of CPU in hand-offs, inline ~2 µs (measured), and a tree is walked up to
 * three times per backup. The agent stays responsive between batches; only a filesystem
 * that hangs outright would stall it, as it would stall the walk anyway.
 */
async function lstatAll(paths: string[]): Promise<(Stats | undefined)[]> {
  const out: (Stats | undefined)[] = new Array(paths.length);
  for (let i = 0; i < paths.length; i++) {
    if (i > 0 && i % LSTAT_BATCH === 0) await yieldToLoop();
    try {
      out[i] = lstatSync(paths[i]!);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return out;
}

const LSTAT_BATCH = 256;

/** whether something is at `path` (following a symbolic link) */
export function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * lstat of a path that may well be missing: undefined when it is (or cannot be looked at:
 * the callers only want a file they can use). Inline, like the walk's: through the promise
 * API a missing path costs an Error with its stack, and a restore onto an empty node asks
 * for every file, ~1 s of a 2 GiB restore's main thread (34k files).
 */
export function lstatIfAny(path: string): Stats | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

export interface Meta {
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
}

/**
 * utimes takes float seconds, which cannot hold nanoseconds at today's epoch: aim at the
 * middle of the recorded millisecond so the file reads back with that millisecond
 */
const utimeOf = (mtimeMs: number) => (Math.floor(mtimeMs) + 0.5) / 1000;

/** Apply mode, owner (when root) and mtime (to the millisecond) to an existing path. */
export async function applyMeta(path: string, type: TreeEntry['type'], meta: Meta): Promise<void> {
  if (isRoot) await lchown(path, meta.uid, meta.gid);
  const t = utimeOf(meta.mtimeMs);
  if (type === 'symlink') {
    await lutimes(path, t, t);
    return;
  }
  await chmod(path, meta.mode & 0o7777);
  await utimes(path, t, t);
}

/** The same through a regular file's open descriptor: no path lookups. */
export async function applyMetaFd(fd: number, meta: Meta): Promise<void> {
  if (isRoot) await fchownFd(fd, meta.uid, meta.gid);
  await fchmodFd(fd, meta.mode & 0o7777);
  const t = utimeOf(meta.mtimeMs);
  await futimesFd(fd, t, t);
}

/**
 * A regular file whose whole content is in hand, made at `path` (which must not exist; mode
 * 0600 until its own is set) with its metadata, inline; returns the bytes written. A
 * restore writes most of a node's files this way: through the thread pool each of the six
 * calls (open, write, owner, mode, times, close) cost ~40 µs of the one thread in hand-offs
 * (see lstatAll), inline a few µs, for a write into the page cache. Meant for small files:
 * a write the kernel holds back (too much unwritten data) holds the agent back meanwhile.
 */
export function writeWholeFile(path: string, parts: Buffer[], meta: Meta): number {
  const fd = openSync(path, 'wx', 0o600);
  try {
    const written = writevAllSync(fd, parts, 0);
    if (isRoot) fchownSync(fd, meta.uid, meta.gid);
    fchmodSync(fd, meta.mode & 0o7777);
    const t = utimeOf(meta.mtimeMs);
    futimesSync(fd, t, t);
    return written;
  } finally {
    closeSync(fd);
  }
}

export function metaOf(st: Stats): Meta {
  return { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtimeMs: st.mtimeMs };
}

export interface CopyStats {
  files: number;
  bytes: number;
}

/** What a pre-copy saw of an entry. Any later change to it changes its ctime, which no one can set back. */
export interface Seen {
  type: TreeEntry['type'];
  sig: string;
  /** changed so shortly before it was looked at that a change in the same clock tick could hide: always copied again */
  racy: boolean;
}

/** a change within this long before an entry was looked at may not show in its ctime (coarse kernel clock) */
export const RACY_MS = 2000;

const sigOf = (st: Stats) => `${st.ino}:${st.size}:${st.ctimeMs}:${st.mtimeMs}:${st.mode}:${st.uid}:${st.gid}`;

/**
 * Copy (reflink where the filesystem can) or hard-link a tree into `dest`, which must
 * not exist. Directory times are set after their contents.
 *
 * With `seen` it is a pre-copy of a tree that is still being written: what it saw of
 * each entry goes into `seen` for `syncTree`, and a file that vanishes before it is
 * copied is left out instead of failing the copy.
 */
export async function copyTree(
  src: string,
  dest: string,
  mode: 'copy' | 'hardlink',
  signal?: AbortSignal,
  seen?: Map<string, Seen>,
): Promise<CopyStats> {
  const dirs: { path: string; meta: Meta }[] = [];
  const out: CopyStats = { files: 0, bytes: 0 };
  const into = under(dest);
  const stop = stopOf(signal);
  for await (const e of walkTree(src)) {
    stop?.check();
    const target = into(e.rel);
    if (e.type === 'dir') {
      await mkdir(target, { recursive: e.rel === '' });
      dirs.push({ path: target, meta: metaOf(e.stat) });
      seen?.set(e.rel, seenOf(e));
      continue;
    }
    if (mode === 'hardlink' && e.type === 'file') {
      // a hard link shares the inode: its metadata is already the source's
      await link(e.abs, target);
    } else {
      try {
        await copyEntry(e, target);
      } catch (err) {
        // a pre-copy leaves out what the running service deleted meanwhile
        if (seen && (err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      seen?.set(e.rel, seenOf(e));
    }
    if (e.type === 'file') {
      out.files++;
      out.bytes += e.stat.size;
    }
  }
  for (let i = dirs.length - 1; i >= 0; i--) await applyMeta(dirs[i]!.path, 'dir', dirs[i]!.meta);
  return out;
}

/**
 * What a sync would see of every entry under `root` (but the root itself), as it is now,
 * and when each last changed (its later ctime or mtime): for a tree about to become the
 * source of a sync whose copy already holds the same content (the directory plugin's `staged`).
 */
export async function* seenEntries(root: string, signal?: AbortSignal): AsyncGenerator<{ rel: string; seen: Seen; changedAt: number }> {
  const stop = stopOf(signal);
  for await (const e of walkTree(root)) {
    stop?.check();
    if (e.rel !== '') yield { rel: e.rel, seen: seenOf(e), changedAt: Math.max(e.stat.ctimeMs, e.stat.mtimeMs) };
  }
}

function seenOf(e: TreeEntry): Seen {
  return { type: e.type, sig: sigOf(e.stat), racy: Date.now() - Math.max(e.stat.ctimeMs, e.stat.mtimeMs) < RACY_MS };
}

/** copy one file or symlink with its metadata (the target must not exist) */
async function copyEntry(e: TreeEntry, target: string): Promise<void> {
  if (e.type === 'symlink') await symlink(await readlink(e.abs), target);
  else await copyFile(e.abs, target, constants.COPYFILE_FICLONE);
  await applyMeta(target, e.type, metaOf(e.stat));
}

export interface SyncStats extends CopyStats {
  /** entries of the pre-copy that were gone from the source, removed from the copy */
  removed: number;
  /** bytes of changed files compared page by page with their copy (each read from both) instead of copied whole */
  compared: number;
}

/** [start, end) byte ranges, sorted, not touching */
export type Ranges = [number, number][];

/**
 * What a sync changed in a copy, by path relative to the synced root: the byte ranges
 * of a file patched in place, or 'all' for a file written anew. A file not in it is
 * byte for byte what it was before the sync.
 */
export type Changed = Map<string, Ranges | 'all'>;

/**
 * Bring a pre-copy (`copyTree` with `seen`) up to date with its source: entries whose
 * ctime, size, inode or type changed since, or that were racy, are copied again; new ones
 * are copied; gone ones are removed from the copy. `seen` is updated to what this pass
 * saw, so the copy can be brought up to date again later. What it costs is one walk plus
 * the changed files, not the whole tree.
 *
 * `running`: the source may still be changing (a pre-copy over an older copy): a file
 * that vanishes before it is copied is left out, as `copyTree` does.
 *
 * `changed`: a changed file that is still a plain file in the copy is compared with it
 * and only the pages that differ are written (a database rewrites pages in place: a big
 * file changes in a few places); what was written is added to `changed`, so a later
 * reader of the copy knows every other byte is as it was. Without it, a changed file is
 * copied whole.
 */
export async function syncTree(src: string, dest: string, seen: Map<string, Seen>, signal?: AbortSignal, running = false, changed?: Changed): Promise<SyncStats> {
  const out: SyncStats = { files: 0, bytes: 0, removed: 0, compared: 0 };
  const present = new Set<string>();
  const dirs: { path: string; meta: Meta }[] = [];
  // one pair of read buffers for every file this pass patches, made on first use
  let buffers: [Buffer, Buffer] | undefined;
  const into = under(dest);
  const stop = stopOf(signal);
  for await (const e of walkTree(src)) {
    stop?.check();
    present.add(e.rel);
    const target = into(e.rel);
    const before = seen.get(e.rel);
    if (e.type === 'dir') {
      if (before?.type !== 'dir') {
        if (before) await rm(target, { recursive: true, force: true });
        await mkdir(target, { recursive: e.rel === '' });
      }
      dirs.push({ path: target, meta: metaOf(e.stat) });
      seen.set(e.rel, seenOf(e));
      continue;
    }
    if (before && before.type === e.type && !before.racy && before.sig === sigOf(e.stat)) continue;
    try {
      if (changed && e.type === 'file' && before?.type === 'file' && (await patchable(target))) {
        buffers ??= alignedBuffers(PATCH_READ, 2) as [Buffer, Buffer];
        const p = await patchFile(e.abs, target, buffers, stop);
        out.compared += e.stat.size;
        await applyMeta(target, 'file', metaOf(e.stat));
        const had = changed.get(e.rel);
        if (had !== 'all') changed.set(e.rel, mergeRanges(had ?? [], p.ranges));
        out.files++;
        out.bytes += p.written;
        seen.set(e.rel, seenOf(e));
        continue;
      }
      if (before) await rm(target, { recursive: true, force: true });
      await copyEntry(e, target);
    } catch (err) {
      if (running && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        seen.delete(e.rel);
        present.delete(e.rel);
        changed?.set(e.rel, 'all');
        await rm(target, { recursive: true, force: true });
        continue;
      }
      throw err;
    }
    changed?.set(e.rel, 'all');
    seen.set(e.rel, seenOf(e));
    if (e.type === 'file') {
      out.files++;
      out.bytes += e.stat.size;
    }
  }
  // gone since the pre-copy, deepest first
  const gone = [...seen.keys()].filter((rel) => !present.has(rel)).sort((a, b) => b.length - a.length);
  for (const rel of gone) {
    seen.delete(rel);
    changed?.set(rel, 'all');
    // ENOTDIR: a parent became a file, so the entry went with the parent's old folder
    await rm(join(dest, rel), { recursive: true, force: true }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOTDIR') throw err;
    });
  }
  out.removed = gone.length;
  for (let i = dirs.length - 1; i >= 0; i--) await applyMeta(dirs[i]!.path, 'dir', dirs[i]!.meta);
  return out;
}

/** a plain file of its own in the copy (a hard link would change its other names too) */
async function patchable(path: string): Promise<boolean> {
  const st = lstatIfAny(path);
  return st !== undefined && st.isFile() && st.nlink === 1;
}

/** the unit a patch compares and writes: a database page or a few */
const PATCH_PAGE = 4096;
const PATCH_READ = 1024 * 1024;

/**
 * Make `dest` the same bytes as `src` by writing only the pages that differ (and its
 * tail, or a shorter length). Returns the ranges it wrote and how many bytes.
 * A source still being written may change meanwhile: the caller syncs it again then.
 */
async function patchFile(src: string, dest: string, [a, b]: [Buffer, Buffer], stop?: Stop): Promise<{ ranges: Ranges; written: number }> {
  const ranges: Ranges = [];
  let written = 0;
  const from = await open(src, 'r');
  try {
    const to = await open(dest, 'r+');
    try {
      let off = 0;
      for (;;) {
        stop?.check();
        const n = (await from.read(a, 0, PATCH_READ, off)).bytesRead;
        if (n === 0) break;
        const m = (await to.read(b, 0, n, off)).bytesRead;
        /** whether the page from `p` (to `end`) is already the same in the copy */
        const same = (p: number, end: number) => end <= m && a.compare(b, p, end, p, end) === 0;
        if (m !== n || a.compare(b, 0, n, 0, n) !== 0) {
          for (let p = 0; p < n; p += PATCH_PAGE) {
            const end = Math.min(n, p + PATCH_PAGE);
            if (same(p, end)) continue;
            // adjacent differing pages go out in one write
            let q = end;
            while (q < n && !same(q, Math.min(n, q + PATCH_PAGE))) q = Math.min(n, q + PATCH_PAGE);
            for (let w = p; w < q; ) w += (await to.write(a, w, q - w, off + w)).bytesWritten;
            written += q - p;
            addRange(ranges, off + p, off + q);
            p = q - PATCH_PAGE;
          }
        }
        off += n;
      }
      // a shorter source: the reader sees the new length
      if ((await to.stat()).size !== off) await to.truncate(off);
    } finally {
      await to.close();
    }
  } finally {
    await from.close();
  }
  return { ranges, written };
}

/** append [start, end) to sorted ranges, joining it to the last one when they touch */
function addRange(ranges: Ranges, start: number, end: number): void {
  const last = ranges.at(-1);
  if (last && last[1] >= start) last[1] = Math.max(last[1], end);
  else ranges.push([start, end]);
}

/** the union of two sorted range lists */
export function mergeRanges(x: Ranges, y: Ranges): Ranges {
  const all = [...x, ...y].sort((p, q) => p[0] - q[0]);
  const out: Ranges = [];
  for (const [s, e] of all) addRange(out, s, e);
  return out;
}

/** Files and bytes under a directory (0/0 if it does not exist). */
export async function treeSize(root: string): Promise<CopyStats> {
  const out: CopyStats = { files: 0, bytes: 0 };
  try {
    for await (const e of walkTree(root)) {
      if (e.type === 'file') {
        out.files++;
        out.bytes += e.stat.size;
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw err;
  }
  return out;
}

/** the longest a tree may take to remove */
const REMOVE_TIMEOUT_MS = 6 * 3600_000;

/**
 * Remove a tree (nothing when it is not there). One with folders in it is removed by
 * `rm -rf`, a process of its own: removed from here, each file cost this process's thread
 * three hand-offs to the thread pool, and its many small allocations, made while big
 * buffers came and went, left the agent's malloc heap fragmented: after a restore onto live
 * data removed 52k old files here, the agent idled at 121–178 MiB (50–62 MiB of it that
 * heap) and its next backup peaked at 177–203 MiB; with `rm`, 89 MiB (7 MiB) and 144–152.
 * Where `rm` cannot be run (or fails), the tree is removed from here, which names what is
 * wrong.
 */
export async function removeTree(path: string): Promise<void> {
  const inside = await readdir(path, { withFileTypes: true }).catch(() => undefined);
  let failed: unknown;
  if (inside?.some((e) => e.isDirectory())) {
    try {
      await runCommand(['rm', '-rf', '--', path], { timeoutMs: REMOVE_TIMEOUT_MS, what: `removing ${path}` });
      return;
    } catch (err) {
      // from here, then; if that fails too, rm's own words name the cause (Node's, after an
      // unlink refused, are of the rmdir it tries next: "ENOTDIR ... scandir" of a file)
      failed = err;
    }
  }
  try {
    await rm(path, { recursive: true, force: true });
  } catch (err) {
    throw failed ?? err;
  }
}
