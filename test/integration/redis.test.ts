/**
 * A real 6-node Redis Cluster (3 masters, 3 replicas), one agent per node: consistent
 * cuts under a running writer, freeze leases, coverage, partial backups, round trips.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster } from 'ioredis';
import { CLI_BIN, LocalCluster } from '../../demo/local-cluster.js';
import { RedisTestCluster, keySlot } from '../../demo/redis-cluster.js';
import type { BackupReport, RestoreReport } from '../../lib/report.js';
import { json, runCli, tempDir, stopCluster } from '../helpers/cluster.js';

const FREEZE_TTL_MS = 2000;

/** A writer that sets seq:0, seq:1, … one after another, each acknowledged before the next. */
function startWriter(port: number): { stop: () => Promise<number> } {
  const client = new Cluster([{ host: '127.0.0.1', port }], { enableOfflineQueue: true });
  client.on('error', () => undefined);
  let running = true;
  let acked = -1;
  const loop = (async () => {
    for (let n = 0; running; n++) {
      await client.set(`seq:${n}`, String(n));
      acked = n;
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      client.disconnect();
      return acked;
    },
  };
}

/** true if a SET on the port is not answered within `ms` (writes are paused) */
async function writeBlocked(redis: RedisTestCluster, port: number, ms = 300): Promise<boolean> {
  const r = redis.client(port);
  const ranges = (await redis.masters()).find((m) => m.port === port)!.ranges;
  let key = '';
  for (let i = 0; !key; i++) {
    const slot = keySlot(`probe:${i}`);
    if (ranges.some(([a, b]) => slot >= a && slot <= b)) key = `probe:${i}`;
  }
  try {
    await r.connect();
    const done = r.set(key, String(Date.now())).then(() => false);
    return await Promise.race([done, sleep(ms).then(() => true)]);
  } finally {
    r.disconnect();
  }
}

async function manifests(cluster: LocalCluster, suffix: string): Promise<string[]> {
  const { readdir } = await import('node:fs/promises');
  const ids = await readdir(join(cluster.repoDir, 'backups')).catch(() => [] as string[]);
  return ids.filter((id) => id.endsWith(suffix) && existsSync(join(cluster.repoDir, 'backups', id, 'manifest.json')));
}

describe('redis cluster', () => {
  let redis: RedisTestCluster;
  let cluster: LocalCluster;
  const cli = (args: string[], env?: NodeJS.ProcessEnv) => runCli(args, { config: cluster.configFile, env });

  beforeAll(async () => {
    const root = await tempDir();
    redis = await new RedisTestCluster(root).start();
    cluster = await new LocalCluster({
      root,
      nodes: 6,
      components: (_node, i) => [redis.component(i)],
      clusterSettings: { freeze: { ttlMs: FREEZE_TTL_MS } },
    }).start();
  });
  afterAll(async () => {
    await redis?.stop();
    await stopCluster(cluster);
  });

  /** the cluster emptied, backup `id` restored, and every key of `data` (and no other) read back */
  async function restoredExactly(id: string, data: Map<string, string>): Promise<void> {
    await redis.flushAll();
    expect(await redis.dbsize()).toBe(0);
    const r = await cli(['restore', id, '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(json<RestoreReport>(r.stdout).status).toBe('restored');
    await redis.waitOk();
    const back = await redis.getMany([...data.keys()]);
    let wrong = 0;
    for (const [k, v] of data) if (back.get(k) !== v) wrong++;
    expect(wrong).toBe(0);
    expect(await redis.dbsize()).toBe(data.size);
  }

  it('round trip: 100k keys backed up, cluster wiped, restored, every key read back', async () => {
    const data = new Map<string, string>();
    for (let i = 0; i < 100_000; i++) data.set(`key:${i}`, `value-${i}-${'x'.repeat(i % 50)}`);
    await redis.setMany(data);
    const b = await cli(['backup', 'create', '--name', 'full', '--json']);
    expect(b.code, b.stdout + b.stderr).toBe(0);
    const report = json<BackupReport>(b.stdout);
    expect(report.status).toBe('complete');
    expect(report.shards).toHaveLength(3);
    expect(report.shards.every((s) => s.covered && s.coveredBy.length === 1)).toBe(true);
    // default coverage prefers replicas; the masters were frozen too but not snapshotted
    for (const s of report.shards) {
      const by = report.nodes.flatMap((n) => n.components).find((c) => `${c.node}/${c.component}` === s.coveredBy[0])!;
      expect(by.role).toBe('replica');
    }
    expect(report.pause?.components).toBe(6);
    expect(report.pause?.windowMs).toBeGreaterThan(0);

    await restoredExactly(report.backupId, data);
  });

  it('1% of the values rewritten: the next backup stores a fraction of the data again (RDBs cut by their content), and restores the new values', async () => {
    await redis.flushAll();
    const data = new Map<string, string>();
    for (let i = 0; i < 60_000; i++) data.set(`cut:${i}`, randomBytes(128).toString('hex'));
    await redis.setMany(data);
    const first = await cli(['backup', 'create', '--name', 'cut-first', '--json']);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    // every hundredth value rewritten, the same length: spread evenly through each RDB, whose keys are in hash order
    const changed = new Map<string, string>();
    for (let i = 0; i < 60_000; i += 100) changed.set(`cut:${i}`, randomBytes(128).toString('hex'));
    await redis.setMany(changed);
    for (const [k, v] of changed) data.set(k, v);
    const second = await cli(['backup', 'create', '--name', 'cut-second', '--json']);
    expect(second.code, second.stdout + second.stderr).toBe(0);
    const full = json<BackupReport>(first.stdout).totals.bytesNew;
    const report = json<BackupReport>(second.stdout);
    // cut at fixed 32 KiB, each RDB was ~90% new (one value of another compressed length moves every byte after it)
    expect(report.totals.bytesNew).toBeLessThan(full * 0.5);
    expect(report.totals.bytesNew).toBeGreaterThan(0);
    // every block of it read back and checked against its hash
    const v = await cli(['backup', 'verify', report.backupId, '--read-data']);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    await restoredExactly(report.backupId, data);
  });

  it('point-in-time consistency across shards: a writer runs during the backup; the restored sequence is gap-free', async () => {
    await redis.flushAll();
    const writer = startWriter(redis.nodes[0]!.port);
    await sleep(500);
    const b = await cli(['backup', 'create', '--name', 'pit', '--json']);
    await sleep(300);
    const lastAcked = await writer.stop();
    expect(b.code, b.stdout + b.stderr).toBe(0);
    const report = json<BackupReport>(b.stdout);
    await redis.flushAll();
    const r = await cli(['restore', report.backupId, '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    await redis.waitOk();
    const keys = Array.from({ length: lastAcked + 1 }, (_, i) => `seq:${i}`);
    const got = await redis.getMany(keys);
    const present = keys.map((k) => got.get(k) !== null);
    const max = present.lastIndexOf(true);
    expect(max).toBeGreaterThan(0);
    // every number below the highest restored one is there: a consistent cut over 3 shards
    expect(present.slice(0, max + 1).every(Boolean)).toBe(true);
    // and the writer went on after the cut: writes were paused only briefly
    expect(lastAcked).toBeGreaterThan(max);
  });

  it('the coordinator SIGKILLed while the cluster is frozen: writes succeed again within the lease TTL + 1 s; no manifest', async () => {
    const master = (await redis.masters())[0]!.port;
    const child = spawn(process.execPath, [CLI_BIN, '--config', cluster.configFile, 'backup', 'create', '--name', 'killed'], {
      env: { ...process.env, LOCKSTEP_FAILPOINTS: 'freeze.hold=60000' },
      stdio: 'ignore',
    });
    const exited = new Promise((res) => child.once('exit', res));
    try {
      let frozen = false;
      for (const until = Date.now() + 20_000; !frozen && Date.now() < until; ) frozen = await writeBlocked(redis, master, 200);
      expect(frozen).toBe(true);
      // while the coordinator lives it renews the lease: still frozen after more than one TTL
      await sleep(FREEZE_TTL_MS + 500);
      expect(await writeBlocked(redis, master, 300)).toBe(true);
    } finally {
      child.kill('SIGKILL');
    }
    await exited;
    const killedAt = Date.now();
    while (await writeBlocked(redis, master, 100)) {
      if (Date.now() - killedAt > 10_000) break;
    }
    const resumedAfterMs = Date.now() - killedAt;
    expect(resumedAfterMs).toBeLessThanOrEqual(FREEZE_TTL_MS + 1000);
    for (const m of await redis.masters()) expect(await writeBlocked(redis, m.port, 500)).toBe(false);
    expect(await manifests(cluster, '-killed')).toEqual([]);
  });

  it('freeze fails on one node: every other node is thawed at once, the report names the node, no manifest', async () => {
    const bad = redis.nodes[1]!.port; // node2
    await redis.withClient(bad, (r) => r.call('ACL', 'SETUSER', 'default', '-client|pause'));
    try {
      const b = await cli(['backup', 'create', '--name', 'nofreeze', '--json']);
      expect(b.code).toBe(1);
      const report = json<BackupReport>(b.stdout);
      expect(report.status).toBe('failed');
      expect(report.error?.code).toBe('LOCKSTEP_E_FREEZE_FAILED');
      expect(report.error?.message).toContain('node2');
      const c2 = report.nodes.find((n) => n.node === 'node2')!.components[0]!;
      expect(c2.status).toBe('failed');
      expect(c2.reason).toMatch(/freeze failed: .*NOPERM/i);
      // nobody is left frozen: every master takes a write at once
      for (const m of await redis.masters()) expect(await writeBlocked(redis, m.port, 500)).toBe(false);
      expect(await manifests(cluster, '-nofreeze')).toEqual([]);
      expect(report.steps.map((x) => x.name)).not.toContain('snapshot');
    } finally {
      await redis.withClient(bad, (r) => r.call('ACL', 'SETUSER', 'default', '+client|pause'));
    }
  });

  it('one replica down, default coverage: complete, and the report says which node was skipped and why', async () => {
    const masters = new Set((await redis.masters()).map((m) => m.port));
    const replica = redis.nodes.find((n) => !masters.has(n.port))!;
    const node = `node${redis.nodes.indexOf(replica) + 1}`;
    await redis.kill(replica.port);
    try {
      const b = await cli(['backup', 'create', '--name', 'replicadown', '--json']);
      expect(b.code, b.stdout).toBe(0);
      const report = json<BackupReport>(b.stdout);
      expect(report.status).toBe('complete');
      const c = report.nodes.find((n) => n.node === node)!.components[0]!;
      expect(c.status).toBe('skipped');
      expect(c.reason).toMatch(/not healthy: .*ECONNREFUSED/);
      expect(report.shards.every((s) => s.covered)).toBe(true);
    } finally {
      await redis.startNode(replica.port);
      await redis.waitOk();
    }
  });

  it('a whole shard down: partial with its exit code, the shard named; restore refused without --allow-partial', async () => {
    const master = (await redis.masters())[0]!;
    const replicaPort = await redis.withClient(master.port, async (r) => Number(/slave0:ip=[^,]+,port=(\d+)/.exec(await r.info('replication'))![1]));
    await redis.kill(replicaPort);
    await redis.kill(master.port);
    try {
      const b = await cli(['backup', 'create', '--name', 'shardown', '--json']);
      expect(b.code, b.stdout).toBe(3);
      const report = json<BackupReport>(b.stdout);
      expect(report.status).toBe('partial');
      const missing = report.shards.filter((s) => !s.covered);
      expect(missing).toHaveLength(1);
      expect(missing[0]!.shard).toContain(`${master.ranges[0]![0]}-${master.ranges[0]![1]}`);
      expect(report.manifest).toBeDefined();
      const human = await cli(['backup', 'show', report.backupId]);
      expect(human.stdout).toContain('NOT COVERED');

      const r = await cli(['restore', report.backupId]);
      expect(r.code).toBe(4);
      expect(r.stdout).toContain('LOCKSTEP_E_BACKUP_PARTIAL');
      expect(r.stdout).toContain(missing[0]!.shard);
    } finally {
      await redis.startNode(master.port);
      await redis.startNode(replicaPort);
      await redis.waitOk();
    }
  });
});
