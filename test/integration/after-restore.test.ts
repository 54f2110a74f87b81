/**
 * What the backup after a restore reads or copies again: not the files the restore put in
 * place, known to be the restored backup's (agent/transfer/restored.ts, and the directory
 * plugin's kept copy); a file the service wrote since, yes. And with hard-linked snapshots,
 * not a file unchanged since the last backup.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LocalCluster } from '../../demo/local-cluster.js';
import { fingerprint } from '../../demo/fixtures.js';
import type { BackupReport } from '../../lib/report.js';
import { json, runCli, startCluster, stopCluster } from '../helpers/cluster.js';

const FILES = 40;

async function backup(cluster: LocalCluster, name: string) {
  const r = await runCli(['backup', 'create', '--name', name, '--json'], { config: cluster.configFile });
  expect(r.code, r.stderr).toBe(0);
  const report = json<BackupReport>(r.stdout);
  const c = report.nodes[0]!.components[0]!;
  return { id: report.backupId, upload: c.upload!, snapshot: c.snapshot! };
}

/** FILES files in `data`: one of 3 MiB, the others of 16 KiB */
async function fill(data: string): Promise<void> {
  for (let i = 0; i < FILES - 1; i++) await writeFile(join(data, `part-${i}.db`), randomBytes(16 * 1024));
  await writeFile(join(data, 'big.db'), randomBytes(3 * 1024 * 1024));
}

/** one file gone, one rewritten; then restored from backup `id`: byte for byte as `want` */
async function damageAndRestore(cluster: LocalCluster, data: string, id: string, want: string): Promise<void> {
  await rm(join(data, 'part-0.db'));
  await writeFile(join(data, 'big.db'), randomBytes(1024));
  const r = await runCli(['restore', id, '--json'], { config: cluster.configFile });
  expect(r.code, r.stdout + r.stderr).toBe(0);
  expect(await fingerprint(data)).toEqual(want);
}

/** the service writes one restored file: the next backup has its new content, and restores it */
async function writtenSince(cluster: LocalCluster, data: string, read: (b: Awaited<ReturnType<typeof backup>>) => void): Promise<void> {
  const changed = randomBytes(16 * 1024);
  await writeFile(join(data, 'part-1.db'), changed);
  const later = await backup(cluster, 'later');
  read(later);
  await writeFile(join(data, 'part-1.db'), 'damaged');
  const again = await runCli(['restore', later.id, '--json'], { config: cluster.configFile });
  expect(again.code, again.stdout + again.stderr).toBe(0);
  expect(await readFile(join(data, 'part-1.db'))).toEqual(changed);
}

describe('what a backup of hard-linked snapshots reads again', () => {
  let cluster: LocalCluster;
  let data: string;


  beforeAll(async () => {
    // hard-linked snapshots, the live files' own inodes; the stop command takes longer than
    // a clock tick could hide a write in, as a real one would
    cluster = await startCluster({
      nodes: 1,
      components: () => [{ name: 'data', settings: { stop: ['sleep', '2.5'], start: ['true'], snapshotMode: 'hardlink' } }],
    });
    data = cluster.agent('node1').data.data!;
    await fill(data);
  });
  afterAll(async () => {
    await stopCluster(cluster);
  });

  it('none of the files unchanged since the last backup', async () => {
    const first = await backup(cluster, 'first');
    expect(first.upload.bytesRead).toBe(3 * 1024 * 1024 + (FILES - 1) * 16 * 1024);
    // linking changed every file's ctime: only size, mtime and inode tell
    const second = await backup(cluster, 'second');
    expect(second.upload.filesUnchanged).toBe(FILES);
    expect(second.upload.bytesRead).toBe(0);
  });

  it('after a restore none of the restored files, and still one written since', async () => {
    const first = await backup(cluster, 'before');
    expect(first.upload.files).toBe(FILES);
    await damageAndRestore(cluster, data, first.id, await fingerprint(data));
    const after = await backup(cluster, 'after');
    expect(after.upload.filesUnchanged).toBe(FILES);
    expect(after.upload.bytesRead).toBe(0);
    await writtenSince(cluster, data, (later) => {
      expect(later.upload.filesUnchanged).toBe(FILES - 1);
      expect(later.upload.bytesRead).toBe(16 * 1024);
    });
  });
});

