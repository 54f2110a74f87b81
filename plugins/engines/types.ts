/**
 * An engine plugin is two halves. The node half runs in the agent and does the local
 * work on one component; the cluster half runs in the coordinator and decides which
 * replicas to snapshot, the restore order and what topologies are compatible. A plugin
 * declares what it cannot do; the coordinator refuses plans that need it.
 */
import type { Static, TSchema } from '@sinclair/typebox';
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
}

export interface NodeContext {
  node: string;
  log: Logger;
  signal: AbortSignal;
}

export interface SnapshotOutcome {
  /** time the service was stopped or writes were blocked, if at all */
  downtimeMs: number;
  configFiles: string[];
}

export interface EngineNode<C extends ComponentBase> {
  /** snapshot set → absolute path; restore puts each set back at its path */
  paths(comp: C): Record<string, string>;
  describe(comp: C, ctx: NodeContext): Promise<Omit<ComponentDescription, 'name' | 'plugin' | 'capabilities'>>;
  health(comp: C, ctx: NodeContext): Promise<Health>;
  /**
   * Produce the component's files under `into/<set>/`. A plugin that stops the service
   * calls `serviceStopped(true)` before and `serviceStopped(false)` after, so an agent
   * killed in between starts it again when it comes back.
   */
  snapshot(comp: C, ctx: NodeContext, into: string, serviceStopped: (stopped: boolean) => Promise<void>): Promise<SnapshotOutcome>;
  stop(comp: C, ctx: NodeContext): Promise<ServiceResult>;
  /** start and wait until healthy, under the plugin's deadline */
  start(comp: C, ctx: NodeContext): Promise<ServiceResult>;
}

export interface EngineCluster {
  /** groups of components started one group after another on restore (meta before storage) */
  startOrder(components: TopologyComponent[]): TopologyComponent[][];
}

export interface EnginePlugin<S extends TSchema = TSchema> {
  readonly name: string;
  /** schema of the plugin's own settings of a component (besides name, plugin, tier, shard, role) */
  readonly configSchema: S;
  readonly capabilities: readonly Capability[];
  readonly node: EngineNode<ComponentBase & Static<S>>;
  readonly cluster: EngineCluster;
}

/** Meta before storage; within a tier, all at once. */
export function metaThenStorage(components: TopologyComponent[]): TopologyComponent[][] {
  const meta = components.filter((c) => c.tier === 'meta');
  const storage = components.filter((c) => c.tier === 'storage');
  return [meta, storage].filter((g) => g.length > 0);
}
