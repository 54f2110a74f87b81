/**
 * A data directory that is a mount point cannot be renamed (EBUSY), and a restore swaps
 * data by renaming: it is refused while staging, before anything is downloaded or any
 * service stopped. (Needs root for a bind mount; skipped without it.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { LocalCluster } from '../../demo/local-cluster.js';
import type { BackupReport, RestoreReport } from '../../lib/report.js';
import { isMountPoint } from '../../lib/mounts.js';
import { json, runCli, startCluster, stopCluster, tempDir } from '../helpers/cluster.js';

const run = (argv: string[]) => new Promise<boolean>((res) => execFile(argv[0]!, argv.slice(1), (e) => res(!e)));

describe('a data directory that is a mount point', () => {
  let cluster: LocalCluster;
  let data: string;
  let events: string;
  let mounted = false;

  beforeAll(async () => {
    events = join(await tempDir(), 'events');
    cluster = await startCluster({
      nodes: 1,
      components: () => [{ name: 'data', settings: { stop: ['sh', '-c', `echo stop >> ${events}`], start: ['sh', '-c', `echo start >> ${events}`] } }],
    });
    data = cluster.agents[0]!.data.data!;
    mounted = await run(['mount', '--bind', data, data]);
  });
  afterAll(async () => {
    if (mounted) await run(['umount', data]);
    await stopCluster(cluster);
  });

  it('is seen as one', async (ctx) => {
    if (!mounted) ctx.skip();
    expect(await isMountPoint(data)).toBe(true);
    expect(await isMountPoint(dirname(data))).toBe(false);
    expect(await isMountPoint(join(data, 'absent'))).toBe(false);
  });

  it('is backed up, and a restore onto it is refused while staging, naming it: nothing stopped, nothing changed', async (ctx) => {
    if (!mounted) ctx.skip();
    await writeFile(join(data, 'a.txt'), 'backed up');
    const b = await runCli(['backup', 'create', '--json'], { config: cluster.configFile });
    expect(b.code, b.stderr).toBe(0);
    const backupId = json<BackupReport>(b.stdout).backupId;
    await writeFile(join(data, 'a.txt'), 'live, changed since');
    const eventsBefore = await readFile(events, 'utf8').catch(() => '');

    const r = await runCli(['restore', backupId, '--json'], { config: cluster.configFile });
    expect(r.code).toBe(1);
    const report = json<RestoreReport>(r.stdout);
    expect(report.status).toBe('failed');
    expect(report.error?.code).toBe('LOCKSTEP_E_RESTORE_FAILED');
    expect(report.error?.message).toContain('no service was stopped');
    expect(report.error?.message).toContain(`${data} (the data of component data) is a mount point`);
    expect(report.steps.map((s) => s.name)).not.toContain('stop');
    expect(await readFile(events, 'utf8').catch(() => '')).toBe(eventsBefore);
    expect(await readFile(join(data, 'a.txt'), 'utf8')).toBe('live, changed since');
    expect((await readdir(dirname(data))).filter((x) => x.includes('.lockstep-'))).toEqual([]);
  });
});
