/**
 * The repository lease: one writer at a time (backup, prune), never a manual unlock.
 *
 * - `locks/exclusive.json` is created with create-if-absent and names its holder
 *   (operation, host, pid) and an expiry. It is never written again: the holder renews
 *   its lease (heartbeat, every third of it) in `locks/lease/<lock-id>.json`, an object
 *   only it writes, and the lease runs until the later expiry of the two. A renewal that
 *   rewrote the lock itself could, between reading it and writing it, put the lock back
 *   over one that had just taken it over. If a renewal finds the lock is no longer its
 *   own, the holder's signal aborts and its operation stops.
 * - A lock past its expiry, or held by a process on this host that no longer exists,
 *   is taken over automatically: the taker first wins the
 *   create-if-absent marker `locks/takeover/<lock-id>` (so two takers cannot both
 *   delete and recreate), then replaces the lock.
 * - Everything rests on create-if-absent being atomic in the store; a store that
 *   ignores it (some S3 imitations) is detected with a probe and refused.
 * Clocks: a lease is judged by the store's clock where the store tells when an object was
 * last written (S3's LastModified, a filesystem's mtime as its server set it): the lock or
 * its last renewal, written at store time W, declaring a lease of L (its expiry less its
 * renewal time, both by its holder's clock: a length, which no offset between clocks
 * changes), runs out at W + L by the store's clock, whose present the lock's probe has just
 * shown. Hosts whose clocks disagree (a VM back from a pause, NTP broken) therefore neither
 * take over a live lock nor wait on a dead one; only the rates of the clocks must agree.
 * Where the store tells no times, expiry is compared with the local clock, and hosts are
 * assumed to agree within a small fraction of the lease (NTP).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Type, type Static } from '@sinclair/typebox';
import { LockstepError } from '../errors.js';
import type { ObjectInfo, StorageDriver } from '../../plugins/storage/types.js';
import { checkStored, parseJson } from './stored.js';
import { isNotFound, readObject } from './repository.js';

export const LOCK_KEY = 'locks/exclusive.json';
const takeoverKey = (lockId: string) => `locks/takeover/${lockId}`;
const leaseKey = (lockId: string) => `locks/lease/${lockId}.json`;
export const DEFAULT_LEASE_MS = 60_000;

const LockRecordSchema = Type.Object({
  lockId: Type.String(),
  operation: Type.String(),
  host: Type.String(),
  pid: Type.Integer(),
  acquiredAt: Type.String(),
  heartbeatAt: Type.String(),
  expiresAt: Type.String(),
});
export type LockRecord = Static<typeof LockRecordSchema>;

async function readLock(driver: StorageDriver): Promise<LockRecord | undefined> {
  let body: Buffer;
  try {
    body = await readObject(driver, LOCK_KEY);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  try {
    return checkStored(LockRecordSchema, parseJson(body.toString('utf8'), LOCK_KEY), LOCK_KEY, 'lock');
  } catch {
    // unreadable lock: treat as expired long ago, so it is taken over rather than blocking forever
    return { lockId: `unreadable-${body.length}`, operation: 'unknown', host: 'unknown', pid: 0, acquiredAt: '', heartbeatAt: '', expiresAt: new Date(0).toISOString() };
  }
}

/**
 * The store's clock: its time when the lock's probe was written (`at`), and this process's
 * monotonic time once that was known (`mono`). What it says now is at most the store's
 * real present (the answer took time to come), so a lease is never judged over too early.
 */
export interface StoreClock {
  at: number;
  mono: number;
}

/** the store's time now, as far as `clock` can tell (never later than it really is) */
function storeNow(clock: StoreClock): number {
  return clock.at + (performance.now() - clock.mono);
}

/**
 * S3 gives times in whole seconds: a write at store time W is shown as W less up to a
 * second, and so is the probe's. A lease is held over by this much more, never cut short.
 */
const STORE_TIME_SLACK_MS = 1000;

