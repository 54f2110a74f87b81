/** What the Redis benches share: a Redis Cluster (3 masters + 3 replicas) and six agents on loopback, for one measurement. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalCluster } from '../demo/local-cluster.js';
import { RedisTestCluster } from '../demo/redis-cluster.js';

/** `measure` with a fresh cluster and its agents (in a folder of their own, `root`); both stopped and the folder removed after it, whatever happened */
export async function withRedisAgents<T>(measure: (redis: RedisTestCluster, cluster: LocalCluster, root: string) => Promise<T>): Promise<T> {
  const root = await mkdtemp(join(tmpdir(), 'lockstep-bench-'));
  const redis = new RedisTestCluster(root);
  let cluster: LocalCluster | undefined;
  try {
    await redis.start();
    cluster = await new LocalCluster({ root, nodes: 6, components: (_n, i) => [redis.component(i)] }).start();
    return await measure(redis, cluster, root);
  } finally {
    await cluster?.stop();
    await redis.stop();
    await rm(root, { recursive: true, force: true });
  }
}
