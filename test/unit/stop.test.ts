/**
 * A job's AbortSignal as the hot loops see it (lib/stop.ts), and an upload cancelled while
 * it reads: it ends with the job's reason, leaves no file handle or waiter behind, and the
 * next upload of the component runs to its end.
 */
import { describe, expect, it } from 'vitest';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Stop, stopOf } from '../../lib/stop.js';
import { FsDriver } from '../../plugins/storage/fs.js';
import { Repository } from '../../lib/repo/repository.js';
import { snapshotCleanedUp, uploadSnapshot, uploadsSettled } from '../../agent/transfer/upload.js';
import { forEachLimit } from '../../agent/transfer/pool.js';
import { tempFolders } from '../helpers/temp.js';
import { quietJobContext } from '../helpers/job.js';

const temp = tempFolders();

describe('Stop', () => {
  it('is one per signal, and throws the reason once the signal aborts', () => {
    const c = new AbortController();
    const s = Stop.of(c.signal);
    expect(Stop.of(c.signal)).toBe(s);
    expect(stopOf(undefined)).toBeUndefined();
    expect(s.aborted).toBe(false);
    expect(() => s.check()).not.toThrow();
    const why = new Error('cancelled by the operator');
    c.abort(why);
    expect(s.aborted).toBe(true);
    expect(() => s.check()).toThrow(why);
  });

  it('tells waiters once, forgets those that stopped waiting, and tells at once when already aborted', () => {
    const c = new AbortController();
    const s = Stop.of(c.signal);
    const told: unknown[] = [];
    s.onStop((r) => told.push(['kept', r]));
    const forget = s.onStop((r) => told.push(['forgotten', r]));
    forget();
    c.abort('stop');
    c.abort('again');
    expect(told).toEqual([['kept', 'stop']]);
    s.onStop((r) => told.push(['late', r]));
    expect(told).toEqual([['kept', 'stop'], ['late', 'stop']]);
    // a signal aborted before its Stop is made
    expect(() => Stop.of(AbortSignal.abort('before')).check()).toThrow('before');
  });

  it('stops forEachLimit between items', async () => {
    const c = new AbortController();
    const seen: number[] = [];
    const run = forEachLimit(
      [0, 1, 2, 3, 4, 5],
      1,
      async (i) => {
        seen.push(i);
        if (i === 2) c.abort(new Error('enough'));
      },
      c.signal,
    );
    await expect(run).rejects.toThrow('enough');
    expect(seen).toEqual([0, 1, 2]);
  });
});

describe('an upload cancelled while it reads', () => {
  it('ends with the reason, and the next upload of the component completes', async () => {
    const snap = await temp('snap');
    await mkdir(join(snap, 'data', 'big'), { recursive: true });
    // big files (read in several reads each) and small ones: the cancel lands mid-file
    for (let i = 0; i < 4; i++) await writeFile(join(snap, 'data', 'big', `f${i}`), randomBytes(12 * 1024 * 1024));
    for (let i = 0; i < 50; i++) await writeFile(join(snap, 'data', `s${i}`), randomBytes(3000));
    const repo = await Repository.init(new FsDriver(await temp('repo')));
    const target = (backupId: string) => ({ backupId, node: 'n1', component: 'cancelled' });

    const c = new AbortController();
    const why = new Error('backup cancelled: SIGINT on the coordinator');
    const ctx = {
      ...quietJobContext(),
      signal: c.signal,
      progress: (u: { bytesDone?: number }) => {
        if ((u.bytesDone ?? 0) > 5 * 1024 * 1024) c.abort(why);
      },
    };
    await expect(uploadSnapshot(repo, snap, ['data'], target('20261204-100000-cut'), ctx)).rejects.toBe(why);
    snapshotCleanedUp('cancelled');

    const again = await uploadSnapshot(repo, snap, ['data'], target('20261204-100100-whole'), quietJobContext());
    snapshotCleanedUp('cancelled');
    await uploadsSettled();
    expect(again.files).toBe(54);
    expect(again.bytes).toBe(4 * 12 * 1024 * 1024 + 50 * 3000);
  });
});
