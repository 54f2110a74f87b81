/**
 * Two replicas of one shard on real agents: the default coverage backs up one of them;
 * when that one is unhealthy the other is backed up for the first time, and it stores
 * nothing its peer already stored (its upload names the peer); the backup verifies.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LocalCluster } from '../../demo/local-cluster.js';
import type { BackupReport } from '../../lib/report.js';
import { json, runCli, startCluster, stopCluster, tempDir } from '../helpers/cluster.js';

describe('a shard member backed up for the first time', () => {
  let cluster: LocalCluster;
  let healthy: (node: string) => string;
  /** a member is healthy while its file is here */
  let flags: string;

  beforeAll(async () => {
    flags = await tempDir('lockstep-health-');
    healthy = (node) => join(flags, `healthy-${node}`);
    cluster = await startCluster({
      nodes: 2,
      components: (node, i) => [
        {
          name: 'data',
          // node1 is the replica the default coverage prefers, while it is healthy
          settings: { shard: 'rs', role: i === 0 ? 'replica' : 'primary', health: ['test', '-e', healthy(node)] },
        },
      ],
    });
    // the same data on both (a replica's copy)
    const big = randomBytes(3 * 1024 * 1024);
    const small = Array.from({ length: 30 }, (_, i) => randomBytes(2000 + i));
    for (const a of cluster.agents) {
      await writeFile(healthy(a.node), '');
      await mkdir(join(a.data.data!, 'sst'), { recursive: true });
      await writeFile(join(a.data.data!, 'table.db'), big);
      for (const [i, b] of small.entries()) await writeFile(join(a.data.data!, 'sst', `${i}.sst`), b);
    }
  });
  afterAll(async () => {
    await stopCluster(cluster);
    await rm(flags, { recursive: true, force: true });
  });

  async function backup(): Promise<BackupReport> {
    const r = await runCli(['backup', 'create', '--json'], { config: cluster.configFile });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    return json<BackupReport>(r.stdout);
  }
  const upload = (report: BackupReport, node: string) => report.nodes.find((n) => n.node === node)!.components[0]!;

  it("stores nothing the member backed up before already stored, and names it", async () => {
    const first = await backup();
    expect(first.status).toBe('complete');
    expect(upload(first, 'node1').upload).toBeDefined();
    expect(upload(first, 'node2').status).toBe('skipped');
    expect(first.totals.bytesNew).toBeGreaterThan(3 * 1024 * 1024);

    // node1 unhealthy: node2 covers the shard, for the first time
    await rm(healthy('node1'));
    const second = await backup();
    expect(second.status).toBe('complete');
    expect(upload(second, 'node1').status).toBe('skipped');
    const up = upload(second, 'node2').upload!;
    expect(up.previousNode).toBe('node1');
    expect(up.filesUnchanged).toBe(0);
    expect(up.bytesNew).toBe(0);
    expect(second.totals.bytesNew).toBe(0);

    const v = await runCli(['backup', 'verify', second.backupId, '--read-data', '--json'], { config: cluster.configFile });
    expect(v.code, v.stdout + v.stderr).toBe(0);
  });
});
