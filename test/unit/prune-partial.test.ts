/**
 * A partial backup commits without the components whose uploads failed; one that failed
 * after it wrote (some of) its index left that index in the backup's folder, where nothing
 * reads it. Prune removes it (a dry run counts it), and leaves the backup's own indexes,
 * manifest and check records: the backup still verifies and restores.
 */
import { describe, expect, it } from 'vitest';
import { mkdir, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { FsDriver } from '../../plugins/storage/fs.js';
import { listKeys } from '../../plugins/storage/types.js';
import { Repository } from '../../lib/repo/repository.js';
import { prune } from '../../lib/repo/prune.js';
import { verifyBackup } from '../../lib/repo/verify.js';
import { backupPrefix, indexOwnerOf, indexPartKey } from '../../lib/repo/layout.js';
import { uploadSnapshot } from '../../agent/transfer/upload.js';
import { tempFolders } from '../helpers/temp.js';
import { quietJobContext } from '../helpers/job.js';
import { commitUploads } from '../helpers/repo.js';

const temp = tempFolders();
const backupId = '20261205-120000-partial';

describe('prune and a partial backup', () => {
  it("removes the index a failed component wrote, and nothing of the backup's own", async () => {
    const repo = await Repository.init(new FsDriver(await temp('repo')));
    const snap = await temp('snap');
    await mkdir(join(snap, 'data'), { recursive: true });
    await writeFile(join(snap, 'data', 'table.db'), randomBytes(512 * 1024));
    const n1 = await uploadSnapshot(repo, snap, ['data'], { backupId, node: 'n1', component: 'db' }, quietJobContext());
    // n2's upload wrote its index, and a part of a bigger one, then failed: the backup commits without it
    const n2 = await uploadSnapshot(repo, snap, ['data'], { backupId, node: 'n2', component: 'db' }, quietJobContext());
    await repo.driver.put(indexPartKey(n2.indexKey, 1), Buffer.from('{}'));
    await commitUploads(repo, backupId, [{ node: 'n1', plugin: 'directory', up: n1 }]);
    const before = await listKeys(repo.driver, backupPrefix(backupId));
    const strays = before.filter((k) => indexOwnerOf(k)?.node === 'n2');
    expect(strays.sort()).toEqual([n2.indexKey, indexPartKey(n2.indexKey, 1)].sort());

    const dry = await prune(repo, { keepLast: 1 }, { dryRun: true });
    expect(dry.leftoversDeleted).toBe(2);
    expect(await listKeys(repo.driver, backupPrefix(backupId))).toEqual(before);

    const done = await prune(repo, { keepLast: 1 });
    expect(done.leftoversDeleted).toBe(2);
    expect(done.removed).toEqual([]);
    expect((await listKeys(repo.driver, backupPrefix(backupId))).sort()).toEqual(before.filter((k) => !strays.includes(k)).sort());
    expect(await verifyBackup(repo, backupId, { readDataPercent: 100 })).toMatchObject({ status: 'ok', problems: [] });
    // nothing more the next time
    expect((await prune(repo, { keepLast: 1 })).leftoversDeleted).toBe(0);
  });

  it('tells index keys from the rest of a backup folder, components with dots in their names too', () => {
    expect(indexOwnerOf('backups/20261205-120000-x/nodes/n1/db.main.json')).toEqual({ backupId: '20261205-120000-x', node: 'n1', component: 'db.main' });
    expect(indexOwnerOf('backups/20261205-120000-x/nodes/n1/db.parts/000001.json')).toEqual({ backupId: '20261205-120000-x', node: 'n1', component: 'db' });
    expect(indexOwnerOf('backups/20261205-120000-x/nodes/n1/x.parts.json')).toEqual({ backupId: '20261205-120000-x', node: 'n1', component: 'x.parts' });
    expect(indexOwnerOf('backups/20261205-120000-x/manifest.json')).toBeUndefined();
    expect(indexOwnerOf('backups/20261205-120000-x/checks/20261205T120000000Z_ok_0_ab.json')).toBeUndefined();
    expect(indexOwnerOf('backups/20261205-120000-x/nodes/n1/db.parts/extra/000001.json')).toBeUndefined();
  });
});
