/**
 * Plan a restore: the manifest against the live topology. The same nodes and
 * components (with the same plugins) must be there; any difference is refused and
 * spelled out. Each live component gets the data of its own backup or, where the
 * coverage policy skipped it, of the replica that covered its shard.
 */
import { counted } from '../render.js';
import { LockstepError } from '../../lib/errors.js';
import { formatArgv } from '../../lib/exec.js';
import { topologyNode, type TopologyComponent, type TopologyNode } from '../../lib/repo/manifest.js';
import { getPlugin } from '../../plugins/engines/registry.js';
import type { EnginePlugin } from '../../plugins/engines/types.js';
import { report, type RestoreContext, type RestoreTarget } from './context.js';

export function topologyDifferences(backup: TopologyNode[], live: TopologyNode[]): string[] {
  const diffs: string[] = [];
  const liveByNode = new Map(live.map((n) => [n.node, n]));
  const backupByNode = new Map(backup.map((n) => [n.node, n]));
  for (const b of backup) {
    const l = liveByNode.get(b.node);
    if (!l) {
      diffs.push(`node ${b.node} is in the backup but not in the cluster`);
      continue;
    }
    const lc = new Map(l.components.map((c) => [c.name, c]));
    for (const c of b.components) {
      const now = lc.get(c.name);
      if (!now) diffs.push(`node ${b.node}: component ${c.name} (${c.plugin}) is in the backup but not on the node`);
      else if (now.plugin !== c.plugin) diffs.push(`node ${b.node}: component ${c.name} was ${c.plugin} in the backup, is ${now.plugin} now`);
      else if (now.shard !== c.shard) diffs.push(`node ${b.node}: component ${c.name} was in shard ${c.shard}, is in shard ${now.shard} now`);
    }
    for (const c of l.components) {
      if (!b.components.some((x) => x.name === c.name)) diffs.push(`node ${b.node}: component ${c.name} (${c.plugin}) is on the node but not in the backup`);
    }
  }
  for (const l of live) if (!backupByNode.has(l.node)) diffs.push(`node ${l.node} is in the cluster but not in the backup`);
  return diffs;
}

