import { afterAll } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fsDriver } from '../../plugins/storage/fs.js';
import { storageConformance } from '../conformance/storage.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

storageConformance('fs', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lockstep-fs-'));
  dirs.push(dir);
  return fsDriver.open({ path: dir }, '/');
});
