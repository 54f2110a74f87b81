/**
 * A restore swaps data by renaming directories. A data directory that is a symbolic link
 * would be renamed, and the restored data would take the link's place on the link's
 * filesystem: refused while staging, before anything is downloaded or any service stopped.
 * A mount point cannot be renamed (EBUSY): it is told as one, and restored inside
 * (test/integration/restore-mount.test.ts). (The mount needs root; its test is skipped
 * without it.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdir, readFile, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { LocalCluster } from '../../demo/local-cluster.js';
import type { BackupReport, RestoreReport } from '../../lib/report.js';
import { isMountPoint } from '../../lib/mounts.js';
import { json, runCli, startMountedNode, stopMountedNode, tempDir, unmount } from '../helpers/cluster.js';

describe('a data directory a restore cannot swap', () => {
  let cluster: LocalCluster;
  let data: string;
  let events: string;
  let mounted = false;

  let scratch: string;

  beforeAll(async () => {
    scratch = await tempDir();
    events = join(scratch, 'events');
    ({ cluster, data, mounted } = await startMountedNode({ stop: ['sh', '-c', `echo stop >> ${events}`], start: ['sh', '-c', `echo start >> ${events}`] }));
  });
  afterAll(async () => {
    await stopMountedNode({ cluster, data, mounted });
    await rm(scratch, { recursive: true, force: true });
  });

  /** a restore of `backupId` refused while staging with `says` and advice `advises`: no stop command run, the live file as it was, nothing left beside */
  async function refused(backupId: string, says: string, advises: string, live: string): Promise<void> {
    const eventsBefore = await readFile(events, 'utf8').catch(() => '');
    const r = await runCli(['restore', backupId, '--json'], { config: cluster.configFile });
    expect(r.code).toBe(1);
    const report = json<RestoreReport>(r.stdout);
    expect(report.status).toBe('failed');
    expect(report.error?.code).toBe('LOCKSTEP_E_RESTORE_FAILED');
    expect(report.error?.message).toContain('no service was stopped');
    expect(report.error?.message).toContain(says);
    expect(report.error?.hint).toContain(advises);
    expect(report.steps.map((s) => s.name)).not.toContain('stop');
    expect(await readFile(events, 'utf8').catch(() => '')).toBe(eventsBefore);
    expect(await readFile(join(data, 'a.txt'), 'utf8')).toBe(live);
    expect((await readdir(dirname(data))).filter((x) => x.includes('.lockstep-'))).toEqual([]);
  }

  async function backup(): Promise<string> {
    await writeFile(join(data, 'a.txt'), 'backed up');
    const b = await runCli(['backup', 'create', '--json'], { config: cluster.configFile });
    expect(b.code, b.stderr).toBe(0);
    await writeFile(join(data, 'a.txt'), 'live, changed since');
    return json<BackupReport>(b.stdout).backupId;
  }

  it('a mount point is seen as one', async (ctx) => {
    if (!mounted) ctx.skip();
    expect(await isMountPoint(data)).toBe(true);
    expect(await isMountPoint(dirname(data))).toBe(false);
    expect(await isMountPoint(join(data, 'absent'))).toBe(false);
  });

  it('a symbolic link to the data is backed up, and a restore onto it is refused while staging, naming where it points', async () => {
    if (mounted) mounted = !(await unmount(data));
    // the data moves one level away, the component's path becomes a link to it
    const real = `${data}-real`;
    await rename(data, real);
    await symlink(real, data);
    try {
      await refused(await backup(), `${data} (the data of component data) is a symbolic link to ${real}`, `point the component at ${real}`, 'live, changed since');
      expect(await readlink(data)).toBe(real);
    } finally {
      await rm(data);
      await rename(real, data);
    }
  });
});