export async function planRestore(ctx: RestoreContext): Promise<void> {
  const m = ctx.manifest;
  if (m.status === 'partial' && !ctx.allowPartial) {
    const missing = m.report.shards.filter((s) => !s.covered).map((s) => s.shard);
    throw new LockstepError('LOCKSTEP_E_BACKUP_PARTIAL', `backup ${m.backupId} is partial: shard(s) ${missing.join(', ')} are missing from it`, {
      hint: 'restore it anyway with --allow-partial (those shards keep their current data), or pick a complete backup',
    });
  }
  const described = await ctx.cluster.describeAll(ctx.signal, false);
  const down = described.filter((d) => !d.description);
  if (down.length > 0) {
    throw new LockstepError('LOCKSTEP_E_PREFLIGHT_FAILED', `cannot plan the restore; nothing was changed:\n  ${down.map((d) => `${d.node}: ${d.error?.message}`).join('\n  ')}`);
  }
  // every live component as its agent described it, by node/component
  const describedComponents = new Map(described.flatMap((d) => d.description!.components.map((c) => [`${d.node}/${c.name}`, c] as const)));
  for (const [k, c] of describedComponents) ctx.details.set(k, c.details ?? {});
  checkMap(ctx, described.map((d) => d.node));
  let live: TopologyNode[] = described.map((d) => topologyNode(d.description!, d.address));
  let backup = remapTopology(m.topology, ctx.map);
  if (ctx.onlyNode) {
    live = live.filter((n) => n.node === ctx.onlyNode);
    backup = backup.filter((n) => n.node === ctx.onlyNode);
  }
  const needs = (cap: string, why: string, nodes: string[]) => {
    for (const n of live.filter((x) => nodes.includes(x.node))) {
      for (const c of n.components) {
        if (!describedComponents.get(`${n.node}/${c.name}`)?.capabilities.includes(cap)) {
          throw new LockstepError('LOCKSTEP_E_PLAN_UNSUPPORTED', `${why}: component ${c.name} on ${n.node} (plugin ${c.plugin}) cannot do that; nothing was changed`, {
            hint: 'restore the whole cluster onto the same nodes instead',
          });
        }
      }
    }
  };
  if (ctx.onlyNode) needs('single-node-restore', `restoring only node ${ctx.onlyNode}`, [ctx.onlyNode]);
  needs('remap', 'restoring onto other nodes (--map)', [...ctx.map].filter(([a, b]) => a !== b).map(([, b]) => b));
  const diffs = topologyDifferences(backup, live);
  if (diffs.length > 0) {
    throw new LockstepError('LOCKSTEP_E_TOPOLOGY_MISMATCH', `the cluster's topology differs from backup ${m.backupId}; nothing was changed:\n  ${diffs.join('\n  ')}`, {
      hint: 'restore onto the same nodes and components, map backup nodes onto others with --map OLD=NEW, or fix the cluster config',
      details: { differences: diffs },
    });
  }
  for (const n of live) {
    const nodeReport = { node: n.node, address: n.address, status: 'ok' as const, components: [] as RestoreContext['nodes'][number]['components'] };
    ctx.nodes.push(nodeReport);
    for (const c of n.components) {
      const own = m.components.find((x) => (ctx.map.get(x.node) ?? x.node) === n.node && x.component === c.name);
      const source = own ?? m.components.find((x) => x.shard === c.shard && x.plugin === c.plugin);
      const cr = { node: n.node, component: c.name, plugin: c.plugin, tier: c.tier, role: c.role, shard: c.shard, status: 'ok' as 'ok' | 'skipped', actions: [] as string[] };
      nodeReport.components.push(cr);
      ctx.components.set(`${n.node}/${c.name}`, cr);
      if (!source) {
        cr.status = 'skipped';
        cr.actions.push(`not restored: shard ${c.shard} is missing from the backup (partial); current data kept`);
        continue;
      }
      cr.actions.push(`restore ${counted(source.files, 'file')}, ${source.bytes} bytes from ${source.node}/${source.component} into ${Object.values(c.paths).join(', ')}`);
      ctx.targets.push({ node: n.node, component: c.name, live: c, source });
    }
  }
  ctx.startGroups = startGroups(ctx.targets);
  // the stop order is worked out again just before the stop, from the roles then
  const stops = stopGroups(ctx.targets, new Map());
  const stopGroupOf = new Map(stops.flatMap((g, i) => g.map((t) => [t, i + 1] as const)));
  ctx.startGroups.forEach((g, i) =>
    g.forEach((t) => {
      const { afterRestore: hook, beforeRestore: before } = describedComponents.get(`${t.node}/${t.component}`) ?? {};
      const then = hook ? `, then, the cluster healthy, run ${formatArgv(hook)}` : '';
      if (before) ctx.beforeHooks.push(t);
      const first = before ? `everything staged, run ${formatArgv(before)}, then ` : '';
      report(ctx, t).actions!.push(`${first}stop in group ${stopGroupOf.get(t)} of ${stops.length}, swap, start in group ${i + 1} of ${ctx.startGroups.length}${then}`);
    }),
  );
}

/** Merge each plugin's start order: group i of every plugin starts together. */
function startGroups(targets: RestoreTarget[]): RestoreTarget[][] {
  return mergeGroups(targets, (plugin, comps) => (plugin ? plugin.cluster.startOrder(comps) : [comps]));
}

/**
 * Merge each plugin's stop order (its `stopOrder` given `roles`, the roles described just
 * before the stop, or else its start order reversed): group i of every plugin stops together.
 */
export function stopGroups(targets: RestoreTarget[], roles: Map<string, string>): RestoreTarget[][] {
  return mergeGroups(targets, (plugin, comps) => {
    if (!plugin) return [comps];
    if (plugin.cluster.stopOrder) return plugin.cluster.stopOrder(comps);
    return plugin.cluster.startOrder(comps).reverse();
  }, roles);
}

