import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readdir, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';
import { FsDriver } from '../../plugins/storage/fs.js';
import { S3Driver } from '../../plugins/storage/s3.js';
import { LOCK_KEY, RepoLock, clockSkewWarning } from '../../lib/repo/lock.js';
import { LockstepError } from '../../lib/errors.js';
import { readAll } from '../../lib/repo/repository.js';
import type { StorageDriver } from '../../plugins/storage/types.js';
import { driverOf, rgwBucket } from '../helpers/s3.js';

const dirs: string[] = [];
const temp = async () => {
  const d = await mkdtemp(join(tmpdir(), 'lockstep-lock-'));
  dirs.push(d);
  return d;
};
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** a lock as a holder on another host writes it, by that host's clock: `skew` ms off ours, declaring a lease of `leaseMs` */
function otherHolder(skew: number, leaseMs = 60_000, lockId = 'other'): Buffer {
  const t = Date.now() + skew;
  const at = new Date(t).toISOString();
  return Buffer.from(JSON.stringify({ lockId, operation: 'backup elsewhere', host: 'other-host', pid: 7, acquiredAt: at, heartbeatAt: at, expiresAt: new Date(t + leaseMs).toISOString() }));
}

/** what an acquire of `d` gave: the lock's id, or the error's code */
async function tryAcquire(d: StorageDriver): Promise<string> {
  return RepoLock.acquire(d, 'backup here').then(
    async (l) => {
      await l.release();
      return l.lockId;
    },
    (e: unknown) => (e as LockstepError).code,
  );
}

/** `file`'s modification time set `ms` into the past (the store took it that long ago) */
async function aged(file: string, ms: number): Promise<void> {
  const t = new Date(Date.now() - ms);
  await utimes(file, t, t);
}

