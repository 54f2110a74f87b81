/**
 * What one agent knows about its node: its components with their plugins, the
 * repository it writes to, and where snapshots, staging and old data live.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import { readdir, rm, stat } from 'node:fs/promises';
import { dirname, basename } from 'node:path';
import { LockstepError, toErrorInfo } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { exists, removeTree, RESTORE_INSIDE } from '../lib/tree.js';
import { Repository } from '../lib/repo/repository.js';
import type { ComponentDescription, NodeDescription } from '../lib/wire.js';
import { openRepositoryAt } from '../plugins/storage/registry.js';
import { getPlugin } from '../plugins/engines/registry.js';
import type { EnginePlugin, NodeContext } from '../plugins/engines/types.js';
import type { AgentConfig, ComponentConfig } from './config.js';

export const AGENT_VERSION = '0.1.0';

/** where a restore of one data directory stages, moves the old data, and removes it (`AgentNode.restorePaths`) */
export interface RestorePaths {
  /** inside the data directory (a mount point), not beside it */
  inside: boolean;
  staging: string;
  old: string;
  removing: string;
}

export interface BoundComponent {
  config: ComponentConfig;
  plugin: EnginePlugin;
}

/** how long a repository's config, once read, is taken as still true (`repositoryFor`) */
const REPO_FRESH_MS = 5000;

export class AgentNode {
  readonly components = new Map<string, BoundComponent>();
  private repo?: Repository;
  /** when `repo` was opened (its config read) */
  private repoOpenedAt = 0;
  /** per component: the job that uses its kept snapshot now (one at a time) */
  private readonly keptUse = new Map<string, Promise<unknown>>();

  constructor(
    readonly config: AgentConfig,
    readonly log: Logger,
  ) {
    for (const c of config.components) {
      const plugin = getPlugin(c.plugin);
      if (!plugin) throw new LockstepError('LOCKSTEP_E_CONFIG_INVALID', `unknown plugin ${c.plugin}`);
      this.components.set(c.name, { config: c, plugin });
    }
  }

  get name(): string {
    return this.config.node;
  }

  component(name: string): BoundComponent {
    const c = this.components.get(name);
    if (!c) {
      throw new LockstepError('LOCKSTEP_E_COMPONENT_UNKNOWN', `node ${this.name} has no component "${name}" (it has: ${[...this.components.keys()].join(', ')})`, {
        node: this.name,
      });
    }
    return c;
  }

  ctx(signal: AbortSignal, log = this.log): NodeContext {
    return { node: this.name, log, signal };
  }

  /** The repository, opened on first use (and again after a failure). */
  async repository(): Promise<Repository> {
    if (!this.repo) {
      this.repo = await openRepositoryAt(this.config.repository, this.config.repositoryBaseDir, this.name);
      this.repoOpenedAt = Date.now();
    }
    return this.repo;
  }

  /**
   * The repository the coordinator names, its config read again (the location may have been
   * remounted, the bucket re-created) unless it was read less than `REPO_FRESH_MS` ago: a
   * backup's description, preflight and upload come one after another, and on S3 each read
   * is a round trip before the job can start.
   */
  async repositoryFor(expectedId: string): Promise<Repository> {
    if (this.repo?.id !== expectedId || Date.now() - this.repoOpenedAt > REPO_FRESH_MS) this.repo = undefined;
    const repo = await this.repository();
    if (repo.id !== expectedId) {
      throw new LockstepError(
        'LOCKSTEP_E_REPO_MISMATCH',
        `node ${this.name} sees repository ${repo.id} at ${repo.location}, the coordinator uses ${expectedId}`,
        { node: this.name, hint: 'the agent and the coordinator must point at the same repository (is the shared directory mounted on this node?)' },
      );
    }
    return repo;
  }

  snapshotDir(backupId: string, component: string): string {
    return join(this.config.stateDir, 'snapshots', backupId, component);
  }

  /** the agent's copy of the last index it wrote of `component` into repository `repositoryId` (agent/transfer/index-cache.ts) */
  indexCacheFile(repositoryId: string, component: string): string {
    return join(this.config.stateDir, 'index-cache', `${repositoryId}-${component}.idx`);
  }

  /** the component a file in `index-cache/` is the copy of, read back from its name (a repository id is a UUID); undefined: not such a copy */
  private indexCacheComponent(name: string): string | undefined {
    return indexCopyOf(name)?.component;
  }

