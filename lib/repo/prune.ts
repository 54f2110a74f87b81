/**
 * `lockstep prune`: remove backups by a retention policy, then every chunk and pack no
 * remaining backup (or pending record of an interrupted run) references.
 *
 * Order makes it safe and resumable: it holds the repository lock (no backup runs
 * meanwhile); manifests of removed backups go first (the backup no longer exists), then
 * their indexes; the set of live objects is computed from what remains, and if any
 * remaining index cannot be read nothing is swept. Interrupted anywhere, the next run
 * recomputes the same result and finishes the job.
 */
import { LockstepError } from '../errors.js';
import { forEachLimit } from '../../agent/transfer/pool.js';
import { listKeys } from '../../plugins/storage/types.js';
import { deleteKeys } from './delete-keys.js';
import { backupPrefix, indexOwnerOf, manifestKey, packKey, pendingRecordOf } from './layout.js';
import { holdsComponent, type Manifest } from './manifest.js';
import { isNotFound, type PartFilter, type Repository } from './repository.js';
import { RepoLock } from './lock.js';
import { ListingUnordered, listEverySized } from './listed-sizes.js';
import { LiveKeys } from './live-keys.js';

export interface RetentionPolicy {
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  /** every backup committed within this span before the newest one */
  keepWithin?: Span;
}

/** a span of calendar time: years, months, weeks, days, hours (`text` as given, for reasons) */
export interface Span {
  years: number;
  months: number;
  weeks: number;
  days: number;
  hours: number;
  text: string;
}

/**
 * A span as the command line gives it: whole numbers of years, months, weeks, days and
 * hours, in that order, each at most once ("1y6m", "14d", "2w3d", "36h"); undefined if
 * it is not one.
 */
export function parseSpan(text: string): Span | undefined {
  const m = /^(?:(\d+)y)?(?:(\d+)m)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?$/.exec(text);
  if (!m || text === '') return undefined;
  const [years, months, weeks, days, hours] = m.slice(1).map((v) => (v === undefined ? 0 : Number(v)));
  const span = { years: years!, months: months!, weeks: weeks!, days: days!, hours: hours!, text };
  return [years, months, weeks, days, hours].every((n) => Number.isSafeInteger(n)) ? span : undefined;
}

/** `t` less `span`, by the calendar in UTC (a month back from March 31 is March 3, as Date.UTC carries the day over) */
export function spanBefore(t: Date, span: Span): number {
  const before = Date.UTC(
    t.getUTCFullYear() - span.years,
    t.getUTCMonth() - span.months,
    t.getUTCDate() - span.weeks * 7 - span.days,
    t.getUTCHours() - span.hours,
    t.getUTCMinutes(),
    t.getUTCSeconds(),
    t.getUTCMilliseconds(),
  );
  // further back than dates go: before every backup
  return Number.isNaN(before) ? -Infinity : before;
}

export interface PruneReport {
  kind: 'prune';
  dryRun: boolean;
  kept: { backupId: string; reasons: string[] }[];
  removed: string[];
  /** objects (chunks, packs) deleted, or that would be */
  objectsDeleted: number;
  bytesFreed: number;
  objectsKept: number;
  /** leftovers of backups that never committed, and the indexes a partial backup's failed components wrote */
  leftoversDeleted: number;
  /** temp files of writes killed mid-way (older than an hour), where the store has them */
  temporaryDeleted: number;
  durationMs: number;
  /** what the operator should know: a store that keeps deleted objects as old versions */
  warnings?: string[];
}

/**
 * Why the space a prune frees may not come back: a store that keeps what is deleted as old
 * versions (S3 bucket versioning, on under object lock) keeps, and bills, every object
 * deleted until a lifecycle rule expires noncurrent versions.
 */
export function versioningWarning(versioning: 'enabled' | 'suspended' | 'off' | undefined, location: string, freed: string): string | undefined {
  const rule = 'a lifecycle rule that expires noncurrent versions (NoncurrentVersionExpiration) and expired delete markers gives the space back';
  if (versioning === 'enabled') return `${location} keeps every deleted object as an old version (bucket versioning is on): the space of ${freed} is not given back, and is billed, until ${rule}`;
  if (versioning === 'suspended') return `${location} had bucket versioning on (now suspended): of ${freed}, the space of what was written while it was on is not given back, and is billed, until ${rule}`;
  return undefined;
}

