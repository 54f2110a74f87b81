/**
 * The shipped scheduled backup (systemd/lockstep-backup.service): its commands, in its
 * order, against a real agent, two nights running: each exits 0, the check reads back the
 * night's new backup, and retention keeps the newest of the day.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { resolveFromRoot, type LocalCluster } from '../../demo/local-cluster.js';
import { fillDataDir } from '../../demo/fixtures.js';
import type { BackupReport } from '../../lib/report.js';
import type { VerifyReport } from '../../lib/repo/verify.js';
import type { PruneReport } from '../../lib/repo/prune.js';
import { json, runCli, startCluster, stopCluster } from '../helpers/cluster.js';

describe('scheduled backup unit', () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = await startCluster({ nodes: 1 });
    await fillDataDir(cluster.agents[0]!.data.data!, 'node1', 1024 * 1024);
  });
  afterAll(() => stopCluster(cluster));

  it("runs its commands in order two nights running: a backup, a sample of it read back, retention", async () => {
    const unit = await readFile(resolveFromRoot('systemd', 'lockstep-backup.service'), 'utf8');
    const commands = unit
      .split('\n')
      .filter((l) => l.startsWith('ExecStart='))
      .map((l) => l.slice('ExecStart='.length).trim().split(/\s+/));
    expect(commands.map((c) => c.slice(0, 4).join(' '))).toEqual(['/usr/bin/lockstep backup create --name', '/usr/bin/lockstep backup verify latest', '/usr/bin/lockstep backup verify stalest', '/usr/bin/lockstep prune --keep-daily 14']);

    const nights: { backup: BackupReport; verify: VerifyReport; older: VerifyReport; prune: PruneReport }[] = [];
    for (let night = 0; night < 2; night++) {
      await writeFile(join(cluster.agents[0]!.data.data!, `night-${night}.log`), `night ${night}\n`);
      const out: unknown[] = [];
      for (const [, ...args] of commands) {
        const r = await runCli([...args, '--json'], { config: cluster.configFile });
        expect(r.code, `${args.join(' ')}: ${r.stdout}${r.stderr}`).toBe(0);
        out.push(json(r.stdout));
      }
      nights.push({ backup: out[0] as BackupReport, verify: out[1] as VerifyReport, older: out[2] as VerifyReport, prune: out[3] as PruneReport });
    }
    const [first, second] = nights as [(typeof nights)[0], (typeof nights)[0]];
    for (const n of [first, second]) {
      expect(n.backup.status).toBe('complete');
      // the check is of that night's backup, a sample with its seed named
      expect(n.verify).toMatchObject({ backupId: n.backup.backupId, status: 'ok', readDataPercent: 5 });
      expect(n.verify.seed).toMatch(/^[0-9a-f]{16}$/);
      expect(n.verify.objectsChecked).toBeGreaterThan(0);
    }
    // the stalest: the first night, its only backup; the second, the first night's (read back before the second's)
    expect([first.older.backupId, second.older.backupId]).toEqual([first.backup.backupId, first.backup.backupId]);
    expect(second.older).toMatchObject({ status: 'ok', readDataPercent: 5 });
    expect(first.prune.removed).toEqual([]);
    // both nights on the same (UTC) day: the day keeps its newest (unless the run crossed midnight)
    const sameDay = first.backup.backupId.slice(0, 8) === second.backup.backupId.slice(0, 8);
    expect(second.prune.removed).toEqual(sameDay ? [first.backup.backupId] : []);
    const list = json<{ backupId: string; lastCheck?: { status: string; readDataPercent: number } }[]>((await runCli(['backup', 'list', '--json'], { config: cluster.configFile })).stdout);
    expect(list.map((b) => b.backupId)).toEqual(sameDay ? [second.backup.backupId] : [first.backup.backupId, second.backup.backupId]);
    // each kept backup shows the night's check; a pruned one took its record with it
    for (const b of list) expect(b.lastCheck).toMatchObject({ status: 'ok', readDataPercent: 5 });
  });
});
