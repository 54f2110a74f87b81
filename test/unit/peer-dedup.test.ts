/**
 * A component's first backup on a node (a replica added, a node replaced or renamed)
 * dedups against the newest backup of a component of the same name and plugin on another
 * node: what the peer already stored is not stored again; every file is still read (the
 * peer's inodes and change times mean nothing here) and what is staged back is this node's
 * data, byte for byte. A node with a backup of its own, or a peer of another plugin, is
 * not used that way.
 */
import { describe, expect, it } from 'vitest';
import { cp, mkdir, readFile, utimes, writeFile, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FsDriver } from '../../plugins/storage/fs.js';
import { Repository } from '../../lib/repo/repository.js';
import type { UploadResult } from '../../lib/wire.js';
import { uploadSnapshot, type UploadTarget } from '../../agent/transfer/upload.js';
import { tempFolders } from '../helpers/temp.js';
import { quietJobContext } from '../helpers/job.js';
import { commitUploads as commit, stagedData } from '../helpers/repo.js';

const temp = tempFolders();

/** a replica's data: a 3 MiB file of 32 KiB blocks, small files, a folder */
async function makeData(root: string): Promise<void> {
  await mkdir(join(root, 'data', 'sst'), { recursive: true });
  await writeFile(join(root, 'data', 'table.db'), randomBytes(3 * 1024 * 1024));
  for (let i = 0; i < 40; i++) await writeFile(join(root, 'data', 'sst', `${i}.sst`), randomBytes(4096 + i));
}

async function restoredEquals(repo: Repository, up: UploadResult, snap: string): Promise<void> {
  const { staging } = await stagedData(repo, up, temp);
  for (const rel of ['table.db', 'sst/0.sst', 'sst/39.sst']) expect((await readFile(join(staging, rel))).equals(await readFile(join(snap, 'data', rel)))).toBe(true);
}

const target = (backupId: string, node: string, plugin = 'directory', shard?: string): UploadTarget => ({ backupId, node, component: 'db', plugin, shard });

