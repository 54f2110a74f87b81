/**
 * A local cluster of real agent processes on loopback (127.0.0.x), each with its own
 * freshly issued certificate, state dir and data dirs, plus a cluster config and an
 * initialised repository. The demo and the integration tests both use it.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { createCa, issueCertificate, type Pem } from '../lib/tls/certs.js';
import { caPaths, issuedPaths, writePem } from '../lib/tls/files.js';
import { forEachLimit } from '../agent/transfer/pool.js';

export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the lockstep project root');
    dir = up;
  }
  return dir;
}

export const AGENT_BIN = join(projectRoot(), 'dist', 'agent', 'main.cjs');

/** the Node flags and environment the agent's own `#!` line gives it, so spawning it with `node` runs it the same way */
export function agentLaunch(): { flags: string[]; env: Record<string, string> } {
  const first = readFileSync(AGENT_BIN, 'utf8').split('\n', 1)[0] ?? '';
  const words = first.startsWith('#!') ? first.split(/\s+/) : [];
  const env = Object.fromEntries(words.filter((w) => /^[A-Z_]+=/.test(w)).map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]));
  return { flags: words.filter((w) => w.startsWith('--')), env };
}
export const CLI_BIN = join(projectRoot(), 'dist', 'coordinator', 'cli.js');

export interface LocalAgent {
  node: string;
  host: string;
  port: number;
  configFile: string;
  stateDir: string;
  /** component name → data dir */
  data: Record<string, string>;
  process?: ChildProcess;
  stderr: string[];
}

export interface ComponentSpec {
  name: string;
  plugin?: string;
  /** extra plugin settings (stop/start/health …) */
  settings?: Record<string, unknown>;
}

export interface LocalClusterOptions {
  root: string;
  nodes: number;
  cluster?: string;
  components?: (node: string, index: number) => ComponentSpec[];
  /** extra settings for the cluster config */
  clusterSettings?: Record<string, unknown>;
  logLevel?: string;
  /** extra environment for the agent processes */
  agentEnv?: NodeJS.ProcessEnv;
  /** the repository settings of every config (default: an fs repository in the cluster's folder) */
  repository?: Record<string, unknown>;
  /** how many agents start at once (default: all); a hundred node processes starting together on two cores miss their start deadline */
  startConcurrency?: number;
}

export class LocalCluster {
  readonly agents: LocalAgent[] = [];
  ca!: Pem;
  readonly caDir: string;
  readonly repoDir: string;
  readonly configFile: string;

  constructor(readonly opts: LocalClusterOptions) {
    this.caDir = join(opts.root, 'ca');
    this.repoDir = join(opts.root, 'repo');
    this.configFile = join(opts.root, 'lockstep.yaml');
  }

  /** Issue certificates, write configs, start every agent, write the cluster config, init the repository. */
  async start(): Promise<this> {
    const { root } = this.opts;
    await mkdir(root, { recursive: true });
    this.ca = await createCa(this.opts.cluster ?? 'demo');
    await writePem(caPaths(this.caDir), this.ca, true);
    await writePem(issuedPaths(this.caDir, 'coordinator', 'operator'), await issueCertificate(this.ca, { role: 'coordinator', name: 'operator' }), true);
    for (let i = 0; i < this.opts.nodes; i++) {
      const node = `node${i + 1}`;
      const host = `127.0.0.${(i % 250) + 1}`;
      const specs = this.opts.components?.(node, i) ?? [{ name: 'data' }];
      const data: Record<string, string> = {};
      for (const s of specs) {
        data[s.name] = join(root, 'nodes', node, s.name);
        await mkdir(data[s.name]!, { recursive: true });
      }
      await writePem(issuedPaths(this.caDir, 'agent', node), await issueCertificate(this.ca, { role: 'agent', name: node, hosts: [host, 'localhost'] }), true);
      const agent: LocalAgent = {
        node,
        host,
        port: 0,
        configFile: join(root, 'nodes', node, 'agent.yaml'),
        stateDir: join(root, 'nodes', node, 'state'),
        data,
        stderr: [],
      };
      const certs = issuedPaths(this.caDir, 'agent', node);
      await writeFile(
        agent.configFile,
        stringify({
          node,
          listen: { host, port: 0 },
          tls: { ca: caPaths(this.caDir).cert, cert: certs.cert, key: certs.key },
          stateDir: agent.stateDir,
          repository: this.repository,
          components: specs.map((s) =>
            (s.plugin ?? 'directory') === 'directory'
              ? { name: s.name, plugin: 'directory', path: data[s.name], ...(s.settings ?? {}) }
              : { name: s.name, plugin: s.plugin, ...(s.settings ?? {}) },
          ),
          log: { level: this.opts.logLevel ?? 'warn' },
        }),
      );
      this.agents.push(agent);
    }
    await forEachLimit(this.agents, this.opts.startConcurrency ?? this.agents.length, async (a) => {
      await this.startAgent(a.node);
    });
    await this.writeClusterConfig();
    await runCli(['repo', 'init'], { config: this.configFile });
    return this;
  }

