/**
 * Coverage policy: which replicas to snapshot. `default` takes one good snapshot per
 * shard from a healthy member, preferring a replica/follower so the primary keeps
 * serving; `all` takes every replica. Unhealthy members are skipped with the reason.
 * After the snapshots, `assess` tells per shard what actually covers it.
 */
import { LockstepError } from '../../lib/errors.js';
import type { ShardReport } from '../../lib/report.js';
import type { Target } from '../fanout.js';
import type { BackupContext } from './context.js';

const PREFERRED_ROLES = ['replica', 'follower', 'secondary', 'standalone'];

export function plan(ctx: BackupContext): void {
  const byShard = new Map<string, ShardReport>();
  for (const c of ctx.components.values()) {
    const s = byShard.get(c.shard) ?? { shard: c.shard, plugin: c.plugin, members: [], coveredBy: [], covered: false };
    s.members.push(`${c.node}/${c.component}`);
    byShard.set(c.shard, s);
  }
  ctx.shards = [...byShard.values()].sort((a, b) => a.shard.localeCompare(b.shard));
  ctx.selected = [];
  const rank = (role: string) => {
    const i = PREFERRED_ROLES.indexOf(role);
    return i < 0 ? PREFERRED_ROLES.length : i;
  };
  for (const shard of ctx.shards) {
    const members = shard.members.map((m) => ctx.components.get(m)!);
    const healthy = members.filter((m) => m.health?.ok !== false);
    for (const m of members.filter((x) => !healthy.includes(x))) {
      m.status = ctx.coverage === 'all' || healthy.length === 0 ? 'failed' : 'skipped';
      m.reason = `not healthy: ${m.health?.message ?? 'unknown'}`;
    }
    if (ctx.coverage === 'all') {
      ctx.selected.push(...healthy.map((m) => ({ node: m.node, component: m.component })));
      continue;
    }
    const chosen = [...healthy].sort((a, b) => rank(a.role) - rank(b.role) || a.node.localeCompare(b.node))[0];
    if (!chosen) continue; // no healthy member: the shard stays uncovered
    ctx.selected.push({ node: chosen.node, component: chosen.component });
    for (const m of healthy) {
      if (m !== chosen) {
        m.status = 'skipped';
        m.reason = `shard ${shard.shard} is covered by ${chosen.node}/${chosen.component} (coverage ${ctx.coverage})`;
      }
    }
  }
  if (ctx.selected.length === 0) {
    throw new LockstepError('LOCKSTEP_E_COVERAGE', 'no component of the cluster is healthy enough to back up', { hint: 'the report gives each component\'s health' });
  }
}

/** Which shards are covered by components that made it through snapshot and upload. */
export function assess(ctx: BackupContext, done: Target[]): void {
  const ok = new Set(done.map((t) => `${t.node}/${t.component}`));
  for (const s of ctx.shards) {
    s.coveredBy = s.members.filter((m) => ok.has(m));
    s.covered = ctx.coverage === 'all' ? s.coveredBy.length === s.members.length : s.coveredBy.length > 0;
  }
}
