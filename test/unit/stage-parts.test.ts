/**
 * Staging takes a file index part by part: a tree uploaded, its index stored again as many
 * small parts, staged into an empty place and read back the same (content, modes, mtimes,
 * symlinks); the first file is staged before more than two parts were read; a damaged later
 * part fails the stage naming the part; a big file alone has several reads on the way at
 * once, and is written whole and in order.
 */
import { describe, expect, it } from 'vitest';
import { lstat, mkdir, readFile, readlink, symlink, utimes, writeFile, chmod } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { FsDriver } from '../../plugins/storage/fs.js';
import { Repository } from '../../lib/repo/repository.js';
import { indexKey } from '../../lib/repo/layout.js';
import { uploadSnapshot } from '../../agent/transfer/upload.js';
import { stageIndex, type IndexParts } from '../../agent/transfer/stage.js';
import { walkTree } from '../../lib/tree.js';
import type { ByteRange } from '../../plugins/storage/types.js';
import { tempFolders } from '../helpers/temp.js';
import { quietJobContext } from '../helpers/job.js';
import { stagedData } from '../helpers/repo.js';

const temp = tempFolders();

/** every entry under `root`: type, mode, mtime, and content or target */
async function treeOf(root: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of walkTree(root)) {
    const what = e.type === 'file' ? (await readFile(e.abs)).toString('base64') : e.type === 'symlink' ? await readlink(e.abs) : '';
    // a folder's mtime is set after what is in it; a symlink's is whatever lutimes could do
    const mtime = e.type === 'symlink' ? '' : Math.floor(e.stat.mtimeMs);
    out.push(`${e.type} ${e.rel} ${(e.stat.mode & 0o7777).toString(8)} ${mtime} ${what.length > 60 ? what.slice(0, 60) + what.length : what}`);
  }
  return out;
}

/** a tree: 12 folders of 20 small files, an empty file, two files of several blocks, a symlink */
async function makeTree(root: string): Promise<void> {
  const data = join(root, 'data');
  for (let d = 0; d < 12; d++) {
    const dir = join(data, `d${String(d).padStart(2, '0')}`, 'sub');
    await mkdir(dir, { recursive: true });
    for (let f = 0; f < 20; f++) await writeFile(join(dir, `f${f}.sst`), randomBytes(100 + d * 50 + f));
    await chmod(join(dir, 'f0.sst'), 0o600);
  }
  await writeFile(join(data, 'd02', 'empty.log'), '');
  await chmod(join(data, 'd02', 'empty.log'), 0o640);
  await writeFile(join(data, 'big-a.db'), randomBytes(3 * 1024 * 1024 + 17));
  await writeFile(join(data, 'd05', 'big-b.db'), randomBytes(1024 * 1024));
  await symlink('d05/big-b.db', join(data, 'link'));
  await utimes(join(data, 'd03', 'sub', 'f3.sst'), new Date('2024-02-03T04:05:06.789Z'), new Date('2024-02-03T04:05:06.789Z'));
}

/** the parts, counting how many were asked for */
function counted(parts: IndexParts): { parts: IndexParts; read: () => number } {
  let n = 0;
  return {
    read: () => n,
    parts: (async function* () {
      for await (const p of parts) {
        n++;
        yield p;
      }
    })(),
  };
}