function mergeGroups(
  targets: RestoreTarget[],
  order: (plugin: EnginePlugin | undefined, comps: TopologyComponent[]) => TopologyComponent[][],
  roles?: Map<string, string>,
): RestoreTarget[][] {
  const groups: RestoreTarget[][] = [];
  const byPlugin = new Map<string, RestoreTarget[]>();
  for (const t of targets) byPlugin.set(t.live.plugin, [...(byPlugin.get(t.live.plugin) ?? []), t]);
  for (const [name, ts] of byPlugin) {
    const comps = ts.map((t) => {
      const role = roles?.get(`${t.node}/${t.component}`);
      return role === undefined ? t.live : { ...t.live, role };
    });
    order(getPlugin(name), comps).forEach((g, i) => {
      groups[i] ??= [];
      groups[i]!.push(...ts.filter((_, j) => g.includes(comps[j]!)));
    });
  }
  return groups.filter((g) => g.length > 0);
}

/** --map OLD=NEW: OLD must be a node of the backup, NEW a node of the cluster, each used once. */
function checkMap(ctx: RestoreContext, clusterNodes: string[]): void {
  const backupNodes = ctx.manifest.topology.map((n) => n.node);
  const problems: string[] = [];
  const targets = new Map<string, string>();
  for (const [from, to] of ctx.map) {
    if (!backupNodes.includes(from)) problems.push(`--map ${from}=${to}: ${from} is not a node of backup ${ctx.manifest.backupId} (it has ${backupNodes.join(', ')})`);
    if (!clusterNodes.includes(to)) problems.push(`--map ${from}=${to}: ${to} is not a node of the cluster config (it has ${clusterNodes.join(', ')})`);
    const prev = targets.get(to);
    if (prev) problems.push(`--map ${from}=${to}: ${to} already receives ${prev}`);
    targets.set(to, from);
  }
  // a node not mapped keeps its name: it must not collide with a mapped target
  for (const n of backupNodes) {
    if (!ctx.map.has(n) && targets.has(n)) problems.push(`backup node ${n} keeps its name, but ${targets.get(n)} is mapped onto it too (map ${n} as well)`);
  }
  if (ctx.onlyNode && !clusterNodes.includes(ctx.onlyNode)) problems.push(`--node ${ctx.onlyNode} is not a node of the cluster config`);
  if (problems.length > 0) throw new LockstepError('LOCKSTEP_E_USAGE', problems.join('\n'));
}

/** The backup's topology under the node map; default shard names (node/component) follow their node. */
export function remapTopology(topology: TopologyNode[], map: Map<string, string>): TopologyNode[] {
  return topology.map((n) => {
    const to = map.get(n.node);
    if (!to || to === n.node) return n;
    return {
      ...n,
      node: to,
      components: n.components.map((c) => (c.shard === `${n.node}/${c.name}` ? { ...c, shard: `${to}/${c.name}` } : c)),
    };
  });
}

/** Dry run: ask each agent what staging would download and what it would likely reuse. */
export async function estimateTransfers(ctx: RestoreContext): Promise<void> {
  await Promise.all(
    ctx.targets.map(async (t) => {
      const r = ctx.components.get(`${t.node}/${t.component}`)!;
      const est = await ctx.cluster.client(t.node).restorePlan(
        { component: t.component, repositoryId: ctx.repo.id, indexKey: t.source.indexKey, indexSha256: t.source.indexSha256 },
        ctx.signal,
      );
      r.actions?.push(
        `would download ${counted(est.downloadFiles, 'file')} (${est.downloadBytes} bytes) and likely reuse ${counted(est.likelyReusedFiles, 'local file')} (${est.likelyReusedBytes} bytes; size and mtime match, hashes checked while staging)`,
      );
    }),
  );
}
