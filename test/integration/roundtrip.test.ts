/** Three real agents over mTLS: backup, damage, restore, byte-for-byte. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, rm, stat, writeFile, mkdir, symlink, chmod, unlink, open, utimes } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { dirname, join } from 'node:path';
import type { LocalCluster } from '../../demo/local-cluster.js';
import { fillDataDir, fingerprint } from '../../demo/fixtures.js';
import type { BackupReport, RestoreReport } from '../../lib/report.js';
import type { Manifest } from '../../lib/repo/manifest.js';
import type { StageResult } from '../../lib/wire.js';
import { json, runCli, startCluster, stopCluster } from '../helpers/cluster.js';
import { openFsRepo } from '../helpers/repo.js';
import { leftoversBeside } from '../helpers/leftovers.js';
import { indexKey } from '../../lib/repo/layout.js';
import { newBackupId } from '../../lib/ids.js';

describe('backup and restore of three nodes', () => {
  let cluster: LocalCluster;
  let backupId: string;
  let before: Awaited<ReturnType<typeof fingerprint>>[];

  beforeAll(async () => {
    cluster = await startCluster({ nodes: 3 });
    for (const a of cluster.agents) await fillDataDir(a.data.data!, a.node, 1024 * 1024);
    // node2 also holds a 50 MB file, an empty nested dir and odd modes
    const d2 = cluster.agent('node2').data.data!;
    await writeFile(join(d2, 'huge.bin'), randomBytes(50 * 1024 * 1024));
    await mkdir(join(d2, 'a', 'b', 'c', 'empty'), { recursive: true });
    await writeFile(join(d2, 'a', 'b', 'readonly'), 'ro');
    await chmod(join(d2, 'a', 'b', 'readonly'), 0o444);
    await chmod(join(d2, 'a', 'b', 'c'), 0o700);
    await symlink('../../CURRENT', join(d2, 'a', 'b', 'link-up'));
    before = await Promise.all(cluster.agents.map((a) => fingerprint(a.data.data!)));
  });
  afterAll(() => stopCluster(cluster));

  /** overwrite a few bytes of node2's huge.bin in place, restore node2 from `id`; its staging report */
  async function changeHugeAndRestore(id: string, text: string, at: number): Promise<StageResult> {
    const fh = await open(join(cluster.agent('node2').data.data!, 'huge.bin'), 'r+');
    await fh.write(Buffer.from(text), 0, undefined, at);
    await fh.close();
    const r = await runCli(['restore', id, '--node', 'node2', '--json'], { config: cluster.configFile });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    return json<RestoreReport>(r.stdout).nodes[0]!.components[0]!.stage!;
  }

  it('backs up every node and reports it complete', async () => {
    const r = await runCli(['backup', 'create', '--name', 'nightly', '--json'], { config: cluster.configFile });
    expect(r.code, r.stderr).toBe(0);
    const report = json<BackupReport>(r.stdout);
    expect(report.status).toBe('complete');
    expect(report.backupId).toMatch(/^\d{8}-\d{6}-nightly$/);
    expect(report.nodes.map((n) => [n.node, n.status])).toEqual([['node1', 'ok'], ['node2', 'ok'], ['node3', 'ok']]);
    expect(report.shards.every((s) => s.covered)).toBe(true);
    const files = before.reduce((n, f) => n + f.filter((e) => e.type === 'file').length, 0);
    expect(report.totals.files).toBe(files);
    expect(report.totals.bytes).toBeGreaterThan(50 * 1024 * 1024);
    backupId = report.backupId;

    // local snapshots are gone after the backup, and the live data is untouched by their cleanup
    for (const a of cluster.agents) expect(await readdir(join(a.stateDir, 'snapshots')).catch(() => [])).toEqual([]);
    expect(await Promise.all(cluster.agents.map((a) => fingerprint(a.data.data!)))).toEqual(before);
  });

  it('topology counts what each component holds; a backup does not walk the data to count it', async () => {
    const r = await runCli(['topology', '--json'], { config: cluster.configFile });
    expect(r.code, r.stderr).toBe(0);
    const nodes = json<{ nodes: { node: string; description: { components: { files?: number; sizeBytes?: number }[] } }[] }>(r.stdout).nodes;
    const node2 = nodes.find((n) => n.node === 'node2')!.description.components[0]!;
    expect(node2.files).toBe(before[1]!.filter((e) => e.type === 'file').length);
    expect(node2.sizeBytes).toBeGreaterThan(50 * 1024 * 1024);
    // the upload counted it (the snapshot is the live data, read in place: no count of its own)
    const show = json<Manifest>((await runCli(['backup', 'show', backupId, '--json'], { config: cluster.configFile })).stdout);
    const c2 = show.report.nodes.find((n) => n.node === 'node2')!.components[0]!;
    expect(c2.upload!.files).toBe(node2.files);
    expect(c2.snapshot!.files).toBeUndefined();
  });

  it('lists and shows the backup from the repository alone', async () => {
    const list = await runCli(['backup', 'list', '--json'], { config: cluster.configFile });
    expect(list.code).toBe(0);
    expect(json<{ backupId: string; status: string }[]>(list.stdout)).toEqual([expect.objectContaining({ backupId, status: 'complete' })]);
    const show = await runCli(['backup', 'show', backupId, '--json'], { config: cluster.configFile });
    expect(show.code).toBe(0);
    const m = json<Manifest>(show.stdout);
    expect(m.version).toBe(1);
    expect(m.components.map((c) => c.node).sort()).toEqual(['node1', 'node2', 'node3']);
    expect(m.topology.map((n) => n.node)).toEqual(['node1', 'node2', 'node3']);
  });

  it('a second backup of unchanged data stores no new chunks', async () => {
    const r = await runCli(['backup', 'create', '--name', 'again', '--json'], { config: cluster.configFile });
    expect(r.code, r.stderr).toBe(0);
    const report = json<BackupReport>(r.stdout);
    expect(report.totals.bytesNew).toBe(0);
  });

  it("a second backup of one name within the same second takes the next second's id", async () => {
    // the ids of this second and the next are taken (as by two runs just before)
    const now = Date.now();
    const taken = [0, 1].map((k) => newBackupId('twice', new Date(now + k * 1000)));
    for (const id of taken) {
      await mkdir(join(cluster.repoDir, 'backups', id), { recursive: true });
      await writeFile(join(cluster.repoDir, 'backups', id, 'manifest.json'), '{}');
    }
    try {
      // it holds its lock a while: what the lock says meanwhile is read
      const running = runCli(['backup', 'create', '--name', 'twice', '--json'], { config: cluster.configFile, env: { LOCKSTEP_FAILPOINTS: 'lock.hold=1500' } });
      let held: string | undefined;
      for (const until = Date.now() + 60_000; held === undefined && Date.now() < until; ) {
        held = await readFile(join(cluster.repoDir, 'locks', 'exclusive.json'), 'utf8').catch(() => undefined);
        if (held === undefined) await sleep(20);
      }
      const r = await running;
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const report = json<BackupReport>(r.stdout);
      expect(report.status).toBe('complete');
      expect(report.backupId > taken[1]!, report.backupId).toBe(true);
      // the lock named the id the backup ended with (what a backup refused meanwhile is told), not one already taken
      expect((JSON.parse(held!) as { operation: string }).operation).toBe(`backup ${report.backupId} of cluster ${report.cluster}`);
    } finally {
      for (const id of taken) await rm(join(cluster.repoDir, 'backups', id), { recursive: true, force: true });
    }
  });

  it('restores damaged data byte for byte, and removes the old data after success', async () => {
    for (const a of cluster.agents) {
      const d = a.data.data!;
      await unlink(join(d, 'CURRENT'));
      await writeFile(join(d, 'sst', 'big.sst'), 'clobbered');
      await rm(join(d, 'empty-dir'), { recursive: true });
      await writeFile(join(d, 'new-file'), 'not in the backup');
      await chmod(join(d, 'run.sh'), 0o644);
    }
    await rm(join(cluster.agent('node2').data.data!, 'huge.bin'));
    const r = await runCli(['restore', backupId, '--json'], { config: cluster.configFile });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const report = json<RestoreReport>(r.stdout);
    expect(report.status).toBe('restored');
    const after = await Promise.all(cluster.agents.map((a) => fingerprint(a.data.data!)));
    expect(after).toEqual(before);
    // the old data is being removed in the background: soon nothing is left beside the data dirs
    for (const a of cluster.agents) expect(await leftoversBeside(a.data.data!)).toEqual([]);
    // unchanged files were reused, not downloaded
    const n2 = report.nodes.find((n) => n.node === 'node2')!.components[0]!;
    expect(n2.stage!.filesReused).toBeGreaterThan(20);
    expect(n2.stage!.bytesDownloaded).toBeGreaterThanOrEqual(50 * 1024 * 1024);
  });

  it('--keep-old keeps the replaced data beside the restored data', async () => {
    const d1 = cluster.agent('node1').data.data!;
    await writeFile(join(d1, 'marker'), 'before restore');
    const r = await runCli(['restore', backupId, '--keep-old', '--json'], { config: cluster.configFile });
    expect(r.code, r.stdout).toBe(0);
    const report = json<RestoreReport>(r.stdout);
    expect(report.keptOldData).toHaveLength(3);
    const kept = report.keptOldData.find((k) => k.startsWith('node1:'))!.slice('node1:'.length);
    expect((await stat(join(kept, 'marker'))).isFile()).toBe(true);
    expect(await fingerprint(d1)).toEqual(before[0]);
    for (const k of report.keptOldData) await rm(k.slice(k.indexOf(':') + 1), { recursive: true });
  });

  it('--dry-run prints the plan and changes nothing', async () => {
    const d3 = cluster.agent('node3').data.data!;
    await writeFile(join(d3, 'CURRENT'), 'changed after backup');
    const fp = await fingerprint(d3);
    const r = await runCli(['restore', backupId, '--dry-run', '--json'], { config: cluster.configFile });
    expect(r.code).toBe(0);
    const report = json<RestoreReport>(r.stdout);
    expect(report.status).toBe('planned');
    const actions = report.nodes.find((n) => n.node === 'node3')!.components[0]!.actions!.join('\n');
    expect(actions).toContain('restore');
    // one file changed since the backup: it is the one to download, the rest are likely reused
    expect(actions).toMatch(/would download 1 file \(\d+ bytes\) and likely reuse \d+ local files?/);
    expect(await fingerprint(d3)).toEqual(fp);
    expect((await readdir(dirname(d3))).filter((s) => s.includes('.lockstep-'))).toEqual([]);
  });

  it('--node restores one node and leaves the others alone', async () => {
    for (const a of cluster.agents) await writeFile(join(a.data.data!, 'CURRENT'), `changed on ${a.node}`);
    const others = await Promise.all(['node1', 'node3'].map((n) => fingerprint(cluster.agent(n).data.data!)));
    const r = await runCli(['restore', backupId, '--node', 'node2', '--json'], { config: cluster.configFile });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const report = json<RestoreReport>(r.stdout);
    expect(report.nodes.map((n) => n.node)).toEqual(['node2']);
    expect(await fingerprint(cluster.agent('node2').data.data!)).toEqual(before[1]);
    expect(await Promise.all(['node1', 'node3'].map((n) => fingerprint(cluster.agent(n).data.data!)))).toEqual(others);
  });

  it('--map restores a node\'s data onto another node', async () => {
    const r = await runCli(['restore', backupId, '--map', 'node1=node2', '--map', 'node2=node1', '--json'], { config: cluster.configFile });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(await fingerprint(cluster.agent('node1').data.data!)).toEqual(before[1]);
    expect(await fingerprint(cluster.agent('node2').data.data!)).toEqual(before[0]);
    expect(await fingerprint(cluster.agent('node3').data.data!)).toEqual(before[2]);
  });

  it('a bad --map or --node is a usage error that names it', async () => {
    const a = await runCli(['restore', backupId, '--map', 'node9=node1'], { config: cluster.configFile });
    expect(a.code).toBe(2);
    expect(a.stdout).toContain('node9 is not a node of backup');
    const b = await runCli(['restore', backupId, '--map', 'node1=node2'], { config: cluster.configFile });
    expect(b.code).toBe(2);
    expect(b.stdout).toContain('backup node node2 keeps its name, but node1 is mapped onto it too');
    const c = await runCli(['restore', backupId, '--node', 'node7'], { config: cluster.configFile });
    expect(c.code).toBe(2);
    expect(c.stdout).toContain('--node node7 is not a node of the cluster config');
  });

  it('a changed large file downloads only its changed chunks; the rest comes from the local copy', async () => {
    // back to the backed-up state (the --map test swapped nodes)
    expect((await runCli(['restore', backupId], { config: cluster.configFile })).code).toBe(0);
    const stage = await changeHugeAndRestore(backupId, 'a few changed bytes', 20 * 1024 * 1024 + 5);
    // a 50 MiB file is cut into 32 KiB blocks: the one changed block alone comes from the repository
    expect(stage.bytesDownloaded).toBe(32 * 1024);
    expect(stage.bytesReusedLocally).toBe(50 * 1024 * 1024 - 32 * 1024);
    expect(await fingerprint(cluster.agent('node2').data.data!)).toEqual(before[1]);
  });

  it('a backup whose index is version 2 (whole-content file hashes) still restores, reusing local files and blocks', async () => {
    // rewrite node2's index as an older lockstep wrote it, under a backup of its own
    const repo = await openFsRepo(cluster.repoDir);
    const m = await repo.readManifest(backupId);
    const oldId = backupId.replace(/-nightly$/, '-formatv2');
    const c = m.components.find((x) => x.node === 'node2')!;
    const index = await repo.readIndex(c.indexKey, c.indexSha256);
    const data = cluster.agent('node2').data.data!;
    for (const e of index.entries) {
      if (e.type === 'file') e.sha256 = createHash('sha256').update(await readFile(join(data, e.path.slice('data/'.length)))).digest('hex');
    }
    index.version = 2;
    const key = indexKey(oldId, 'node2', c.component);
    const sha = await repo.writeIndex(key, { ...index, backupId: oldId });
    await repo.commitManifest({ ...m, backupId: oldId, components: m.components.map((x) => (x === c ? { ...x, indexKey: key, indexSha256: sha } : x)) });

    const stage = await changeHugeAndRestore(oldId, 'changed again', 7 * 1024 * 1024 + 3);
    expect(stage.filesReused).toBe(stage.files - 1);
    expect(stage.bytesDownloaded).toBe(32 * 1024);
    expect(await fingerprint(data)).toEqual(before[1]);
  });

  it('a live file cut short, grown or mostly rewritten is patched or fetched to exactly the backed-up bytes', async () => {
    const huge = join(cluster.agent('node2').data.data!, 'huge.bin');
    const restore = async () => {
      const r = await runCli(['restore', backupId, '--node', 'node2', '--json'], { config: cluster.configFile });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(await fingerprint(cluster.agent('node2').data.data!)).toEqual(before[1]);
      return json<RestoreReport>(r.stdout).nodes[0]!.components[0]!.stage!;
    };
    // cut short: the missing 10 MiB of blocks come from the repository, the rest stays
    const fh = await open(huge, 'r+');
    await fh.truncate(40 * 1024 * 1024);
    await fh.close();
    expect((await restore()).bytesDownloaded).toBe(10 * 1024 * 1024);
    // grown: nothing to fetch, the tail is cut off
    await writeFile(huge, randomBytes(1024 * 1024), { flag: 'a' });
    expect((await restore()).bytesDownloaded).toBe(0);
    // mostly rewritten: fetched again (what still matches is read back from the live file)
    const g = await open(huge, 'r+');
    await g.write(randomBytes(40 * 1024 * 1024), 0, undefined, 0);
    await g.close();
    expect((await restore()).bytesDownloaded).toBe(40 * 1024 * 1024);
  });

  it('a rewrite that keeps the size and the mtime is still backed up (the change time tells)', async () => {
    const file = join(cluster.agent('node1').data.data!, 'same-size.db');
    const backup = async (name: string) => {
      const r = await runCli(['backup', 'create', '--name', name, '--json'], { config: cluster.configFile });
      expect(r.code, r.stderr).toBe(0);
      return json<BackupReport>(r.stdout);
    };
    // a whole second: this mtime can be set back exactly
    const second = 1_700_000_000;
    await writeFile(file, Buffer.alloc(8192, 'a'));
    await utimes(file, second, second);
    await sleep(2100); // settled: a change in the same clock tick could not hide any more
    await backup('same-1');
    await writeFile(file, Buffer.alloc(8192, 'b'));
    await utimes(file, second, second);
    const b2 = await backup('same-2');
    expect(b2.nodes.find((n) => n.node === 'node1')!.components[0]!.upload!.filesUnchanged).toBeGreaterThan(0);
    await writeFile(file, 'damaged');
    const r = await runCli(['restore', b2.backupId, '--node', 'node1', '--json'], { config: cluster.configFile });
    expect(r.code, r.stdout).toBe(0);
    expect(await readFile(file)).toEqual(Buffer.alloc(8192, 'b'));
  });
});
