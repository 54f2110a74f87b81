/**
 * A restored replica whose master replicates through a file (`repl-diskless-sync no`) waits
 * for its master to save the whole dataset before it receives a byte of it: its start waits
 * as long as the master's save goes on, past `healthTimeoutMs`, and is healthy only once the
 * sync is done. Real redis-servers, the master's save slowed down per key
 * (`rdb-key-save-delay`, a setting Redis has for its own tests).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile, writeFile, rm, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { withRedis } from '../../plugins/engines/redis/client.js';
import { redisNode } from '../../plugins/engines/redis/node.js';
import { createLogger } from '../../lib/log.js';
import { freePort, tempDir } from '../helpers/cluster.js';

const KEYS = 60_000;

describe('redis start of a replica whose master saves slowly for the full sync', () => {
  let root: string;
  let masterPort: number;
  let replicaPort: number;
  const dirOf = (who: string) => join(root, who);
  const conf = (who: string, port: number, extra: string[]) =>
    [`port ${port}`, 'bind 127.0.0.1', `dir ${dirOf(who)}`, 'save ""', 'appendonly no', 'daemonize yes', `pidfile ${join(dirOf(who), 'redis.pid')}`, `logfile ${join(dirOf(who), 'redis.log')}`, ...extra, ''].join('\n');
  const ctx = () => ({ node: 'n1', log: createLogger({ level: 'silent', name: 'test' }), signal: new AbortController().signal });
  const component = (who: string, port: number, healthTimeoutMs: number) => ({
    name: 'cache',
    plugin: 'redis',
    tier: 'storage',
    host: '127.0.0.1',
    port,
    dir: dirOf(who),
    configFile: join(dirOf(who), 'redis.conf'),
    start: ['redis-server', join(dirOf(who), 'redis.conf')],
    startTimeoutMs: 10_000,
    healthTimeoutMs,
    saveTimeoutMs: 60_000,
    catchUpTimeoutMs: 10_000,
  });

  beforeAll(async () => {
    root = await tempDir();
    masterPort = await freePort();
    replicaPort = await freePort();
    for (const who of ['master', 'replica']) await mkdir(dirOf(who));
    await writeFile(join(dirOf('master'), 'redis.conf'), conf('master', masterPort, ['repl-diskless-sync no']));
    await writeFile(join(dirOf('replica'), 'redis.conf'), conf('replica', replicaPort, [`replicaof 127.0.0.1 ${masterPort}`]));
    await redisNode.start(component('master', masterPort, 10_000) as never, ctx());
    await withRedis({ host: '127.0.0.1', port: masterPort }, 'n1', async (r) => {
      for (let i = 0; i < KEYS; i += 5000) {
        const p = r.pipeline();
        for (let k = i; k < i + 5000; k++) p.set(`key:${k}`, `value ${k}`);
        await p.exec();
      }
      // 150 µs a key (more with the timer's slack): a save of 9 s or more, against a health timeout of 5 s. The
      // master tells how far its save got every 1024 keys a second apart at least: about once a second, a few
      // seconds apart on a machine so busy that each key's pause takes ten times as long
      await r.call('CONFIG', 'SET', 'rdb-key-save-delay', '150');
    });
  });
  afterAll(async () => {
    for (const port of [replicaPort, masterPort]) await withRedis({ host: '127.0.0.1', port }, 'n1', (r) => r.call('SHUTDOWN', 'NOSAVE')).catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  });

  it("waits past healthTimeoutMs while its master saves the dataset, and is healthy only once it has every key", async () => {
    const started = await redisNode.start(component('replica', replicaPort, 5000) as never, ctx());
    const masterLog = await readFile(join(dirOf('master'), 'redis.log'), 'utf8');
    // the sync went through a file the master saved, which took longer than the health timeout
    expect(masterLog).toMatch(/Starting BGSAVE for SYNC with target: disk/);
    expect(masterLog).toMatch(/Synchronization with replica 127\.0\.0\.1:\d+ succeeded/);
    expect(started.durationMs).toBeGreaterThan(5000);
    const keys = await withRedis({ host: '127.0.0.1', port: replicaPort }, 'n1', (r) => r.dbsize());
    expect(keys).toBe(KEYS);
  });
});