/** a time a record gives (ISO), in ms; NaN if it gives none that reads */
function timeOf(v: unknown): number {
  return typeof v === 'string' ? Date.parse(v) : Number.NaN;
}

/** the lease a record declares: its expiry less its renewal (or taking) time, both by its holder's clock; NaN if unreadable */
function declaredLease(r: { heartbeatAt?: unknown; expiresAt?: unknown }): number {
  return timeOf(r.expiresAt) - timeOf(r.heartbeatAt);
}

/** a record's last renewal (the lease object), if its holder renewed it and it can be read */
async function readRenewal(driver: StorageDriver, lockId: string): Promise<{ heartbeatAt?: unknown; expiresAt?: unknown } | undefined> {
  try {
    return JSON.parse((await readObject(driver, leaseKey(lockId))).toString('utf8')) as { heartbeatAt?: unknown; expiresAt?: unknown };
  } catch {
    // never renewed (or unreadable): the lock's own expiry
    return undefined;
  }
}

/**
 * When (by this host's clock) the lease of `held` runs out: its own expiry, or its holder's
 * last renewal's, whichever is later. With `clock`, judged by the store's clock (see the top
 * of this file): a record runs out its declared lease after the store took it, and one
 * declaring no readable lease at once; a lock gone meanwhile holds nothing. Without, by
 * the times its holder wrote in it.
 */
async function leaseEnd(driver: StorageDriver, held: LockRecord, clock: StoreClock | undefined): Promise<number> {
  const renewed = await readRenewal(driver, held.lockId);
  if (clock) {
    // asked after the read, not beside it: an NFS client may answer a stat from attributes
    // it cached up to a minute ago, but refreshes them when a file is opened (its
    // close-to-open consistency), as the read just did (and readLock did for the lock)
    const [lockInfo, leaseInfo] = await Promise.all([driver.head(LOCK_KEY), driver.head(leaseKey(held.lockId))]);
    if (!lockInfo) return 0;
    const now = storeNow(clock);
    const runsOut = (info: ObjectInfo | undefined, r: object | undefined) => {
      const lease = r ? declaredLease(r) : Number.NaN;
      return info?.modified !== undefined && lease > 0 ? info.modified + lease + STORE_TIME_SLACK_MS : -Infinity;
    };
    const end = Math.max(runsOut(lockInfo, held), runsOut(leaseInfo, renewed));
    return end === -Infinity ? 0 : Date.now() + (end - now);
  }
  const until = timeOf(held.expiresAt);
  const t = timeOf(renewed?.expiresAt);
  return Number.isFinite(t) ? Math.max(until, t) : until;
}

/**
 * Does the store really refuse a second create-if-absent? (s3rver, for one, does not)
 * `removed`: the probe's key deleted, what it failed with if it did (it never rejects). It
 * is not waited for here: the lock is taken meanwhile, one round trip less before every
 * backup and prune on S3. `clock`: the store's time, from when it says it took the probe
 * (asked beside the second write, no round trip more), if it tells.
 */
export async function probeAtomicCreate(driver: StorageDriver): Promise<{ atomic: boolean; removed: Promise<unknown>; clock: StoreClock | undefined }> {
  if (!driver.capabilities.atomicCreateIfAbsent) return { atomic: false, removed: Promise.resolve(undefined), clock: undefined };
  const key = `locks/probe-${randomBytes(8).toString('hex')}`;
  const remove = () => driver.delete(key).then(() => undefined, (err: unknown) => err ?? new Error(`could not delete ${key}`));
  let atomic;
  let clock: StoreClock | undefined;
  try {
    // not durable: the key goes at once (on a filesystem, two fsyncs less before every backup and prune)
    const first = await driver.putIfAbsent(key, Buffer.from('1'), { durable: false });
    const [info, second] = await Promise.all([driver.head(key), driver.putIfAbsent(key, Buffer.from('2'), { durable: false })]);
    if (info?.modified !== undefined) clock = { at: info.modified, mono: performance.now() };
    // (the key is new: a first write refused is this one's own, taken by the store with its answer lost)
    atomic = (first || info !== undefined) && !second;
  } catch (err) {
    await remove();
    throw err;
  }
  return { atomic, removed: remove(), clock };
}

