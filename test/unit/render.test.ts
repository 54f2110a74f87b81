import { describe, expect, it } from 'vitest';
import { renderBackup, renderPrune } from '../../coordinator/render.js';
import type { BackupReport, ComponentReport } from '../../lib/report.js';
import { versioningWarning } from '../../lib/repo/prune.js';

function report(component: Partial<ComponentReport>): BackupReport {
  return {
    kind: 'backup',
    backupId: '20261204-100000-nightly',
    cluster: 'c1',
    status: 'complete',
    coverage: 'default',
    startedAt: '2026-12-04T10:00:00.000Z',
    finishedAt: '2026-12-04T10:00:02.000Z',
    durationMs: 2000,
    steps: [],
    nodes: [{ node: 'node1', address: '127.0.0.1:7443', status: 'ok', components: [{ node: 'node1', component: 'data', plugin: 'directory', tier: 'storage', role: 'primary', shard: 'node1', status: 'ok', ...component }] }],
    shards: [],
    totals: { files: 3, bytes: 3000, bytesNew: 100, chunksNew: 1, maxDowntimeMs: 0 },
  };
}

const upload = { indexKey: 'k', indexSha256: 's', files: 3, dirs: 1, symlinks: 0, bytes: 3000, chunks: 3, chunksNew: 1, bytesNew: 100, uploadMs: 1820 };

describe('backup report in words', () => {
  it("says where an upload's time went when the agent measured it", () => {
    const text = renderBackup(report({ upload: { ...upload, phases: { walkMs: 312, previousMs: 4, filesMs: 1100, indexMs: 350 } } }));
    expect(text).toContain('upload 1.82 s (walk 312 ms, previous index 4 ms, files 1.10 s, index 350 ms)');
  });

  it("tells the report's warnings", () => {
    const text = renderBackup({ ...report({ upload }), warnings: ["this host's clock is 600 s ahead of the clock of /repo: …"] });
    expect(text).toContain("\n  warning: this host's clock is 600 s ahead of the clock of /repo: …");
  });

  it('leaves the phases out for an upload that has none', () => {
    const text = renderBackup(report({ upload }));
    expect(text).toContain('upload 1.82 s');
    expect(text).not.toContain('walk');
  });
});

describe('counts in words', () => {
  it('one of a thing is singular, any other number plural', () => {
    const text = renderPrune({ kind: 'prune', dryRun: true, kept: [{ backupId: '20261204-100000-nightly', reasons: ['last 1'] }], removed: [], objectsDeleted: 0, bytesFreed: 0, objectsKept: 1, leftoversDeleted: 1, temporaryDeleted: 2, durationMs: 5 });
    expect(text).toContain('dry run: kept 1 backup, would remove 0; would remove 0 objects (0 B), 1 object still in use');
    expect(text).toContain('would remove 1 object left by backups, or components of partial backups, that never committed');
    expect(text).toContain('would remove 2 temp files of writes killed mid-way');
    expect(renderBackup(report({ upload: { ...upload, files: 1 } }))).toContain(': 1 file 2.9 KiB');
  });

  it("a prune into a bucket that keeps old versions says their space is not given back", () => {
    const warning = versioningWarning('enabled', 's3://b/', 'the 3 objects (12 bytes) this prune deleted')!;
    expect(warning).toBe(
      's3://b/ keeps every deleted object as an old version (bucket versioning is on): the space of the 3 objects (12 bytes) this prune deleted is not given back, and is billed, until a lifecycle rule that expires noncurrent versions (NoncurrentVersionExpiration) and expired delete markers gives the space back',
    );
    expect(versioningWarning('off', 's3://b/', 'x')).toBeUndefined();
    expect(versioningWarning(undefined, 's3://b/', 'x')).toBeUndefined();
    const text = renderPrune({ kind: 'prune', dryRun: false, kept: [], removed: [], objectsDeleted: 3, bytesFreed: 12, objectsKept: 1, leftoversDeleted: 0, temporaryDeleted: 0, durationMs: 5, warnings: [warning] });
    expect(text.split('\n').at(-1)).toBe(`  warning: ${warning}`);
  });
});
