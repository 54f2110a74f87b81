/**
 * A real 3-member etcd cluster on loopback for tests: each member run as a daemon by
 * test/fixtures/daemon.mjs (as an init system would), with start/stop argv for the agent.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ComponentSpec } from './local-cluster.js';
import { onFreePorts, PortTaken } from './ports.js';
import { resolveFromRoot } from './local-cluster.js';
import { clientTls, engineTestTls, type EngineTestTls } from './engine-tls.js';
import { etcdctlTls } from '../plugins/engines/etcd/node.js';

const DAEMON = resolveFromRoot('test', 'fixtures', 'daemon.mjs');

export interface EtcdMember {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  pidfile: string;
  log: string;
}

function run(argv: string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((res, rej) =>
    execFile(argv[0]!, argv.slice(1), { timeout: timeoutMs, env: { ...process.env, ETCDCTL_API: '3' }, maxBuffer: 64 << 20 }, (e, out, err) =>
      e ? rej(new Error(`${argv.join(' ')}: ${e.message}\n${err}`)) : res(out),
    ),
  );
}

const randomBase = () => 23000 + Math.floor(Math.random() * 400) * 10;

export class EtcdTestCluster {
  readonly members: EtcdMember[] = [];
  /** member i listens on basePort + 2i (clients) and the port above (peers); picked again by `start` when one is taken */
  basePort!: number;
  readonly token = `test-${process.pid}-${Date.now()}`;
  /** set by `withTls`: clients over https, with a client certificate */
  tls?: EngineTestTls;
  /** set by `enableAuth`: etcd's own authentication, as its root user */
  auth?: { user: string; password: string };

  constructor(
    readonly root: string,
    readonly count = 3,
    basePort = randomBase(),
    /** member names (e.g. to build a second cluster with other names) */
    private readonly names?: string[],
    /** extra etcd flags, e.g. --quota-backend-bytes for large data */
    readonly extraFlags: string[] = [],
  ) {
    this.place(basePort);
  }

  private place(basePort: number): void {
    this.basePort = basePort;
    this.members.length = 0;
    for (let i = 0; i < this.count; i++) {
      const name = this.names?.[i] ?? `m${i + 1}`;
      const dir = join(this.root, 'nodes', `node${i + 1}`);
      this.members.push({ name, clientPort: basePort + i * 2, peerPort: basePort + i * 2 + 1, dataDir: join(dir, 'etcd'), pidfile: join(dir, 'etcd.pid'), log: join(dir, 'etcd.log') });
    }
  }

  get initialCluster(): string {
    return this.members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
  }

  /**
   * Serve clients over TLS only, with client certificates (`--client-cert-auth`), from a CA
   * of this cluster's own; before `start`.
   */
  async withTls(): Promise<this> {
    this.tls = await engineTestTls(join(this.root, 'etcd-tls'), 'etcd');
    return this;
  }

  private get scheme(): string {
    return this.tls ? 'https' : 'http';
  }

  /** etcdctl's flags for this cluster's client TLS */
  get ctlTls(): string[] {
    return etcdctlTls(this.tls && clientTls(this.tls));
  }

  /** etcdctl on every member, with the cluster's TLS and, once enabled, its authentication */
  private get ctl(): string[] {
    return ['etcdctl', `--endpoints=${this.endpoints}`, ...this.ctlTls, ...(this.auth ? [`--user=${this.auth.user}:${this.auth.password}`] : [])];
  }

  /** whether keys are written through etcdctl: the JSON gateway (plain HTTP) takes neither a client certificate nor a login */
  private get byCtl(): boolean {
    return this.tls !== undefined || this.auth !== undefined;
  }

  /** once started: a root user with `password`, and etcd's authentication turned on (every client must then log in) */
  async enableAuth(password: string): Promise<this> {
    await run([...this.ctl, 'user', 'add', `root:${password}`]);
    await run([...this.ctl, 'user', 'grant-role', 'root', 'root']);
    await run([...this.ctl, 'auth', 'enable']);
    this.auth = { user: 'root', password };
    return this;
  }

  startArgv(m: EtcdMember): string[] {
    const client = `${this.scheme}://127.0.0.1:${m.clientPort}`;
    const t = this.tls;
    const peer = `http://127.0.0.1:${m.peerPort}`;
    return [
      process.execPath, DAEMON, 'start', m.pidfile, m.log, '--',
      'etcd', `--name=${m.name}`, `--data-dir=${m.dataDir}`,
      `--listen-client-urls=${client}`, `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`, `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=${this.initialCluster}`, `--initial-cluster-token=${this.token}`, '--initial-cluster-state=new',
      ...(t ? [`--cert-file=${t.serverCert}`, `--key-file=${t.serverKey}`, `--trusted-ca-file=${t.ca}`, '--client-cert-auth'] : []),
      ...this.extraFlags,
    ];
  }

  component(i: number): ComponentSpec {
    const m = this.members[i]!;
    return {
      name: 'etcd',
      plugin: 'etcd',
      settings: {
        member: m.name,
        endpoint: `${this.scheme}://127.0.0.1:${m.clientPort}`,
        ...(this.tls ? { tls: clientTls(this.tls) } : {}),
        // the password in the agent's environment (`agentEnv` of LocalCluster: ETCD_PASSWORD)
        ...(this.auth ? { auth: { user: this.auth.user, passwordEnv: 'ETCD_PASSWORD' } } : {}),
        peerUrl: `http://127.0.0.1:${m.peerPort}`,
        dataDir: m.dataDir,
        start: this.startArgv(m),
        stop: [process.execPath, DAEMON, 'stop', m.pidfile],
        healthTimeoutMs: 30_000,
      },
    };
  }

  get endpoints(): string {
    return this.members.map((m) => `${this.scheme}://127.0.0.1:${m.clientPort}`).join(',');
  }

  /**
   * Every member started and the cluster healthy. Ports are picked at random: when one is
   * taken (another test's cluster picked the same, a daemon of the machine's), the members
   * are stopped and other ports tried, up to five times.
   */
  async start(): Promise<this> {
    await onFreePorts({
      start: async () => {
        for (const m of this.members) {
          await mkdir(join(m.dataDir, '..'), { recursive: true });
          await run(this.startArgv(m));
        }
        await this.waitHealthy();
      },
      stop: () => this.stop(),
      taken: async (err) => err instanceof PortTaken || (await this.portTaken()),
      // (a member's data names its peers' ports: the next attempt starts from nothing, logs too)
      forget: async () => {
        for (const m of this.members) for (const p of [m.dataDir, m.log]) await rm(p, { recursive: true, force: true });
      },
      place: (base) => this.place(base),
      randomBase,
    });
    return this;
  }

  async waitHealthy(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await run([...this.ctl, 'endpoint', 'health']);
        return;
      } catch (err) {
        // a member whose port is taken has given up already
        if (await this.portTaken()) throw new PortTaken('an etcd port is taken');
        if (Date.now() > deadline) throw err;
        await sleep(200);
      }
    }
  }

  /** whether a member's log says its port was taken */
  private async portTaken(): Promise<boolean> {
    for (const m of this.members) if ((await readFile(m.log, 'utf8').catch(() => '')).includes('address already in use')) return true;
    return false;
  }

  private url(path: string): string {
    return `http://127.0.0.1:${this.members[0]!.clientPort}/v3/${path}`;
  }

  /**
   * puts through the v3 JSON gateway, many at once; through etcdctl over TLS (with
   * `--client-cert-auth` the gateway presents the server's own certificate to the member,
   * and one made for serverAuth alone is refused: HTTP 503)
   */
  async putMany(entries: Map<string, string>): Promise<void> {
    const list = [...entries];
    const byCtl = this.byCtl;
    const step = byCtl ? 8 : 64;
    for (let i = 0; i < list.length; i += step) {
      await Promise.all(
        list.slice(i, i + step).map(async ([k, v]) => {
          if (byCtl) {
            await run([...this.ctl, 'put', '--', k, v]);
            return;
          }
          const res = await fetch(this.url('kv/put'), { method: 'POST', body: JSON.stringify({ key: Buffer.from(k).toString('base64'), value: Buffer.from(v).toString('base64') }) });
          if (!res.ok) throw new Error(`put ${k}: HTTP ${res.status}`);
          await res.arrayBuffer();
        }),
      );
    }
  }

  async deleteKey(k: string): Promise<void> {
    if (this.byCtl) {
      await run([...this.ctl, 'del', '--', k]);
      return;
    }
    const res = await fetch(this.url('kv/deleterange'), { method: 'POST', body: JSON.stringify({ key: Buffer.from(k).toString('base64') }) });
    await res.arrayBuffer();
  }

  /** every key and value under a prefix, read back through etcdctl */
  async readPrefix(prefix: string): Promise<Map<string, string>> {
    const out = await run([...this.ctl, 'get', prefix, '--prefix', '-w', 'json'], 60_000);
    const parsed = JSON.parse(out) as { kvs?: { key: string; value: string }[] };
    return new Map((parsed.kvs ?? []).map((kv) => [Buffer.from(kv.key, 'base64').toString(), Buffer.from(kv.value, 'base64').toString()]));
  }

  async stop(): Promise<void> {
    for (const m of this.members) await run([process.execPath, DAEMON, 'stop', m.pidfile]).catch(() => undefined);
  }
}
