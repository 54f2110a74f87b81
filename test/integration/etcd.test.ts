/** A real 3-member etcd cluster, one agent per member: snapshot from one member, restore rebuilds all. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { LocalCluster } from '../../demo/local-cluster.js';
import { EtcdTestCluster } from '../../demo/etcd-cluster.js';
import type { BackupReport, RestoreReport } from '../../lib/report.js';
import { json, runCli, stopCluster, tempDir } from '../helpers/cluster.js';
import { openFsRepo, readIndexAt, whereIs } from '../helpers/repo.js';
import { leftoversBeside } from '../helpers/leftovers.js';
import { refSha } from '../../lib/repo/index-file.js';

describe('etcd cluster', () => {
  let etcd: EtcdTestCluster;
  let cluster: LocalCluster;
  let backupId: string;
  const state = new Map<string, string>();
  const cli = (args: string[]) => runCli(args, { config: cluster.configFile });
  /** rewrite one agent's etcd start argv and restart the agent */
  const setStart = async (i: number, edit: (argv: string[]) => string[]) => {
    const a = cluster.agents[i]!;
    const cfg = parse(await readFile(a.configFile, 'utf8')) as { components: { start: string[] }[] };
    cfg.components[0]!.start = edit(cfg.components[0]!.start);
    await writeFile(a.configFile, stringify(cfg));
    await cluster.killAgent(a.node, 'SIGTERM');
    await cluster.startAgent(a.node);
  };

  beforeAll(async () => {
    const root = await tempDir();
    etcd = await new EtcdTestCluster(root).start();
    cluster = await new LocalCluster({ root, nodes: 3, components: (_n, i) => [etcd.component(i)] }).start();
  });
  afterAll(async () => {
    await etcd?.stop();
    await stopCluster(cluster);
  });

  it('round trip: 10k keys backed up, changed and deleted, restored; every key read back equals the backup', async () => {
    for (let i = 0; i < 10_000; i++) state.set(`k/${String(i).padStart(5, '0')}`, `v${i}`);
    await etcd.putMany(state);
    const b = await cli(['backup', 'create', '--name', 'etcd', '--json']);
    expect(b.code, b.stdout + b.stderr).toBe(0);
    const report = json<BackupReport>(b.stdout);
    expect(report.status).toBe('complete');
    // one snapshot covers the cluster, taken from a follower
    expect(report.shards).toEqual([expect.objectContaining({ shard: 'etcd', covered: true })]);
    const by = report.nodes.flatMap((n) => n.components).find((c) => c.status === 'ok' && c.upload)!;
    expect(by.role).toBe('follower');
    backupId = report.backupId;

    await etcd.putMany(new Map([...state.keys()].slice(0, 500).map((k) => [k, 'changed'])));
    for (const k of [...state.keys()].slice(500, 800)) await etcd.deleteKey(k);
    await etcd.putMany(new Map([['k/new', 'after the backup']]));

    const r = await cli(['restore', backupId, '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const rr = json<RestoreReport>(r.stdout);
    expect(rr.status).toBe('restored');
    expect(rr.downtimeMs).toBeGreaterThan(0);
    await etcd.waitHealthy();
    const back = await etcd.readPrefix('k/');
    expect(back.size).toBe(state.size);
    expect(back).toEqual(state);
    for (const m of etcd.members) expect(await leftoversBeside(m.dataDir)).toEqual([]);
  });

  it('--dry-run changes nothing on disk', async () => {
    await etcd.putMany(new Map([['k/after', 'x']]));
    const before = await etcd.readPrefix('k/');
    const r = await cli(['restore', backupId, '--dry-run', '--json']);
    expect(r.code).toBe(0);
    expect(json<RestoreReport>(r.stdout).status).toBe('planned');
    expect(await etcd.readPrefix('k/')).toEqual(before);
    for (const m of etcd.members) expect(await leftoversBeside(m.dataDir)).toEqual([]);
  });

  it('a member that will not start on the restored data: every member rolled back, data as before, cluster healthy', async () => {
    // node2 starts only when its data dir holds a marker that the live data has and the backup has not
    const m2 = etcd.members[1]!;
    const marker = join(m2.dataDir, 'keep-me');
    await writeFile(marker, 'live data');
    await setStart(1, (argv) => [...argv.slice(0, 5), '--require', marker, ...argv.slice(5)]);
    try {
      await etcd.putMany(new Map([['k/00001', 'current value']]));
      const before = await etcd.readPrefix('k/');
      const r = await cli(['restore', backupId, '--json']);
      expect(r.code, r.stdout).toBe(1);
      const report = json<RestoreReport>(r.stdout);
      expect(report.status).toBe('rolled-back');
      expect(report.rollback?.ok).toBe(true);
      expect(report.error?.message).toContain('node2/etcd: start failed');
      await etcd.waitHealthy();
      expect(await etcd.readPrefix('k/')).toEqual(before);
    } finally {
      await setStart(1, (argv) => argv.filter((a, i) => a !== '--require' && argv[i - 1] !== '--require'));
    }
  });

  it('a corrupt chunk stops the restore while staging; no member was stopped', async () => {
    const before = await etcd.readPrefix('k/');
    const m = json<{ components: { indexKey: string }[] }>((await cli(['backup', 'show', backupId, '--json'])).stdout);
    const index = await readIndexAt(cluster.repoDir, m.components[0]!.indexKey);
    const ref = index.entries.flatMap((e) => (e.type === 'file' ? e.chunks : []))[0]!;
    const chunk = refSha(ref);
    const { path, offset } = whereIs(cluster.repoDir, ref, await openFsRepo(cluster.repoDir));
    const good = await readFile(path);
    const bad = Buffer.from(good);
    bad[offset + 10] = bad[offset + 10]! ^ 0xff;
    await writeFile(path, bad);
    // no member may hold the snapshot locally (each kept what it staged in the first test)
    for (const a of cluster.agents) await rm(join(a.stateDir, 'last'), { recursive: true, force: true });
    const pids = await Promise.all(etcd.members.map((x) => readFile(x.pidfile, 'utf8')));
    try {
      const r = await cli(['restore', backupId, '--json']);
      expect(r.code).toBe(1);
      const report = json<RestoreReport>(r.stdout);
      expect(report.error?.code).toBe('LOCKSTEP_E_REPO_CORRUPT');
      expect(report.error?.message).toContain(chunk);
      expect(report.steps.map((x) => x.name)).not.toContain('stop');
      expect(await Promise.all(etcd.members.map((x) => readFile(x.pidfile, 'utf8')))).toEqual(pids);
      expect(await etcd.readPrefix('k/')).toEqual(before);
    } finally {
      await writeFile(path, good);
    }
  });

  it('a restore right after a backup: the member that took the snapshot downloads nothing', async () => {
    const b = await cli(['backup', 'create', '--name', 'delta', '--json']);
    expect(b.code, b.stdout).toBe(0);
    const id = json<BackupReport>(b.stdout).backupId;
    const taker = json<BackupReport>(b.stdout).nodes.find((n) => n.components[0]!.upload)!.node;
    const r = await cli(['restore', id, '--json']);
    expect(r.code, r.stdout).toBe(0);
    const stages = json<RestoreReport>(r.stdout).nodes.map((n) => [n.node, n.components[0]!.stage!] as const);
    const own = stages.find(([n]) => n === taker)![1];
    expect(own.bytesDownloaded).toBe(0);
    expect(own.filesReused).toBe(1);
    // the other members have no copy of that snapshot: they fetch it, but for blocks their own
    // database file happens to hold too (free pages, say), which are copied locally
    for (const [n, st] of stages) {
      if (n === taker) continue;
      expect(st.bytesDownloaded).toBeGreaterThan(0);
      expect(st.bytesDownloaded + (st.bytesReusedLocally ?? 0)).toBe(st.bytes);
    }
    await etcd.waitHealthy();
  });

  it('after a restore every member keeps what it staged: the next restore downloads only the changed blocks, on every member', async () => {
    // ~24 MiB in 48 values: the snapshot spans several 4 MiB blocks
    const bulk = new Map(Array.from({ length: 48 }, (_, i) => [`bulk/${i}`, randomBytes(256 * 1024).toString('hex')] as const));
    await etcd.putMany(bulk);
    const first = await cli(['backup', 'create', '--name', 'bulk-1', '--json']);
    expect(first.code, first.stdout).toBe(0);
    const full = await cli(['restore', json<BackupReport>(first.stdout).backupId, '--json']);
    expect(full.code, full.stdout).toBe(0);
    await etcd.waitHealthy();
    // one value changes; the next backup is of the restored data
    bulk.set('bulk/7', randomBytes(256 * 1024).toString('hex'));
    await etcd.putMany(new Map([['bulk/7', bulk.get('bulk/7')!]]));
    const second = await cli(['backup', 'create', '--name', 'bulk-2', '--json']);
    expect(second.code, second.stdout).toBe(0);
    const r = await cli(['restore', json<BackupReport>(second.stdout).backupId, '--json']);
    expect(r.code, r.stdout).toBe(0);
    for (const n of json<RestoreReport>(r.stdout).nodes) {
      const st = n.components[0]!.stage!;
      expect(st.bytes).toBeGreaterThan(24 * 1024 * 1024);
      // without the kept copy two members would fetch all of it
      expect(st.bytesDownloaded, n.node).toBeLessThan(st.bytes / 2);
      expect(st.bytesDownloaded + (st.bytesReusedLocally ?? 0) + (st.filesReused === 1 ? st.bytes : 0), n.node).toBe(st.bytes);
    }
    await etcd.waitHealthy();
    expect(await etcd.readPrefix('bulk/')).toEqual(bulk);
  });

  it('restores onto members with other names and ports (replaced hosts), and the new cluster is healthy', async () => {
    // the old members are gone; new ones, empty, under other names and ports, on the same nodes
    await etcd.stop();
    const fresh = await new EtcdTestCluster(join(cluster.opts.root, 'replacement'), 3, undefined, ['n1', 'n2', 'n3']).start();
    try {
      for (const [i, a] of cluster.agents.entries()) {
        const cfg = parse(await readFile(a.configFile, 'utf8')) as { components: Record<string, unknown>[] };
        cfg.components[0] = { name: 'etcd', plugin: 'etcd', ...fresh.component(i).settings };
        await writeFile(a.configFile, stringify(cfg));
        await cluster.killAgent(a.node, 'SIGTERM');
        await cluster.startAgent(a.node);
      }
      expect((await fresh.readPrefix('k/')).size).toBe(0);
      const r = await cli(['restore', backupId, '--json']);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      await fresh.waitHealthy();
      expect(await fresh.readPrefix('k/')).toEqual(state);
      // the restored members know each other under their new names
      const members = await new Promise<string>((res, rej) =>
        execFile('etcdctl', [`--endpoints=${fresh.endpoints}`, 'member', 'list'], { env: { ...process.env, ETCDCTL_API: '3' } }, (e, out) => (e ? rej(e) : res(out))),
      );
      expect(members).toMatch(/n1/);
      expect(members).toMatch(/n2/);
      expect(members).toMatch(/n3/);
    } finally {
      await fresh.stop();
    }
  });
});
