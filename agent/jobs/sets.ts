/** The snapshot sets a snapshot dir holds: its sub-directories, or symlinks to directories (read in place). */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

export async function snapshotSets(dir: string): Promise<string[]> {
  const sets: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory() || (e.isSymbolicLink() && (await stat(join(dir, e.name)).then((s) => s.isDirectory(), () => false)))) sets.push(e.name);
  }
  return sets.sort();
}
