/**
 * The agent API's wire types, written once as JSON schemas (fastify validates them on
 * every route) with the TypeScript types derived from them.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Argv, StringEnum } from './schema.js';
import { BACKUP_ID_RE, RESTORE_ID_RE } from './ids.js';

export const API_PREFIX = '/v1';

/**
 * The header a job's start is sent with: a key the coordinator chose for that start. An
 * agent that started a job under the key answers a second start with that job, not a new
 * one, so a start whose answer was lost (the connection closed or timed out before it)
 * can be asked again without running the job twice. Keys live as long as the agent keeps
 * their jobs (`jobHistory`), in memory: an agent restarted in between starts the job anew.
 */
export const JOB_KEY_HEADER = 'idempotency-key';
/** what a job key may be: 1–128 letters, digits, '-' or '_' */
export const JOB_KEY_RE = /^[A-Za-z0-9_-]{1,128}$/;

export const ErrorInfoSchema = Type.Object({
  code: Type.String(),
  message: Type.String(),
  node: Type.Optional(Type.String()),
  hint: Type.Optional(Type.String()),
  details: Type.Optional(Type.Unknown()),
});

export const tiers = ['meta', 'storage'] as const;
export type Tier = (typeof tiers)[number];

export const HealthSchema = Type.Object({
  ok: Type.Boolean(),
  message: Type.String(),
  /**
   * not healthy yet, but at work towards it (a dataset loading): what it has done so far,
   * which changes as it goes on (plugins/engines/health.ts waits while it does)
   */
  progress: Type.Optional(Type.String()),
});
export type Health = Static<typeof HealthSchema>;

export const ComponentDescriptionSchema = Type.Object({
  name: Type.String(),
  plugin: Type.String(),
  tier: StringEnum(tiers),
  /** replication role within its shard: primary, replica, leader, follower, standalone … */
  role: Type.String(),
  shard: Type.String(),
  /** snapshot set → absolute path on the node */
  paths: Type.Record(Type.String(), Type.String()),
  configFiles: Type.Array(Type.String()),
  /** what its paths hold; absent when not asked for (a backup or restore does not walk a big data directory to count it) */
  sizeBytes: Type.Optional(Type.Integer()),
  files: Type.Optional(Type.Integer()),
  health: HealthSchema,
  capabilities: Type.Array(Type.String()),
  /** plugin facts the cluster half needs (e.g. an etcd member's name and peer URL) */
  details: Type.Optional(Type.Record(Type.String(), Type.String())),
  /** the command run on the node after a restore, once the cluster is healthy */
  afterRestore: Type.Optional(Argv),
  /** the command run on the node once a restore has staged everything, before any service is stopped */
  beforeRestore: Type.Optional(Argv),
});
export type ComponentDescription = Static<typeof ComponentDescriptionSchema>;

export const RepositoryStatusSchema = Type.Object({
  location: Type.String(),
  id: Type.Optional(Type.String()),
  error: Type.Optional(ErrorInfoSchema),
});

export const NodeDescriptionSchema = Type.Object({
  node: Type.String(),
  agentVersion: Type.String(),
  hostname: Type.String(),
  components: Type.Array(ComponentDescriptionSchema),
  repository: RepositoryStatusSchema,
});
export type NodeDescription = Static<typeof NodeDescriptionSchema>;

export const PreflightRequestSchema = Type.Object({
  repositoryId: Type.String(),
  /** the backup the caller checks for */
  backupId: Type.Optional(Type.String()),
  /**
   * the caller holds the repository's lock for `backupId`: an upload of another backup into
   * that repository has lost its lock (its coordinator died, or lost the store), so it is
   * stopped and its component freed instead of reported busy
   */
  lockHeld: Type.Optional(Type.Boolean()),
});
export const PreflightCheckSchema = Type.Object({
  check: Type.String(),
  ok: Type.Boolean(),
  message: Type.String(),
  error: Type.Optional(ErrorInfoSchema),
  /** passed, but what the operator should hear of (an orphaned upload stopped) */
  warning: Type.Optional(Type.String()),
});
export const PreflightResultSchema = Type.Object({
  node: Type.String(),
  ok: Type.Boolean(),
  checks: Type.Array(PreflightCheckSchema),
});
export type PreflightResult = Static<typeof PreflightResultSchema>;

// ---- jobs -------------------------------------------------------------------------

