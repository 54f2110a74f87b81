/**
 * Walking and copying directory trees with their metadata (mode, owner, mtime,
 * symlinks verbatim). Used for snapshots (copy or hard-link) and by transfers.
 */
import { constants, lstat as lstatCb } from 'node:fs';
import { copyFile, lchown, link, lutimes, mkdir, readdir, readlink, stat, symlink, utimes, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { forEachLimit } from '../agent/transfer/pool.js';
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
 * Depth-first, parents before children, names sorted. Sockets, fifos and devices are
 * reported through `onSkip` (a data directory should not hold them).
 */
export async function* walkTree(root: string, onSkip?: (rel: string, why: string) => void): AsyncGenerator<TreeEntry> {
  // the root itself may be a symlink to the directory (a snapshot that reads in place)
  const rootStat = await stat(root);
  if (!rootStat.isDirectory()) throw Object.assign(new Error(`${root} is not a directory`), { code: 'ENOTDIR' });
  yield { rel: '', abs: root, type: 'dir', stat: rootStat };
  const stack: string[] = [''];
  while (stack.length > 0) {
    const dirRel = stack.pop()!;
    const names = (await readdir(join(root, dirRel))).sort();
    const subdirs: string[] = [];
    const rels = names.map((name) => (dirRel === '' ? name : `${dirRel}/${name}`));
    const abss = rels.map((rel) => join(root, rel));
    const stats = await lstatAll(abss);
    for (const [i, rel] of rels.entries()) {
      const abs = abss[i]!;
      const st = stats[i]!;
      if (st.isDirectory()) {
        yield { rel, abs, type: 'dir', stat: st };
        subdirs.push(rel);
      } else if (st.isFile()) yield { rel, abs, type: 'file', stat: st };
      else if (st.isSymbolicLink()) yield { rel, abs, type: 'symlink', stat: st };
      else onSkip?.(rel, 'not a regular file, directory or symlink');
    }
    for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]!);
  }
}

/** lstat of many paths, 16 at a time, in order: a directory of many small files is not walked one round trip at a time */
async function lstatAll(paths: string[]): Promise<Stats[]> {
  const out: Stats[] = new Array(paths.length);
  await forEachLimit(paths, 16, async (path, i) => {
    out[i] = await lstatCallback(path);
  });
  return out;
}

/** the callback lstat, promisified: measured at about 2/3 the CPU of fs/promises' lstat per call */
const lstatCallback = promisify(lstatCb);

export interface Meta {
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
}

/** Apply mode, owner (when root) and mtime (to the millisecond) to an existing path. */
export async function applyMeta(path: string, type: TreeEntry['type'], meta: Meta): Promise<void> {
  if (isRoot) await lchown(path, meta.uid, meta.gid);
  // utimes takes float seconds, which cannot hold nanoseconds at today's epoch: aim at the
  // middle of the recorded millisecond so the file reads back with that millisecond
  const t = (Math.floor(meta.mtimeMs) + 0.5) / 1000;
  if (type === 'symlink') {
    await lutimes(path, t, t);
    return;
  }
  await chmod(path, meta.mode & 0o7777);
  await utimes(path, t, t);
}

export function metaOf(st: Stats): Meta {
  return { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtimeMs: st.mtimeMs };
}

export interface CopyStats {
  files: number;
  bytes: number;
}

/**
 * Copy (reflink where the filesystem can) or hard-link a tree into `dest`, which must
 * not exist. Directory times are set after their contents.
 */
export async function copyTree(
  src: string,
  dest: string,
  mode: 'copy' | 'hardlink',
  signal?: AbortSignal,
): Promise<CopyStats> {
  const dirs: { path: string; meta: Meta }[] = [];
  const out: CopyStats = { files: 0, bytes: 0 };
  for await (const e of walkTree(src)) {
    signal?.throwIfAborted();
    const target = e.rel === '' ? dest : join(dest, e.rel);
    if (e.type === 'dir') {
      await mkdir(target, { recursive: e.rel === '' });
      dirs.push({ path: target, meta: metaOf(e.stat) });
      continue;
    }
    if (e.type === 'symlink') {
      await symlink(await readlink(e.abs), target);
    } else if (mode === 'hardlink') {
      await link(e.abs, target);
      out.files++;
      out.bytes += e.stat.size;
      continue; // a hard link shares the inode: its metadata is already the source's
    } else {
      await copyFile(e.abs, target, constants.COPYFILE_FICLONE);
      out.files++;
      out.bytes += e.stat.size;
    }
    await applyMeta(target, e.type, metaOf(e.stat));
  }
  for (let i = dirs.length - 1; i >= 0; i--) await applyMeta(dirs[i]!.path, 'dir', dirs[i]!.meta);
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
