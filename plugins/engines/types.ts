/**
 * An engine plugin is two halves. The node half runs in the agent and does the local
 * work on one component; the cluster half runs in the coordinator and decides which
 * replicas to snapshot, the restore order and what topologies are compatible. A plugin
 * declares what it cannot do; the coordinator refuses plans that need it.
 */
import type { Static, TSchema } from '@sinclair/typebox';
import type { ConfigProblem } from '../../lib/config.js';
import type { Logger } from '../../lib/log.js';
import type { ComponentDescription, Health, ServiceResult, Tier } from '../../lib/wire.js';
import type { TopologyComponent } from '../../lib/repo/manifest.js';

export const capabilities = ['freeze', 'stop-start', 'snapshot', 'restore', 'single-node-restore', 'remap'] as const;
export type Capability = (typeof capabilities)[number];

/** The part of a component's config every plugin shares. */
export interface ComponentBase {
  name: string;
  plugin: string;
  tier: Tier;
  shard?: string;
  role?: string;
  /** a command run once the whole restored cluster is healthy (any plugin) */
  afterRestore?: string[];
  afterRestoreTimeoutMs?: number;
  /** a command run once the restore has staged everything, before any service is stopped (any plugin) */
  beforeRestore?: string[];
  beforeRestoreTimeoutMs?: number;
}

export interface NodeContext {
  node: string;
  log: Logger;
  signal: AbortSignal;
}

export interface SnapshotOutcome {
  /** time the service was stopped or writes were blocked, if at all */
  downtimeMs: number;
  /** bytes copied, for a plugin that copies the data */
  copiedBytes?: number;
  /** bytes of changed files compared with a kept copy instead of copied (read from both) */
  comparedBytes?: number;
  configFiles: string[];
}

export interface SnapshotTarget {
  backupId: string;
  /** write the files under `into/<set>/` (anything else in `into` is kept, not uploaded) */
  into: string;
  /**
   * the component's snapshot kept from its last backup (plugins whose `keepLastSnapshot`
   * says so), whole as its `snapshot` left it: the plugin may take it over (rename it to
   * `into`) and bring it up to date instead of copying everything again
   */
  previous?: string;
  /** the component's last restore, if its staged data went into place (`staged`): which, and when the swap began */
  restored?: { restoreId: string; swappedAt: number };
  serviceStopped: (stopped: boolean) => Promise<void>;
}

/** what a restore staged, for `staged` */
export interface StagedRestore {
  restoreId: string;
  /** the backup whose index the staged sets hold, verified */
  backupId: string;
  /** set → its staging dir, which the swap renames into place as it is */
  staged: Record<string, string>;
  /** the component's kept snapshot (`previous` of its next snapshot), when its plugin keeps one */
  kept?: string;
}

export interface EngineNode<C extends ComponentBase> {
  /** snapshot set → absolute path; restore puts each set back at its path */
  paths(comp: C): Record<string, string>;
  /** `sizes`: count what its paths hold (sizeBytes, files), which may mean walking a big data directory */
  describe(comp: C, ctx: NodeContext, opts: { sizes: boolean }): Promise<Omit<ComponentDescription, 'name' | 'plugin' | 'capabilities'>>;
  health(comp: C, ctx: NodeContext): Promise<Health>;
  /**
   * Produce the component's files under `target.into/<set>/`. A plugin that stops the
   * service calls `serviceStopped(true)` before and `serviceStopped(false)` after, so an
   * agent killed in between starts it again when it comes back.
   */
  snapshot(comp: C, ctx: NodeContext, target: SnapshotTarget): Promise<SnapshotOutcome>;
  stop(comp: C, ctx: NodeContext): Promise<ServiceResult>;
  /** start and wait until healthy, under the plugin's deadline */
  start(comp: C, ctx: NodeContext): Promise<ServiceResult>;

  // ---- plugins with the `freeze` capability ----
  /** block writes for at most `ttlMs` (the engine should also expire it by itself) */
  freeze?(comp: C, ctx: NodeContext, ttlMs: number): Promise<void>;
  /** extend a freeze to `ttlMs` from now */
  renew?(comp: C, ctx: NodeContext, ttlMs: number): Promise<void>;
  thaw?(comp: C, ctx: NodeContext): Promise<void>;
  /**
   * While every component of the cluster is frozen: fix this component's point in
   * time (e.g. fork a background save, or hold a caught-up replica for at most `ttlMs`).
   * `snapshot` later turns it into files.
   */
  point?(comp: C, ctx: NodeContext, backupId: string, ttlMs: number): Promise<void>;

  /**
   * After staging, before the swap: adjust the staged sets for this member (keep the
   * node's own identity files, drop data a replica will re-sync). `staged` maps each
   * set to its staging dir.
   */
  afterStage?(comp: C, ctx: NodeContext, staged: Record<string, string>, params: Record<string, string>): Promise<string[]>;

  /**
   * After staging, for plugins without `afterStage` (the staged files go live as they are):
   * a plugin that keeps a snapshot may note what was staged, so that its next snapshot
   * (told the swap's time in `restored`) knows which live files need no copying. Only ever
   * a saving: a failure is logged, not the restore's.
   */
  staged?(comp: C, ctx: NodeContext, restore: StagedRestore): Promise<void>;
}

export interface RestoreMember {
  node: string;
  component: string;
  details: Record<string, string>;
}

export interface EngineCluster {
  /** groups of components started one group after another on restore (meta before storage) */
  startOrder(components: TopologyComponent[]): TopologyComponent[][];
  /**
   * groups of components stopped one group after another on restore, given their roles
   * as described just before the stop (e.g. followers before the leader, so the leader
   * does not wait out a leadership transfer to peers that are stopping too); default:
   * the start order reversed
   */
  stopOrder?(components: TopologyComponent[]): TopologyComponent[][];
  /** parameters each restored member's afterStage gets (e.g. the new membership), by node/component */
  restoreParams?(members: RestoreMember[], restoreId: string): Map<string, Record<string, string>>;
}

export interface EnginePlugin<S extends TSchema = TSchema> {
  readonly name: string;
  /** schema of the plugin's own settings of a component (besides name, plugin, tier, shard, role) */
  readonly configSchema: S;
  /** what the schema cannot check (settings that go together), once it has passed; paths relative to the component */
  readonly checkSettings?: (settings: Static<S>) => ConfigProblem[];
  readonly capabilities: readonly Capability[];
  /**
   * keep the component's last snapshot on the node after its upload (and what a restore
   * staged), as a local source for restores and as the start of its next snapshot
   */
  readonly keepLastSnapshot?: (comp: ComponentBase & Static<S>) => boolean;
  /**
   * the snapshot hard-links the live files (for services that never change a file in
   * place): each link changes a file's ctime, so the next upload cannot go by it
   */
  readonly linksLiveFiles?: (comp: ComponentBase & Static<S>) => boolean;
  /**
   * snapshot sets whose files the engine writes anew rather than in place (a Redis RDB,
   * each value compressed on its own): cut where their content says (lib/repo/cuts.ts), so
   * a value changed or a key added moves only the blocks around it
   */
  readonly cutSets?: (comp: ComponentBase & Static<S>) => readonly string[];
  readonly node: EngineNode<ComponentBase & Static<S>>;
  readonly cluster: EngineCluster;
}

/** Meta before storage; within a tier, all at once. */
export function metaThenStorage(components: TopologyComponent[]): TopologyComponent[][] {
  const meta = components.filter((c) => c.tier === 'meta');
  const storage = components.filter((c) => c.tier === 'storage');
  return [meta, storage].filter((g) => g.length > 0);
}