export const jobKinds = ['snapshot', 'upload', 'cleanup', 'stage', 'stop', 'swap', 'start', 'hook', 'rollback', 'finish'] as const;
export type JobKind = (typeof jobKinds)[number];

export const jobStates = ['running', 'succeeded', 'failed', 'cancelled', 'interrupted'] as const;
export type JobState = (typeof jobStates)[number];

const Component = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' });
const BackupId = Type.String({ pattern: BACKUP_ID_RE.source });
const RestoreId = Type.String({ pattern: RESTORE_ID_RE.source });
const Sha = Type.String({ pattern: '^[0-9a-f]{64}$' });

/** One schema per kind; the body of POST /v1/jobs is any of them. */
export const JobRequestSchema = Type.Union([
  Type.Object({ kind: Type.Literal('snapshot'), component: Component, backupId: BackupId }, { additionalProperties: false }),
  Type.Object(
    {
      kind: Type.Literal('upload'),
      component: Component,
      backupId: BackupId,
      repositoryId: Type.String(),
      /** the component's shard in this backup: a first backup on the node prefers a peer of the same shard (a replica) */
      shard: Type.Optional(Type.String({ maxLength: 512 })),
    },
    { additionalProperties: false },
  ),
  Type.Object({ kind: Type.Literal('cleanup'), component: Component, backupId: BackupId }, { additionalProperties: false }),
  Type.Object(
    {
      kind: Type.Literal('stage'),
      component: Component,
      restoreId: RestoreId,
      backupId: BackupId,
      repositoryId: Type.String(),
      indexKey: Type.String(),
      indexSha256: Sha,
      /** what the plugin's cluster half computed for this member (membership, tokens) */
      params: Type.Optional(Type.Record(Type.String(), Type.String())),
      /** the caller holds the repository's lock for this restore: a transfer of another operation into it that keeps the component busy lost its own, and is stopped (agent/jobs/runner.ts `takeOver`) */
      lockHeld: Type.Optional(Type.Boolean()),
    },
    { additionalProperties: false },
  ),
  Type.Object({ kind: Type.Literal('stop'), component: Component }, { additionalProperties: false }),
  Type.Object({ kind: Type.Literal('start'), component: Component }, { additionalProperties: false }),
  Type.Object({ kind: Type.Literal('swap'), component: Component, restoreId: RestoreId }, { additionalProperties: false }),
  Type.Object(
    {
      kind: Type.Literal('hook'),
      component: Component,
      restoreId: RestoreId,
      backupId: BackupId,
      /** the component's `beforeRestore` command (before any stop), or its `afterRestore` (the default: the cluster healthy again) */
      when: Type.Optional(Type.Union([Type.Literal('before'), Type.Literal('after')])),
    },
    { additionalProperties: false },
  ),
  Type.Object({ kind: Type.Literal('rollback'), component: Component, restoreId: RestoreId }, { additionalProperties: false }),
  Type.Object(
    { kind: Type.Literal('finish'), component: Component, restoreId: RestoreId, keepOld: Type.Boolean() },
    { additionalProperties: false },
  ),
]);
export type JobRequest = Static<typeof JobRequestSchema>;
export type JobRequestOf<K extends JobKind> = Extract<JobRequest, { kind: K }>;

export const ProgressSchema = Type.Object({
  phase: Type.String(),
  bytesDone: Type.Integer(),
  bytesTotal: Type.Integer(),
  filesDone: Type.Integer(),
  filesTotal: Type.Integer(),
  /** bytes per second over the job so far */
  rate: Type.Number(),
});
export type Progress = Static<typeof ProgressSchema>;

export const JobSchema = Type.Object({
  id: Type.String(),
  node: Type.String(),
  kind: StringEnum(jobKinds),
  component: Type.String(),
  request: Type.Unknown(),
  state: StringEnum(jobStates),
  createdAt: Type.String(),
  finishedAt: Type.Optional(Type.String()),
  durationMs: Type.Optional(Type.Integer()),
  progress: ProgressSchema,
  result: Type.Optional(Type.Unknown()),
  error: Type.Optional(ErrorInfoSchema),
  /** what recovery did after an agent restart interrupted the job */
  recovery: Type.Optional(Type.Array(Type.String())),
  /** the orphaned job this one stopped to start (see the stage request's `lockHeld`) */
  tookOver: Type.Optional(Type.String()),
});
export type Job = Static<typeof JobSchema>;

export function isTerminal(state: JobState): boolean {
  return state !== 'running';
}

