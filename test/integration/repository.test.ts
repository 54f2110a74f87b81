/**
 * The repository with three real agents: dedup, resume after a killed agent, verify
 * finding damage with its exact place, prune, locks, and (on S3 with encryption) a new
 * coordinator that has only the repository, its key and certificates.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, readdir, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { hostname } from 'node:os';
import { parse, stringify } from 'yaml';
import type { LocalCluster } from '../../demo/local-cluster.js';
import { fillDataDir, fingerprint } from '../../demo/fixtures.js';
import type { BackupReport, RestoreReport } from '../../lib/report.js';
import type { VerifyReport } from '../../lib/repo/verify.js';
import type { CheckRecord } from '../../lib/repo/checks.js';
import type { BackupListEntry, RepoStatus } from '../../coordinator/render.js';
import { refSha } from '../../lib/repo/index-file.js';
import type { PruneReport } from '../../lib/repo/prune.js';
import { LOCK_KEY } from '../../lib/repo/lock.js';
import { s3Driver } from '../../plugins/storage/s3.js';
import { json, runCli, startCluster, stopCluster, tempDir } from '../helpers/cluster.js';
import { collected, objectBytes, openFsRepo, readIndexAt, whereIs } from '../helpers/repo.js';
import { clientOf, rgwBucket, type S3Settings } from '../helpers/s3.js';
import { HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';

async function manySmallFiles(dir: string, n: number, size: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (let i = 0; i < n; i++) await writeFile(join(dir, `f${i}`), randomBytes(size));
}

describe('repository on a filesystem: dedup, resume, verify, prune', () => {
  let cluster: LocalCluster;
  const cli = (args: string[]) => runCli(args, { config: cluster.configFile });

  beforeAll(async () => {
    cluster = await startCluster({ nodes: 2 });
    await fillDataDir(cluster.agent('node2').data.data!, 'node2', 512 * 1024);
  });
  afterAll(() => stopCluster(cluster));

  it('an agent killed mid-upload: the next backup finishes without sending the completed data again, whether the node had a backup of its own or not', async () => {
    const d1 = cluster.agent('node1').data.data!;
    /**
     * A backup during which node1's agent is killed once 40 MiB more are stored (the other
     * node's part commits: a partial backup), a prune, then the next backup: node1 writes
     * at most what the first run had not stored.
     */
    const killedThenResumed = async (name: string) => {
      const base = await objectBytes(cluster.repoDir);
      const first = runCli(['backup', 'create', '--name', name, '--json'], { config: cluster.configFile });
      for (let i = 0; i < 3000 && (await objectBytes(cluster.repoDir)) < base + 40 * 1024 * 1024; i++) await new Promise((r) => setTimeout(r, 10));
      await cluster.killAgent('node1');
      const r1 = await first;
      expect(r1.code).not.toBe(0);
      const killed = json<BackupReport>(r1.stdout);
      expect(killed.status).toBe('partial');
      await cluster.startAgent('node1');
      // the cut-short run is told, as the one the next backup of node1/data resumes
      const status = json<RepoStatus>((await cli(['repo', 'status', '--json'])).stdout);
      expect(status.interrupted).toEqual([{ node: 'node1', component: 'data', backupId: killed.backupId }]);
      // a prune in between keeps what the cut-short run stored and recorded (its pending records
      // name its packs, and the partial backup's manifest lacks node1): only packs whose records
      // the kill cut off go
      const pruned = await cli(['prune', '--keep-last', '10', '--json']);
      expect(pruned.code, pruned.stderr).toBe(0);
      expect(json<PruneReport>(pruned.stdout).objectsDeleted).toBeLessThanOrEqual(6);
      const stored = (await objectBytes(cluster.repoDir)) - base;

      const r2 = await cli(['backup', 'create', '--name', `${name}-resumed`, '--json']);
      expect(r2.code, r2.stderr).toBe(0);
      const written = (await objectBytes(cluster.repoDir)) - base;
      expect(stored).toBeLessThan(written - 40 * 1024 * 1024); // the kill really came mid-upload
      // what the second run wrote is what the first had not: the ~40 MiB stored were not sent again
      const up = json<BackupReport>(r2.stdout).nodes.find((n) => n.node === 'node1')!.components[0]!.upload!;
      expect(up.bytesNew).toBeLessThanOrEqual(written - stored + 4 * 1024 * 1024);
      expect(up.bytesNew).toBeLessThan(up.bytes - 30 * 1024 * 1024);
      // and once resumed, there is nothing left to resume (the records go just after the upload returns)
      let left: RepoStatus['interrupted'] = [];
      for (let i = 0; i < 50; i++) {
        left = json<RepoStatus>((await cli(['repo', 'status', '--json'])).stdout).interrupted;
        if (left.length === 0) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(left).toEqual([]);
    };
    // node1's first backup (it dedups against node2's part of the same backup)
    await manySmallFiles(join(d1, 'small'), 1500, 16 * 1024);
    await writeFile(join(d1, 'big.bin'), randomBytes(200 * 1024 * 1024));
    await killedThenResumed('killed');
    // and with a backup of its own before (its new data: a rewritten big file)
    await writeFile(join(d1, 'big.bin'), randomBytes(200 * 1024 * 1024));
    await killedThenResumed('killed-again');
  });

  it('dedup: unchanged data writes nothing; a changed stretch or scattered pages write about what changed', async () => {
    const again = json<BackupReport>((await cli(['backup', 'create', '--name', 'same', '--json'])).stdout);
    expect(again.status).toBe('complete');
    expect(again.totals.bytesNew).toBe(0);
    const fh = await open(join(cluster.agent('node1').data.data!, 'big.bin'), 'r+');
    await fh.write(randomBytes(2 * 1024 * 1024), 0, 2 * 1024 * 1024, 100 * 1024 * 1024 + 12345); // 1% of 200 MiB
    await fh.close();
    const changed = json<BackupReport>((await cli(['backup', 'create', '--name', 'changed', '--json'])).stdout);
    expect(changed.status).toBe('complete');
    // 2 MiB changed, not block-aligned, in a file cut into 32 KiB blocks: 2 MiB and one block more at most
    expect(changed.totals.bytesNew).toBeGreaterThan(2 * 1024 * 1024);
    expect(changed.totals.bytesNew).toBeLessThanOrEqual(2 * 1024 * 1024 + 32 * 1024 + 4096);
    // the file is read whole, but only the blocks whose fingerprint changed are hashed again
    const upload = (r: BackupReport) => r.nodes.find((n) => n.node === 'node1')!.components[0]!.upload!;
    expect(upload(changed).bytesRead).toBeGreaterThanOrEqual(200 * 1024 * 1024);
    expect(upload(changed).bytesHashed).toBeGreaterThan(2 * 1024 * 1024);
    expect(upload(changed).bytesHashed).toBeLessThanOrEqual(2 * 1024 * 1024 + 64 * 1024);
    // where the upload's time went: four phases, within the upload's own time (each rounded)
    const { phases, uploadMs } = upload(changed);
    expect(Object.keys(phases ?? {}).sort()).toEqual(['filesMs', 'indexMs', 'previousMs', 'walkMs']);
    for (const v of Object.values(phases!)) expect(Number.isInteger(v) && v >= 0).toBe(true);
    expect(phases!.filesMs).toBeGreaterThan(0);
    expect(phases!.walkMs + phases!.previousMs + phases!.filesMs + phases!.indexMs).toBeLessThanOrEqual(uploadMs + 2);

    // 24 database pages of 8 KiB rewritten in place, scattered over the file: one 32 KiB block each
    const pages = await open(join(cluster.agent('node1').data.data!, 'big.bin'), 'r+');
    const offsets = new Set<number>();
    while (offsets.size < 24) offsets.add(Math.floor(Math.random() * ((200 * 1024 * 1024) / 32768)) * 32768 + 8192);
    for (const at of offsets) await pages.write(randomBytes(8192), 0, 8192, at);
    await pages.close();
    const paged = json<BackupReport>((await cli(['backup', 'create', '--name', 'pages', '--json'])).stdout);
    expect(paged.status).toBe('complete');
    expect(paged.totals.bytesNew).toBeGreaterThanOrEqual(24 * 32 * 1024);
    expect(paged.totals.bytesNew).toBeLessThanOrEqual(24 * (32 * 1024 + 64));
    expect(upload(paged).bytesHashed, JSON.stringify(paged.nodes)).toBe(24 * 32 * 1024);

    // what was kept by fingerprint and what was hashed anew restore to exactly the file backed up
    const big = join(cluster.agent('node1').data.data!, 'big.bin');
    const sha = async () => createHash('sha256').update(await readFile(big)).digest('hex');
    const backedUp = await sha();
    const damage = await open(big, 'r+');
    await damage.write(randomBytes(64 * 1024), 0, 64 * 1024, 150 * 1024 * 1024);
    await damage.close();
    const restored = await runCli(['restore', paged.backupId, '--node', 'node1', '--json'], { config: cluster.configFile });
    expect(restored.code, restored.stdout + restored.stderr).toBe(0);
    expect(await sha()).toBe(backedUp);
  });

  it("an incremental dedups against the last index kept in the agent's memory, else its local copy; a damaged or missing copy is read from the repository, with the same result", async () => {
    const d1 = cluster.agent('node1').data.data!;
    const node1 = (r: BackupReport) => r.nodes.find((n) => n.node === 'node1')!.components[0]!.upload!;
    const backup = async (name: string) => {
      const r = await cli(['backup', 'create', '--name', name, '--json']);
      expect(r.code, r.stderr).toBe(0);
      return json<BackupReport>(r.stdout);
    };
    const change = async (at: number) => {
      const fh = await open(join(d1, 'big.bin'), 'r+');
      await fh.write(randomBytes(8192), 0, 8192, at);
      await fh.close();
    };
    // the restore above gave every file a new change time: one backup, once they have settled, takes them as they are
    await new Promise((r) => setTimeout(r, 2100));
    const copies = join(cluster.agent('node1').stateDir, 'index-cache');
    // the copy is written once the backup's upload has returned: the copy of `b`'s index, once it is in place
    const copyOf = async (b: BackupReport) => {
      for (let i = 0; i < 200; i++) {
        const names = await readdir(copies).catch(() => [] as string[]);
        const idx = names.find((n) => n.endsWith('.idx'));
        if (idx && !names.some((n) => n.endsWith('.tmp')) && (await readFile(join(copies, idx))).includes(b.backupId)) return idx;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`no local copy of the index of ${b.backupId}`);
    };
    const copy = await copyOf(await backup('settled'));
    expect(copy).toMatch(/-data\.idx$/);
    // 8 KiB changed at `at`, then a backup: one 32 KiB block hashed again, whichever index it dedups against
    const afterChange = async (at: number, name: string, from: 'memory' | 'local' | 'repository') => {
      await change(at);
      const r = await backup(name);
      expect(node1(r).previousIndex).toBe(from);
      expect(node1(r).bytesHashed).toBe(32 * 1024);
      return r;
    };

    // the index kept in memory once its copy was written
    const kept = await afterChange(2 * 1024 * 1024, 'from-memory', 'memory');
    expect(kept.totals.bytesNew).toBeLessThanOrEqual(32 * 1024 + 64);
    await copyOf(kept);

    // an agent that restarted has only the copy
    const restart = async () => {
      await cluster.killAgent('node1', 'SIGTERM');
      await cluster.startAgent('node1');
    };
    await restart();
    const local = await afterChange(5 * 1024 * 1024, 'from-copy', 'local');
    const copied = await copyOf(local);

    // a flipped byte in the copy: it is not used
    await restart();
    const bytes = await readFile(join(copies, copied));
    bytes[bytes.length - 100]! ^= 0xff;
    await writeFile(join(copies, copied), bytes);
    const damaged = await afterChange(50 * 1024 * 1024, 'copy-damaged', 'repository');
    expect(damaged.totals.bytesNew).toBeLessThanOrEqual(32 * 1024 + 64);
    await copyOf(damaged);

    // none at all: the same
    await restart();
    await rm(copies, { recursive: true });
    const missing = await afterChange(100 * 1024 * 1024, 'copy-missing', 'repository');
    // and the copy is back for the next one, and the index in memory (the agent kept running)
    const again = await backup('copy-again');
    expect(node1(again).previousIndex).toBe('memory');
    // (records are deleted after the upload returns, before its copy is written)
    await copyOf(again);
    // what earlier runs left to resume from is gone once a later index holds it: only the newest backup's records may remain
    // (a write the killed agent never finished leaves a temporary file, which prune sweeps)
    const left = await readdir(join(cluster.repoDir, 'pending', 'node1', 'data'), { recursive: true }).catch(() => [] as string[]);
    const records = left.filter((p) => p.endsWith('.json') && !p.includes('.lockstep-tmp-'));
    expect(records.filter((p) => !p.startsWith(`${again.backupId}/`))).toEqual([]);

    // each of these restores to exactly what was backed up
    const sha = async () => createHash('sha256').update(await readFile(join(d1, 'big.bin'))).digest('hex');
    const backedUp = await sha();
    await change(0);
    const restored = await runCli(['restore', missing.backupId, '--node', 'node1', '--json'], { config: cluster.configFile });
    expect(restored.code, restored.stdout + restored.stderr).toBe(0);
    expect(await sha()).toBe(backedUp);
  });

  it('verify passes on a good backup, reading all data back; "latest" names the newest', async () => {
    const id = json<{ backupId: string }[]>((await cli(['backup', 'list', '--json'])).stdout).at(-1)!.backupId;
    const r = await cli(['backup', 'verify', 'latest', '--read-data', '--json']);
    expect(r.code, r.stdout).toBe(0);
    const v = json<VerifyReport>(r.stdout);
    expect(v.backupId).toBe(id);
    expect(json<{ backupId: string }>((await cli(['backup', 'show', 'latest', '--json'])).stdout).backupId).toBe(id);
    // never for a command that removes
    const del = await cli(['backup', 'delete', 'latest']);
    expect(del.code).toBe(2);
    expect(del.stderr).toContain('exact id');
    expect(v.status).toBe('ok');
    expect(v.blobsRead).toBeGreaterThan(1500);
    expect(v.bytesRead).toBeGreaterThan(200 * 1024 * 1024);
  });

  it('a sampled read-back names its seed, and the same seed reads the same blobs', async () => {
    const id = json<{ backupId: string }[]>((await cli(['backup', 'list', '--json'])).stdout).at(-1)!.backupId;
    const verify = async (...extra: string[]) => {
      const r = await cli(['backup', 'verify', id, ...extra, '--json']);
      expect(r.code, r.stdout).toBe(0);
      return json<VerifyReport>(r.stdout);
    };
    const all = await verify('--read-data');
    expect(all.seed).toBeUndefined();
    const a = await verify('--read-data=30');
    expect(a.seed).toMatch(/^[0-9a-f]{16}$/);
    expect(a.blobsRead).toBeGreaterThan(all.blobsRead * 0.2);
    expect(a.blobsRead).toBeLessThan(all.blobsRead * 0.4);
    const again = await verify('--read-data=30', '--seed', a.seed!);
    expect([again.seed, again.blobsRead, again.bytesRead]).toEqual([a.seed, a.blobsRead, a.bytesRead]);
    const other = await verify('--read-data=30', '--seed', 'another');
    expect(other.bytesRead).not.toBe(a.bytesRead);
  });

  it('each check is kept beside its backup: list shows the last, show the history; --no-record keeps nothing; a check that cannot be kept still tells its outcome', async () => {
    type Listed = Extract<BackupListEntry, { checks: number }>;
    const listed = async () => json<Listed[]>((await cli(['backup', 'list', '--json'])).stdout);
    const before = (await listed()).at(-1)!;
    const r = await cli(['backup', 'verify', before.backupId, '--read-data=10', '--seed', 'kept', '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const v = json<VerifyReport>(r.stdout);
    expect(v.recordedAs).toMatch(new RegExp(`^backups/${before.backupId}/checks/\\d{8}T\\d{9}Z_ok_10_[0-9a-f]+\\.json$`));
    expect(existsSync(join(cluster.repoDir, v.recordedAs!))).toBe(true);

    const after = (await listed()).at(-1)!;
    expect(after.checks).toBe(before.checks + 1);
    expect(after.lastCheck).toMatchObject({ status: 'ok', readDataPercent: 10 });
    expect(Date.now() - Date.parse(after.lastCheck!.at)).toBeLessThan(60_000);
    expect(after.lastReadBack).toEqual(after.lastCheck);
    const human = await cli(['backup', 'list']);
    expect(human.stdout).toContain('LAST CHECK');
    expect(human.stdout).toMatch(new RegExp(`${after.backupId} .* ok, 10% read back`));

    const show = json<{ backupId: string; checks: { at: string; status: string }[]; lastCheck: CheckRecord }>((await cli(['backup', 'show', after.backupId, '--json'])).stdout);
    expect(show.backupId).toBe(after.backupId);
    expect(show.checks).toHaveLength(after.checks);
    expect(show.lastCheck).toMatchObject({ backupId: after.backupId, status: 'ok', readDataPercent: 10, seed: 'kept', host: hostname(), problems: 0, blobsRead: v.blobsRead, bytesRead: v.bytesRead });
    const shown = await cli(['backup', 'show', after.backupId]);
    expect(shown.stdout).toContain(`checks (${after.checks}, newest last)`);
    expect(shown.stdout).toContain('seed kept');
    // a restore's plan says how the backup was last checked
    const plan = await cli(['restore', after.backupId, '--dry-run', '--json']);
    expect(plan.code, plan.stderr).toBe(0);
    expect(json<RestoreReport>(plan.stdout).lastCheck).toEqual(after.lastCheck);
    expect((await cli(['restore', after.backupId, '--dry-run'])).stdout).toMatch(/backup last checked: \S+ \S+ ok, 10% read back/);

    // --no-record: checked, nothing kept
    const quiet = await cli(['backup', 'verify', after.backupId, '--no-record', '--json']);
    expect(quiet.code).toBe(0);
    expect(json<VerifyReport>(quiet.stdout).notRecorded).toBe('--no-record');
    expect((await listed()).at(-1)!.checks).toBe(after.checks);

    // a record that cannot be written: the check's outcome and exit code stand, the output says so
    const first = (await listed())[0]!;
    const blocked = join(cluster.repoDir, 'backups', first.backupId, 'checks');
    await rm(blocked, { recursive: true, force: true });
    await writeFile(blocked, 'not a folder');
    try {
      const unkept = await cli(['backup', 'verify', first.backupId]);
      expect(unkept.code, unkept.stderr).toBe(0);
      expect(unkept.stdout).toContain('OK');
      expect(unkept.stdout).toContain('warning: the result was not kept in the repository');
      expect((await listed())[0]!.checks).toBe(0);
    } finally {
      await rm(blocked, { force: true });
    }
  });

  it('verify finds a flipped byte (with --read-data) and a deleted chunk, naming node, file and chunk; exit 6', async () => {
    const m = json<{ backupId: string; components: { node: string; indexKey: string }[] }>((await cli(['backup', 'show', (json<{ backupId: string }[]>((await cli(['backup', 'list', '--json'])).stdout).at(-1)!.backupId), '--json'])).stdout);
    const c = m.components.find((x) => x.node === 'node1')!;
    const index = await readIndexAt(cluster.repoDir, c.indexKey);
    const repo = await openFsRepo(cluster.repoDir);
    const small = index.entries.find((e) => e.type === 'file' && e.path.startsWith('data/small/'))!;
    const big = index.entries.find((e) => e.type === 'file' && e.path === 'data/big.bin')!;
    if (small.type !== 'file' || big.type !== 'file') throw new Error('unexpected index');
    const flip = whereIs(cluster.repoDir, small.chunks[0]!, repo);
    const good = await readFile(flip.path);
    const bad = Buffer.from(good);
    bad[flip.offset + 20] = bad[flip.offset + 20]! ^ 0x01;
    await writeFile(flip.path, bad);
    const gone = whereIs(cluster.repoDir, big.chunks[0]!, repo);
    const goneBody = await readFile(gone.path);
    await unlink(gone.path);
    try {
      const quick = await cli(['backup', 'verify', m.backupId, '--json']);
      expect(quick.code).toBe(6);
      const q = json<VerifyReport>(quick.stdout);
      // the first block sits in a pack of big.bin's own blocks: that pack is missing, nothing else
      expect(q.problems).toEqual([expect.objectContaining({ kind: 'missing', node: 'node1', file: 'data/big.bin', chunk: refSha(big.chunks[0]!), object: repo.objectKeyOf(big.chunks[0]!) })]);
      // kept: the list says the backup's last check found it damaged, show says where
      const entry = json<Extract<BackupListEntry, { checks: number }>[]>((await cli(['backup', 'list', '--json'])).stdout).find((e) => e.backupId === m.backupId)!;
      expect(entry.lastCheck).toMatchObject({ status: 'damaged', readDataPercent: 0 });
      const listedDamaged = await cli(['backup', 'list']);
      expect(listedDamaged.stdout).toMatch(new RegExp(`${m.backupId} .* DAMAGED, objects only`));
      // and its exit code says so, as for a damaged manifest
      expect(listedDamaged.code).toBe(6);
      const kept = json<{ lastCheck: CheckRecord }>((await cli(['backup', 'show', m.backupId, '--json'])).stdout).lastCheck;
      expect(kept).toMatchObject({ status: 'damaged', problems: 1 });
      expect(kept.firstProblems).toEqual([expect.objectContaining({ kind: 'missing', file: 'data/big.bin', object: repo.objectKeyOf(big.chunks[0]!) })]);

      const full = await cli(['backup', 'verify', m.backupId, '--read-data=100']);
      expect(full.code).toBe(6);
      expect(full.stdout).toContain('DAMAGED');
      expect(full.stdout).toMatch(new RegExp(`CORRUPT node1/data file ${small.path}`));
      expect(full.stdout).toContain(small.sha256);
      expect(full.stdout).toMatch(/MISSING node1\/data file data\/big\.bin/);

      // a restore that needs the damaged data refuses before any service is touched
      await writeFile(join(cluster.agent('node1').data.data!, small.path.slice('data/'.length)), 'changed locally');
      await rm(join(cluster.agent('node1').data.data!, 'big.bin'));
      const dataBefore = await fingerprint(cluster.agent('node1').data.data!);
      const restore = await cli(['restore', m.backupId, '--json']);
      expect(restore.code).toBe(1);
      const rr = json<RestoreReport>(restore.stdout);
      expect(rr.error?.code).toBe('LOCKSTEP_E_REPO_CORRUPT');
      expect(rr.lastCheck?.status).toBe('damaged');
      expect(rr.warnings?.join('\n')).toContain(`the last check of backup ${m.backupId}`);
      expect(rr.steps.map((s) => s.name)).not.toContain('stop');
      expect(await fingerprint(cluster.agent('node1').data.data!)).toEqual(dataBefore);
    } finally {
      await writeFile(flip.path, good);
      await writeFile(gone.path, goneBody);
    }
    // repaired and checked again, reading everything back: the list is clean again
    expect((await cli(['backup', 'verify', m.backupId, '--read-data=100'])).code).toBe(0);
    const clean = await cli(['backup', 'list', '--json']);
    expect(clean.code, clean.stdout).toBe(0);
    expect(json<Extract<BackupListEntry, { checks: number }>[]>(clean.stdout).find((e) => e.backupId === m.backupId)!.lastReadBack).toMatchObject({ status: 'ok', readDataPercent: 100 });
  });

  it('a damaged manifest is listed as such without hiding the others (exit 6); prune removes nothing while it is there', async () => {
    const good = json<{ backupId: string; status: string }[]>((await cli(['backup', 'list', '--json'])).stdout);
    expect(good.length).toBeGreaterThanOrEqual(3);
    const damagedId = '20261204-000000-damaged';
    const folder = join(cluster.repoDir, 'backups', damagedId);
    await mkdir(folder, { recursive: true });
    await writeFile(join(folder, 'manifest.json'), 'not a manifest at all');
    try {
      const listed = await cli(['backup', 'list', '--json']);
      expect(listed.code, listed.stderr).toBe(6);
      const entries = json<{ backupId: string; status: string; error?: { code: string; message: string } }[]>(listed.stdout);
      expect(entries.filter((e) => e.status !== 'unreadable')).toEqual(good);
      const bad = entries.find((e) => e.backupId === damagedId)!;
      expect(bad.status).toBe('unreadable');
      expect(bad.error?.code).toBe('LOCKSTEP_E_REPO_CORRUPT');
      expect(bad.error?.message).toContain(`backups/${damagedId}/manifest.json`);
      const human = await cli(['backup', 'list']);
      expect(human.code).toBe(6);
      expect(human.stdout).toMatch(new RegExp(`${damagedId}\\s+UNREADABLE`));
      expect(human.stdout).toContain(`${damagedId}: error LOCKSTEP_E_REPO_CORRUPT`);
      for (const g of good) expect(human.stdout).toContain(g.backupId);

      const bytes = await objectBytes(cluster.repoDir);
      const pruned = await cli(['prune', '--keep-last', '1', '--json']);
      expect(pruned.code).toBe(1);
      expect(pruned.stdout + pruned.stderr).toContain(`backups/${damagedId}/manifest.json`);
      expect(pruned.stdout + pruned.stderr).toContain('prune removes nothing');
      expect(await objectBytes(cluster.repoDir)).toBe(bytes);
      expect(json<{ backupId: string }[]>((await cli(['backup', 'list', '--json'])).stdout).length).toBe(good.length + 1);

      // given up: its manifest goes (and its folder with it), the others stay, and prune runs again
      const deleted = await cli(['backup', 'delete', damagedId, '--json']);
      expect(deleted.code, deleted.stderr).toBe(0);
      expect(json<{ objectsDeleted: number }>(deleted.stdout).objectsDeleted).toBe(1);
      expect(existsSync(join(folder, 'manifest.json'))).toBe(false);
      const again = await cli(['backup', 'delete', damagedId]);
      expect(again.code).toBe(4);
      expect(again.stderr + again.stdout).toContain(`no backup ${damagedId}`);
      expect((await cli(['prune', '--keep-last', '100', '--dry-run'])).code).toBe(0);
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
    const after = await cli(['backup', 'list', '--json']);
    expect(after.code).toBe(0);
    expect(json<{ backupId: string }[]>(after.stdout)).toEqual(good);
  });

  it('prune keeps every chunk of kept backups (verify passes after) and frees the rest; --dry-run changes nothing', async () => {
    await rm(join(cluster.agent('node1').data.data!, 'big.bin'), { force: true });
    const last = json<BackupReport>((await cli(['backup', 'create', '--name', 'after-rm', '--json'])).stdout);
    expect(last.status).toBe('complete');
    const bytesBefore = await objectBytes(cluster.repoDir);
    // what writers killed mid-write left: an hour-old temp file goes, a fresh one (a write
    // that may still be running) stays
    const stale = join(cluster.repoDir, 'packs', 'stale.pack.lockstep-tmp-0123456789ab');
    const fresh = join(cluster.repoDir, 'packs', 'fresh.pack.lockstep-tmp-ba9876543210');
    await writeFile(stale, Buffer.alloc(1000));
    await writeFile(fresh, Buffer.alloc(500));
    const twoHoursAgo = (Date.now() - 2 * 3600_000) / 1000;
    await utimes(stale, twoHoursAgo, twoHoursAgo);

    const dry = await cli(['prune', '--keep-last', '1', '--dry-run', '--json']);
    expect(dry.code, dry.stderr).toBe(0);
    const d = json<PruneReport>(dry.stdout);
    expect(d.removed.length).toBeGreaterThanOrEqual(3);
    expect(d.bytesFreed).toBeGreaterThan(200 * 1024 * 1024);
    expect(d.temporaryDeleted).toBe(1);
    expect(await objectBytes(cluster.repoDir)).toBe(bytesBefore);
    expect(existsSync(stale)).toBe(true);

    const r = await cli(['prune', '--keep-last', '1', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const p = json<PruneReport>(r.stdout);
    expect(p.kept.map((k) => k.backupId)).toEqual([last.backupId]);
    expect(p.bytesFreed).toBe(d.bytesFreed);
    expect(p.temporaryDeleted).toBe(1);
    expect([existsSync(stale), existsSync(fresh)]).toEqual([false, true]);
    await rm(fresh);
    // the freed bytes count the stale temp file too
    expect(await objectBytes(cluster.repoDir)).toBe(bytesBefore - (p.bytesFreed - 1000));
    expect(json<{ backupId: string }[]>((await cli(['backup', 'list', '--json'])).stdout).map((b) => b.backupId)).toEqual([last.backupId]);
    const v = await cli(['backup', 'verify', last.backupId, '--read-data', '--json']);
    expect(v.code, v.stdout).toBe(0);

    // and the kept backup still restores
    const before = await fingerprint(cluster.agent('node1').data.data!);
    await rm(join(cluster.agent('node1').data.data!, 'small'), { recursive: true });
    const restore = await cli(['restore', last.backupId, '--json']);
    expect(restore.code, restore.stdout).toBe(0);
    expect(await fingerprint(cluster.agent('node1').data.data!)).toEqual(before);

    // prune without a policy is refused
    const none = await cli(['prune']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('--keep-last');
  });
});

describe('repository on S3 (Ceph RGW): a storage class the store does not have', () => {
  it('fails the backup at preflight on every node, the hint naming the setting; nothing was stopped or written', async () => {
    const { driver: _d, ...s3 } = await rgwBucket();
    const cluster = await startCluster({ nodes: 2, repository: { driver: 's3', ...s3, storageClass: 'NO_SUCH_CLASS' } });
    try {
      for (const a of cluster.agents) await writeFile(join(a.data.data!, 'f'), 'data');
      const r = await runCli(['backup', 'create', '--json'], { config: cluster.configFile });
      expect(r.code, r.stdout).toBe(4);
      const report = json<BackupReport>(r.stdout);
      expect(report.error?.code).toBe('LOCKSTEP_E_PREFLIGHT_FAILED');
      for (const node of ['node1', 'node2']) expect(report.error?.message).toMatch(new RegExp(`${node}: .*cannot write probes/${node} .*hint: check storageClass \\(NO_SUCH_CLASS\\)`));
      const keys = await collected(s3Driver.open({ ...s3, driver: undefined }, '/').list(''));
      expect(keys.filter((k) => k.startsWith('packs/') || k.startsWith('chunks/') || k.startsWith('backups/'))).toEqual([]);
    } finally {
      await stopCluster(cluster);
    }
  });
});

describe('repository on S3 (Ceph RGW), encrypted', () => {
  let cluster: LocalCluster;
  let bucket: S3Settings;
  let settings: Record<string, unknown>;
  let keyFile: string;
  let keyDir: string;
  const cli = (args: string[], config = cluster.configFile) => runCli(args, { config });

  beforeAll(async () => {
    keyDir = await tempDir('lockstep-key-');
    keyFile = join(keyDir, 'repo.key');
    await writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    bucket = await rgwBucket();
    const { driver: _d, ...s3 } = bucket;
    // chunkSize at the 32 KiB floor: every large file is stored as chunk objects here (the
    // packed blocks are covered on the filesystem repository above); the data in the store's
    // second class, and every object encrypted by the store too (SSE-KMS, RGW's test key)
    settings = { driver: 's3', ...s3, prefix: 'prod', chunkSize: 32 * 1024, encryption: { keyFile }, storageClass: 'COLD', serverSideEncryption: 'aws:kms', sseKmsKeyId: 'lockstep-test-key' };
    cluster = await startCluster({ nodes: 3, repository: settings });
    for (const a of cluster.agents) await fillDataDir(a.data.data!, a.node, 256 * 1024);
    await writeFile(join(cluster.agent('node2').data.data!, 'big.bin'), randomBytes(12 * 1024 * 1024));
  });
  afterAll(async () => {
    await stopCluster(cluster);
    await rm(keyDir, { recursive: true, force: true });
  });

  const driver = () => {
    const { driver: _d, encryption: _e, ...rest } = settings;
    return s3Driver.open(rest, '/');
  };
  const manifestKeyOf = (keys: string[]) => keys.find((k) => k.endsWith('manifest.json'))!;

  it('backs up into the bucket, the data in its storage class, every object encrypted by the store; stored names reveal no plaintext hash', async () => {
    const r = await cli(['backup', 'create', '--name', 's3', '--json']);
    expect(r.code, r.stdout).toBe(0);
    expect(json<BackupReport>(r.stdout).status).toBe('complete');
    const keys: string[] = [];
    for await (const k of driver().list('')) keys.push(k);
    expect(keys.some((k) => k.startsWith('chunks/'))).toBe(true);
    expect(keys.some((k) => k.startsWith('packs/'))).toBe(true);
    const big = await readFile(join(cluster.agent('node2').data.data!, 'big.bin'));
    const firstChunk = createHash('sha256').update(big.subarray(0, 32 * 1024)).digest('hex');
    expect(keys.filter((k) => k.startsWith('chunks/')).length).toBeGreaterThanOrEqual((12 * 1024 * 1024) / (32 * 1024));
    expect(keys.some((k) => k.includes(firstChunk))).toBe(false);
    const client = clientOf(bucket);
    try {
      const listed = (await client.send(new ListObjectsV2Command({ Bucket: bucket.bucket, Prefix: 'prod/' }))).Contents ?? [];
      const classes = (data: boolean) => [...new Set(listed.filter((o) => /^prod\/(chunks|packs)\//.test(o.Key!) === data).map((o) => o.StorageClass))];
      expect([classes(true), classes(false)]).toEqual([['COLD'], ['STANDARD']]);
      for (const Key of [keys.find((k) => k.startsWith('chunks/'))!, keys.find((k) => k.startsWith('packs/'))!, manifestKeyOf(keys)]) {
        const head = await client.send(new HeadObjectCommand({ Bucket: bucket.bucket, Key: `prod/${Key}` }));
        expect([Key, head.ServerSideEncryption, head.SSEKMSKeyId]).toEqual([Key, 'aws:kms', 'lockstep-test-key']);
      }
    } finally {
      client.destroy();
    }
    // the manifest is not readable without the key
    const manifestKey = manifestKeyOf(keys);
    const { readAll } = await import('../../lib/repo/repository.js');
    expect((await readAll(await driver().get(manifestKey))).toString('latin1')).not.toContain('node2');
  });

  it('a new coordinator with only the repository settings, key and certificates lists, verifies and restores', async () => {
    const dir = await tempDir('lockstep-newhost-');
    try {
      const old = parse(await readFile(cluster.configFile, 'utf8')) as Record<string, unknown>;
      await writeFile(join(dir, 'key'), await readFile(keyFile));
      const config = join(dir, 'lockstep.yaml');
      await writeFile(config, stringify({ cluster: old.cluster, repository: { ...settings, encryption: { keyFile: 'key' } }, tls: old.tls, agents: old.agents }));
      const list = json<{ backupId: string }[]>((await cli(['backup', 'list', '--json'], config)).stdout);
      expect(list).toHaveLength(1);
      const v = await cli(['backup', 'verify', list[0]!.backupId, '--read-data', '--json'], config);
      expect(v.code, v.stdout).toBe(0);
      // the check is kept in the bucket, sealed, and seen from the listing
      expect(json<VerifyReport>(v.stdout).recordedAs).toContain(`backups/${list[0]!.backupId}/checks/`);
      const checked = json<Extract<BackupListEntry, { checks: number }>[]>((await cli(['backup', 'list', '--json'], config)).stdout)[0]!;
      expect([checked.checks, checked.lastCheck?.status, checked.lastReadBack?.readDataPercent]).toEqual([1, 'ok', 100]);
      const before = await Promise.all(cluster.agents.map((a) => fingerprint(a.data.data!)));
      for (const a of cluster.agents) await rm(join(a.data.data!, 'CURRENT'), { force: true });
      await writeFile(join(cluster.agent('node2').data.data!, 'big.bin'), 'damaged');
      // "latest" from the repository alone: the one backup there
      const r = await cli(['restore', 'latest', '--json'], config);
      expect(r.code, r.stdout).toBe(0);
      expect(json<{ backupId: string }>(r.stdout).backupId).toBe(list[0]!.backupId);
      expect(await Promise.all(cluster.agents.map((a) => fingerprint(a.data.data!)))).toEqual(before);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a wrong or missing key fails clearly', async () => {
    const dir = await tempDir('lockstep-badkey-');
    try {
      const old = parse(await readFile(cluster.configFile, 'utf8')) as Record<string, unknown>;
      await writeFile(join(dir, 'wrong'), randomBytes(32).toString('hex'));
      const wrong = join(dir, 'wrong.yaml');
      await writeFile(wrong, stringify({ ...old, repository: { ...settings, encryption: { keyFile: 'wrong' } } }));
      const r1 = await cli(['backup', 'list'], wrong);
      expect(r1.code).toBe(4);
      expect(r1.stderr).toContain('LOCKSTEP_E_REPO_KEY_WRONG');
      expect(r1.stderr).not.toMatch(/\n\s+at /); // no stack trace
      const { encryption: _e, ...plain } = settings;
      const missing = join(dir, 'missing.yaml');
      await writeFile(missing, stringify({ ...old, repository: plain }));
      const r2 = await cli(['backup', 'list'], missing);
      expect(r2.code).toBe(4);
      expect(r2.stderr).toContain('LOCKSTEP_E_REPO_KEY_MISSING');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('two concurrent backups: one runs, the other fails fast naming the holder', async () => {
    // the first holds its lock a while (a failpoint), so the second surely starts during it: started
    // together, a backup this small could be over before the other had asked for the lock
    const first = runCli(['backup', 'create', '--name', 'one', '--json'], { config: cluster.configFile, env: { LOCKSTEP_FAILPOINTS: 'lock.hold=5000' } });
    for (const until = Date.now() + 60_000; !(await driver().head(LOCK_KEY)) && Date.now() < until; ) await new Promise((r) => setTimeout(r, 50));
    const [a, b] = await Promise.all([first, cli(['backup', 'create', '--name', 'two', '--json'])]);
    const reports = [a, b].map((r) => json<BackupReport>(r.stdout));
    expect(reports.map((r) => r.status).sort()).toEqual(['complete', 'failed']);
    const loser = reports.find((r) => r.status === 'failed')!;
    const winner = reports.find((r) => r.status === 'complete')!;
    expect(loser.error?.code).toBe('LOCKSTEP_E_REPO_LOCKED');
    expect(loser.error?.message).toContain(`backup ${winner.backupId}`);
    expect(loser.error?.message).toMatch(/pid \d+/);
    expect(await driver().head(LOCK_KEY)).toBeUndefined(); // released
  });

  it('a lock held by a live holder blocks; an expired one is taken over without anyone unlocking', async () => {
    const holder = (expiresAt: number) =>
      Buffer.from(JSON.stringify({ lockId: randomBytes(6).toString('hex'), operation: 'backup from elsewhere', host: 'other-host', pid: 4242, acquiredAt: new Date().toISOString(), heartbeatAt: new Date().toISOString(), expiresAt: new Date(expiresAt).toISOString() }));
    const free = json<RepoStatus>((await cli(['repo', 'status', '--json'])).stdout);
    expect(free.lock).toEqual({});
    expect(free).toMatchObject({ encrypted: true, format: expect.any(Number) as number });
    expect(free.backups).toBeGreaterThan(0);
    expect(free.newest?.backupId).toMatch(/^\d{8}-\d{6}-/);
    await driver().put(LOCK_KEY, holder(Date.now() + 60_000));
    // who holds it and until when, as a writer would judge it, without taking it
    const status = await cli(['repo', 'status']);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/lock: held by backup from elsewhere \(host other-host, pid 4242, since [^)]+\), lease until \S+ \(by the store's clock/);
    const held = json<RepoStatus>((await cli(['repo', 'status', '--json'])).stdout).lock;
    expect(held).toMatchObject({ judgedBy: 'store', takenOverNext: false, holder: { host: 'other-host', pid: 4242 } });
    expect(Date.parse(held.leaseUntil!)).toBeGreaterThan(Date.now() + 40_000);
    const blocked = await cli(['backup', 'create', '--name', 'blocked', '--json']);
    expect(blocked.code).not.toBe(0);
    expect(json<BackupReport>(blocked.stdout).error?.message).toContain('other-host, pid 4242');
    expect(await driver().head(LOCK_KEY)).toBeDefined(); // status took nothing

    await driver().put(LOCK_KEY, holder(Date.now() - 1000));
    expect(json<RepoStatus>((await cli(['repo', 'status', '--json'])).stdout).lock).toMatchObject({ takenOverNext: true });
    const r = await cli(['backup', 'create', '--name', 'takeover', '--json']);
    expect(r.code, r.stdout).toBe(0);
    expect(await driver().head(LOCK_KEY)).toBeUndefined();
  });

  it('prune frees what only the backups it gives up used (a thousand deletes a request); what is left is what verify reads', async () => {
    // every 32 KiB chunk of the old big file is used by the older backups alone
    await writeFile(join(cluster.agent('node2').data.data!, 'big.bin'), randomBytes(12 * 1024 * 1024));
    const last = json<BackupReport>((await cli(['backup', 'create', '--name', 'changed', '--json'])).stdout);
    expect(last.status).toBe('complete');
    // every backup of this run was taken within an hour of the newest: a dry run by that rule keeps them all, saying so
    const before = json<{ backupId: string }[]>((await cli(['backup', 'list', '--json'])).stdout).map((b) => b.backupId);
    const dry = await cli(['prune', '--keep-within', '1h', '--dry-run', '--json']);
    expect(dry.code, dry.stderr).toBe(0);
    // (in any order: backups of one second are listed in the order they committed)
    const byId = (a: { backupId: string }, b: { backupId: string }) => a.backupId.localeCompare(b.backupId);
    expect(json<PruneReport>(dry.stdout).kept.sort(byId)).toEqual(before.map((backupId) => ({ backupId, reasons: ['within 1h'] })).sort(byId));
    const r = await cli(['prune', '--keep-last', '1', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const p = json<PruneReport>(r.stdout);
    expect(p.kept.map((k) => k.backupId)).toEqual([last.backupId]);
    expect(p.objectsDeleted).toBeGreaterThanOrEqual((12 * 1024 * 1024) / (32 * 1024));
    const stored = (await collected(driver().list(''))).filter((k) => k.startsWith('chunks/') || k.startsWith('packs/'));
    expect(stored.length).toBe(p.objectsKept);
    expect(json<{ backupId: string }[]>((await cli(['backup', 'list', '--json'])).stdout).map((b) => b.backupId)).toEqual([last.backupId]);
    const v = await cli(['backup', 'verify', last.backupId, '--read-data', '--json']);
    expect(v.code, v.stdout).toBe(0);
  });
});
