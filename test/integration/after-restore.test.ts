/**
 * What a backup of hard-linked snapshots reads again: not a file unchanged since the last
 * backup, and after a restore not the files the restore put in place, known to be the
 * restored backup's (agent/transfer/restored.ts); a file the service wrote since, yes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LocalCluster } from '../../demo/local-cluster.js';
import { fingerprint } from '../../demo/fixtures.js';
import type { BackupReport } from '../../lib/report.js';
import { json, runCli, startCluster, stopCluster } from '../helpers/cluster.js';

describe('what a backup of hard-linked snapshots reads again', () => {
  let cluster: LocalCluster;
  let data: string;
  const FILES = 40;

  const backup = async (name: string) => {
    const r = await runCli(['backup', 'create', '--name', name, '--json'], { config: cluster.configFile });
    expect(r.code, r.stderr).toBe(0);
    const report = json<BackupReport>(r.stdout);
    return { id: report.backupId, upload: report.nodes[0]!.components[0]!.upload! };
  };

  beforeAll(async () => {
    // hard-linked snapshots, the live files' own inodes; the stop command takes longer than
    // a clock tick could hide a write in, as a real one would
    cluster = await startCluster({
      nodes: 1,
      components: () => [{ name: 'data', settings: { stop: ['sleep', '2.5'], start: ['true'], snapshotMode: 'hardlink' } }],
    });
    data = cluster.agent('node1').data.data!;
    for (let i = 0; i < FILES - 1; i++) await writeFile(join(data, `part-${i}.db`), randomBytes(16 * 1024));
    await writeFile(join(data, 'big.db'), randomBytes(3 * 1024 * 1024));
  });
  afterAll(async () => {
    await stopCluster(cluster);
  });

  it('none of the files unchanged since the last backup', async () => {
    const first = await backup('first');
    expect(first.upload.bytesRead).toBe(3 * 1024 * 1024 + (FILES - 1) * 16 * 1024);
    // linking changed every file's ctime: only size, mtime and inode tell
    const second = await backup('second');
    expect(second.upload.filesUnchanged).toBe(FILES);
    expect(second.upload.bytesRead).toBe(0);
  });

  it('after a restore none of the restored files, and still one written since', async () => {
    const first = await backup('before');
    expect(first.upload.files).toBe(FILES);
    const want = await fingerprint(data);
    // the data damaged: one file gone, one rewritten
    await rm(join(data, 'part-0.db'));
    await writeFile(join(data, 'big.db'), randomBytes(1024));
    const r = await runCli(['restore', first.id, '--json'], { config: cluster.configFile });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(await fingerprint(data)).toEqual(want);

    const after = await backup('after');
    expect(after.upload.filesUnchanged).toBe(FILES);
    expect(after.upload.bytesRead).toBe(0);

    // the service writes one restored file: that one is read, and the backup has its new content
    const changed = randomBytes(16 * 1024);
    await writeFile(join(data, 'part-1.db'), changed);
    const later = await backup('later');
    expect(later.upload.filesUnchanged).toBe(FILES - 1);
    expect(later.upload.bytesRead).toBe(16 * 1024);
    await writeFile(join(data, 'part-1.db'), 'damaged');
    const again = await runCli(['restore', later.id, '--json'], { config: cluster.configFile });
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(await readFile(join(data, 'part-1.db'))).toEqual(changed);
  });
});