describe('a first backup on a node dedups against a peer', () => {
  it("stores only what differs from the peer's newest backup, reads every file, restores this node's data", async () => {
    const repo = await Repository.init(new FsDriver(await temp('repo')));
    const a = await temp('a');
    await makeData(a);
    const first = await uploadSnapshot(repo, a, ['data'], target('20261204-100000-one', 'n1'), quietJobContext());
    expect(first.previousNode).toBeUndefined();
    await commit(repo, '20261204-100000-one', [{ node: 'n1', plugin: 'directory', up: first }]);

    // n2: a copy of n1's data (other inodes, same mtimes), one page of the big file and one small file changed
    const b = await temp('b');
    await cp(join(a, 'data'), join(b, 'data'), { recursive: true, preserveTimestamps: true });
    const table = join(b, 'data', 'table.db');
    const { mtime } = await stat(table);
    const body = await readFile(table);
    randomBytes(8192).copy(body, 1024 * 1024);
    await writeFile(table, body);
    await utimes(table, mtime, mtime); // same size and mtime as the peer's: only the content tells
    await writeFile(join(b, 'data', 'sst', '7.sst'), randomBytes(4096 + 7));
    const second = await uploadSnapshot(repo, b, ['data'], target('20261204-110000-two', 'n2'), quietJobContext());

    expect(second.previousNode).toBe('n1');
    expect(second.previousIndex).toBe('repository');
    // every file read (nothing taken as unchanged on another host's say-so)...
    expect(second.filesUnchanged).toBe(0);
    expect(second.bytesRead).toBe(second.bytes);
    // ...the big file's blocks with the peer's fingerprints not even hashed (small files always are)...
    const small = Array.from({ length: 40 }, (_, i) => 4096 + i).reduce((x, y) => x + y, 0);
    expect(second.bytesHashed).toBe(32768 + small);
    // ...and only the changed 32 KiB block and the changed small file stored
    expect(second.bytesNew).toBeLessThan(64 * 1024);
    expect(first.bytesNew).toBeGreaterThan(3 * 1024 * 1024);
    await restoredEquals(repo, second, b);
  });

  it("does not use a peer of another plugin, nor a peer once the node has a backup of its own", async () => {
    const repo = await Repository.init(new FsDriver(await temp('repo')));
    const a = await temp('a');
    await makeData(a);
    const first = await uploadSnapshot(repo, a, ['data'], target('20261204-120000-one', 'n1', 'etcd'), quietJobContext());
    await commit(repo, '20261204-120000-one', [{ node: 'n1', plugin: 'etcd', up: first }]);
    const b = await temp('b');
    await cp(join(a, 'data'), join(b, 'data'), { recursive: true, preserveTimestamps: true });
    // another plugin: a full backup
    const other = await uploadSnapshot(repo, b, ['data'], target('20261204-130000-two', 'n2'), quietJobContext());
    expect(other.previousNode).toBeUndefined();
    expect(other.previousIndex).toBeUndefined();
    expect(other.bytesHashed).toBe(other.bytes);
    await commit(repo, '20261204-130000-two', [{ node: 'n2', plugin: 'directory', up: other }]);
    // n2 has its own backup now: that is the one it dedups against
    const again = await uploadSnapshot(repo, b, ['data'], target('20261204-140000-three', 'n2'), quietJobContext());
    expect(again.previousNode).toBeUndefined();
    expect(again.previousIndex).toBe('repository');
    expect(again.bytesNew).toBe(0);
  });

  it("a peer's file with this file's inode, size and mtime is still read (inodes of two hosts can coincide)", async () => {
    const repo = await Repository.init(new FsDriver(await temp('repo')));
    const a = await temp('a');
    await makeData(a);
    // settled (changed over 2 s before the walk): n1's index counts them as seen
    await sleep(2100);
    const first = await uploadSnapshot(repo, a, ['data'], target('20261204-150000-one', 'n1'), quietJobContext());
    await commit(repo, '20261204-150000-one', [{ node: 'n1', plugin: 'directory', up: first }]);
    // the same folder backed up as n2 (the same inodes), a file rewritten with its size and mtime kept;
    // a hard-link snapshot (`linked`) trusts the inode alone for a file of its own node
    const table = join(a, 'data', 'table.db');
    const { mtime } = await stat(table);
    const body = await readFile(table);
    randomBytes(8192).copy(body, 2 * 1024 * 1024);
    await writeFile(table, body);
    await utimes(table, mtime, mtime);
    const second = await uploadSnapshot(repo, a, ['data'], { ...target('20261204-160000-two', 'n2'), linked: true }, quietJobContext());
    expect(second.previousNode).toBe('n1');
    expect(second.filesUnchanged).toBe(0);
    expect(second.bytesNew).toBeGreaterThan(0);
    await restoredEquals(repo, second, a);
  });

  it('prefers a peer of its own shard (a replica) to the first by name', async () => {
    const repo = await Repository.init(new FsDriver(await temp('repo')));
    const a = await temp('a');
    await makeData(a);
    const c = await temp('c');
    await makeData(c);
    const one = await uploadSnapshot(repo, a, ['data'], target('20261204-170000-one', 'n1'), quietJobContext());
    const three = await uploadSnapshot(repo, c, ['data'], target('20261204-170000-one', 'n3'), quietJobContext());
    await commit(repo, '20261204-170000-one', [
      { node: 'n1', plugin: 'directory', up: one, shard: 'left' },
      { node: 'n3', plugin: 'directory', up: three, shard: 'right' },
    ]);
    // n2: a replica of n3 (shard "right"), added later
    const b = await temp('b');
    await cp(join(c, 'data'), join(b, 'data'), { recursive: true, preserveTimestamps: true });
    const two = await uploadSnapshot(repo, b, ['data'], target('20261204-180000-two', 'n2', 'directory', 'right'), quietJobContext());
    expect(two.previousNode).toBe('n3');
    expect(two.bytesNew).toBe(0);
    // without a shard of its own kind among them: the first by name
    const four = await uploadSnapshot(repo, b, ['data'], target('20261204-190000-three', 'n4', 'directory', 'elsewhere'), quietJobContext());
    expect(four.previousNode).toBe('n1');
    expect(four.bytesNew).toBeGreaterThan(3 * 1024 * 1024);
  });
});