  /**
   * Remove the local index copies of `component` made for another repository than
   * `repositoryId`: an agent uploads into the one repository its config names, so once it
   * uploads into a new one (the old one re-created or moved), those copies only take space
   * (~2.5 MB a GiB of the component's data). Returns the paths removed.
   */
  async dropOtherIndexCopies(repositoryId: string, component: string): Promise<string[]> {
    const caches = join(this.config.stateDir, 'index-cache');
    const removed: string[] = [];
    for (const name of await readdir(caches).catch(() => [] as string[])) {
      const copy = indexCopyOf(name);
      if (copy?.component !== component || copy.repositoryId === repositoryId) continue;
      await rm(join(caches, name), { force: true });
      removed.push(join(caches, name));
    }
    return removed;
  }

  /** what the component's last restore staged and when it went into place, for the backup after it (agent/transfer/restored.ts) */
  restoredDir(component: string): string {
    return join(this.config.stateDir, 'restored', component);
  }

  /** the last snapshot of a component, kept when its plugin asks (a local source for restores) */
  lastSnapshotDir(component: string): string {
    return join(this.config.stateDir, 'last', component);
  }

  /**
   * Run `work` while no other job of this component uses its kept snapshot: a staging
   * that trusts the hashes it took of a kept file must not see a backup replace it.
   * A component that keeps no snapshot runs it at once.
   */
  async withKept<T>(component: string, work: () => Promise<T>): Promise<T> {
    const { config, plugin } = this.component(component);
    if (!plugin.keepLastSnapshot?.(config)) return work();
    const before = this.keptUse.get(component) ?? Promise.resolve();
    const mine = before.catch(() => undefined).then(work);
    const tail = mine.catch(() => undefined);
    this.keptUse.set(component, tail);
    try {
      return await mine;
    } finally {
      if (this.keptUse.get(component) === tail) this.keptUse.delete(component);
    }
  }

  /**
   * Where a restore of `live` stages, moves the old data aside, and puts the old data to
   * be removed (in the background, or at the next start). Beside `live`, which the swap
   * renames whole; or, `inside` it, for a data directory that is a mount point (which the
   * kernel will not rename): the swap then moves its entries (agent/jobs/swap.ts), and
   * walks leave these folders out (lib/tree.ts RESTORE_INSIDE).
   */
  restorePaths(live: string, restoreId: string, inside: boolean): RestorePaths {
    const at = inside ? `${live}/.lockstep-` : `${live}.lockstep-`;
    return { inside, staging: `${at}staging-${restoreId}`, old: `${at}old-${restoreId}`, removing: `${at}removing-${restoreId}` };
  }

  /** the restore paths of `live` as its staging laid them out: inside it when it staged, or moved the old data, there */
  async stagedPaths(live: string, restoreId: string): Promise<RestorePaths> {
    const inside = this.restorePaths(live, restoreId, true);
    return (await exists(inside.staging)) || (await exists(inside.old)) ? inside : this.restorePaths(live, restoreId, false);
  }

  /**
   * Remove `path` (a restore's old data, renamed to `removingPath`) in the background: the
   * kernel takes ~0.2 ms a file to free it (8-10 s for 50k files here), which the restore's
   * report no longer waits for (`removeTree`: by `rm`, in a process of its own). An agent
   * stopped meanwhile removes what is left at its next start (`sweep`).
   */
  removeLater(path: string): void {
    const t0 = performance.now();
    void removeTree(path).then(
      () => this.log.info({ path, ms: Math.round(performance.now() - t0) }, "removed a restore's previous data"),
      (err: unknown) => this.log.error({ path, err: toErrorInfo(err) }, "could not remove a restore's previous data; it is removed at the agent's next start"),
    );
  }

  /** `sizes`: count what each component's paths hold (a walk of every data directory) */
  async describe(sizes = true): Promise<NodeDescription> {
    const components: ComponentDescription[] = [];
    for (const { config, plugin } of this.components.values()) {
      const ctx = this.ctx(AbortSignal.timeout(30_000));
      try {
        const d = await plugin.node.describe(config, ctx, { sizes });
        components.push({ ...d, name: config.name, plugin: plugin.name, capabilities: [...plugin.capabilities], afterRestore: config.afterRestore, beforeRestore: config.beforeRestore });
      } catch (err) {
        components.push({
          name: config.name,
          plugin: plugin.name,
          tier: config.tier,
          role: config.role ?? 'unknown',
          shard: config.shard ?? `${this.name}/${config.name}`,
          paths: plugin.node.paths(config),
          configFiles: [],
          sizeBytes: 0,
          files: 0,
          health: { ok: false, message: `describe failed: ${toErrorInfo(err).message}` },
          capabilities: [...plugin.capabilities],
          afterRestore: config.afterRestore,
          beforeRestore: config.beforeRestore,
        });
      }
    }
    let repository: NodeDescription['repository'];
    try {
      this.repo = undefined;
      const repo = await this.repository();
      repository = { location: repo.location, id: repo.id };
    } catch (err) {
      repository = { location: String(this.config.repository.path ?? this.config.repository.driver), error: toErrorInfo(err, 'LOCKSTEP_E_REPO_UNREADABLE', this.name) };
    }
    return { node: this.name, agentVersion: AGENT_VERSION, hostname: hostname(), components, repository };
  }

