/** Temporary folders for a test file, all removed once its tests are done. */
import { afterAll } from 'vitest';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Call at the top of a test file: a function that makes a folder `lockstep-<label>-…`, removed after the file's tests. */
export function tempFolders(): (label: string) => Promise<string> {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  return async (label) => {
    const d = await mkdtemp(join(tmpdir(), `lockstep-${label}-`));
    dirs.push(d);
    return d;
  };
}

/** every file under `root`, by its path below it, with its content as text */
export async function textFiles(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out[join(e.parentPath, e.name).slice(root.length + 1)] = await readFile(join(e.parentPath, e.name), 'utf8');
  }
  return out;
}
