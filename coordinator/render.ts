/** Human renderings of reports and listings (the --json forms print the objects as they are). */
import type { ErrorInfo } from '../lib/errors.js';
import type { BackupReport, ComponentReport, RestoreReport, StepRecord } from '../lib/report.js';
import type { Manifest } from '../lib/repo/manifest.js';
import type { Described } from './cluster.js';
import type { VerifyProblem, VerifyReport } from '../lib/repo/verify.js';
import { lastChecks, type CheckRecord } from '../lib/repo/checks.js';
import { outcomeOf, type CheckOutcome, type CheckSummary } from '../lib/repo/layout.js';
import type { DeleteReport, PruneReport } from '../lib/repo/prune.js';
import { describeHolder, type LockStatus } from '../lib/repo/lock.js';

/** a report's warnings, a line each */
export function warningLines(warnings: readonly string[] | undefined): string[] {
  return (warnings ?? []).map((w) => `  warning: ${w}`);
}

/** `n` and its noun, singular for one: "1 file", "3 files" */
export function counted(n: number, noun: string, plural = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : plural}`;
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function ms(n: number | undefined): string {
  if (n === undefined) return '-';
  return n < 1000 ? `${n} ms` : `${(n / 1000).toFixed(2)} s`;
}

export function errorLines(e: ErrorInfo, indent = ''): string[] {
  const lines = [`${indent}error ${e.code}${e.node ? ` on ${e.node}` : ''}: ${e.message.split('\n').join(`\n${indent}  `)}`];
  if (e.hint) lines.push(`${indent}  hint: ${e.hint}`);
  return lines;
}

function stepsLine(steps: StepRecord[]): string {
  return steps.map((s) => `${s.name} ${ms(s.durationMs)}${s.status === 'ok' ? '' : ' (failed)'}`).join(' → ');
}

function componentLine(c: ComponentReport): string[] {
  const mark = c.status === 'ok' ? 'ok' : c.status === 'skipped' ? 'skipped' : 'FAILED';
  const facts: string[] = [];
  if (c.pauseMs !== undefined) facts.push(`writes paused ${ms(c.pauseMs)}`);
  if (c.snapshot) facts.push(`downtime ${ms(c.snapshot.downtimeMs)}`, `snapshot ${ms(c.snapshot.snapshotMs)}`);
  if (c.snapshot?.copiedBytes !== undefined) facts.push(`copied ${bytes(c.snapshot.copiedBytes)}`);
  if (c.snapshot?.comparedBytes) facts.push(`compared ${bytes(c.snapshot.comparedBytes)} with the kept copy`);
  if (c.upload) {
    facts.push(`${counted(c.upload.files, 'file')} ${bytes(c.upload.bytes)}`);
    if (c.upload.bytesRead !== undefined && c.upload.bytesRead < c.upload.bytes) facts.push(`read ${bytes(c.upload.bytesRead)}`);
    if (c.upload.bytesHashed !== undefined && c.upload.bytesHashed < (c.upload.bytesRead ?? c.upload.bytes)) facts.push(`hashed ${bytes(c.upload.bytesHashed)}`);
    const p = c.upload.phases;
    const where = p ? ` (walk ${ms(p.walkMs)}, previous index ${ms(p.previousMs)}, files ${ms(p.filesMs)}, index ${ms(p.indexMs)})` : '';
    facts.push(`new ${bytes(c.upload.bytesNew)}`, `upload ${ms(c.upload.uploadMs)}${where}`);
    if (c.upload.indexPartsReused) facts.push(`index parts reused ${c.upload.indexPartsReused}/${c.upload.indexParts}`);
  }
  if (c.stage) facts.push(`${counted(c.stage.files, 'file')} ${bytes(c.stage.bytes)}`, `downloaded ${bytes(c.stage.bytesDownloaded)}`, `reused ${counted(c.stage.filesReused, 'file')}`);
  if (c.downtimeMs !== undefined) facts.push(`downtime ${ms(c.downtimeMs)}`);
  const lines = [`    ${c.component} [${c.plugin}, shard ${c.shard}, ${c.role}] ${mark}${facts.length ? `: ${facts.join(', ')}` : ''}`];
  if (c.reason && c.status !== 'ok') lines.push(`      ${c.reason.split('\n').join('\n      ')}`);
  else if (c.health && !c.health.ok) lines.push(`      not healthy: ${c.health.message}`);
  if (c.error?.hint) lines.push(`      hint: ${c.error.hint}`);
  for (const a of c.actions ?? []) lines.push(`      - ${a}`);
  if (c.snapshot?.configFiles.length) lines.push(`      config files: ${c.snapshot.configFiles.join(', ')}`);
  return lines;
}

export function renderBackup(r: BackupReport): string {
  const out = [`backup ${r.backupId} of cluster ${r.cluster}: ${r.status.toUpperCase()} in ${ms(r.durationMs)}`];
  if (r.steps.length) out.push(`  steps: ${stepsLine(r.steps)}`);
  for (const n of r.nodes) {
    out.push(`  node ${n.node} (${n.address}): ${n.status}`);
    if (n.error) out.push(...errorLines(n.error, '    '));
    for (const c of n.components) out.push(...componentLine(c));
  }
  if (r.shards.length) {
    out.push('  shards:');
    for (const s of r.shards) out.push(`    ${s.shard}: ${s.covered ? `covered by ${s.coveredBy.join(', ')}` : `NOT COVERED (members ${s.members.join(', ')})`}`);
  }
  out.push(`  total: ${counted(r.totals.files, 'file')}, ${bytes(r.totals.bytes)}, ${bytes(r.totals.bytesNew)} new in the repository, longest service downtime ${ms(r.totals.maxDowntimeMs)}`);
  if (r.pause) out.push(`  write pause window (first freeze → last thaw): ${ms(r.pause.windowMs)} over ${counted(r.pause.components, 'component')} (lease TTL ${ms(r.pause.ttlMs)})`);
  if (r.manifest) out.push(`  manifest: ${r.manifest}`);
  out.push(...warningLines(r.warnings));
  if (r.error) out.push(...errorLines(r.error, '  '));
  return out.join('\n');
}

export function renderRestore(r: RestoreReport): string {
  const title = r.dryRun ? `restore plan for backup ${r.backupId} (dry run: nothing changed)` : `restore ${r.restoreId} of backup ${r.backupId}: ${r.status.toUpperCase()} in ${ms(r.durationMs)}`;
  const out = [title];
  if (r.steps.length) out.push(`  steps: ${stepsLine(r.steps)}`);
  if (r.downtimeMs !== undefined) out.push(`  cluster downtime (first stop to last healthy): ${ms(r.downtimeMs)}`);
  if (r.steps.some((s) => s.name === 'plan')) out.push(`  backup last checked: ${r.lastCheck ? checkLine(r.lastCheck) : 'none recorded (lockstep backup verify)'}`);
  for (const n of r.nodes) {
    out.push(`  node ${n.node} (${n.address}): ${n.status}`);
    for (const c of n.components) out.push(...componentLine(c));
  }
  if (r.keptOldData.length) out.push(`  previous data kept at: ${r.keptOldData.join(', ')}`);
  out.push(...warningLines(r.warnings));
  if (r.error) out.push(...errorLines(r.error, '  '));
  if (r.rollback) {
    out.push(r.rollback.ok ? '  rollback: succeeded; the previous data is back in place and services were started' : '  rollback: FAILED; a person must act:');
    for (const e of r.rollback.errors) out.push(...errorLines(e, '    '));
  }
  return out.join('\n');
}

export function renderTopology(cluster: string, described: Described[]): string {
  const out = [`cluster ${cluster}`];
  for (const d of described) {
    if (!d.description) {
      out.push(`  node ${d.node} (${d.address}): UNREACHABLE`);
      if (d.error) out.push(...errorLines(d.error, '    '));
      continue;
    }
    const desc = d.description;
    out.push(`  node ${d.node} (${d.address}, host ${desc.hostname}, agent ${desc.agentVersion})`);
    out.push(`    repository: ${desc.repository.id ? `${desc.repository.location} (id ${desc.repository.id})` : `ERROR ${desc.repository.error?.message ?? ''}`}`);
    for (const c of desc.components) {
      out.push(`    ${c.name} [${c.plugin}] ${c.tier}, role ${c.role}, shard ${c.shard}: ${c.health.ok ? 'healthy' : `UNHEALTHY (${c.health.message})`}`);
      const size = c.files === undefined || c.sizeBytes === undefined ? 'not counted' : `${counted(c.files, 'file')}, ${bytes(c.sizeBytes)}`;
      for (const [set, p] of Object.entries(c.paths)) out.push(`      ${set}: ${p} (${size})`);
      if (c.configFiles.length) out.push(`      config files: ${c.configFiles.join(', ')}`);
    }
  }
  return out.join('\n');
}

/** one line of `backup list`: a backup as its manifest says, or one whose manifest could not be read */
export type BackupListEntry =
  | {
      backupId: string;
      status: Manifest['status'];
      cluster: string;
      committedAt: string;
      nodes: number;
      components: number;
      bytes: number;
      /** how many times `backup verify` checked it to the end */
      checks: number;
      /** the newest of those checks, and the newest that read data back (none: never) */
      lastCheck?: CheckOutcome;
      lastReadBack?: CheckOutcome;
    }
  | { backupId: string; status: 'unreadable'; error: ErrorInfo };

export function backupListEntry(m: Manifest, checks: readonly CheckSummary[] = []): BackupListEntry {
  const { last, lastReadBack } = lastChecks(checks);
  return {
    backupId: m.backupId,
    status: m.status,
    cluster: m.cluster,
    committedAt: m.committedAt,
    nodes: m.topology.length,
    components: m.components.length,
    bytes: m.components.reduce((n, c) => n + c.bytes, 0),
    checks: checks.length,
    ...(last ? { lastCheck: outcomeOf(last) } : {}),
    ...(lastReadBack ? { lastReadBack: outcomeOf(lastReadBack) } : {}),
  };
}

/** a check in a line: when (to the minute, UTC), its outcome, and how much it read back (objects only: it checked that every object is there) */
export function checkLine(c: CheckOutcome): string {
  return `${c.at.slice(0, 16).replace('T', ' ')} ${c.status === 'ok' ? 'ok' : 'DAMAGED'}, ${c.readDataPercent > 0 ? `${c.readDataPercent}% read back` : 'objects only'}`;
}

export function renderBackupList(entries: BackupListEntry[]): string {
  if (entries.length === 0) return 'no backups';
  const rows = entries.map((e) =>
    'error' in e
      ? [e.backupId, 'UNREADABLE', '-', '-', '-', '-', '-', '-']
      : [e.backupId, e.status, e.cluster, String(e.nodes), String(e.components), bytes(e.bytes), e.committedAt, e.lastCheck ? checkLine(e.lastCheck) : 'never'],
  );
  const head = ['ID', 'STATUS', 'CLUSTER', 'NODES', 'COMPONENTS', 'SIZE', 'COMMITTED', 'LAST CHECK'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const out = [head, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
  for (const e of entries) if ('error' in e) out.push(...errorLines(e.error, `${e.backupId}: `));
  return out.join('\n');
}

/** `backup show`: the backup's report, then its checks */
export function renderShow(r: BackupReport, checks: readonly CheckSummary[], newest?: CheckRecord | { error: ErrorInfo }): string {
  const out = [renderBackup(r)];
  if (checks.length === 0) out.push('  checks: never checked (lockstep backup verify)');
  else {
    out.push(`  checks (${checks.length}, newest last):`);
    const shown = checks.slice(-CHECKS_SHOWN);
    if (shown.length < checks.length) out.push(`    … ${checks.length - shown.length} older`);
    for (const c of shown) out.push(`    ${checkLine(c)}`);
    if (newest && 'error' in newest) out.push(...errorLines(newest.error, '    newest: '));
    else if (newest) {
      out.push(`    newest: ${counted(newest.objectsChecked, 'object')}, ${counted(newest.blobsRead, 'blob')} (${bytes(newest.bytesRead)}) read back${newest.seed ? `, seed ${newest.seed}` : ''}, from host ${newest.host}, ${counted(newest.problems, 'problem')}`);
      for (const p of newest.firstProblems) out.push(`      ${problemLine(p)}`);
      if (newest.problems > newest.firstProblems.length) out.push(`      … ${newest.problems - newest.firstProblems.length} more (run the check again to see them all)`);
    }
  }
  return out.join('\n');
}

/** checks `backup show` lists (the newest) */
const CHECKS_SHOWN = 10;

function problemLine(p: Omit<VerifyProblem, 'kind'> & { kind: string }): string {
  return `${p.kind.toUpperCase()} ${p.node}/${p.component}${p.file ? ` file ${p.file}${p.alsoIn ? ` (and ${p.alsoIn} more uses)` : ''}` : ''}${p.chunk ? ` chunk ${p.chunk}` : ''}: ${p.object}`;
}

export function renderVerify(r: VerifyReport): string {
  const out = [
    `backup ${r.backupId}: ${r.status === 'ok' ? 'OK' : 'DAMAGED'} — ${counted(r.components, 'component')}, ${counted(r.files, 'file')}, ${counted(r.objectsChecked, 'object')} checked` +
      (r.readDataPercent > 0 ? `, ${counted(r.blobsRead, 'blob')} (${bytes(r.bytesRead)}) read back (${r.readDataPercent}% of the data${r.seed ? `, seed ${r.seed}` : ''})` : ', data not read (add --read-data)') +
      ` in ${ms(r.durationMs)}`,
  ];
  for (const p of r.problems) {
    out.push(`  ${problemLine(p)}`);
    out.push(`    ${p.message}`);
  }
  if (r.notRecorded && r.notRecorded !== '--no-record') out.push(`  warning: the result was not kept in the repository (backup list will not show this check): ${r.notRecorded}`);
  return out.join('\n');
}

export function renderDelete(r: DeleteReport): string {
  return `backup ${r.backupId} deleted (${counted(r.objectsDeleted, 'object')}: its manifest and indexes); the next prune frees the data no other backup needs`;
}

export function renderPrune(r: PruneReport): string {
  const verb = r.dryRun ? 'would remove' : 'removed';
  const out = [`${r.dryRun ? 'dry run: ' : ''}kept ${counted(r.kept.length, 'backup')}, ${verb} ${r.removed.length}; ${verb} ${counted(r.objectsDeleted, 'object')} (${bytes(r.bytesFreed)}), ${counted(r.objectsKept, 'object')} still in use`];
  for (const k of r.kept) out.push(`  keep   ${k.backupId} (${k.reasons.join(', ')})`);
  for (const id of r.removed) out.push(`  remove ${id}`);
  if (r.leftoversDeleted > 0) out.push(`  ${verb} ${counted(r.leftoversDeleted, 'object')} left by backups, or components of partial backups, that never committed`);
  if (r.temporaryDeleted > 0) out.push(`  ${verb} ${counted(r.temporaryDeleted, 'temp file')} of writes killed mid-way`);
  out.push(...warningLines(r.warnings));
  return out.join('\n');
}

/** `lockstep repo status` */
export interface RepoStatus {
  location: string;
  id: string;
  format: number;
  encrypted: boolean;
  chunkSize: number;
  /** the bucket's versioning, where the store tells */
  versioning?: 'enabled' | 'suspended' | 'off';
  lock: LockStatus;
  backups: number;
  /** the newest backup and its last check */
  newest?: { backupId: string; lastCheck?: CheckSummary };
  /** runs that stored data and did not commit their component: their next runs resume from it */
  interrupted: { node: string; component: string; backupId: string }[];
  warnings?: string[];
}

/** the lock in words: free, or who holds it and what happens next */
export function lockLine(l: LockStatus): string {
  if (!l.holder) return 'free';
  const who = describeHolder(l.holder, null);
  if (l.takenOverNext) return `held by ${who}: ${l.leaseUntil ? `its lease ran out at ${l.leaseUntil}` : 'its holder is gone'}, the next backup or prune takes it over`;
  return `held by ${who}, lease until ${l.leaseUntil} (by ${l.judgedBy === 'store' ? "the store's clock" : "its holder's clock"}; renewed while it runs)`;
}

export function renderRepoStatus(r: RepoStatus): string {
  const out = [`repository ${r.location} (id ${r.id}, format ${r.format}, ${r.encrypted ? 'encrypted' : 'not encrypted'}, chunk objects of ${bytes(r.chunkSize)})`];
  if (r.versioning) out.push(`  bucket versioning: ${r.versioning}`);
  out.push(`  lock: ${lockLine(r.lock)}`);
  const newest = r.newest ? `; newest ${r.newest.backupId}, last check ${r.newest.lastCheck ? checkLine(outcomeOf(r.newest.lastCheck)) : 'never'}` : '';
  out.push(`  backups: ${r.backups}${newest}`);
  out.push(
    r.interrupted.length === 0
      ? '  interrupted runs: none'
      : `  interrupted runs (each component's next backup resumes from what its run stored): ${r.interrupted.map((x) => `${x.node}/${x.component} in ${x.backupId}`).join(', ')}`,
  );
  out.push(...warningLines(r.warnings));
  return out.join('\n');
}
