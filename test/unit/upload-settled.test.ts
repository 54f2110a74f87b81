/**
 * A file changed just before a backup is trusted by the next one (not read again) when
 * its read began more than RACY_MS after its last change: any change after the read is
 * stamped in a later tick of the clock, so its size, mtime or ctime tell. A file read
 * within RACY_MS of its change is read again next time. The agent's clock is moved on
 * once the walk is done, as if the reads had begun that much later.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { mkdir, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { FsDriver } from '../../plugins/storage/fs.js';
import { Repository } from '../../lib/repo/repository.js';
import { RACY_MS } from '../../lib/tree.js';
import { uploadSnapshot, uploadsSettled, type UploadTarget } from '../../agent/transfer/upload.js';
import type { JobContext } from '../../agent/jobs/runner.js';
import { tempFolders } from '../helpers/temp.js';
import { quietJobContext } from '../helpers/job.js';
import { commitUploads } from '../helpers/repo.js';

const temp = tempFolders();
afterEach(async () => {
  vi.restoreAllMocks();
  await uploadsSettled();
});

const target = (backupId: string): UploadTarget => ({ backupId, node: 'n1', component: 'db', plugin: 'directory' });

/** a context whose clock runs `lateByMs` ahead from the moment the upload starts reading (its phase 'uploading') */
function readingLate(lateByMs: number): JobContext {
  const now = Date.now.bind(Date);
  let shift = 0;
  vi.spyOn(Date, 'now').mockImplementation(() => now() + shift);
  return {
    ...quietJobContext(),
    progress: (p) => {
      if (p.phase === 'uploading') shift = lateByMs;
    },
  };
}

/** data written just now, a first backup of it (its reads begun `lateByMs` after the walk), then a second backup */
async function twoBackups(lateByMs: number) {
  const repo = await Repository.init(new FsDriver(await temp('repo')));
  const snap = await temp('snap');
  await mkdir(join(snap, 'data', 'sst'), { recursive: true });
  await writeFile(join(snap, 'data', 'table.db'), randomBytes(256 * 1024));
  for (let i = 0; i < 10; i++) await writeFile(join(snap, 'data', 'sst', `${i}.sst`), randomBytes(4096));
  const first = await uploadSnapshot(repo, snap, ['data'], target('20261205-100000-one'), readingLate(lateByMs));
  vi.restoreAllMocks();
  expect(first.filesUnchanged).toBe(0);
  await commitUploads(repo, '20261205-100000-one', [{ node: 'n1', plugin: 'directory', up: first }]);
  return uploadSnapshot(repo, snap, ['data'], target('20261205-110000-two'), quietJobContext());
}

describe('whether a file read is trusted by the next backup', () => {
  it('a file whose read began over RACY_MS after it changed is not read again', async () => {
    const second = await twoBackups(RACY_MS + 500);
    expect(second.files).toBe(11);
    expect(second.filesUnchanged).toBe(11);
    expect(second.bytesRead).toBe(0);
  });

  it('a file read within RACY_MS of its change is read again', async () => {
    const second = await twoBackups(0);
    expect(second.filesUnchanged).toBe(0);
    expect(second.bytesRead).toBe(256 * 1024 + 10 * 4096);
    expect(second.bytesNew).toBe(0);
  });
});
