/**
 * What a flush of the fs driver makes durable: the files put since the last flush and the
 * folders whose entries changed, an fsync each, when they are few (an incremental); one
 * syncfs of the whole filesystem when they are many (a full backup), or when the
 * filesystem does no fsync. A failed flush leaves them for the next one.
 */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { FsDriver } from '../../plugins/storage/fs.js';
import { LockstepError } from '../../lib/errors.js';
import { tempFolders } from '../helpers/temp.js';

const temp = tempFolders();

/** an fs driver that records what its flushes sync (and does sync it) */
class Recording extends FsDriver {
  whole = 0;
  synced: string[][] = [];
  failNext = false;
  /** every fsync refused as a filesystem without it would */
  noFsync = false;
  protected override async syncWhole(): Promise<void> {
    this.whole++;
    await super.syncWhole();
  }
  protected override async fsyncEach(paths: string[]): Promise<void> {
    if (this.noFsync && paths.length > 0) throw Object.assign(new Error('EINVAL: invalid argument, fsync'), { code: 'EINVAL' });
    if (this.failNext) {
      this.failNext = false;
      throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
    }
    this.synced.push([...paths].sort());
    await super.fsyncEach(paths);
  }
}

describe('fs driver flush', () => {
  it('a few objects: each file put or copied, and each folder whose entries changed, an fsync each; nothing twice', async () => {
    const dir = await temp('repo');
    const d = new Recording(dir);
    await d.put('packs/ab/p1', Buffer.from('pack'));
    await d.put('packs/ab/p2', Buffer.from('pack'));
    await d.put('backups/b1/nodes/n1/data.json', Buffer.from('index'));
    await d.copy('packs/ab/p1', 'backups/b2/part');
    await d.put('gone', Buffer.from('x'));
    await d.delete('gone');
    await d.flush();
    expect(d.whole).toBe(0);
    expect(d.synced).toEqual([
      ['backups/b1/nodes/n1/data.json', 'backups/b2/part', 'gone', 'packs/ab/p1', 'packs/ab/p2'].map((k) => join(dir, k)).sort(),
      // the folders that hold them, and each folder made, in the one above it
      [dir, 'backups', 'backups/b1', 'backups/b1/nodes', 'backups/b1/nodes/n1', 'backups/b2', 'packs', 'packs/ab'].map((k) => (k === dir ? dir : join(dir, k))).sort(),
    ]);
    // nothing put since: nothing to sync
    d.synced = [];
    await d.flush();
    expect(d.synced.flat()).toEqual([]);
  });

  it('many objects: one syncfs of the filesystem', async () => {
    const d = new Recording(await temp('repo'));
    for (let i = 0; i < 300; i++) await d.put(`chunks/c${i}`, Buffer.from('x'));
    await d.flush();
    expect([d.whole, d.synced.length]).toEqual([1, 0]);
  });

  it('a flush that fails says so, and the next one syncs the same files again', async () => {
    const dir = await temp('repo');
    const d = new Recording(dir);
    await d.put('packs/p1', Buffer.from('pack'));
    d.failNext = true;
    const err = await d.flush().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockstepError);
    expect((err as LockstepError).message).toContain('EIO');
    await d.flush();
    expect(d.synced[0]).toEqual([join(dir, 'packs/p1')]);
  });

  it('a filesystem without fsync (EINVAL): the flush syncs the whole filesystem instead, and every flush after it', async () => {
    const d = new Recording(await temp('repo'));
    d.noFsync = true;
    await d.put('packs/p1', Buffer.from('pack'));
    await d.flush();
    expect(d.whole).toBe(1);
    await d.put('packs/p2', Buffer.from('pack'));
    await d.flush();
    expect([d.whole, d.synced.length]).toEqual([2, 0]);
  });

  it('flushes run one after another: one asked while another runs returns only once what that one took is synced too', async () => {
    const dir = await temp('repo');
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const order: string[] = [];
    class Slow extends Recording {
      protected override async fsyncEach(paths: string[]): Promise<void> {
        if (paths.some((p) => p.endsWith('a'))) await held;
        order.push(...paths.filter((p) => !p.endsWith(dir) && /\/[ab]$/.test(p)).map((p) => p.slice(-1)));
        await super.fsyncEach(paths);
      }
    }
    const d = new Slow(dir);
    await d.put('a', Buffer.from('a'));
    const first = d.flush();
    await d.put('b', Buffer.from('b'));
    let secondDone = false;
    const second = d.flush().then(() => (secondDone = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(secondDone).toBe(false);
    release();
    await Promise.all([first, second]);
    expect(order).toEqual(['a', 'b']);
  });
});