function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day);
  const yearStart = Date.UTC(t.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((t.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${t.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

/** Which backups the policy keeps, and why (times in UTC; hours, days, weeks, months and years count only those that have a backup). */
export function selectKept(backups: { backupId: string; committedAt: string }[], policy: RetentionPolicy): Map<string, string[]> {
  const newestFirst = [...backups].sort((a, b) => b.committedAt.localeCompare(a.committedAt) || b.backupId.localeCompare(a.backupId));
  const kept = new Map<string, string[]>();
  const keep = (id: string, why: string) => kept.set(id, [...(kept.get(id) ?? []), why]);
  newestFirst.slice(0, policy.keepLast ?? 0).forEach((b) => keep(b.backupId, 'last'));
  const within = policy.keepWithin;
  if (within && newestFirst.length > 0) {
    // before the newest backup, not before now: backups that stopped coming are not all given up as time goes by
    const cutoff = spanBefore(new Date(newestFirst[0]!.committedAt), within);
    for (const b of newestFirst) if (Date.parse(b.committedAt) >= cutoff) keep(b.backupId, `within ${within.text}`);
  }
  const buckets: [number | undefined, string, (d: Date) => string][] = [
    [policy.keepHourly, 'hourly', (d) => d.toISOString().slice(0, 13)],
    [policy.keepDaily, 'daily', (d) => d.toISOString().slice(0, 10)],
    [policy.keepWeekly, 'weekly', isoWeek],
    [policy.keepMonthly, 'monthly', (d) => d.toISOString().slice(0, 7)],
    [policy.keepYearly, 'yearly', (d) => d.toISOString().slice(0, 4)],
  ];
  for (const [n, why, bucketOf] of buckets) {
    if (!n) continue;
    const seen = new Set<string>();
    for (const b of newestFirst) {
      const bucket = bucketOf(new Date(b.committedAt));
      if (seen.has(bucket)) continue;
      if (seen.size >= n) break;
      seen.add(bucket);
      keep(b.backupId, `${why} ${bucket}`);
    }
  }
  return kept;
}

/** whether `table` starts with all of `start` */
function startsWith(table: readonly string[], start: readonly string[]): boolean {
  if (start.length > table.length) return false;
  for (let i = 0; i < start.length; i++) if (table[i] !== start[i]) return false;
  return true;
}

/**
 * The parts an index shares with the last one read of the same node and component, passed
 * over. An incremental copies each part of its previous index whose entries did not change
 * (~75% of them), and its pack table starts with the previous one's, so a part of the same
 * hash names, pack number for pack number, the very objects it named there: those are
 * live already. Checked, not assumed: a part is passed over only when its hash is one of
 * the last index's parts (read or passed over) and the last index's pack table is the
 * start of this one's; a backup in between given up keeps it true (a copy of a copy). Kept
 * backups read oldest first, 30 dailies of one node read ~1 + 29 × 0.25 indexes' worth of
 * parts instead of 30.
 */
export class SharedParts {
  private readonly last = new Map<string, { packs: readonly string[]; parts: Set<string> }>();
  passed = 0;
  read = 0;

  /** the filter for the next index of `lineage` (a node and component), and what to call once it was read whole */
  next(lineage: string): { pass: PartFilter; done(): void } {
    const before = this.last.get(lineage);
    const parts = new Set<string>();
    let packs: readonly string[] | undefined;
    let prefix: boolean | undefined;
    const pass: PartFilter = (part, table) => {
      parts.add(part.sha256);
      packs = table;
      const shared = before !== undefined && table !== undefined && before.parts.has(part.sha256) && (prefix ??= startsWith(table, before.packs));
      if (shared) this.passed++;
      else this.read++;
      return shared;
    };
    const done = () => {
      if (packs) this.last.set(lineage, { packs, parts });
      else this.last.delete(lineage);
    };
    return { pass, done };
  }
}

/**
 * Keys of every chunk and pack the given backups and the pending records need. `committed`:
 * every committed backup, kept or not, by id (a partial backup's manifest lacks the
 * components that failed: their runs' records are what their next runs resume from).
 */
async function liveObjects(repo: Repository, manifests: Manifest[], committed: ReadonlyMap<string, Manifest>): Promise<LiveKeys> {
  const live = new LiveKeys();
  const shared = new SharedParts();
  const oldestFirst = [...manifests].sort((a, b) => a.committedAt.localeCompare(b.committedAt) || a.backupId.localeCompare(b.backupId));
  for (const m of oldestFirst) {
    for (const c of m.components) {
      const parts = shared.next(`${c.node}/${c.component}`);
      // an unreadable index stops the prune: sweeping without it could delete what it needs.
      // Part by part: what it keeps is the keys of packs and chunks, not the entries
      await repo
        .readIndexParts(
          c.indexKey,
          c.indexSha256,
          (entries) => {
            for (const e of entries) {
              if (e.type !== 'file') continue;
              for (const r of e.chunks) live.add(repo.objectKeyOf(r));
            }
          },
          parts.pass,
        )
        .then(parts.done)
        .catch((err: unknown) => {
          throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `prune stopped before deleting anything it would need: backup ${m.backupId} index ${c.indexKey} is unreadable (${err instanceof Error ? err.message : String(err)})`, {
            hint: `check it with "lockstep backup verify ${m.backupId}"`,
          });
        });
    }
  }
  // The pending records of runs that never committed keep their packs for the run that
  // resumes them. A committed component's records (~500 a GiB, left for its next run to
  // delete) are passed over: its index holds what it needs if its backup is kept, and what
  // only it used goes with it if not (the next run reads such a record again, finds its
  // pack gone and does not count on it). A record in its backup's folder names its pack
  // (pending/<node>/<component>/<backup>/<pack>.json): not read, where prune read every
  // record one after the other (thousands of GETs on S3 for a big cluster's last backup)
  for await (const key of repo.driver.list('pending/')) {
    const rec = pendingRecordOf(key);
    if (rec) {
      const by = committed.get(rec.backupId);
      if (by && holdsComponent(by, rec.node, rec.component)) continue;
      if (rec.pack !== undefined) {
        live.add(packKey(rec.pack));
        continue;
      }
    }
    // an older record, which says neither: read. One deleted since the listing (its backup's next upload) protects nothing
    const read = await repo.readPending(key).catch((err: unknown) => {
      if (isNotFound(err)) return undefined;
      throw err;
    });
    if (read) live.add(packKey(read.pack));
  }
  return live;
}

const TEMPORARY_AGE_MS = 3600_000;
/** HEAD requests at once (sizes a listing did not give) */
const HEADS_AT_ONCE = 16;
/** objects a batch of the sweep deletes (S3: one DeleteObjects request), and batches at once */
const SWEEP_BATCH = 1000;
const SWEEPS_AT_ONCE = 4;

/** an object listed, with its size where the listing gave it */
interface Listed {
  key: string;
  size?: number;
}

/**
 * What no kept backup needs, deleted a batch at a time while the listing goes on, not
 * gathered first (a prune of millions of objects held them all: ~150 bytes each). With
 * `dryRun` only counted. The listing waits while `SWEEPS_AT_ONCE` batches are under way.
 */
class Sweep {
  deleted = 0;
  bytes = 0;
  private batch: Listed[] = [];
  private readonly running = new Set<Promise<void>>();
  private failure: unknown;

  constructor(
    private readonly repo: Repository,
    private readonly dryRun: boolean,
    private readonly signal: AbortSignal | undefined,
  ) {}

  /** one more object to delete; a promise to wait for when batches are under way at their most */
  add(o: Listed): Promise<void> | undefined {
    if (this.failure !== undefined) throw this.failure;
    this.batch.push(o);
    if (this.batch.length < SWEEP_BATCH) return undefined;
    this.start();
    return this.running.size >= SWEEPS_AT_ONCE ? Promise.race(this.running) : undefined;
  }

  /** what it has counted so far, to `rewind` to */
  mark(): { deleted: number; bytes: number } {
    return { deleted: this.deleted, bytes: this.bytes };
  }

  /**
   * A listing gone through again from its start: a dry run's counts go back to `m` (what it
   * counted would be counted twice). A real sweep's deletions stand: they are not listed
   * again.
   */
  rewind(m: { deleted: number; bytes: number }): void {
    if (!this.dryRun) return;
    this.deleted = m.deleted;
    this.bytes = m.bytes;
  }

  /** every batch done, the last one (not full) too; throws what a batch failed with */
  async drain(): Promise<void> {
    if (this.batch.length > 0) this.start();
    await this.settled();
    if (this.failure !== undefined) throw this.failure;
  }

  /**
   * no batch under way, and none started from now on. The prune's lock is let go only after
   * this: a delete still going then could remove a chunk object that a backup taking the
   * lock next found there and did not write again.
   */
  async stop(): Promise<void> {
    this.failure ??= new Error('the sweep was stopped');
    await this.settled();
  }

  private async settled(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running]);
  }

  private start(): void {
    const batch = this.batch;
    this.batch = [];
    const p: Promise<void> = this.sweep(batch)
      .catch((err: unknown) => {
        this.failure ??= err;
      })
      .finally(() => this.running.delete(p));
    this.running.add(p);
  }

  private async sweep(batch: Listed[]): Promise<void> {
    // the sizes the listing did not give: a HEAD each
    await forEachLimit(
      batch.filter((o) => o.size === undefined),
      HEADS_AT_ONCE,
      async (o) => {
        o.size = (await this.repo.driver.head(o.key))?.size ?? 0;
      },
      this.signal,
    );
    if (!this.dryRun) await deleteKeys(this.repo.driver, batch.map((o) => o.key), this.signal);
    this.deleted += batch.length;
    for (const o of batch) this.bytes += o.size!;
  }
}

export async function prune(repo: Repository, policy: RetentionPolicy, opts: { dryRun?: boolean; signal?: AbortSignal } = {}): Promise<PruneReport> {
  const t0 = performance.now();
  const dryRun = opts.dryRun ?? false;
  const lock = dryRun ? undefined : await RepoLock.acquire(repo.driver, 'prune');
  const signal = lock ? AbortSignal.any([lock.signal, ...(opts.signal ? [opts.signal] : [])]) : opts.signal;
  // asked beside the rest (advisory: a store that will not say is not held against it)
  const versioning = repo.driver.versioning?.();
  try {
    const ids = await repo.listBackupIds();
    // every one, or nothing removed: what an unreadable manifest references is not known
    const manifests = await repo.readManifests(ids, signal).catch((err: unknown) => {
      if (!(err instanceof LockstepError) || err.code !== 'LOCKSTEP_E_REPO_CORRUPT') throw err;
      throw new LockstepError(err.code, `${err.message}; prune removes nothing while a backup's manifest cannot be read (what it references is not known)`, {
        cause: err,
        details: err.details,
        hint: '"lockstep backup list" names every unreadable manifest; put it back from a copy of the repository, or give that backup up with "lockstep backup delete ID"',
      });
    });
    const keptWhy = selectKept(manifests, policy);
    const kept = manifests.filter((m) => keptWhy.has(m.backupId));
    const removed = manifests.filter((m) => !keptWhy.has(m.backupId)).map((m) => m.backupId);
    const report: PruneReport = {
      kind: 'prune',
      dryRun,
      kept: kept.map((m) => ({ backupId: m.backupId, reasons: keptWhy.get(m.backupId)! })),
      removed,
      objectsDeleted: 0,
      bytesFreed: 0,
      objectsKept: 0,
      leftoversDeleted: 0,
      temporaryDeleted: 0,
      durationMs: 0,
    };

    // 1. the removed backups stop existing (manifest first), then their indexes; and what
    //    backups that never committed left behind (no backup runs: we hold the lock)
    const committed = new Set(ids);
    const removedSet = new Set(removed);
    const byBackup = new Map<string, string[]>();
    for await (const key of repo.driver.list('backups/')) {
      const id = key.split('/')[1]!;
      const of = byBackup.get(id);
      if (of) of.push(key);
      else byBackup.set(id, [key]);
    }
    const manifestOf = new Map(manifests.map((m) => [m.backupId, m]));
    for (const [id, keys] of byBackup) {
      signal?.throwIfAborted();
      if (committed.has(id) && !removedSet.has(id)) {
        // a partial backup committed without a component whose upload failed after it wrote
        // (some of) its index: nothing reads that index, and it would stay as long as the backup
        const stray = keys.filter((k) => {
          const owner = indexOwnerOf(k);
          return owner !== undefined && !holdsComponent(manifestOf.get(id)!, owner.node, owner.component);
        });
        report.leftoversDeleted += stray.length;
        if (!dryRun && stray.length > 0) await deleteKeys(repo.driver, stray, signal);
        continue;
      }
      if (!committed.has(id)) report.leftoversDeleted += keys.length;
      if (dryRun) continue;
      await deleteManifestFirst(repo, keys, signal);
    }

    // 2. mark what the kept backups need, 3. sweep the rest
    const live = await liveObjects(repo, kept, manifestOf);
    // with their sizes where the store's listing has them (no HEAD per object)
    const sweep = new Sweep(repo, dryRun, signal);
    const listSized = repo.driver.listSized?.bind(repo.driver);
    const listPage = repo.driver.listPage?.bind(repo.driver);
    try {
      for (const prefix of ['chunks/', 'packs/']) {
        let kept = 0;
        const sort = (o: Listed) => {
          if (!live.has(o.key)) return sweep.add(o);
          kept++;
          return undefined;
        };
        let listedInLanes = false;
        if (listPage) {
          const before = sweep.mark();
          try {
            // a big repository's listing in lanes at once (listed-sizes.ts)
            await listEverySized(listPage, prefix, sort, signal);
            listedInLanes = true;
          } catch (err) {
            if (!(err instanceof ListingUnordered)) throw err;
            // a store that does not list in key order: listed again, one page after the other
            await sweep.drain();
            kept = 0;
            sweep.rewind(before);
          }
        }
        if (!listedInLanes) {
          for await (const o of listSized ? listSized(prefix) : mapKeys(repo.driver.list(prefix))) {
            const wait = sort(o);
            if (wait) await wait;
          }
        }
        report.objectsKept += kept;
      }
      await sweep.drain();
    } finally {
      await sweep.stop();
    }
    report.objectsDeleted = sweep.deleted;
    report.bytesFreed += sweep.bytes;
    // 4. what writers killed mid-write left (an hour old: no write still running wrote it)
    const swept = await repo.driver.sweepTemporary?.(TEMPORARY_AGE_MS, dryRun);
    if (swept) {
      report.temporaryDeleted = swept.files;
      report.bytesFreed += swept.bytes;
    }
    const freed = `the ${report.objectsDeleted} objects (${report.bytesFreed} bytes) this prune ${dryRun ? 'would delete' : 'deleted'}`;
    const warning = versioningWarning(await versioning, repo.driver.location, freed);
    if (warning) report.warnings = [warning];
    report.durationMs = Math.round(performance.now() - t0);
    return report;
  } finally {
    await lock?.release().catch(() => undefined);
  }
}

export interface DeleteReport {
  kind: 'delete';
  backupId: string;
  /** its manifest and indexes */
  objectsDeleted: number;
  durationMs: number;
}

/**
 * Give one backup up, under the repository's lock: its manifest first (the backup stops
 * existing), then its indexes. Its data stays until a prune finds that no other backup
 * needs it. What it is for: a backup whose manifest is damaged, which `backup list` shows
 * as unreadable and which keeps every prune from removing anything; or one taken by
 * mistake. Nothing else is touched.
 */
export async function deleteBackup(repo: Repository, backupId: string, opts: { signal?: AbortSignal } = {}): Promise<DeleteReport> {
  const t0 = performance.now();
  const lock = await RepoLock.acquire(repo.driver, 'delete');
  const signal = AbortSignal.any([lock.signal, ...(opts.signal ? [opts.signal] : [])]);
  try {
    const keys = await listKeys(repo.driver, backupPrefix(backupId));
    if (!keys.includes(manifestKey(backupId))) {
      throw new LockstepError('LOCKSTEP_E_BACKUP_NOT_FOUND', `no backup ${backupId} in ${repo.location}`, { hint: 'list backups with "lockstep backup list"; what a backup that never committed left, prune removes' });
    }
    await deleteManifestFirst(repo, keys, signal);
    return { kind: 'delete', backupId, objectsDeleted: keys.length, durationMs: Math.round(performance.now() - t0) };
  } finally {
    await lock.release().catch(() => undefined);
  }
}

/**
 * Delete one backup's objects (`keys`, all under its prefix): its manifest first, so the
 * backup stops existing before any index it names goes; then the rest, several at once
 * (`deleteKeys`: a big node's index is thousands of parts, one request after another
 * minutes on S3).
 */
async function deleteManifestFirst(repo: Repository, keys: readonly string[], signal?: AbortSignal): Promise<void> {
  const manifest = keys.find((k) => k.endsWith('/manifest.json'));
  if (manifest !== undefined) {
    signal?.throwIfAborted();
    await repo.driver.delete(manifest);
  }
  await deleteKeys(repo.driver, keys.filter((k) => k !== manifest), signal);
}

async function* mapKeys(keys: AsyncIterable<string>): AsyncIterable<{ key: string; size?: number }> {
  for await (const key of keys) yield { key };
}