describe('what a backup of the live data read in place reads again right after a restore', () => {
  let cluster: LocalCluster;
  let data: string;

  beforeAll(async () => {
    // no stop command: the swap follows the end of staging at once
    cluster = await startCluster({ nodes: 1 });
    data = cluster.agent('node1').data.data!;
    await fill(data);
  });
  afterAll(async () => {
    await stopCluster(cluster);
  });

  it('none of the restored files, the last staged too (staging ends once they have settled)', async () => {
    const first = await backup(cluster, 'before');
    await damageAndRestore(cluster, data, first.id, await fingerprint(data));
    const after = await backup(cluster, 'after');
    expect(after.upload.filesUnchanged).toBe(FILES);
    expect(after.upload.bytesRead).toBe(0);
    await writtenSince(cluster, data, (later) => {
      expect(later.upload.bytesRead).toBe(16 * 1024);
    });
  });
});

describe('what a backup from a kept copy compares again after a restore', () => {
  let cluster: LocalCluster;
  let data: string;

  beforeAll(async () => {
    // the default with a stop command: pre-copy into the copy kept from the last backup
    cluster = await startCluster({ nodes: 1, components: () => [{ name: 'data', settings: { stop: ['sleep', '2.5'], start: ['true'] } }] });
    data = cluster.agent('node1').data.data!;
    await fill(data);
  });
  afterAll(async () => {
    await stopCluster(cluster);
  });

  let first: Awaited<ReturnType<typeof backup>>;
  let firstData: string;

  it('none of the restored files, and still one written since', async () => {
    first = await backup(cluster, 'before');
    // (files written within 2 s of the pre-copy are copied again once the service is stopped)
    expect(first.snapshot.copiedBytes).toBeGreaterThanOrEqual(3 * 1024 * 1024 + (FILES - 1) * 16 * 1024);
    firstData = await fingerprint(data);
    await damageAndRestore(cluster, data, first.id, firstData);
    // every live file is new (the restore's), yet known: not compared with the kept copy, nor read by the upload
    const after = await backup(cluster, 'after');
    expect(after.snapshot.copiedBytes).toBe(0);
    expect(after.snapshot.comparedBytes).toBeUndefined();
    expect(after.upload.bytesRead).toBe(0);
    await writtenSince(cluster, data, (later) => {
      // that file only: compared in the pre-copy, and again once the service was stopped (it had just changed)
      expect([16 * 1024, 2 * 16 * 1024]).toContain(later.snapshot.comparedBytes);
      expect(later.upload.bytesRead).toBe(16 * 1024);
    });
  });

  it('after a restore of another backup than the kept copy was made for, every file is compared, and the backup holds what was restored', async () => {
    // the kept copy is of the last backup ("later"), which part-1.db differs in
    await damageAndRestore(cluster, data, first.id, firstData);
    const older = await backup(cluster, 'older');
    expect(older.snapshot.comparedBytes).toBe(3 * 1024 * 1024 + (FILES - 1) * 16 * 1024);
    await damageAndRestore(cluster, data, older.id, firstData);
  });

  it('a note beside the kept copy that cannot be read is as none: the backup compares every file', async () => {
    const older = (await runCli(['backup', 'list', '--json'], { config: cluster.configFile })).stdout;
    const id = json<{ backupId: string }[]>(older).at(-1)!.backupId;
    await damageAndRestore(cluster, data, id, firstData);
    await writeFile(join(cluster.agent('node1').stateDir, 'last', 'data', 'restored.json'), '{"restoreId": "r2', { flag: 'w' });
    const next = await backup(cluster, 'next');
    expect(next.snapshot.comparedBytes).toBe(3 * 1024 * 1024 + (FILES - 1) * 16 * 1024);
    await damageAndRestore(cluster, data, next.id, firstData);
  });
});
