/**
 * The directory plugin's stop → copy → start around real service processes, and what
 * happens when a node is unreachable or a stop command fails.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { appendFile, open, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { parse, stringify } from 'yaml';
import { join } from 'node:path';
import type { LocalCluster } from '../../demo/local-cluster.js';
import { fingerprint } from '../../demo/fixtures.js';
import type { BackupReport, RestoreReport } from '../../lib/report.js';
import { isAlive, json, runCli, service, startCluster, stopCluster } from '../helpers/cluster.js';

const pid = async (file: string) => Number(await readFile(file, 'utf8'));

describe('services stopped and started around the snapshot', () => {
  let cluster: LocalCluster;
  const pidfile = (node: string) => join(cluster.opts.root, `${node}.pid`);
  const events = (node: string) => join(cluster.opts.root, `${node}.events`);

  beforeAll(async () => {
    cluster = await startCluster({ nodes: 3, components: () => [{ name: 'db' }] });
    // give each node a service, now that paths are known; node3's stop command always fails
    for (const a of cluster.agents) {
      const cfg = parse(await readFile(a.configFile, 'utf8')) as { components: Record<string, unknown>[] };
      const pf = pidfile(a.node);
      cfg.components[0] = {
        ...cfg.components[0],
        stop: a.node === 'node3' ? service('fail', pf) : service('stop', pf, events(a.node)),
        start: service('start', pf, events(a.node)),
        health: service('health', pf),
        healthTimeoutMs: 5000,
      };
      await writeFile(a.configFile, stringify(cfg));
      await writeFile(join(a.data.db!, 'table'), `rows of ${a.node}\n`);
      await runCommand(service('start', pf));
      await cluster.killAgent(a.node, 'SIGTERM');
      await cluster.startAgent(a.node);
    }
  });
  afterAll(async () => {
    for (const a of cluster.agents) await runCommand(service('stop', pidfile(a.node))).catch(() => undefined);
    await stopCluster(cluster);
  });

  it('a failing stop command leaves that service running, names the node and the error, and the backup is partial', async () => {
    const before3 = await pid(pidfile('node3'));
    const r = await runCli(['backup', 'create', '--name', 'svc', '--json'], { config: cluster.configFile });
    expect(r.code, r.stderr).toBe(3);
    const report = json<BackupReport>(r.stdout);
    expect(report.status).toBe('partial');
    const n3 = report.nodes.find((n) => n.node === 'node3')!;
    expect(n3.status).toBe('failed');
    const c3 = n3.components[0]!;
    expect(c3.status).toBe('failed');
    expect(c3.error?.code).toBe('LOCKSTEP_E_COMMAND_FAILED');
    expect(c3.error?.node).toBe('node3');
    expect(c3.reason).toContain('exited with code 3');
    expect(c3.reason).toContain('3 clients still connected');
    expect(report.shards.find((s) => s.shard === 'node3/db')!.covered).toBe(false);
    // node3's service was never stopped: same process, still alive
    expect(await pid(pidfile('node3'))).toBe(before3);
    expect(isAlive(before3)).toBe(true);
    // the others were stopped and started again, with the downtime measured
    for (const node of ['node1', 'node2']) {
      const c = report.nodes.find((n) => n.node === node)!.components[0]!;
      expect(c.status).toBe('ok');
      expect(c.snapshot!.downtimeMs).toBeGreaterThan(0);
      expect(isAlive(await pid(pidfile(node)))).toBe(true);
      expect((await readFile(events(node), 'utf8')).trim().split('\n').slice(-2)).toEqual(['stop', 'start']);
    }
  });

  it('restore refuses the partial backup unless asked', async () => {
    const list = json<{ backupId: string; status: string }[]>((await runCli(['backup', 'list', '--json'], { config: cluster.configFile })).stdout);
    const partial = list.find((b) => b.status === 'partial')!;
    const r = await runCli(['restore', partial.backupId, '--json'], { config: cluster.configFile });
    expect(r.code).toBe(4);
    expect(json<{ error: { code: string; message: string } }>(r.stdout).error.code).toBe('LOCKSTEP_E_BACKUP_PARTIAL');
  });

  it('the next backup starts from the copy kept from the last one: it copies only what changed, and restores exactly', async () => {
    const dir = cluster.agent('node1').data.db!;
    await writeFile(join(dir, 'big-a'), randomBytes(4 * 1024 * 1024));
    await writeFile(join(dir, 'big-b'), randomBytes(4 * 1024 * 1024));
    await writeFile(join(dir, 'gone-soon'), 'deleted before the second backup');
    // a whole second: this mtime can be set back exactly
    await utimes(join(dir, 'table'), 1_700_000_000, 1_700_000_000);
    // a file changed within 2 s of being copied is copied again next time (a change in the same clock tick could hide)
    await sleep(2100);
    const backup = async (name: string) => {
      const r = await runCli(['backup', 'create', '--name', name, '--json'], { config: cluster.configFile });
      expect(r.code, r.stderr).toBe(3); // partial: node3's stop always fails
      const report = json<BackupReport>(r.stdout);
      return { report, node1: report.nodes.find((n) => n.node === 'node1')!.components[0]! };
    };
    const first = await backup('kept-1');
    expect(first.node1.status).toBe('ok');
    // the kept copy may predate these files: at least they were copied
    expect(first.node1.snapshot!.copiedBytes).toBeGreaterThanOrEqual(8 * 1024 * 1024);

    // a rewrite in place with the same size and mtime, a new file, a deleted file
    await writeFile(join(dir, 'table'), `ROWS OF node1\n`);
    await utimes(join(dir, 'table'), 1_700_000_000, 1_700_000_000);
    await writeFile(join(dir, 'new'), 'written after the first backup');
    await rm(join(dir, 'gone-soon'));
    const second = await backup('kept-2');
    expect(second.node1.status).toBe('ok');
    expect(second.node1.snapshot!.copiedBytes).toBeLessThan(4096);
    const want = await fingerprint(dir);

    await writeFile(join(dir, 'big-a'), 'damaged');
    // every backup here is partial: latest with --allow-partial is the newest of them
    const r = await runCli(['restore', 'latest', '--node', 'node1', '--allow-partial', '--json'], { config: cluster.configFile });
    expect(r.code, r.stdout).toBe(0);
    expect(json<RestoreReport>(r.stdout).backupId).toBe(second.report.backupId);
    expect(await fingerprint(dir)).toEqual(want);
    expect((await readFile(join(dir, 'table'), 'utf8'))).toBe('ROWS OF node1\n');
  });

  it('pages rewritten in place: the snapshot writes only them into the kept copy, the upload reads only their blocks, and the restore is exact', async () => {
    const a = cluster.agent('node1');
    const dir = a.data.db!;
    const backup = async (name: string) => {
      const r = await runCli(['backup', 'create', '--name', name, '--json'], { config: cluster.configFile });
      expect(r.code, r.stderr).toBe(3); // partial: node3's stop always fails
      const c = json<BackupReport>(r.stdout).nodes.find((n) => n.node === 'node1')!.components[0]!;
      expect(c.status).toBe('ok');
      return { id: json<BackupReport>(r.stdout).backupId, c };
    };
    const patch = async (file: string, offset: number, data: Buffer) => {
      const fh = await open(join(dir, file), 'r+');
      await fh.write(data, 0, data.length, offset);
      await fh.close();
    };
    await writeFile(join(dir, 'pages'), randomBytes(8 * 1024 * 1024));
    await writeFile(join(dir, 'log'), randomBytes(4 * 1024 * 1024));
    await backup('patch-1');

    // two pages rewritten in a big file, a log appended to, a small file rewritten
    await patch('pages', 1024 * 1024, randomBytes(8192));
    await patch('pages', 6 * 1024 * 1024 + 4096, randomBytes(8192));
    await appendFile(join(dir, 'log'), randomBytes(64 * 1024));
    await writeFile(join(dir, 'table'), 'rows, patched\n');
    const second = await backup('patch-2');
    expect(second.c.snapshot!.copiedBytes).toBeLessThan(128 * 1024);
    expect(second.c.upload!.bytes).toBeGreaterThan(12 * 1024 * 1024);
    // 32 KiB blocks: three around the pages (one straddles two), two of the log's tail, the small file
    expect(second.c.upload!.bytesRead).toBeLessThanOrEqual(3 * 32 * 1024 + 2 * 32 * 1024 + 1024);
    const want = await fingerprint(dir);

    // the same again, with the kept copy's record naming another backup: nothing is taken on trust
    await patch('pages', 2 * 1024 * 1024, randomBytes(4096));
    const seenFile = join(a.stateDir, 'last', 'db', 'seen.json');
    const seen = JSON.parse(await readFile(seenFile, 'utf8')) as { backupId: string };
    await writeFile(seenFile, JSON.stringify({ ...seen, backupId: 'not-the-last-backup' }));
    const third = await backup('patch-3');
    expect(third.c.upload!.bytesRead).toBeGreaterThanOrEqual(8 * 1024 * 1024);
    const want3 = await fingerprint(dir);

    for (const [id, expected] of [[second.id, want], [third.id, want3]] as const) {
      await patch('pages', 1024 * 1024, Buffer.alloc(8192));
      await writeFile(join(dir, 'log'), 'damaged');
      const r = await runCli(['restore', id, '--node', 'node1', '--allow-partial', '--json'], { config: cluster.configFile });
      expect(r.code, r.stdout).toBe(0);
      expect(await fingerprint(dir)).toEqual(expected);
    }
  });

  it('an unreachable agent fails preflight, naming it, before any service is stopped', async () => {
    const stopsBefore = await readFile(events('node1'), 'utf8');
    await cluster.killAgent('node2');
    try {
      const r = await runCli(['backup', 'create', '--name', 'down', '--json'], { config: cluster.configFile });
      expect(r.code).toBe(4);
      const report = json<BackupReport>(r.stdout);
      expect(report.status).toBe('failed');
      expect(report.error?.code).toBe('LOCKSTEP_E_PREFLIGHT_FAILED');
      expect(report.error?.message).toContain('node2');
      const n2 = report.nodes.find((n) => n.node === 'node2')!;
      expect(n2.error?.code).toBe('LOCKSTEP_E_AGENT_UNREACHABLE');
      expect(n2.error?.message).toContain('connection refused');
      expect(report.steps.map((s) => s.name)).toEqual(['lock', 'preflight']);
      // no service anywhere was stopped
      expect(await readFile(events('node1'), 'utf8')).toBe(stopsBefore);
      expect(existsSync(join(cluster.repoDir, 'backups', report.backupId))).toBe(false);
      // the human form names the node too
      const human = await runCli(['backup', 'create', '--name', 'down'], { config: cluster.configFile });
      expect(human.code).toBe(4);
      expect(human.stdout).toMatch(/node node2 .*failed/);
      expect(human.stdout).toContain('is lockstep-agent running');
    } finally {
      await cluster.startAgent('node2');
    }
  });
});

async function runCommand(argv: string[]): Promise<void> {
  await new Promise<void>((res, rej) => execFile(argv[0]!, argv.slice(1), (err) => (err ? rej(err) : res())));
}
