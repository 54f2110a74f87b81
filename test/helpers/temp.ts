/** Temporary folders for a test file, all removed once its tests are done. */
import { afterAll } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
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
