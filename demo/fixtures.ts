/** Data a person would recognise as a database directory, and a fingerprint to compare trees. */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { walkTree } from '../lib/tree.js';

/** Fill `dir` with nested dirs, empty files and dirs, symlinks, modes and `bigBytes` of random data. */
export async function fillDataDir(dir: string, seed: string, bigBytes = 4 * 1024 * 1024): Promise<void> {
  await mkdir(join(dir, 'wal'), { recursive: true });
  await mkdir(join(dir, 'sst', 'level1', 'level2'), { recursive: true });
  await mkdir(join(dir, 'empty-dir'), { recursive: true });
  await writeFile(join(dir, 'CURRENT'), `MANIFEST-${seed}\n`);
  await writeFile(join(dir, 'empty-file'), '');
  await writeFile(join(dir, 'secret.key'), `key-of-${seed}\n`);
  await chmod(join(dir, 'secret.key'), 0o600);
  await writeFile(join(dir, 'run.sh'), '#!/bin/sh\necho hi\n');
  await chmod(join(dir, 'run.sh'), 0o755);
  for (let i = 0; i < 20; i++) await writeFile(join(dir, 'wal', `${String(i).padStart(6, '0')}.log`), `${seed} record ${i}\n`.repeat(50 + i));
  for (let i = 0; i < 5; i++) await writeFile(join(dir, 'sst', 'level1', 'level2', `${i}.sst`), randomBytes(64 * 1024 + i));
  await writeFile(join(dir, 'sst', 'big.sst'), randomBytes(bigBytes));
  await symlink('sst/level1', join(dir, 'latest'));
  await symlink('/nonexistent/target', join(dir, 'dangling'));
}

export interface FingerprintEntry {
  path: string;
  type: string;
  mode: number;
  size?: number;
  mtimeMs: number;
  sha256?: string;
  target?: string;
}

/** Every entry with type, mode, mtime, size and content hash (or symlink target), sorted. */
export async function fingerprint(dir: string): Promise<FingerprintEntry[]> {
  const out: FingerprintEntry[] = [];
  for await (const e of walkTree(dir)) {
    // the root's own mtime is the caller's business (a restore renames it into place)
    const base = { path: e.rel === '' ? '.' : e.rel, type: e.type, mode: e.stat.mode & 0o7777, mtimeMs: e.rel === '' ? 0 : Math.floor(e.stat.mtimeMs) };
    if (e.type === 'file') out.push({ ...base, size: e.stat.size, sha256: createHash('sha256').update(await readFile(e.abs)).digest('hex') });
    else if (e.type === 'symlink') out.push({ ...base, mode: 0, target: await readlink(e.abs) });
    else out.push(base);
  }
  return out.sort((a, b) => a.path.localeCompare(b.path));
}