  /**
   * Snapshot dirs no job uses and older than `maxAgeMs`: what a coordinator that died
   * between snapshot and cleanup left behind. Runs periodically.
   */
  async sweepStaleSnapshots(busyBackups: Set<string>, maxAgeMs: number): Promise<string[]> {
    const removed: string[] = [];
    const snaps = join(this.config.stateDir, 'snapshots');
    for (const name of await readdir(snaps).catch(() => [] as string[])) {
      if (busyBackups.has(name)) continue;
      const st = await stat(join(snaps, name)).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > maxAgeMs) {
        await removeTree(join(snaps, name));
        removed.push(join(snaps, name));
      }
    }
    return removed;
  }

  /**
   * At start-up no job runs, so snapshot dirs and staging dirs left by a crash are
   * garbage, and so are half-written local index copies. So are the local index copies
   * and kept snapshots (a whole copy of the data) of components this agent no longer has:
   * they only ever save work for a component's next backup; and a restore's old data whose
   * removal (`removeLater`) a stop cut short. Old data moved aside by a restore that has
   * not finished is never touched here.
   */
  async sweep(): Promise<string[]> {
    const removed: string[] = [];
    const gone = async (path: string) => {
      await removeTree(path);
      removed.push(path);
    };
    const snaps = join(this.config.stateDir, 'snapshots');
    for (const name of await readdir(snaps).catch(() => [] as string[])) await gone(join(snaps, name));
    // .tmp: a copy (or what was kept of its parts) whose write never finished
    const caches = join(this.config.stateDir, 'index-cache');
    for (const name of await readdir(caches).catch(() => [] as string[])) {
      const component = this.indexCacheComponent(name);
      if (name.endsWith('.idx.tmp') || name.endsWith('.idx.parts.json.tmp') || (component !== undefined && !this.components.has(component))) await gone(join(caches, name));
    }
    const kept = join(this.config.stateDir, 'last');
    for (const name of await readdir(kept).catch(() => [] as string[])) if (!this.components.has(name)) await gone(join(kept, name));
    // the restore records of a component no longer configured
    const restored = join(this.config.stateDir, 'restored');
    for (const name of await readdir(restored).catch(() => [] as string[])) if (!this.components.has(name)) await gone(join(restored, name));
    for (const { config, plugin } of this.components.values()) {
      for (const live of Object.values(plugin.node.paths(config))) {
        const prefixes = [`${basename(live)}.lockstep-staging-`, `${basename(live)}.lockstep-removing-`];
        for (const name of await readdir(dirname(live)).catch(() => [] as string[])) {
          if (prefixes.some((p) => name.startsWith(p))) {
            await removeTree(join(dirname(live), name));
            removed.push(join(dirname(live), name));
          }
        }
        // and inside a data directory that is a mount point (a restore's old data, `.lockstep-old-`, stays until its restore says)
        for (const name of await readdir(live).catch(() => [] as string[])) {
          if (RESTORE_INSIDE.test(name) && (name.startsWith('.lockstep-staging-') || name.startsWith('.lockstep-removing-'))) {
            await removeTree(join(live, name));
            removed.push(join(live, name));
          }
        }
      }
    }
    return removed;
  }
}

/**
 * the repository and component a file in `index-cache/` is the copy of (or keeps the parts
 * of: agent/transfer/part-plan.ts), from its name (`<repository id>-<component>.idx`, or
 * `.idx.parts.json`; the id a UUID)
 */
function indexCopyOf(name: string): { repositoryId: string; component: string } | undefined {
  const m = /^([0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12})-(.+)\.idx(?:\.parts\.json)?$/.exec(name);
  return m ? { repositoryId: m[1]!, component: m[2]! } : undefined;
}
