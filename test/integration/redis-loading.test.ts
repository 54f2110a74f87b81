/**
 * A Redis that takes longer to load its dataset than `healthTimeoutMs` (a big RDB after a
 * restore): its start waits while the load goes on, and is healthy only once every key is
 * there, not as soon as it answers. A real redis-server, its load slowed down per key
 * (`key-load-delay`, a setting Redis has for its own tests).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { withRedis } from '../../plugins/engines/redis/client.js';
import { redisNode } from '../../plugins/engines/redis/node.js';
import { createLogger } from '../../lib/log.js';
import { freePort, tempDir } from '../helpers/cluster.js';

const KEYS = 50_000;

describe('redis start after a restore: a dataset that loads slowly', () => {
  let dir: string;
  let port: number;
  let conf: string;
  const settings = () => ({ host: '127.0.0.1', port });

  beforeAll(async () => {
    dir = await tempDir();
    port = await freePort();
    conf = join(dir, 'redis.conf');
    // a pause of 20 µs (~80 with the timer's slack) a key: ~4 s to load 50k keys, against a
    // health timeout of 1 s; a loading Redis answers between 64 KiB of its RDB, not 2 MiB
    const lines = [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, 'save ""', 'appendonly no', 'daemonize yes', `pidfile ${join(dir, 'redis.pid')}`, `logfile ${join(dir, 'redis.log')}`];
    await writeFile(conf, [...lines, 'key-load-delay 20', 'loading-process-events-interval-bytes 65536', ''].join('\n'));
    // the dataset: written by a server started without the delay, saved, shut down
    await writeFile(join(dir, 'fill.conf'), lines.join('\n') + '\n');
    await redisNode.start({ ...base(), start: ['redis-server', join(dir, 'fill.conf')] } as never, ctx());
    await withRedis(settings(), 'n1', async (r) => {
      for (let i = 0; i < KEYS; i += 5000) {
        const p = r.pipeline();
        for (let k = i; k < i + 5000; k++) p.set(`key:${k}`, `value ${k}`);
        await p.exec();
      }
      await r.call('SAVE');
      await r.call('SHUTDOWN', 'NOSAVE').catch(() => undefined);
    });
  });
  afterAll(async () => {
    await withRedis(settings(), 'n1', (r) => r.call('SHUTDOWN', 'NOSAVE')).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  const base = () => ({ name: 'cache', plugin: 'redis', tier: 'storage', ...settings(), dir, configFile: conf, start: ['redis-server', conf], startTimeoutMs: 10_000, healthTimeoutMs: 1000, saveTimeoutMs: 60_000, catchUpTimeoutMs: 10_000 });
  const ctx = () => ({ node: 'n1', log: createLogger({ level: 'silent', name: 'test' }), signal: new AbortController().signal });

  it('waits past healthTimeoutMs while the dataset loads, and is healthy only with every key loaded', async () => {
    const started = await redisNode.start(base() as never, ctx());
    // done loading when the start returned (a Redis not in cluster mode answers INFO and CONFIG while it loads)
    expect(await readFile(join(dir, 'redis.log'), 'utf8')).toContain(`Done loading RDB, keys loaded: ${KEYS}`);
    expect(started.durationMs).toBeGreaterThan(1500);
    const keys = await withRedis(settings(), 'n1', (r) => r.dbsize());
    expect(keys).toBe(KEYS);
  });
});
