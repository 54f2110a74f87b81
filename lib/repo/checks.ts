/**
 * Check records: what each `backup verify` found, kept in the repository beside the backup
 * it checked, so that `backup list` tells which backups were ever checked, when, how
 * deeply and with what outcome, from any coordinator host (a verify run from a nightly
 * timer on one host is seen from another).
 *
 * A record's key says when it was made, the outcome and how much was read back (see
 * layout.ts): the listing that finds the backups finds their checks, no object is read
 * for it. Its body (through the codec, like the manifest) holds the rest of the report
 * and its first problems. A record is written only for a check that ran to its end; one
 * is never replaced, and it goes with its backup (delete and prune remove everything
 * under a backup's prefix; a record written after its backup was pruned is a leftover the
 * next prune removes).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Type, type Static } from '@sinclair/typebox';
import { LockstepError } from '../errors.js';
import { checkKey, checkOfKey, checksPrefix, type CheckSummary } from './layout.js';
import type { Repository } from './repository.js';
import { checkStored, parseJson } from './stored.js';
import type { VerifyReport } from './verify.js';

/** manifests `stalestChecked` reads at a time, in the order it picks */
const STALEST_AT_ONCE = 4;

/** problems a record keeps (the report printed at the time has them all) */
const PROBLEMS_KEPT = 20;

const ProblemSchema = Type.Object({
  kind: Type.String(),
  node: Type.String(),
  component: Type.String(),
  file: Type.Optional(Type.String()),
  alsoIn: Type.Optional(Type.Integer()),
  chunk: Type.Optional(Type.String()),
  object: Type.String(),
  message: Type.String(),
});

export const CheckRecordSchema = Type.Object({
  version: Type.Literal(1),
  backupId: Type.String(),
  at: Type.String(),
  status: Type.Union([Type.Literal('ok'), Type.Literal('damaged')]),
  readDataPercent: Type.Number({ minimum: 0, maximum: 100 }),
  seed: Type.Optional(Type.String()),
  host: Type.String(),
  components: Type.Integer(),
  files: Type.Integer(),
  objectsChecked: Type.Integer(),
  blobsRead: Type.Integer(),
  bytesRead: Type.Integer(),
  durationMs: Type.Number(),
  problems: Type.Integer(),
  firstProblems: Type.Array(ProblemSchema),
});
export type CheckRecord = Static<typeof CheckRecordSchema>;

/**
 * Keep what `report` found in the repository; the key written. Undefined when the backup
 * is no longer there (given up or pruned while it was checked): nothing to keep it beside.
 */
export async function recordCheck(repo: Repository, report: VerifyReport, at = new Date()): Promise<string | undefined> {
  const record: CheckRecord = {
    version: 1,
    backupId: report.backupId,
    at: at.toISOString(),
    status: report.status,
    readDataPercent: report.readDataPercent,
    ...(report.seed ? { seed: report.seed } : {}),
    host: hostname(),
    components: report.components,
    files: report.files,
    objectsChecked: report.objectsChecked,
    blobsRead: report.blobsRead,
    bytesRead: report.bytesRead,
    durationMs: report.durationMs,
    problems: report.problems.length,
    firstProblems: report.problems.slice(0, PROBLEMS_KEPT),
  };
  if (!(await repo.hasManifest(report.backupId))) return undefined;
  const key = checkKey(record, randomBytes(4).toString('hex'));
  await repo.driver.put(key, await repo.codec.encode(Buffer.from(`${JSON.stringify(record, null, 1)}\n`)));
  await repo.driver.flush();
  return key;
}

/** the checks of one backup, oldest first, from their keys */
export async function listChecks(repo: Repository, backupId: string): Promise<{ key: string; check: CheckSummary }[]> {
  const out: { key: string; check: CheckSummary }[] = [];
  for await (const key of repo.driver.list(checksPrefix(backupId))) {
    const check = checkOfKey(key);
    if (check && check.backupId === backupId) out.push({ key, check });
  }
  return out.sort((a, b) => a.check.at.localeCompare(b.check.at) || a.key.localeCompare(b.key));
}

/** one check record, whole */
export async function readCheck(repo: Repository, key: string): Promise<CheckRecord> {
  const where = `${key} in ${repo.location}`;
  const raw = parseJson((await repo.readDecoded(key)).toString('utf8'), where);
  const record = checkStored(CheckRecordSchema, raw, where, 'check record');
  const named = checkOfKey(key);
  if (named?.backupId !== record.backupId || named.status !== record.status) {
    throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} does not say what its name says (backup ${record.backupId}, ${record.status})`);
  }
  return record;
}

/** the newest of `checks` (as listed), and the newest that read data back */
export function lastChecks(checks: readonly CheckSummary[]): { last?: CheckSummary; lastReadBack?: CheckSummary } {
  const newest = (cs: readonly CheckSummary[]) => cs.reduce<CheckSummary | undefined>((n, c) => (!n || c.at > n.at ? c : n), undefined);
  return { last: newest(checks), lastReadBack: newest(checks.filter((c) => c.readDataPercent > 0)) };
}

/**
 * `backup verify stalest`: the complete backup whose newest check of the kind asked for
 * (one that read data back, or any) is the oldest; one never so checked comes first, the
 * oldest of those first. Run nightly after the newest backup's check, it goes round the
 * older backups, so data only they hold is read back too. A backup whose manifest cannot
 * be read is passed over (`backup list` names it, and prune refuses to run past it).
 */
export async function stalestChecked(repo: Repository, readBack: boolean): Promise<string> {
  const { ids, checks } = await repo.listBackups();
  // in the order it would be picked (the listing says when each was checked), then the first
  // complete one: its manifest and those of any incomplete or damaged ones before it are all
  // that is read, not every manifest of the repository
  const order = ids
    .map((id) => {
      const { last, lastReadBack } = lastChecks(checks.get(id) ?? []);
      return { id, at: (readBack ? lastReadBack : last)?.at ?? '' };
    })
    .sort((a, b) => a.at.localeCompare(b.at) || a.id.localeCompare(b.id));
  for (let i = 0; i < order.length; i += STALEST_AT_ONCE) {
    for (const r of await repo.listManifests(order.slice(i, i + STALEST_AT_ONCE).map((c) => c.id))) {
      if (!('error' in r) && r.manifest.status === 'complete') return r.backupId;
    }
  }
  throw new LockstepError('LOCKSTEP_E_BACKUP_NOT_FOUND', `no complete backup in ${repo.location} to check`, { hint: 'lockstep backup list shows what there is' });
}