/** a holder on this host whose process is gone is dead, whatever its lease says */
function goneHere(held: LockRecord): boolean {
  return held.host === hostname() && held.pid > 0 && held.pid !== process.pid && !processAlive(held.pid);
}

/** The lock as a writer would find it now (`lockstep repo status`). */
export interface LockStatus {
  /** its holder; none: the lock is free */
  holder?: LockRecord;
  /** when its lease runs out, by this host's clock (`holder.expiresAt` is by the holder's) */
  leaseUntil?: string;
  /** how the lease was judged: by the store's clock, or (a store that tells no times, or that this host may not write to) by the times its holder wrote */
  judgedBy?: 'store' | 'holder';
  /** the next writer takes it over at once: its lease ran out, or its holder was a process of this host that is gone */
  takenOverNext?: boolean;
}

/**
 * The lock's holder and how long its lease runs, judged as a writer would judge it (by the
 * store's clock, from a create-if-absent probe like a writer's, whose key is deleted). Takes
 * and changes nothing else.
 */
export async function lockStatus(driver: StorageDriver): Promise<LockStatus> {
  const held = await readLock(driver);
  if (!held) return {};
  if (goneHere(held)) return { holder: held, takenOverNext: true };
  let clock: StoreClock | undefined;
  try {
    const probe = await probeAtomicCreate(driver);
    const failed = await probe.removed;
    if (failed) throw failed;
    clock = probe.clock;
  } catch {
    // a store this host may only read: the holder's own times
  }
  const until = await leaseEnd(driver, held, clock);
  return {
    holder: held,
    ...(Number.isFinite(until) && until > 0 ? { leaseUntil: new Date(until).toISOString() } : {}),
    judgedBy: clock ? 'store' : 'holder',
    takenOverNext: !(until > Date.now()),
  };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** clocks further apart than this are worth a warning: a minute, where NTP keeps them within milliseconds */
const SKEW_WARN_MS = 60_000;

/** what to tell an operator whose host's clock is `skewMs` off the store's (lock.clockSkewMs); undefined when close enough */
export function clockSkewWarning(skewMs: number | undefined, location: string): string | undefined {
  if (skewMs === undefined || Math.abs(skewMs) <= SKEW_WARN_MS) return undefined;
  return `this host's clock is ${Math.round(Math.abs(skewMs) / 1000)} s ${skewMs > 0 ? 'ahead of' : 'behind'} the clock of ${location}: backup ids and times, which retention goes by, follow this host's clock (is NTP running?); the repository's lock does not depend on it`;
}

/** the holder in words, with when its lease runs out (`leaseUntil`: the record's own expiry unless given; null: left out) */
export function describeHolder(r: LockRecord, leaseUntil: string | null = r.expiresAt): string {
  return `${r.operation} (host ${r.host}, pid ${r.pid}, since ${r.acquiredAt}${leaseUntil === null ? '' : `, lease until ${leaseUntil}`})`;
}

/**
 * Win the marker that lets one writer replace the expired lock `lockId`. A marker that is
 * this writer's own is won (the store took the write, its answer was lost); one older than
 * a lease is a taker's that died between taking it and replacing the lock, and goes (else
 * the expired lock could never be taken over, and someone would have to unlock by hand):
 * not won this time, the caller tries again.
 */
async function takeTakeover(driver: StorageDriver, lockId: string, record: LockRecord, leaseMs: number, clock: StoreClock | undefined): Promise<boolean> {
  const mine = Buffer.from(JSON.stringify({ by: record.host, pid: record.pid, at: record.acquiredAt, lockId: record.lockId }));
  if (await driver.putIfAbsent(takeoverKey(lockId), mine)) return true;
  const there = await readObject(driver, takeoverKey(lockId)).catch((err: unknown) => {
    if (isNotFound(err)) return undefined;
    throw err;
  });
  if (!there) return false; // its taker is done: the lock is read again
  if (there.equals(mine)) return true;
  // after the read, as in leaseEnd
  const info = clock ? await driver.head(takeoverKey(lockId)) : undefined;
  // its age: by the store's clock where it tells, else by the time its taker wrote in it
  let age = Number.NaN;
  if (clock && info?.modified !== undefined) {
    age = storeNow(clock) - info.modified - STORE_TIME_SLACK_MS;
  } else {
    try {
      age = Date.now() - Date.parse((JSON.parse(there.toString('utf8')) as { at?: string }).at ?? '');
    } catch {
      // unreadable: as old as can be
    }
  }
  if (!(age < leaseMs)) await driver.delete(takeoverKey(lockId));
  return false;
}

export class RepoLock {
  private timer: NodeJS.Timeout | undefined;
  private readonly controller = new AbortController();
  private released = false;

  private constructor(
    private readonly driver: StorageDriver,
    private record: LockRecord,
    private readonly leaseMs: number,
  ) {
    this.timer = setInterval(() => void this.heartbeat(), Math.max(100, Math.floor(leaseMs / 3)));
    this.timer.unref();
  }

  /**
   * how far this host's clock ran ahead of the store's when the lock was taken (negative:
   * behind), to about a second (S3 tells whole seconds, and the store's answer took its
   * time); undefined where the store tells no times. Leases do not depend on it; what this
   * host names and dates by its own clock (backup ids, their times, retention) does.
   */
  get clockSkewMs(): number | undefined {
    return this.skew;
  }
  private skew: number | undefined;

  /** aborts if the lock is lost (someone took it over after our lease ran out) */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get lockId(): string {
    return this.record.lockId;
  }

  static async acquire(driver: StorageDriver, operation: string | (() => string), leaseMs = DEFAULT_LEASE_MS, meanwhile?: () => Promise<void>): Promise<RepoLock> {
    // (`meanwhile` runs beside the probe: on S3 their round trips overlap; `operation` is read after both)
    const probing = probeAtomicCreate(driver);
    const [{ atomic, removed, clock }] = await Promise.all([probing, meanwhile?.()]).catch(async (err: unknown) => {
      await (await probing.catch(() => undefined))?.removed;
      throw err;
    });
    // the probe's key goes while the lock is taken; the lock is given back if it could not
    let lock: RepoLock;
    try {
      lock = await RepoLock.take(driver, typeof operation === 'function' ? operation() : operation, atomic, leaseMs, clock);
    } catch (err) {
      await removed;
      throw err;
    }
    const failed = await removed;
    if (failed) {
      await lock.release().catch(() => undefined);
      throw failed;
    }
    if (clock) lock.skew = Date.now() - storeNow(clock);
    return lock;
  }

  private static async take(driver: StorageDriver, operation: string, atomic: boolean, leaseMs: number, clock: StoreClock | undefined): Promise<RepoLock> {
    if (!atomic) {
      // Ceph RGW 16 ignores If-None-Match in a bucket with versioning on (and honours it once suspended)
      const versioned = (await driver.versioning?.()) === 'enabled';
      throw new LockstepError('LOCKSTEP_E_REPO_NO_ATOMIC_CREATE', `repository ${driver.location} does not honour create-if-absent, so two writers could not be kept apart`, {
        hint: versioned
          ? 'its bucket versioning is on, and some stores (Ceph RGW 16) then ignore conditional writes: use a bucket without versioning (or suspend it); lockstep refuses to write without a safe lock'
          : 'use a store with conditional writes (AWS S3, Ceph RGW, MinIO, a filesystem); lockstep refuses to write without a safe lock',
      });
    }
    for (let attempt = 0; attempt < 20; attempt++) {
      const now = Date.now();
      const record: LockRecord = {
        lockId: randomBytes(12).toString('hex'),
        operation,
        host: hostname(),
        pid: process.pid,
        acquiredAt: new Date(now).toISOString(),
        heartbeatAt: new Date(now).toISOString(),
        expiresAt: new Date(now + leaseMs).toISOString(),
      };
      if (await driver.putIfAbsent(LOCK_KEY, Buffer.from(JSON.stringify(record)))) return new RepoLock(driver, record, leaseMs);
      const held = await readLock(driver);
      if (!held) continue; // released in between
      // ours after all: the store took the write and its answer was lost, so the retry found it there
      if (held.lockId === record.lockId) return new RepoLock(driver, record, leaseMs);
      const until = goneHere(held) ? 0 : await leaseEnd(driver, held, clock);
      if (until > Date.now()) {
        throw new LockstepError('LOCKSTEP_E_REPO_LOCKED', `repository ${driver.location} is in use by ${describeHolder(held, new Date(until).toISOString())}`, {
          hint: 'wait for it to finish; a lock whose holder died is taken over automatically when its lease runs out',
          details: { holder: held },
        });
      }
      // expired: only the one who wins the takeover marker replaces it
      if (await takeTakeover(driver, held.lockId, record, leaseMs, clock)) {
        const still = await readLock(driver);
        if (still?.lockId === held.lockId) await driver.delete(LOCK_KEY);
        const won = await driver.putIfAbsent(LOCK_KEY, Buffer.from(JSON.stringify(record)));
        await driver.delete(leaseKey(held.lockId));
        await driver.delete(takeoverKey(held.lockId));
        if (won || (await readLock(driver))?.lockId === record.lockId) return new RepoLock(driver, record, leaseMs);
      } else {
        await new Promise((r) => setTimeout(r, 50 + Math.random() * 200));
      }
    }
    throw new LockstepError('LOCKSTEP_E_REPO_LOCKED', `could not take the lock of repository ${driver.location} (contended)`);
  }

  private async heartbeat(): Promise<void> {
    if (this.released || this.controller.signal.aborted) return;
    try {
      const held = await readLock(this.driver);
      if (held?.lockId !== this.record.lockId) {
        this.lost(held);
        return;
      }
      const now = Date.now();
      const renewed = { heartbeatAt: new Date(now).toISOString(), expiresAt: new Date(now + this.leaseMs).toISOString() };
      await this.driver.put(leaseKey(this.record.lockId), Buffer.from(JSON.stringify(renewed)));
      // the lease known to run until then only once it is stored
      this.record = { ...this.record, ...renewed };
    } catch {
      // a failed renewal is retried at the next beat; the lease covers two missed beats
      if (Date.parse(this.record.expiresAt) < Date.now()) this.lost(undefined);
    }
  }

  private lost(by: LockRecord | undefined): void {
    clearInterval(this.timer);
    this.controller.abort(
      new LockstepError('LOCKSTEP_E_REPO_LOCK_LOST', `lost the lock of repository ${this.driver.location}${by ? ` to ${describeHolder(by)}` : ' (lease expired before it could be renewed)'}`, {
        hint: 'the operation stopped; nothing it did not finish is used. Run it again',
      }),
    );
  }

  /**
   * Delete the lock if it is still this holder's. Between reading it and deleting it, only a
   * taker that found the lease run out could have replaced it; so it is deleted only while
   * the lease has a third of its length left after the read (clocks agree far better than
   * that), else left to run out: a lock whose renewals failed is taken over on its own once
   * its lease ends (at once from this host when this process is gone). `true` if deleted.
   */
  async release(): Promise<boolean> {
    if (this.released) return false;
    this.released = true;
    clearInterval(this.timer);
    const held = await readLock(this.driver).catch(() => undefined);
    const safe = Date.parse(this.record.expiresAt) - Date.now() > this.leaseMs / 3;
    const mine = held?.lockId === this.record.lockId && safe;
    // both at once (on S3 each is a round trip); the lock's own failure is the one that counts
    const lease = this.driver.delete(leaseKey(this.record.lockId)).catch(() => undefined);
    try {
      if (mine) await this.driver.delete(LOCK_KEY);
    } finally {
      await lease;
    }
    return mine;
  }
}