  async writeClusterConfig(agents = this.agents.map((a) => ({ node: a.node, address: `${a.host}:${a.port}` }))): Promise<void> {
    const coord = issuedPaths(this.caDir, 'coordinator', 'operator');
    await writeFile(
      this.configFile,
      stringify({
        cluster: this.opts.cluster ?? 'demo',
        repository: this.repository,
        tls: { ca: caPaths(this.caDir).cert, cert: coord.cert, key: coord.key },
        agents,
        timeouts: { pollMs: 50 },
        ...(this.opts.clusterSettings ?? {}),
      }),
    );
  }

  get repository(): Record<string, unknown> {
    return this.opts.repository ?? { driver: 'fs', path: this.repoDir };
  }

  agent(node: string): LocalAgent {
    const a = this.agents.find((x) => x.node === node);
    if (!a) throw new Error(`no agent ${node}`);
    return a;
  }

  /** Start (or restart) an agent process and wait until it listens (on its old port if it had one). */
  async startAgent(node: string): Promise<LocalAgent> {
    const a = this.agent(node);
    if (a.port !== 0) {
      // keep the address stable across restarts
      const text = await readFile(a.configFile, 'utf8');
      await writeFile(a.configFile, text.replace(/port: \d+/, `port: ${a.port}`));
    }
    const statusFile = join(a.stateDir, 'agent.json');
    await rm(statusFile, { force: true });
    const launch = agentLaunch();
    const child = spawn(process.execPath, [...launch.flags, AGENT_BIN, '--config', a.configFile], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...launch.env, ...process.env, ...this.opts.agentEnv } });
    a.process = child;
    child.stderr!.setEncoding('utf8').on('data', (d: string) => a.stderr.push(d));
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`agent ${node} exited with ${child.exitCode}: ${a.stderr.join('')}`);
      try {
        const status = JSON.parse(await readFile(statusFile, 'utf8')) as { port: number; pid: number };
        if (status.pid === child.pid) {
          a.port = status.port;
          return a;
        }
      } catch {
        // not written yet
      }
      await sleep(25);
    }
    throw new Error(`agent ${node} did not start within 15 s: ${a.stderr.join('')}`);
  }

  /** SIGKILL an agent (a crash); resolves when the process is gone. */
  async killAgent(node: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.agent(node).process;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await gone;
  }

  async stop(): Promise<void> {
    await Promise.all(this.agents.map((a) => this.killAgent(a.node, 'SIGTERM')));
  }
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the lockstep CLI as a separate process, as an operator would. */
export function runCli(args: string[], opts: { config?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  const argv = opts.config ? ['--config', opts.config, ...args] : args;
  return new Promise((resolveRun) => {
    execFile(
      process.execPath,
      [CLI_BIN, ...argv],
      { timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ...opts.env } },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
        resolveRun({ code, stdout, stderr });
      },
    );
  });
}

export function resolveFromRoot(...parts: string[]): string {
  return resolve(projectRoot(), ...parts);
}
