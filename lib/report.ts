/** Reports: what the CLI prints (human or --json) and what the manifest keeps. */
import type { ErrorInfo } from './errors.js';
import type { CheckOutcome } from './repo/layout.js';
import type { SnapshotResult, StageResult, Tier, UploadResult } from './wire.js';

export const backupStatuses = ['complete', 'partial', 'failed'] as const;
export type BackupStatus = (typeof backupStatuses)[number];

export const restoreStatuses = ['restored', 'planned', 'refused', 'rolled-back', 'rollback-failed', 'failed'] as const;
export type RestoreStatus = (typeof restoreStatuses)[number];

export interface StepRecord {
  name: string;
  status: 'ok' | 'failed';
  startedAt: string;
  durationMs: number;
  error?: ErrorInfo;
}

export interface ComponentReport {
  node: string;
  component: string;
  plugin: string;
  tier: Tier;
  role: string;
  shard: string;
  status: 'ok' | 'failed' | 'skipped';
  /** why it failed or was skipped, in words */
  reason?: string;
  error?: ErrorInfo;
  snapshot?: SnapshotResult;
  upload?: UploadResult;
  stage?: StageResult;
  /** restore: stop → healthy again, on this component */
  downtimeMs?: number;
  /** backup: how long this component's writes were blocked (freeze → thaw, as the agent saw it) */
  pauseMs?: number;
  /** health when the backup or restore began */
  health?: { ok: boolean; message: string };
  actions?: string[];
}

export interface NodeReport {
  node: string;
  address: string;
  status: 'ok' | 'failed' | 'skipped';
  error?: ErrorInfo;
  components: ComponentReport[];
}

export interface ShardReport {
  shard: string;
  plugin: string;
  members: string[];
  /** node/component whose snapshot covers the shard */
  coveredBy: string[];
  covered: boolean;
}

export interface BackupReport {
  kind: 'backup';
  backupId: string;
  cluster: string;
  status: BackupStatus;
  coverage: 'default' | 'all';
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  steps: StepRecord[];
  nodes: NodeReport[];
  shards: ShardReport[];
  totals: { files: number; bytes: number; bytesNew: number; chunksNew: number; maxDowntimeMs: number };
  /** first freeze sent → last thaw acknowledged, over the cluster (absent when nothing was frozen) */
  pause?: { windowMs: number; ttlMs: number; components: number; freezeMs: number; pointMs: number; thawMs: number };
  manifest?: string;
  /** what the operator should know though it did not stop the backup */
  warnings?: string[];
  error?: ErrorInfo;
}

export interface RestoreReport {
  kind: 'restore';
  restoreId: string;
  backupId: string;
  cluster: string;
  status: RestoreStatus;
  dryRun: boolean;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  steps: StepRecord[];
  nodes: NodeReport[];
  /** first stop to last healthy, over the cluster */
  downtimeMs?: number;
  keptOldData: string[];
  /** the backup's newest check (`backup verify`, lib/repo/checks.ts); absent: never checked, or not known */
  lastCheck?: CheckOutcome;
  /** what the operator should know though it did not stop the restore */
  warnings?: string[];
  error?: ErrorInfo;
  rollback?: { attempted: boolean; ok: boolean; errors: ErrorInfo[] };
}
