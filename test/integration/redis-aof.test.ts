/**
 * A Redis Cluster whose servers keep an append-only file (`appendonly yes`). Such a server
 * loads its AOF at its start, not its RDB: a restore that put back the RDB alone would
 * start it empty. Backed up from its RDBs like any other, restored with each master's RDB
 * as the base of a new AOF; every key reads back as backed up, and again after a master
 * is killed and started from its own files.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LocalCluster } from '../../demo/local-cluster.js';
import { RedisTestCluster } from '../../demo/redis-cluster.js';
import { stopCluster, tempDir } from '../helpers/cluster.js';
import { backupChangeRestore } from '../helpers/redis.js';

describe('redis cluster with appendonly yes', () => {
  let redis: RedisTestCluster;
  let cluster: LocalCluster;

  beforeAll(async () => {
    const root = await tempDir();
    redis = await new RedisTestCluster(root).withAof().start();
    cluster = await new LocalCluster({ root, nodes: 6, components: (_n, i) => [redis.component(i)] }).start();
  });
  afterAll(async () => {
    await redis?.stop();
    await stopCluster(cluster);
  });

  it('backed up and restored: each master loads the restored RDB as its AOF, every key as backed up, after a restart too', async () => {
    const { state, restored } = await backupChangeRestore(redis, cluster, 3000);

    // each master was given its AOF, a base that is the restored RDB, and said so
    const masters = await redis.masters();
    expect(masters).toHaveLength(3);
    const actions = restored.nodes.flatMap((n) => n.components.flatMap((c) => c.actions ?? []));
    expect(actions.filter((a) => a.startsWith('appendonly: the restored RDB is the base of its AOF'))).toHaveLength(3);
    for (const m of masters) {
      const manifest = await readFile(join(redis.node(m.port).dir, 'appendonlydir', 'appendonly.aof.manifest'), 'utf8');
      expect(manifest).toMatch(/^file appendonly\.aof\.1\.base\.rdb seq 1 type b\n/);
    }

    // a write after the restore goes to the AOF: masters killed and started again from their own files have it, and the restored keys
    for (const m of masters) await redis.withClient(m.port, (c) => c.call('CONFIG', 'SET', 'appendfsync', 'always'));
    const after = new Map(Array.from({ length: 30 }, (_, i) => [`after:${i}`, `w${i}`] as const));
    await redis.setMany(after);
    for (const m of masters) {
      await redis.kill(m.port);
      await redis.startNode(m.port);
      const log = await readFile(join(redis.node(m.port).dir, '..', `redis-${m.port}.log`), 'utf8');
      expect(log).toContain('DB loaded from base file appendonly.aof.1.base.rdb');
    }
    await redis.waitOk();
    expect(await redis.getMany([...state.keys(), ...after.keys()])).toEqual(new Map([...state, ...after]));
  });
});
