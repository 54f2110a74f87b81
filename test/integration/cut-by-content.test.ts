/**
 * A directory component whose files are written anew (`cutByContent`): bytes inserted and
 * removed in a dump move only the blocks around them, so the next backup stores a few
 * blocks, where the same change cut at fixed sizes stores most of the file again; and the
 * dump restores byte for byte.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LocalCluster } from '../../demo/local-cluster.js';
import type { BackupReport, RestoreReport } from '../../lib/report.js';
import type { PruneReport } from '../../lib/repo/prune.js';
import { json, runCli, startCluster, stopCluster } from '../helpers/cluster.js';
import { objectBytes } from '../helpers/repo.js';

const MiB = 1024 * 1024;

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const piece of createReadStream(path)) h.update(piece as Buffer);
  return h.digest('hex');
}

describe('files cut by their content', () => {
  let cluster: LocalCluster;
  const cli = (args: string[]) => runCli(args, { config: cluster.configFile });
  const dir = (component: string) => cluster.agents[0]!.data[component]!;
  const upload = (r: BackupReport, component: string) => r.nodes[0]!.components.find((c) => c.component === component)!.upload!;
  const bytesNew = (r: BackupReport, component: string) => upload(r, component).bytesNew;

  beforeAll(async () => {
    // the same dump in two components: one cut by its content, one at fixed sizes
    cluster = await startCluster({ nodes: 1, components: () => [{ name: 'dumps', settings: { cutByContent: true } }, { name: 'plain' }] });
  });
  afterAll(async () => {
    await stopCluster(cluster);
  });

  it('a dump with bytes inserted and removed: the next backup stores a few blocks of it, and it restores byte for byte', async () => {
    const dump = randomBytes(4 * MiB);
    for (const c of ['dumps', 'plain']) await writeFile(join(dir(c), 'nightly.dump'), dump);
    const first = await cli(['backup', 'create', '--name', 'first', '--json']);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    expect(bytesNew(json<BackupReport>(first.stdout), 'dumps')).toBeGreaterThan(0.9 * 4 * MiB);

    // 300 bytes inserted after the first MiB, 500 removed near the end: everything between moves
    const changed = Buffer.concat([dump.subarray(0, MiB), randomBytes(300), dump.subarray(MiB, 3 * MiB), dump.subarray(3 * MiB + 500)]);
    for (const c of ['dumps', 'plain']) await writeFile(join(dir(c), 'nightly.dump'), changed);
    const second = await cli(['backup', 'create', '--name', 'second', '--json']);
    expect(second.code, second.stdout + second.stderr).toBe(0);
    const report = json<BackupReport>(second.stdout);
    // a few ~2 KiB blocks around each change, against the index the agent kept in memory (it holds the block lengths)
    expect(bytesNew(report, 'dumps')).toBeLessThan(0.05 * 4 * MiB);
    expect(upload(report, 'dumps').previousIndex).toBe('memory');
    // read whole, but only the blocks the previous backup did not have hashed: the rest were known by their fingerprints, wherever they moved
    expect(upload(report, 'dumps').bytesRead).toBeGreaterThan(4 * MiB - 1000);
    expect(upload(report, 'dumps').bytesHashed).toBeLessThan(0.05 * 4 * MiB);
    // at fixed offsets every block after the insertion is new
    expect(bytesNew(report, 'plain')).toBeGreaterThan(0.7 * 4 * MiB);

    const v = await cli(['backup', 'verify', report.backupId, '--read-data']);
    expect(v.code, v.stdout + v.stderr).toBe(0);

    // back to the first dump, then the second restored: its blocks are found in the live file wherever they moved
    for (const c of ['dumps', 'plain']) await writeFile(join(dir(c), 'nightly.dump'), dump);
    const r = await cli(['restore', report.backupId, '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const restored = json<RestoreReport>(r.stdout);
    expect(restored.status).toBe('restored');
    for (const c of ['dumps', 'plain']) expect((await readFile(join(dir(c), 'nightly.dump'))).equals(changed)).toBe(true);
    const staged = restored.nodes[0]!.components.find((c) => c.component === 'dumps')!.stage!;
    expect(staged.bytesDownloaded).toBeLessThan(0.05 * 4 * MiB);
    expect(staged.bytesReusedLocally).toBeGreaterThan(0.95 * 4 * MiB);

    // nothing of it left locally: all of it from the repository
    await writeFile(join(dir('dumps'), 'nightly.dump'), 'overwritten by accident');
    const again = await cli(['restore', report.backupId, '--json']);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect((await readFile(join(dir('dumps'), 'nightly.dump'))).equals(changed)).toBe(true);
    expect(json<RestoreReport>(again.stdout).nodes[0]!.components.find((c) => c.component === 'dumps')!.stage!.bytesDownloaded).toBeGreaterThan(4 * MiB - 1000);
  });

  it('an agent killed while it stores a dump cut by its content: the next backup cuts it the same way and sends only what the first had not stored', async () => {
    await writeFile(join(dir('dumps'), 'resumed.dump'), randomBytes(150 * MiB));
    const base = await objectBytes(cluster.repoDir);
    const first = cli(['backup', 'create', '--name', 'cut-short', '--json']);
    for (let i = 0; i < 3000 && (await objectBytes(cluster.repoDir)) < base + 40 * MiB; i++) await new Promise((r) => setTimeout(r, 10));
    await cluster.killAgent(cluster.agents[0]!.node);
    expect((await first).code).not.toBe(0);
    expect((await objectBytes(cluster.repoDir)) - base).toBeGreaterThanOrEqual(40 * MiB);
    await cluster.startAgent(cluster.agents[0]!.node);
    // packs the kill left without their records (in flight: the next run cannot know them) go, as in the repository test; what is left is what the next run can take
    const pruned = await cli(['prune', '--keep-last', '100', '--json']);
    expect(pruned.code, pruned.stdout + pruned.stderr).toBe(0);
    expect(json<PruneReport>(pruned.stdout).objectsDeleted).toBeLessThanOrEqual(6);
    const stored = (await objectBytes(cluster.repoDir)) - base;

    const second = await cli(['backup', 'create', '--name', 'resumed', '--json']);
    expect(second.code, second.stdout + second.stderr).toBe(0);
    const report = json<BackupReport>(second.stdout);
    // the kill came mid-upload, and what the first run stored was not sent again
    expect(stored).toBeLessThan(140 * MiB);
    expect(bytesNew(report, 'dumps')).toBeLessThanOrEqual(150 * MiB - stored + 4 * MiB);
    const v = await cli(['backup', 'verify', report.backupId, '--read-data']);
    expect(v.code, v.stdout + v.stderr).toBe(0);

    // nothing changed since: every part of the index is copied, the run of parts that holds
    // the dump's ~75k blocks in pieces too (index version 7), and the backup verifies
    const third = await cli(['backup', 'create', '--name', 'unchanged', '--json']);
    expect(third.code, third.stdout + third.stderr).toBe(0);
    const unchanged = json<BackupReport>(third.stdout);
    expect(upload(unchanged, 'dumps').indexParts).toBeGreaterThanOrEqual(5);
    expect(upload(unchanged, 'dumps').indexPartsReused).toBe(upload(unchanged, 'dumps').indexParts);
    const again = await cli(['backup', 'verify', unchanged.backupId]);
    expect(again.code, again.stdout + again.stderr).toBe(0);
  });

  it('a dump that shrank a little below the size where it was cut into larger blocks keeps them: the next backup stores a few, and a restore finds them in the live file', async () => {
    // over 512 MiB: cut at ~4 KiB on average (2 KiB below). 8 MiB of random bytes over and
    // over: stored once, cut the same way each time (at another average, none of its blocks
    // would be the same, and ~8 MiB would be stored again)
    const path = join(dir('dumps'), 'big.dump');
    const fh = await open(path, 'w');
    const pattern = randomBytes(8 * MiB);
    for (let i = 0; i < 520; i += 8) await fh.write(pattern);
    await fh.close();
    const first = await cli(['backup', 'create', '--name', 'big-first', '--json']);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    expect(bytesNew(json<BackupReport>(first.stdout), 'dumps')).toBeGreaterThan(7 * MiB);

    // 20 MiB off its end: 500 MiB, under the size where its blocks were chosen
    await truncate(path, 500 * MiB);
    // the agent restarted: the average is read from its local copy of the index, not from memory
    const node = cluster.agents[0]!.node;
    await cluster.killAgent(node, 'SIGTERM');
    await cluster.startAgent(node);
    const second = await cli(['backup', 'create', '--name', 'big-second', '--json']);
    expect(second.code, second.stdout + second.stderr).toBe(0);
    const report = json<BackupReport>(second.stdout);
    expect(upload(report, 'dumps').previousIndex).toBe('local');
    expect(bytesNew(report, 'dumps')).toBeLessThan(MiB);

    // no copy either: the index (its ~130k blocks in pieces, version 7) is read from the
    // repository and joined; a few bytes changed, the dump is read again, cut at the average
    // that index recorded, and its blocks found by their fingerprints there (not hashed)
    await cluster.killAgent(node, 'SIGTERM');
    await rm(join(cluster.agent(node).stateDir, 'index-cache'), { recursive: true, force: true });
    await cluster.startAgent(node);
    const touched = await open(path, 'r+');
    await touched.write(Buffer.from('touched'), 0, 7, 300 * MiB);
    await touched.close();
    const third = await cli(['backup', 'create', '--name', 'big-third', '--json']);
    expect(third.code, third.stdout + third.stderr).toBe(0);
    const fromRepo = json<BackupReport>(third.stdout);
    expect(upload(fromRepo, 'dumps').previousIndex).toBe('repository');
    expect(upload(fromRepo, 'dumps').bytesRead).toBeGreaterThan(499 * MiB);
    expect(upload(fromRepo, 'dumps').bytesHashed).toBeLessThan(MiB);
    expect(bytesNew(fromRepo, 'dumps')).toBeLessThan(MiB);

    // the restore cuts the live file at the average the backup recorded, not at what 500 MiB calls for: a few bytes changed, a block fetched
    const want = await sha256File(path);
    const live = await open(path, 'r+');
    const since = Buffer.from('changed since');
    await live.write(since, 0, since.length, 50 * MiB);
    await live.close();
    const r = await cli(['restore', fromRepo.backupId, '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(await sha256File(path)).toBe(want);
    const staged = json<RestoreReport>(r.stdout).nodes[0]!.components.find((c) => c.component === 'dumps')!.stage!;
    expect(staged.bytesDownloaded).toBeLessThan(MiB);
    expect(staged.bytesReusedLocally).toBeGreaterThan(499 * MiB);
  });
});
