/** Talking to one Redis server through ioredis: short deadlines, INFO and CLUSTER NODES parsed. */
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import { LockstepError } from '../../../lib/errors.js';
import { readClientTls } from '../../../lib/client-tls.js';
import type { RedisSettings } from './settings.js';

export type RedisConn = Redis;

/** ioredis is loaded on first use: agents and coordinators without a redis component never pay for it (~20 MiB) */
let redisClass: typeof Redis | undefined;
function RedisClient(): typeof Redis {
  redisClass ??= (createRequire(import.meta.url)('ioredis') as typeof import('ioredis')).Redis;
  return redisClass;
}

export function connect(s: Pick<RedisSettings, 'host' | 'port' | 'passwordEnv' | 'tls'>, node: string, timeoutMs = 3000): Redis {
  const password = s.passwordEnv ? process.env[s.passwordEnv] : undefined;
  if (s.passwordEnv && password === undefined) {
    throw new LockstepError('LOCKSTEP_E_CONFIG_INVALID', `environment variable ${s.passwordEnv} (passwordEnv of redis ${s.host}:${s.port}) is not set for the agent`, { node });
  }
  // over TLS the server's certificate must name the host as given (an address: an IP SAN)
  const tls = s.tls ? readClientTls(s.tls, `redis ${s.host}:${s.port}`, node) : undefined;
  return new (RedisClient())({
    host: s.host,
    port: s.port,
    password,
    ...(tls ? { tls } : {}),
    lazyConnect: true,
    // our own checks report LOADING and friends; ioredis' ready check would hide them
    enableReadyCheck: false,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: true,
    retryStrategy: () => null,
  });
}

/** Run `fn` on a fresh connection, closed afterwards whatever happens. */
export async function withRedis<T>(s: Pick<RedisSettings, 'host' | 'port' | 'passwordEnv' | 'tls'>, node: string, fn: (r: Redis) => Promise<T>, timeoutMs = 3000): Promise<T> {
  const r = connect(s, node, timeoutMs);
  // the socket's own error (ECONNREFUSED …) says more than ioredis' "Connection is closed."
  let socketError: unknown;
  r.on('error', (e: unknown) => (socketError ??= e));
  try {
    await r.connect();
    return await fn(r);
  } catch (err) {
    throw redisError(socketError ?? err, s, node);
  } finally {
    r.disconnect();
  }
}

export function redisError(err: unknown, s: Pick<RedisSettings, 'host' | 'port'>, node: string): LockstepError {
  if (err instanceof LockstepError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new LockstepError('LOCKSTEP_E_ENGINE', `redis ${s.host}:${s.port}: ${msg}`, {
    node,
    cause: err,
    hint: /ECONNREFUSED/.test(msg) ? 'is redis-server running on that port?' : undefined,
  });
}

export function parseInfo(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out.set(line.slice(0, i), line.slice(i + 1));
  }
  return out;
}

export async function info(r: Redis, section?: string): Promise<Map<string, string>> {
  return parseInfo(section ? await r.info(section) : await r.info());
}

export interface ClusterNode {
  id: string;
  address: string;
  flags: string[];
  masterId: string;
  slots: string[];
}

export function parseClusterNodes(text: string): ClusterNode[] {
  return text
    .split('\n')
    .filter((l) => l.trim().length > 0)
    .map((l) => {
      const f = l.trim().split(' ');
      return { id: f[0]!, address: f[1]!, flags: f[2]!.split(','), masterId: f[3]!, slots: f.slice(8).filter((x) => !x.startsWith('[')) };
    });
}

export async function configGet(r: Redis, key: string): Promise<string> {
  const v = (await r.call('CONFIG', 'GET', key)) as string[];
  return v[1] ?? '';
}
