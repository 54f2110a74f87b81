/**
 * What an upload leaves for after it returns (the local copy of its index, deleting
 * pending records) waits for the backup's last step on the component, the clean-up of its
 * snapshot: it starts when that is done, when the component's next upload starts, or after
 * a while when neither comes; the agent's shutdown starts it at once. The waiting is on a
 * timer, faked here, so nothing depends on how fast the machine is.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FsDriver } from '../../plugins/storage/fs.js';
import { Repository } from '../../lib/repo/repository.js';
import { snapshotCleanedUp, uploadSnapshot, uploadsSettled } from '../../agent/transfer/upload.js';
import { tempFolders } from '../helpers/temp.js';
import { quietJobContext as context } from '../helpers/job.js';

const temp = tempFolders();
beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
});
afterEach(async () => {
  await uploadsSettled();
  vi.useRealTimers();
});

const exists = (p: string) => stat(p).then(
  () => true,
  () => false,
);

/** turns of the event loop (real I/O goes on; timers are fake) until `p` exists, at most `turns` */
async function appears(p: string, turns = 2000): Promise<boolean> {
  for (let i = 0; i < turns; i++) {
    if (await exists(p)) return true;
    await new Promise((r) => setImmediate(r));
  }
  return false;
}

async function setUp(component: string) {
  const snap = await temp('snap');
  await mkdir(join(snap, 'data'), { recursive: true });
  for (let i = 0; i < 20; i++) await writeFile(join(snap, 'data', `f${i}`), `file ${i}`);
  const repo = await Repository.init(new FsDriver(await temp('repo')));
  const cacheFile = join(await temp('state'), 'index-cache', `${component}.copy`);
  const upload = (backupId: string) => uploadSnapshot(repo, snap, ['data'], { backupId, node: 'n1', component, cacheFile }, context());
  return { cacheFile, upload };
}

describe("an upload's work after it returns", () => {
  it("starts once the component's snapshot is cleaned up, not before", async () => {
    const { cacheFile, upload } = await setUp('cleaned');
    await upload('20261204-100000-one');
    // plenty of turns for the copy to be written if nothing held it back
    expect(await appears(cacheFile, 200)).toBe(false);
    snapshotCleanedUp('cleaned');
    expect(await appears(cacheFile)).toBe(true);
  });

  it("starts when the component's next upload starts, which finds it done", async () => {
    const { cacheFile, upload } = await setUp('next');
    await upload('20261204-100000-one');
    expect(await appears(cacheFile, 200)).toBe(false);
    await upload('20261204-100001-two');
    expect(await exists(cacheFile)).toBe(true);
  });

  it('starts on its own when no clean-up comes (a coordinator that died)', async () => {
    const { cacheFile, upload } = await setUp('orphan');
    await upload('20261204-100000-one');
    expect(await appears(cacheFile, 200)).toBe(false);
    await vi.advanceTimersByTimeAsync(2000);
    expect(await appears(cacheFile)).toBe(true);
  });

  it("is started at once by the agent's shutdown", async () => {
    const { cacheFile, upload } = await setUp('shutdown');
    await upload('20261204-100000-one');
    await uploadsSettled();
    expect(await exists(cacheFile)).toBe(true);
  });
});
