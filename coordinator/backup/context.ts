/** What one backup run carries from step to step. */
import type { Logger } from '../../lib/log.js';
import type { Repository } from '../../lib/repo/repository.js';
import type { TopologyNode } from '../../lib/repo/manifest.js';
import type { ComponentReport, NodeReport, ShardReport } from '../../lib/report.js';
import type { Cluster, Described } from '../cluster.js';
import type { ProgressSink, Target } from '../fanout.js';
import { key } from '../fanout.js';

export interface BackupContext {
  cluster: Cluster;
  repo: Repository;
  backupId: string;
  name: string;
  coverage: 'default' | 'all';
  startedAt: string;
  signal: AbortSignal;
  log: Logger;
  progress?: ProgressSink;
  /** every agent's description (no sizes), asked for while the lock is taken: preflight reads it */
  described: Promise<Described[]>;
  /** filled by preflight */
  topology: TopologyNode[];
  nodes: NodeReport[];
  /** every component, by node/component */
  components: Map<string, ComponentReport>;
  /** filled by plan */
  shards: ShardReport[];
  selected: Target[];
  /** node/component → the plugin's declared capabilities */
  capabilities: Map<string, string[]>;
  freezeTtlMs: number;
  /** set by the freeze step */
  pause?: { windowMs: number; ttlMs: number; components: number; freezeMs: number; pointMs: number; thawMs: number };
  /** components whose snapshot job ran (they need cleanup) */
  snapshotted: Target[];
}

export function componentReport(ctx: BackupContext, t: Target): ComponentReport {
  const r = ctx.components.get(key(t));
  if (!r) throw new Error(`no report for ${key(t)}`);
  return r;
}

export function markFailed(ctx: BackupContext, t: Target, reason: string, error?: ComponentReport['error']): void {
  const r = componentReport(ctx, t);
  r.status = 'failed';
  r.reason = reason;
  r.error = error;
}
