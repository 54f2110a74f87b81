/**
 * A data directory that is a mount point (a volume of its own, as most production
 * databases have) cannot be renamed: its restore stages inside it, on its filesystem, and
 * the swap moves its entries instead. The restored data is the backup's, the directory's
 * own mode too; the old data goes once the restore has succeeded, or stays inside with
 * --keep-old, where the next backup leaves it out; a service that will not start has the
 * old data back, mode and all. A real agent and coordinator; the mount is a bind mount of
 * the data directory onto itself (root only: skipped without it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmod, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LocalCluster } from '../../demo/local-cluster.js';
import { fillDataDir, fingerprint } from '../../demo/fixtures.js';
import type { BackupReport, RestoreReport } from '../../lib/report.js';
import { isMountPoint } from '../../lib/mounts.js';
import { json, runCli, startMountedNode, stopMountedNode, tempDir } from '../helpers/cluster.js';

describe('a restore onto a data directory that is a mount point', () => {
  let cluster: LocalCluster;
  let data: string;
  let scratch: string;
  /** while it exists, the next start command fails (once) */
  let failStart: string;
  let mounted = false;

  beforeAll(async () => {
    scratch = await tempDir();
    failStart = join(scratch, 'fail-start');
    ({ cluster, data, mounted } = await startMountedNode({ stop: ['true'], start: ['sh', '-c', `if [ -e ${failStart} ]; then rm ${failStart}; exit 1; fi`] }));
  });
  afterAll(async () => {
    await stopMountedNode({ cluster, data, mounted });
    await rm(scratch, { recursive: true, force: true });
  });

  /** what is in the data directory and beside it that a restore made, once its background removal is done */
  async function leftovers(): Promise<string[]> {
    for (let i = 0; i < 100; i++) {
      const found = [...(await readdir(data)), ...(await readdir(dirname(data)))].filter((x) => x.includes('.lockstep-'));
      if (!found.some((x) => x.includes('.lockstep-removing-'))) return found;
      await sleep(100);
    }
    return ['.lockstep-removing- still there'];
  }

  async function backup(name: string): Promise<BackupReport> {
    const b = await runCli(['backup', 'create', '--name', name, '--json'], { config: cluster.configFile });
    expect(b.code, b.stderr).toBe(0);
    return json<BackupReport>(b.stdout);
  }

  async function restore(id: string, ...more: string[]): Promise<RestoreReport> {
    const r = await runCli(['restore', id, ...more, '--json'], { config: cluster.configFile });
    return json<RestoreReport>(r.stdout);
  }

  /** the live data changed since the backup: a file rewritten, one removed, one and a folder added, the directory's mode */
  async function changeLive(): Promise<void> {
    await writeFile(join(data, 'a.txt'), 'live, changed since');
    await rm(join(data, 'gone.txt'));
    await mkdir(join(data, 'new-folder'));
    await writeFile(join(data, 'new-folder', 'new.txt'), 'new');
    await chmod(data, 0o755);
  }

  it('puts the backup in place inside the mount, its mode too, and removes the old data', async (ctx) => {
    if (!mounted) ctx.skip();
    expect(await isMountPoint(data)).toBe(true);
    await fillDataDir(data, 'node1', 512 * 1024);
    await writeFile(join(data, 'a.txt'), 'backed up');
    await writeFile(join(data, 'gone.txt'), 'backed up too');
    await chmod(data, 0o700);
    const backedUp = await fingerprint(data);
    const b = await backup('mounted');
    await changeLive();

    const r = await restore(b.backupId);
    expect(r.status, JSON.stringify(r.error)).toBe('restored');
    expect(await fingerprint(data)).toEqual(backedUp);
    expect((await stat(data)).mode & 0o7777).toBe(0o700);
    expect(await isMountPoint(data)).toBe(true);
    expect(await leftovers()).toEqual([]);
  });

  it('with --keep-old, keeps the old data inside the mount, where the next backup leaves it out', async (ctx) => {
    if (!mounted) ctx.skip();
    const before = await backup('before-keep');
    await changeLive();
    const live = await fingerprint(data);
    const r = await restore(before.backupId, '--keep-old');
    expect(r.status, JSON.stringify(r.error)).toBe('restored');
    const kept = (await readdir(data)).filter((x) => x.startsWith('.lockstep-old-'));
    expect(kept).toHaveLength(1);
    // the old data, whole, in there
    expect(await readFile(join(data, kept[0]!, 'a.txt'), 'utf8')).toBe('live, changed since');
    // its folder with the data directory's mode as it was (0755 here, not the restored 0700)
    expect(await fingerprint(join(data, kept[0]!))).toEqual(live);
    const after = await backup('after-keep');
    expect(after.totals.files).toBe(before.totals.files);
    await rm(join(data, kept[0]!), { recursive: true });
  });

  it('a service that will not start on the restored data has the old data back, its mode too', async (ctx) => {
    if (!mounted) ctx.skip();
    const b = await backup('before-rollback');
    await changeLive();
    const live = await fingerprint(data);
    await writeFile(failStart, '');
    const r = await restore(b.backupId);
    expect(r.status).toBe('rolled-back');
    expect(r.rollback?.ok).toBe(true);
    expect(await fingerprint(data)).toEqual(live);
    expect((await stat(data)).mode & 0o7777).toBe(0o755);
    expect(await leftovers()).toEqual([]);
  });
});
