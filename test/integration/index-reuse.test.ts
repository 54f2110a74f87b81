/**
 * An incremental stores again, by the store's copy, the parts of the previous backup's
 * file index whose entries did not change: through the real agent and an fs repository.
 * What a user checks: the report says how many parts were reused, the backup verifies and
 * restores exactly, deleting the older backup takes nothing from the newer one, and a part
 * that can no longer be copied costs only the reuse.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { LocalCluster } from '../../demo/local-cluster.js';
import { fingerprint } from '../../demo/fixtures.js';
import type { BackupReport, RestoreReport } from '../../lib/report.js';
import type { UploadResult } from '../../lib/wire.js';
import { json, runCli, startCluster, stopCluster } from '../helpers/cluster.js';
import { leftoversBeside } from '../helpers/leftovers.js';

const settle = () => new Promise((r) => setTimeout(r, 2100));

describe('file index parts reused by an incremental', () => {
  let cluster: LocalCluster;
  const cli = (args: string[]) => runCli(args, { config: cluster.configFile });
  const backup = async (name: string): Promise<{ report: BackupReport; up: UploadResult }> => {
    const r = await cli(['backup', 'create', '--name', name, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = json<BackupReport>(r.stdout);
    return { report, up: report.nodes[0]!.components[0]!.upload! };
  };
  const verify = async (id: string) => {
    const r = await cli(['backup', 'verify', id, '--read-data=100', '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  };
  const partsOf = async (id: string) => (await readdir(join(cluster.repoDir, 'backups', id, 'nodes', 'node1', 'data.parts')).catch(() => [] as string[])).filter((n) => n.endsWith('.json'));

  beforeAll(async () => {
    cluster = await startCluster({ nodes: 1 });
  });
  afterAll(() => stopCluster(cluster));

  it('reuses the unchanged parts; the backup verifies and restores whole, also once the older backup is deleted', async () => {
    const d = cluster.agent('node1').data.data!;
    // 24 folders of 400 small files and one file of many blocks: an index of several parts
    for (let f = 0; f < 24; f++) {
      await mkdir(join(d, `d${String(f).padStart(2, '0')}`), { recursive: true });
      for (let i = 0; i < 400; i++) await writeFile(join(d, `d${String(f).padStart(2, '0')}`, `f${i}`), `${f}/${i}\n`);
    }
    await writeFile(join(d, 'big.bin'), randomBytes(3 * 1024 * 1024));
    // files that changed within 2 s of being looked at are read again next time: let them settle
    await settle();
    const first = await backup('first');
    expect(first.up.indexParts).toBeGreaterThanOrEqual(4);
    expect(first.up.indexPartsReused ?? 0).toBe(0);

    // a file changed in one folder, one added to another: their parts are made again, the others copied
    await writeFile(join(d, 'd05', 'f7'), 'changed\n');
    await writeFile(join(d, 'd17', 'new'), 'new\n');
    await settle();
    const second = await backup('second');
    const parts = second.up.indexParts!;
    expect(second.up.indexPartsReused).toBeGreaterThan(0);
    expect(second.up.indexPartsReused).toBeLessThanOrEqual(parts - 2);
    expect(await partsOf(second.report.backupId)).toHaveLength(parts);
    const text = await cli(['backup', 'create', '--name', 'text']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/index parts reused (\d+)\/\1/);
    const want = await fingerprint(d);

    // the older backup goes: the newer one's parts are its own objects
    const del = await cli(['backup', 'delete', first.report.backupId]);
    expect(del.code, del.stderr).toBe(0);
    await verify(second.report.backupId);

    // nothing changed: every part is the previous one's
    const third = await backup('third');
    expect(third.up.indexPartsReused).toBe(third.up.indexParts);

    // restored onto changed data, the second backup is what the data was then
    await writeFile(join(d, 'd05', 'f7'), 'later\n');
    await rm(join(d, 'd17'), { recursive: true });
    const restored = await runCli(['restore', second.report.backupId, '--node', 'node1', '--json'], { config: cluster.configFile });
    expect(restored.code, restored.stderr).toBe(0);
    expect(json<RestoreReport>(restored.stdout).status).toBe('restored');
    expect(await fingerprint(d)).toEqual(want);
    expect(await leftoversBeside(d)).toEqual([]);
  });

  it('a part of the previous index that is gone: the index is written whole, and the next one reuses again', async () => {
    const d = cluster.agent('node1').data.data!;
    await settle();
    const before = await backup('before');
    // the previous backup loses a part of its index (as if it were deleted while this one ran)
    const gone = (await partsOf(before.report.backupId)).sort().at(-1);
    await unlink(join(cluster.repoDir, 'backups', before.report.backupId, 'nodes', 'node1', 'data.parts', gone!));
    await writeFile(join(d, 'd03', 'f1'), 'changed again\n');
    await settle();
    const whole = await backup('whole');
    expect(whole.up.indexPartsReused ?? 0).toBe(0);
    expect(await partsOf(whole.report.backupId)).toHaveLength(whole.up.indexParts!);
    await verify(whole.report.backupId);
    const next = await backup('next');
    expect(next.up.indexPartsReused).toBe(next.up.indexParts);
    await verify(next.report.backupId);
  });
});
