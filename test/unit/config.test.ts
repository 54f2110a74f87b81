/** Bad configs: one clear line per problem with its path; the config-error exit code; no stack trace. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AGENT_BIN } from '../../demo/local-cluster.js';
import { loadAgentConfig } from '../../agent/config.js';
import { runCli, tempDir } from '../helpers/cluster.js';

function runAgent(config: string): Promise<{ code: number; stderr: string }> {
  return new Promise((res) =>
    execFile(process.execPath, [AGENT_BIN, '--config', config], { timeout: 20_000 }, (err, _out, stderr) =>
      res({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stderr }),
    ),
  );
}

describe('config validation', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  /** an agent.yaml in the test's folder, well formed but for its repository and components */
  async function agentFile(name: string, repository: string, components: string[]): Promise<string> {
    const file = join(dir, name);
    const head = ['node: n1', 'listen: { host: 127.0.0.1, port: 0 }', 'tls: { ca: ca.crt, cert: a.crt, key: a.key }', 'stateDir: state', `repository: ${repository}`, 'components:'];
    await writeFile(file, [...head, ...components].join('\n'));
    return file;
  }

  it('the agent refuses to start and lists every problem of its config with its path', async () => {
    const file = join(dir, 'agent.yaml');
    await writeFile(
      file,
      [
        'node: "bad name!"',
        'listen: { host: 127.0.0.1, port: 99999 }',
        'tls: { ca: ca.crt, cert: a.crt }',
        'stateDir: state',
        'repository: { driver: tape, path: /x }',
        'components:',
        '  - { name: data, plugin: directory, path: /srv/data, stop: [], snapshotMode: reflinky }',
        '  - { name: data, plugin: cassandra, path: /srv/other }',
        '  - { name: web, plugin: directory }',
        'colour: blue',
        'keepIndexMiB: -1',
      ].join('\n'),
    );
    const r = await runAgent(file);
    expect(r.code).toBe(2);
    const lines = r.stderr;
    expect(lines).toContain('node: must match pattern');
    expect(lines).toContain('listen.port: must be <= 65535');
    expect(lines).toContain('tls.key: is required');
    expect(lines).toContain('colour: is not a known setting');
    expect(lines).toContain('keepIndexMiB: must be >= 0');
    expect(lines).not.toMatch(/\n\s+at /);
  });

  it('plugin settings and cross-field rules are checked after the schema, each with its path', async () => {
    const r = await runAgent(
      await agentFile('agent2.yaml', '{ driver: tape, path: /x }', [
        '  - { name: data, plugin: directory, path: /srv/data, stop: [], snapshotMode: reflinky }',
        '  - { name: data, plugin: cassandra, path: /srv/other }',
        '  - { name: web, plugin: directory }',
        '  - { name: dumps, plugin: directory, path: /srv/dumps, cutByContent: maybe }',
      ]),
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('repository.driver: unknown storage driver "tape"');
    expect(r.stderr).toContain('components[3].cutByContent: must be boolean');
    expect(r.stderr).toContain('components[0].stop: must NOT have fewer than 1 items');
    expect(r.stderr).toContain('components[0].snapshotMode: must be one of "copy", "hardlink"');
    expect(r.stderr).toContain('components[1].name: "data" is already the name of components[0]');
    expect(r.stderr).toContain('components[1].plugin: unknown plugin "cassandra"');
    expect(r.stderr).toContain('components[2].path: is required');
  });

  it("an engine's own rules (etcd's and redis' client TLS) are checked once its schema passes, each with its path", async () => {
    const etcd = (i: number, endpoint: string, tls: string) =>
      `  - { name: etcd${i}, plugin: etcd, member: m${i}, endpoint: "${endpoint}", peerUrl: "http://127.0.0.1:2380", dataDir: /srv/etcd${i}, start: [etcd], stop: [kill], tls: ${tls} }`;
    const r = await runAgent(
      await agentFile('agent-etcd.yaml', '{ driver: fs, path: /x }', [
        etcd(0, 'https://127.0.0.1:2379', '{ ca: ca.crt, cert: client.crt }'),
        etcd(1, 'http://127.0.0.1:2379', '{ ca: ca.crt }'),
        etcd(2, 'https://127.0.0.1:2379', '{ ca: ca.crt, key: client.key, pem: x }'),
        '  - { name: cache, plugin: redis, port: 6379, dir: /srv/redis, configFile: /etc/redis.conf, start: [redis-server], tls: { ca: ca.crt, key: client.key } }',
        etcd(4, 'https://127.0.0.1:2379', '{ ca: ca.crt, serverName: etcd.internal }'),
      ]),
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('components[0].tls.key: is missing: tls.cert needs the key of that certificate');
    expect(r.stderr).toContain('components[1].endpoint: "http://127.0.0.1:2379" is not an https:// URL, but tls is set');
    // the schema first: the pairing rule waits until the settings are well formed
    expect(r.stderr).toContain('components[2].tls.pem: is not a known setting');
    expect(r.stderr).not.toContain('components[2].tls.cert');
    expect(r.stderr).toContain('components[3].tls.cert: is missing: tls.key needs the certificate it belongs to');
    expect(r.stderr).toContain('components[4].tls.serverName: is not supported for etcd: give the endpoint by the name its certificate holds');
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("a component's TLS files are taken relative to the config, its serverName as it is", async () => {
    const file = await agentFile('agent-redis.yaml', '{ driver: fs, path: /x }', [
      '  - { name: cache, plugin: redis, port: 6379, dir: /srv/redis, configFile: /etc/redis.conf, start: [redis-server], tls: { ca: ca.crt, cert: c.crt, key: c.key, serverName: cache-1.redis.internal } }',
    ]);
    const cfg = await loadAgentConfig(file);
    expect(cfg.components[0]!.tls).toEqual({ ca: join(dir, 'ca.crt'), cert: join(dir, 'c.crt'), key: join(dir, 'c.key'), serverName: 'cache-1.redis.internal' });
  });

  it('a YAML syntax error names the line', async () => {
    const file = join(dir, 'broken.yaml');
    await writeFile(file, 'cluster: demo\nagents: [\n  - node: x\n');
    const r = await runCli(['topology'], { config: file });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/line \d+, column \d+/);
  });

  it('the cluster config lists every problem with its path and exits with the config code', async () => {
    const file = join(dir, 'lockstep.yaml');
    const base = [
      'cluster: demo',
      'repository: { driver: fs }',
      'tls: { ca: ca.crt, cert: c.crt, key: c.key }',
      'agents:',
      '  - { node: n1, address: "127.0.0.1" }',
      '  - { node: n1, address: "127.0.0.2:7000" }',
      '  - { node: n3, address: "127.0.0.2:7000" }',
    ];
    await writeFile(file, [...base, 'coverage: most'].join('\n'));
    const r = await runCli(['backup', 'create'], { config: file });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('LOCKSTEP_E_CONFIG_INVALID');
    expect(r.stderr).toContain('coverage: must be one of "default", "all"');
    // cross-field rules run once the schema passes
    await writeFile(file, base.join('\n'));
    const r2 = await runCli(['backup', 'create'], { config: file });
    expect(r2.code).toBe(2);
    expect(r2.stderr).toContain('repository.path: is required');
    expect(r2.stderr).toContain('agents[0].address: "127.0.0.1" is not host:port');
    expect(r2.stderr).toContain('agents[1].node: "n1" is already agents[0].node');
    expect(r2.stderr).toContain('agents[2].address: "127.0.0.2:7000" is already agents[1].address');
  });

  it('a missing config file is a config error, not a crash', async () => {
    const r = await runCli(['backup', 'list'], { config: join(dir, 'nope.yaml') });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('does not exist');
  });

  it('bad command-line input exits with the usage code', async () => {
    expect((await runCli(['backup', 'frobnicate'])).code).toBe(2);
    expect((await runCli(['backup', 'show', 'not-an-id'], { config: join(dir, 'lockstep.yaml') })).code).toBe(2);
    const r = await runCli(['backup', 'create', '--name', 'Bad Name'], { config: join(dir, 'lockstep.yaml') });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--name');
  });
});
