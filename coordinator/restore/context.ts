/** What one restore run carries from step to step. */
import type { Logger } from '../../lib/log.js';
import type { Repository } from '../../lib/repo/repository.js';
import type { Manifest, ManifestComponent, TopologyComponent } from '../../lib/repo/manifest.js';
import type { ComponentReport, NodeReport } from '../../lib/report.js';
import type { Cluster } from '../cluster.js';
import type { ProgressSink, Target } from '../fanout.js';
import { key } from '../fanout.js';

export interface RestoreTarget extends Target {
  live: TopologyComponent;
  /** the backed-up component whose data goes here (the same one, or its shard's covering replica) */
  source: ManifestComponent;
}

export interface RestoreContext {
  cluster: Cluster;
  repo: Repository;
  manifest: Manifest;
  restoreId: string;
  keepOld: boolean;
  allowPartial: boolean;
  /** backup node → cluster node (--map) */
  map: Map<string, string>;
  /** restore only this node (--node) */
  onlyNode?: string;
  /** plugin facts of every live component (node/component → details) */
  details: Map<string, Record<string, string>>;
  signal: AbortSignal;
  log: Logger;
  progress?: ProgressSink;
  nodes: NodeReport[];
  components: Map<string, ComponentReport>;
  targets: RestoreTarget[];
  /** groups started one after another (meta before storage) */
  startGroups: RestoreTarget[][];
  /** the targets whose component has a `beforeRestore` command (run once all is staged, before any stop) */
  beforeHooks: RestoreTarget[];
  staged: RestoreTarget[];
  stopped: RestoreTarget[];
  swapped: RestoreTarget[];
  /** the swap step began: a target whose rollback fails from here may hold restored data, or some of it */
  swapBegun: boolean;
  stoppedAt: Map<string, number>;
  keptOld: string[];
  /** the restore holds the repository's lock (not on a host that may only read it) */
  lockHeld: boolean;
  /** the report's warnings */
  warnings: string[];
}

export function report(ctx: RestoreContext, t: Target): ComponentReport {
  const r = ctx.components.get(key(t));
  if (!r) throw new Error(`no report for ${key(t)}`);
  return r;
}