// ---- job results ------------------------------------------------------------------

export interface SnapshotResult {
  /** what the snapshot holds; absent when it is the live data read in place (the upload's counts are then what was read) */
  files?: number;
  bytes?: number;
  /** time the service was stopped or writes were blocked, if at all */
  downtimeMs: number;
  snapshotMs: number;
  /** bytes the snapshot copied, where it copies (the rest was already in the copy kept from the last backup) */
  copiedBytes?: number;
  /** bytes of changed files it compared page by page with that copy (reading both) to write only what differs */
  comparedBytes?: number;
  configFiles: string[];
}

export interface UploadResult {
  indexKey: string;
  indexSha256: string;
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
  chunks: number;
  chunksNew: number;
  /** bytes written to the repository (after compression and encryption) */
  bytesNew: number;
  /** files not read again: same size, mtime, inode and ctime as in the component's previous backup, or untouched in its kept copy */
  filesUnchanged?: number;
  /** bytes read (and hashed) from the snapshot: changed files, or only their patched blocks */
  bytesRead?: number;
  /** of what was read, bytes hashed again: blocks whose fingerprint was not the previous backup's, and small files */
  bytesHashed?: number;
  /** where the previous backup's file index (what this one dedups against) came from: the agent's memory (kept since it wrote it), its local copy of it, or the repository; absent when there was none */
  previousIndex?: 'memory' | 'local' | 'repository';
  /** set when the index deduped against is another node's (this node had no backup of the component): that node */
  previousNode?: string;
  /** how many parts the file index is stored in, where it is big enough for parts and the store can copy */
  indexParts?: number;
  /** of those, parts of the previous index stored again by the store's copy (their entries did not change), not written anew */
  indexPartsReused?: number;
  uploadMs: number;
  /** where `uploadMs` went (they add up to at most it): listing and lstat of every entry, finding and reading the previous index (and the component's pending records), reading and storing the changed files (until every blob is stored), writing the index */
  phases?: UploadPhases;
}

export interface UploadPhases {
  walkMs: number;
  previousMs: number;
  filesMs: number;
  indexMs: number;
}

export interface StageResult {
  files: number;
  bytes: number;
  bytesDownloaded: number;
  filesReused: number;
  /** chunks of changed files read from local copies instead of the repository */
  bytesReusedLocally?: number;
  stageMs: number;
  /** what the plugin adjusted after staging, in words */
  notes?: string[];
}

export interface ServiceResult {
  ran: boolean;
  durationMs: number;
}

export interface HookResult extends ServiceResult {
  /** the hook's argv, and the last lines it printed */
  command?: string[];
  output?: string;
}

// ---- freeze leases ------------------------------------------------------------------

export const FreezeRequestSchema = Type.Object(
  {
    leaseId: Type.String({ minLength: 1, maxLength: 80, pattern: '^[A-Za-z0-9._-]+$' }),
    components: Type.Array(Component, { minItems: 1 }),
    ttlMs: Type.Integer({ minimum: 100, maximum: 600_000 }),
  },
  { additionalProperties: false },
);
export type FreezeRequest = Static<typeof FreezeRequestSchema>;

export const RenewRequestSchema = Type.Object({ ttlMs: Type.Integer({ minimum: 100, maximum: 600_000 }) }, { additionalProperties: false });
export const PointRequestSchema = Type.Object({ backupId: BackupId, components: Type.Array(Component, { minItems: 1 }) }, { additionalProperties: false });

export const LeaseSchema = Type.Object({
  leaseId: Type.String(),
  node: Type.String(),
  components: Type.Array(Type.String()),
  frozenAt: Type.String(),
  expiresAt: Type.String(),
  state: StringEnum(['frozen', 'thawed', 'expired']),
  /** frozen → thawed, per component, when thawed */
  pausedMs: Type.Optional(Type.Record(Type.String(), Type.Integer())),
});
export type Lease = Static<typeof LeaseSchema>;

export const RestorePlanRequestSchema = Type.Object(
  { component: Component, repositoryId: Type.String(), indexKey: Type.String(), indexSha256: Sha },
  { additionalProperties: false },
);
export type RestorePlanRequest = Static<typeof RestorePlanRequestSchema>;

export interface RestorePlanResult {
  files: number;
  bytes: number;
  likelyReusedFiles: number;
  likelyReusedBytes: number;
  downloadFiles: number;
  downloadBytes: number;
}