describe('staging a file index part by part', () => {
  it('stages the whole tree, starting before most parts were read', async () => {
    const snap = await temp('snap');
    await makeTree(snap);
    const repo = await Repository.init(new FsDriver(await temp('repo')));
    const up = await uploadSnapshot(repo, snap, ['data'], { backupId: '20261204-100000-parts', node: 'n1', component: 'c' }, quietJobContext());
    // the same index stored again as parts of ~4 KB
    const index = await repo.readIndex(up.indexKey, up.indexSha256);
    const key = indexKey('20261204-100001-parts', 'n1', 'c');
    const sha = await repo.writeIndex(key, index, 4096);
    const head = JSON.parse((await repo.readDecoded(key)).toString('utf8')) as { parts: unknown[] };
    expect(head.parts.length).toBeGreaterThan(8);

    const live = await temp('live');
    const staging = join(await temp('stage'), 'data');
    const { parts, read } = counted(repo.indexParts(key, sha));
    let readAtFirstFile = -1;
    const ctx = quietJobContext();
    ctx.progress = (p) => {
      if ((p.filesDone ?? 0) >= 1 && readAtFirstFile < 0) readAtFirstFile = read();
    };
    const result = await stageIndex(repo, parts, { data: { live: join(live, 'data'), staging } }, ctx, { files: up.files, bytes: up.bytes });
    expect(result.files).toBe(up.files);
    expect(result.bytes).toBe(up.bytes);
    expect(result.bytesDownloaded).toBe(up.bytes);
    expect(await treeOf(staging)).toEqual(await treeOf(join(snap, 'data')));
    expect(read()).toBe(head.parts.length);
    // the part being staged and the one read ahead of it
    expect(readAtFirstFile).toBeGreaterThanOrEqual(1);
    expect(readAtFirstFile).toBeLessThanOrEqual(2);
  });

  it('a damaged later part fails the stage, naming it', async () => {
    const snap = await temp('snap');
    await makeTree(snap);
    const repoDir = await temp('repo');
    const repo = await Repository.init(new FsDriver(repoDir));
    const up = await uploadSnapshot(repo, snap, ['data'], { backupId: '20261204-110000-parts', node: 'n1', component: 'c' }, quietJobContext());
    const index = await repo.readIndex(up.indexKey, up.indexSha256);
    const key = indexKey('20261204-110001-parts', 'n1', 'c');
    const sha = await repo.writeIndex(key, index, 4096);
    const head = JSON.parse((await repo.readDecoded(key)).toString('utf8')) as { parts: { key: string }[] };
    const last = head.parts.at(-1)!.key;
    const stored = join(repoDir, ...last.split('/'));
    const bytes = await readFile(stored);
    bytes[bytes.length - 3] ^= 0xff;
    await writeFile(stored, bytes);

    const live = await temp('live');
    const staging = join(await temp('stage'), 'data');
    const err = await stageIndex(repo, repo.indexParts(key, sha), { data: { live: join(live, 'data'), staging } }, quietJobContext()).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LOCKSTEP_E_REPO_CORRUPT' });
    expect((err as Error).message).toContain(`part ${head.parts.length} of file index ${key}`);
    // what was staged stays in staging (the restore removes it); the live place was not touched
    expect((await lstat(staging)).isDirectory()).toBe(true);
    await expect(lstat(join(live, 'data'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('staging a big file', () => {
  /** an fs store whose reads each take a long round trip, counting how many are on the way at once */
  class FarAway extends FsDriver {
    onTheWay = 0;
    most = 0;
    override async getBuffer(key: string, range?: ByteRange, signal?: AbortSignal): Promise<Buffer> {
      this.most = Math.max(this.most, ++this.onTheWay);
      try {
        // (far slower than writing a block here, even on a busy machine: a file waits for each read)
        await new Promise((r) => setTimeout(r, 40));
        return await super.getBuffer(key, range, signal);
      } finally {
        this.onTheWay--;
      }
    }
  }

  it('alone, it has several reads on the way at once, and comes out whole', async () => {
    const snap = await temp('snap');
    await mkdir(join(snap, 'data'));
    // ten 4 MiB blocks: ten reads
    await writeFile(join(snap, 'data', 'one.db'), randomBytes(40 * 1024 * 1024 + 5));
    const driver = new FarAway(await temp('repo'));
    const repo = await Repository.init(driver);
    const up = await uploadSnapshot(repo, snap, ['data'], { backupId: '20261205-100000-big', node: 'n1', component: 'c' }, quietJobContext());
    driver.most = 0;
    const { staging, result } = await stagedData(repo, up, temp);
    expect(result.bytesDownloaded).toBe(40 * 1024 * 1024 + 5);
    expect((await readFile(join(staging, 'one.db'))).equals(await readFile(join(snap, 'data', 'one.db')))).toBe(true);
    // one a file would be 1 (the index's own reads are done before)
    expect(driver.most).toBeGreaterThanOrEqual(3);
    expect(driver.most).toBeLessThanOrEqual(8);
  });
});