describe('repository lock', () => {
  it('a second acquire fails naming the holder; release lets the next one in', async () => {
    const d = new FsDriver(await temp());
    const a = await RepoLock.acquire(d, 'backup A');
    const err = await RepoLock.acquire(d, 'backup B').then(() => undefined, (e: unknown) => e);
    expect((err as LockstepError).code).toBe('LOCKSTEP_E_REPO_LOCKED');
    expect((err as LockstepError).message).toContain(`backup A (host `);
    expect((err as LockstepError).message).toContain(`pid ${process.pid}`);
    await a.release();
    const b = await RepoLock.acquire(d, 'backup B');
    await b.release();
    expect(await d.head(LOCK_KEY)).toBeUndefined();
  });

  it("the probe's key goes while the lock is taken; a probe key that cannot be deleted gives the lock back and fails", async () => {
    /** an fs store whose deletes of probe keys wait for `open()`, or fail */
    const newGate = () => {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      return { promise, resolve };
    };
    class SlowProbe extends FsDriver {
      gate = newGate();
      probeDeleting = false;
      lockPutWhileProbeDeleting = false;
      failProbe = false;
      override async delete(key: string) {
        if (!key.startsWith('locks/probe-')) return super.delete(key);
        this.probeDeleting = true;
        await this.gate.promise;
        this.probeDeleting = false;
        if (this.failProbe) throw new LockstepError('LOCKSTEP_E_REPO_WRITE_FAILED', `cannot delete ${key}`);
        return super.delete(key);
      }
      override async putIfAbsent(key: string, body: Buffer, opts?: { durable?: boolean }) {
        if (key === LOCK_KEY) {
          this.lockPutWhileProbeDeleting = this.probeDeleting;
          // the probe's delete may finish now
          setTimeout(() => this.gate.resolve(), 20);
        }
        return super.putIfAbsent(key, body, opts);
      }
    }
    const dir = await temp();
    const d = new SlowProbe(dir);
    const lock = await RepoLock.acquire(d, 'backup A');
    expect(d.lockPutWhileProbeDeleting).toBe(true);
    await lock.release();
    expect(await readdir(join(dir, 'locks')).catch(() => [])).toEqual([]);

    d.gate = newGate();
    d.failProbe = true;
    const err = await RepoLock.acquire(d, 'backup B').then(() => undefined, (e: unknown) => e);
    expect((err as LockstepError).message).toMatch(/cannot delete locks\/probe-/);
    expect(await d.head(LOCK_KEY)).toBeUndefined();
  });

  it('the holder renews its lease; a holder whose lock was taken over is told (its signal aborts)', async () => {
    const d = new FsDriver(await temp());
    // a 1.2 s lease renewed every 400 ms: margins a loaded 2-core machine keeps
    const a = await RepoLock.acquire(d, 'backup A', 1200);
    const lockBytes = async () => (await readAll(await d.get(LOCK_KEY))).toString('utf8');
    const written = await lockBytes();
    await new Promise((r) => setTimeout(r, 2000));
    expect(a.signal.aborted).toBe(false); // renewed past its first expiry: nobody can take it over
    // renewed beside the lock, never in it: a renewal cannot put it back over one that took it over
    expect(await lockBytes()).toBe(written);
    const err = await RepoLock.acquire(d, 'backup B', 1200).then(() => undefined, (e: unknown) => e);
    expect((err as LockstepError).code).toBe('LOCKSTEP_E_REPO_LOCKED');
    // someone replaces the lock (as a taker would after an expiry)
    await d.put(LOCK_KEY, Buffer.from(JSON.stringify({ lockId: 'x', operation: 'prune', host: 'h2', pid: 7, acquiredAt: '', heartbeatAt: '', expiresAt: new Date(Date.now() + 60_000).toISOString() })));
    // the next heartbeat (within 400 ms, later on a loaded machine) finds it
    for (const until = Date.now() + 5000; !a.signal.aborted && Date.now() < until; ) await new Promise((r) => setTimeout(r, 50));
    expect(a.signal.aborted).toBe(true);
    expect((a.signal.reason as LockstepError).code).toBe('LOCKSTEP_E_REPO_LOCK_LOST');
    expect((a.signal.reason as LockstepError).message).toContain('prune (host h2, pid 7');
    await a.release();
    expect(await d.head(LOCK_KEY)).toBeDefined(); // release never deletes someone else's lock
  });

  it('a holder whose renewals failed leaves the lock to run out instead of deleting it late; it is taken over once it has', async () => {
    const d = new FsDriver(await temp());
    // every renewal fails, as when the store cannot be reached
    const flaky: FsDriver = Object.assign(Object.create(d) as FsDriver, {
      put: (key: string, body: Buffer) => (key.startsWith('locks/lease/') ? Promise.reject(new Error('store unreachable')) : d.put(key, body)),
    });
    const a = await RepoLock.acquire(flaky, 'backup A', 900);
    // less than a third of the lease left: a taker on a host whose clock runs ahead could already be replacing it
    await new Promise((r) => setTimeout(r, 700));
    expect(await a.release()).toBe(false);
    const left = JSON.parse((await readAll(await d.get(LOCK_KEY))).toString('utf8')) as { lockId: string };
    expect(left.lockId).toBe(a.lockId);
    // its lease ran out by the store's clock, less a second held over for stores whose times are whole seconds
    await new Promise((r) => setTimeout(r, 1400));
    const b = await RepoLock.acquire(d, 'backup B');
    expect(b.lockId).not.toBe(a.lockId);
    expect(await b.release()).toBe(true);
    expect(await d.head(LOCK_KEY)).toBeUndefined();
  });

  it('a lock whose holder process on this host is gone is taken over at once (a killed coordinator)', async () => {
    const d = new FsDriver(await temp());
    const { hostname } = await import('node:os');
    await d.put(LOCK_KEY, Buffer.from(JSON.stringify({ lockId: 'dead', operation: 'backup X', host: hostname(), pid: 2 ** 22 + 12345, acquiredAt: '', heartbeatAt: '', expiresAt: new Date(Date.now() + 60_000).toISOString() })));
    const l = await RepoLock.acquire(d, 'backup Y');
    expect(l.lockId).not.toBe('dead');
    await l.release();
  });

  it('an expired lock whose taker died half-way (its takeover marker left behind) is taken over once the marker is a lease old by the store; a fresh marker is waited on', async () => {
    const dir = await temp();
    const d = new FsDriver(dir);
    const expired = { lockId: 'dead', operation: 'backup X', host: 'gone-host', pid: 7, acquiredAt: '', heartbeatAt: '', expiresAt: new Date(Date.now() - 120_000).toISOString() };
    await d.put(LOCK_KEY, Buffer.from(JSON.stringify(expired)));
    // another taker is at it right now: not this one's to take
    await d.put('locks/takeover/dead', Buffer.from(JSON.stringify({ by: 'other-host', pid: 8, at: new Date().toISOString() })));
    const busy = await RepoLock.acquire(d, 'backup Y').then(() => undefined, (e: unknown) => e);
    expect((busy as LockstepError).code).toBe('LOCKSTEP_E_REPO_LOCKED');
    // a taker whose clock runs 90 s behind ours wrote it just now: still waited on
    await d.put('locks/takeover/dead', Buffer.from(JSON.stringify({ by: 'other-host', pid: 8, at: new Date(Date.now() - 90_000).toISOString() })));
    expect(await tryAcquire(d)).toBe('LOCKSTEP_E_REPO_LOCKED');
    // that taker died before it replaced the lock: a minute and more later by the store its marker goes, and the lock is taken
    await aged(join(dir, 'locks/takeover/dead'), 90_000);
    const l = await RepoLock.acquire(d, 'backup Y');
    expect(l.lockId).not.toBe('dead');
    expect(await d.head('locks/takeover/dead')).toBeUndefined();
    expect(await l.release()).toBe(true);
  });

  it("leases are judged by the store's clock: a live lock from a host whose clock runs behind is not taken over, a dead one from a host whose clock runs ahead is", async () => {
    const dir = await temp();
    const d = new FsDriver(dir);
    // ten minutes behind: by our clock its lease ran out long ago, but the store took it just now
    await d.put(LOCK_KEY, otherHolder(-600_000));
    const err = await RepoLock.acquire(d, 'backup here').then(() => undefined, (e: unknown) => e);
    expect((err as LockstepError).code).toBe('LOCKSTEP_E_REPO_LOCKED');
    // the lease shown is when it runs out here: a minute from now, not ten minutes ago
    const until = Date.parse(/lease until ([^)]+)\)/.exec((err as LockstepError).message)![1]!);
    expect(until).toBeGreaterThan(Date.now() + 50_000);
    expect(until).toBeLessThan(Date.now() + 70_000);
    // it renewed ten minutes behind too: still live
    await d.put('locks/lease/other.json', Buffer.from(JSON.stringify({ heartbeatAt: new Date(Date.now() - 600_000).toISOString(), expiresAt: new Date(Date.now() - 540_000).toISOString() })));
    await aged(join(dir, LOCK_KEY), 120_000);
    expect(await tryAcquire(d)).toBe('LOCKSTEP_E_REPO_LOCKED');
    // its last renewal is a lease old by the store: dead
    await aged(join(dir, 'locks/lease/other.json'), 62_000);
    expect(await tryAcquire(d)).toMatch(/^[0-9a-f]{24}$/);

    // ten minutes ahead: by our clock it holds for eleven minutes more; the store took it a minute and more ago
    await d.put(LOCK_KEY, otherHolder(600_000));
    expect(await tryAcquire(d)).toBe('LOCKSTEP_E_REPO_LOCKED');
    await aged(join(dir, LOCK_KEY), 62_000);
    expect(await tryAcquire(d)).toMatch(/^[0-9a-f]{24}$/);
    expect(await d.head(LOCK_KEY)).toBeUndefined();
  });

  it("a host whose clock is far off the store's is told how far (leases do not depend on it)", async () => {
    const dir = await temp();
    // a store whose clock runs ten minutes behind this host's
    class SlowClock extends FsDriver {
      override async head(key: string) {
        const info = await super.head(key);
        return info && { ...info, modified: info.modified! - 600_000 };
      }
    }
    const d = new SlowClock(dir);
    const lock = await RepoLock.acquire(d, 'backup here');
    expect(Math.abs(lock.clockSkewMs! - 600_000)).toBeLessThan(2000);
    expect(clockSkewWarning(lock.clockSkewMs, d.location)).toMatch(new RegExp(`^this host's clock is 60\\d s ahead of the clock of ${d.location}: backup ids and times`));
    // a live holder is still live, a lock still taken and given back, by the store's clock
    expect(await tryAcquire(d)).toBe('LOCKSTEP_E_REPO_LOCKED');
    expect(await lock.release()).toBe(true);
    const near = await RepoLock.acquire(new FsDriver(dir), 'backup here');
    expect(Math.abs(near.clockSkewMs!)).toBeLessThan(2000);
    expect(clockSkewWarning(near.clockSkewMs, 'x')).toBeUndefined();
    expect(clockSkewWarning(-90_000, 'x')).toContain('90 s behind the clock of x');
    await near.release();
  });

  it("on S3 (Ceph RGW) too, by its LastModified: whole seconds", async () => {
    const d = driverOf(await rgwBucket(), { prefix: 'repo' });
    await d.put(LOCK_KEY, otherHolder(-600_000));
    expect(await tryAcquire(d)).toBe('LOCKSTEP_E_REPO_LOCKED');
    // a lease of a second declared ten minutes ahead: run out two seconds and more after the store took it
    await d.put(LOCK_KEY, otherHolder(600_000, 1000));
    expect(await tryAcquire(d)).toBe('LOCKSTEP_E_REPO_LOCKED');
    await new Promise((r) => setTimeout(r, 3200));
    expect(await tryAcquire(d)).toMatch(/^[0-9a-f]{24}$/);
    expect(await d.head(LOCK_KEY)).toBeUndefined();
  });

  describe('on a store that ignores create-if-absent (s3rver)', () => {
    let server: S3rver;
    let port = 0;
    beforeAll(async () => {
      server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: await temp(), configureBuckets: [{ name: 'repo', configs: [] }] });
      const addr = (await server.run()) as unknown as { port: number };
      port = addr.port;
    });
    afterAll(async () => {
      await server.close();
    });

    it('is detected and refused with a clear error', async () => {
      const d = new S3Driver({ bucket: 'repo', endpoint: `http://127.0.0.1:${port}`, accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' });
      // the store does accept a second "create-if-absent" of the same key
      expect(await d.putIfAbsent('x', Buffer.from('1'))).toBe(true);
      expect(await d.putIfAbsent('x', Buffer.from('2'))).toBe(true);
      const err = await RepoLock.acquire(d, 'backup').then(() => undefined, (e: unknown) => e);
      expect((err as LockstepError).code).toBe('LOCKSTEP_E_REPO_NO_ATOMIC_CREATE');
      expect((err as LockstepError).message).toContain('s3://repo/');
    });
  });
});
