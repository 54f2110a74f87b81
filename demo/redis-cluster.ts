/**
 * A real Redis Cluster on loopback for tests and benchmarks: N redis-server processes
 * (half masters, half replicas), created with redis-cli --cluster create, each with its
 * own dir and config file, plus helpers to write and read keys by slot.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis, type RedisOptions } from 'ioredis';
import type { ComponentSpec } from './local-cluster.js';
import { onFreePorts, PortTaken } from './ports.js';
import { clientTls, engineTestTls, type EngineTestTls } from './engine-tls.js';
import { readClientTls } from '../lib/client-tls.js';

function run(file: string, args: string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((res, rej) =>
    execFile(file, args, { timeout: timeoutMs }, (err, stdout, stderr) => (err ? rej(new Error(`${file} ${args.join(' ')}: ${err.message}\n${stderr}`)) : res(stdout))),
  );
}

/** CRC16/XMODEM of the key's hash tag part, mod 16384: the key's cluster slot. */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  let k = key;
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) k = key.slice(open + 1, close);
  }
  let crc = 0;
  for (const byte of Buffer.from(k)) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

export interface RedisNodeInfo {
  port: number;
  dir: string;
  conf: string;
}

const randomBase = () => 12000 + Math.floor(Math.random() * 800) * 10;

export class RedisTestCluster {
  readonly nodes: RedisNodeInfo[] = [];
  /** set by `withTls` */
  tls?: EngineTestTls;
  /** set by `withAof`: every node keeps an append-only file */
  aof = false;
  /** node i listens on basePort + i + 1 (its cluster bus 10000 above); picked again by `start` when one is taken */
  basePort!: number;

  constructor(
    readonly root: string,
    readonly count = 6,
    basePort = randomBase(),
  ) {
    this.place(basePort);
  }

  private place(basePort: number): void {
    this.basePort = basePort;
    this.nodes.length = 0;
    for (let i = 0; i < this.count; i++) {
      const port = basePort + i + 1;
      const dir = join(this.root, 'nodes', `node${i + 1}`, 'redis');
      this.nodes.push({ port, dir, conf: join(this.root, 'nodes', `node${i + 1}`, `redis-${port}.conf`) });
    }
  }

  /** every node with `appendonly yes` (it then loads its AOF at a start, not its RDB). Before `start`. */
  withAof(): this {
    this.aof = true;
    return this;
  }

  /**
   * TLS only, with client certificates (`tls-auth-clients`, redis' default), from a CA of
   * this cluster's own; replicas and the cluster bus use the client certificate. Before `start`.
   */
  async withTls(): Promise<this> {
    this.tls = await engineTestTls(join(this.root, 'redis-tls'), 'redis');
    return this;
  }

  /** component spec for LocalCluster node i */
  component(i: number): ComponentSpec {
    const n = this.nodes[i]!;
    const t = this.tls;
    return {
      name: 'redis',
      plugin: 'redis',
      settings: { port: n.port, dir: n.dir, configFile: n.conf, start: ['redis-server', n.conf], healthTimeoutMs: 30_000, ...(t ? { tls: clientTls(t) } : {}) },
    };
  }

  /** redis-server's TLS lines */
  private tlsConf(port: number): string[] {
    const t = this.tls;
    if (!t) return [`port ${port}`];
    return [
      'port 0',
      `tls-port ${port}`,
      `tls-cert-file ${t.serverCert}`,
      `tls-key-file ${t.serverKey}`,
      `tls-client-cert-file ${t.clientCert}`,
      `tls-client-key-file ${t.clientKey}`,
      `tls-ca-cert-file ${t.ca}`,
      'tls-cluster yes',
      'tls-replication yes',
    ];
  }

  /** redis-cli's TLS flags */
  private get cliTls(): string[] {
    const t = this.tls;
    return t ? ['--tls', '--cacert', t.ca, '--cert', t.clientCert, '--key', t.clientKey] : [];
  }

  /**
   * Every node started and the cluster created. Ports are picked at random: when one is
   * taken (another test's cluster picked the same, a daemon of the machine's), the nodes
   * started so far are stopped and other ports tried, up to five times.
   */
  async start(): Promise<this> {
    await onFreePorts({
      start: () => this.startNodes(),
      stop: () => this.stop(),
      taken: async (err) => err instanceof PortTaken,
      // (a node's cluster config names its port: the next attempt starts from nothing)
      forget: async () => {
        for (const n of this.nodes) await rm(n.dir, { recursive: true, force: true });
      },
      place: (base) => this.place(base),
      randomBase,
    });
    const addrs = this.nodes.map((n) => `127.0.0.1:${n.port}`);
    await run('redis-cli', [...this.cliTls, '--cluster', 'create', ...addrs, '--cluster-replicas', '1', '--cluster-yes']);
    await this.waitOk();
    return this;
  }

  private async startNodes(): Promise<void> {
    for (const n of this.nodes) {
      await mkdir(n.dir, { recursive: true });
      await writeFile(
        n.conf,
        [
          ...this.tlsConf(n.port),
          'bind 127.0.0.1',
          'protected-mode no',
          'daemonize yes',
          `pidfile ${join(n.dir, 'redis.pid')}`,
          `logfile ${join(n.dir, '..', `redis-${n.port}.log`)}`,
          `dir ${n.dir}`,
          'dbfilename dump.rdb',
          'cluster-enabled yes',
          'cluster-config-file nodes.conf',
          'cluster-node-timeout 3000',
          `appendonly ${this.aof ? 'yes' : 'no'}`,
          'save ""',
          'repl-diskless-sync yes',
          'repl-diskless-sync-delay 0',
          '',
        ].join('\n'),
      );
      await this.startNode(n.port);
    }
  }

  node(port: number): RedisNodeInfo {
    const n = this.nodes.find((x) => x.port === port);
    if (!n) throw new Error(`no redis on port ${port}`);
    return n;
  }

  async startNode(port: number): Promise<void> {
    await run('redis-server', [this.node(port).conf]);
    const log = join(this.node(port).dir, '..', `redis-${port}.log`);
    for (let i = 0; i < 100; i++) {
      if (await this.ping(port)) return;
      // a daemon whose port is taken has given up already
      if ((await readFile(log, 'utf8').catch(() => '')).includes('Address already in use')) throw new PortTaken(`redis ${port}: port taken`);
      await sleep(50);
    }
    throw new Error(`redis ${port} did not start (its log: ${log})`);
  }

  async ping(port: number): Promise<boolean> {
    // (something else on the port may take the connection and never answer)
    const r = this.client(port, { commandTimeout: 2000 });
    try {
      await r.connect();
      return (await r.ping()) === 'PONG';
    } catch {
      return false;
    } finally {
      r.disconnect();
    }
  }

  /** SHUTDOWN NOSAVE (a dead node) */
  async kill(port: number): Promise<void> {
    const pid = Number(await readFile(join(this.node(port).dir, 'redis.pid'), 'utf8').catch(() => '0'));
    if (pid > 0) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (let i = 0; i < 100 && (await this.ping(port)); i++) await sleep(50);
  }

  client(port: number, more: RedisOptions = {}): Redis {
    const t = this.tls;
    const tls = t ? { tls: readClientTls(clientTls(t), `redis 127.0.0.1:${port}`, 'test') } : {};
    const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 2000, ...tls, ...more });
    r.on('error', () => undefined);
    return r;
  }

  async withClient<T>(port: number, fn: (r: Redis) => Promise<T>): Promise<T> {
    const r = this.client(port);
    try {
      await r.connect();
      return await fn(r);
    } finally {
      r.disconnect();
    }
  }

  /** masters now, with their slot ranges */
  async masters(): Promise<{ port: number; ranges: [number, number][] }[]> {
    for (const n of this.nodes) {
      try {
        const shards = await this.withClient(n.port, (r) => r.call('CLUSTER', 'SLOTS') as Promise<[number, number, [string, number]][]>);
        const byPort = new Map<number, [number, number][]>();
        for (const [a, b, master] of shards) byPort.set(Number(master[1]), [...(byPort.get(Number(master[1])) ?? []), [a, b]]);
        return [...byPort].map(([port, ranges]) => ({ port, ranges }));
      } catch {
        // try the next node
      }
    }
    throw new Error('no redis node answers CLUSTER SLOTS');
  }

  async portForSlot(slot: number): Promise<number> {
    const m = (await this.masters()).find((x) => x.ranges.some(([a, b]) => slot >= a && slot <= b));
    if (!m) throw new Error(`no master for slot ${slot}`);
    return m.port;
  }

  /** keys grouped by the master that holds them, for pipelines */
  async groupBySlot(keys: string[]): Promise<Map<number, string[]>> {
    const masters = await this.masters();
    const out = new Map<number, string[]>();
    for (const k of keys) {
      const slot = keySlot(k);
      const port = masters.find((m) => m.ranges.some(([a, b]) => slot >= a && slot <= b))!.port;
      const list = out.get(port);
      if (list) list.push(k);
      else out.set(port, [k]);
    }
    return out;
  }

  async setMany(entries: Map<string, string>): Promise<void> {
    for (const [port, keys] of await this.groupBySlot([...entries.keys()])) {
      await this.withClient(port, async (r) => {
        for (let i = 0; i < keys.length; i += 1000) {
          const p = r.pipeline();
          for (const k of keys.slice(i, i + 1000)) p.set(k, entries.get(k)!);
          await p.exec();
        }
      });
    }
  }

  async getMany(keys: string[]): Promise<Map<string, string | null>> {
    const out = new Map<string, string | null>();
    for (const [port, ks] of await this.groupBySlot(keys)) {
      await this.withClient(port, async (r) => {
        for (let i = 0; i < ks.length; i += 1000) {
          const p = r.pipeline();
          const chunk = ks.slice(i, i + 1000);
          for (const k of chunk) p.get(k);
          const res = (await p.exec()) ?? [];
          chunk.forEach((k, j) => out.set(k, (res[j]?.[1] as string | null) ?? null));
        }
      });
    }
    return out;
  }

  async flushAll(): Promise<void> {
    for (const m of await this.masters()) await this.withClient(m.port, (r) => r.flushall());
  }

  async dbsize(): Promise<number> {
    let n = 0;
    for (const m of await this.masters()) n += await this.withClient(m.port, (r) => r.dbsize());
    return n;
  }

  async waitOk(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      let ok = true;
      for (const n of this.nodes) {
        const state = await this.withClient(n.port, async (r) => {
          const info = (await r.call('CLUSTER', 'INFO')) as string;
          const repl = await r.info('replication');
          const linked = !repl.includes('role:slave') || repl.includes('master_link_status:up');
          return info.includes('cluster_state:ok') && linked;
        }).catch(() => false);
        ok &&= state;
      }
      if (ok) return;
      await sleep(200);
    }
    throw new Error('redis cluster not ok in time');
  }

  async stop(): Promise<void> {
    for (const n of this.nodes) await this.kill(n.port);
  }
}
