/**
 * The consistent cut: freeze every healthy freezable component of the cluster at once
 * (a lease the agents end by themselves), fix each selected component's point in time,
 * thaw at once. The pause window is measured from the first freeze sent to the last
 * thaw acknowledged. Any freeze failure thaws everything at once and ends the backup.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { LockstepError, toErrorInfo } from '../../lib/errors.js';
import { failpoint } from '../../lib/failpoints.js';
import { componentReport, markFailed, type BackupContext } from './context.js';
import type { Target } from '../fanout.js';

function byNode(targets: Target[]): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const t of targets) m.set(t.node, [...(m.get(t.node) ?? []), t.component]);
  return m;
}

const canFreeze = (ctx: BackupContext, t: Target) => ctx.capabilities.get(`${t.node}/${t.component}`)?.includes('freeze') === true;

export async function freezeAndPoint(ctx: BackupContext): Promise<void> {
  const selected = ctx.selected.filter((t) => canFreeze(ctx, t));
  if (selected.length === 0) return; // no plugin here freezes: nothing to do
  // every healthy freezable member, not only the selected ones: writes go to primaries
  const toFreeze = [...ctx.components.values()]
    .filter((c) => c.health?.ok !== false && canFreeze(ctx, { node: c.node, component: c.component }))
    .map((c) => ({ node: c.node, component: c.component }));
  const leaseId = ctx.backupId;
  const ttlMs = ctx.freezeTtlMs;
  const frozen = new Set<string>();
  const phases = { freezeMs: 0, pointMs: 0 };
  const t0 = performance.now();
  const renew = setInterval(() => {
    for (const node of frozen) {
      ctx.cluster.client(node).renewLease(leaseId, ttlMs).catch((err: unknown) => ctx.log.warn({ node, err: toErrorInfo(err) }, 'lease renewal failed'));
    }
  }, Math.max(100, Math.floor(ttlMs / 3)));
  let thawStart = 0;
  let thawEnd = 0;
  const thawAll = async () => {
    if (frozen.size === 0) return;
    thawStart = performance.now();
    const outcomes = await Promise.allSettled([...frozen].map(async (node) => ({ node, lease: await ctx.cluster.client(node).thaw(leaseId) })));
    frozen.clear();
    thawEnd = performance.now();
    for (const o of outcomes) {
      if (o.status === 'fulfilled') {
        for (const [component, ms] of Object.entries(o.value.lease.pausedMs ?? {})) {
          const r = ctx.components.get(`${o.value.node}/${component}`);
          if (r) r.pauseMs = ms;
        }
      } else {
        const e = toErrorInfo(o.reason);
        // a lease that ended before the thaw: that node took writes while others were still being cut
        if (e.code === 'LOCKSTEP_E_LEASE_NOT_FOUND') expiredOn.push(e.node ?? '?');
        ctx.log.error({ err: e }, 'thaw failed; the lease ends by itself at its TTL');
      }
    }
  };
  const expiredOn: string[] = [];
  try {
    const freezeByNode = [...byNode(toFreeze)];
    const results = await Promise.allSettled(
      freezeByNode.map(async ([node, components]) => {
        await ctx.cluster.client(node).freeze({ leaseId, components, ttlMs });
        frozen.add(node);
      }),
    );
    const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [{ node: freezeByNode[i]![0], components: freezeByNode[i]![1], error: toErrorInfo(r.reason) }] : []));
    if (failed.length > 0) {
      await thawAll();
      for (const f of failed) {
        for (const c of f.components) markFailed(ctx, { node: f.node, component: c }, `freeze failed: ${f.error.message}`, f.error);
      }
      throw new LockstepError('LOCKSTEP_E_FREEZE_FAILED', `freeze failed on ${failed.map((f) => f.node).join(', ')}; every other node was thawed at once:\n  ${failed.map((f) => `${f.node}: ${f.error.message}`).join('\n  ')}`);
    }
    phases.freezeMs = Math.round(performance.now() - t0);
    const hold = failpoint('freeze.hold');
    if (hold) await sleep(hold);
    // fix the point in time of every selected component while the whole cluster is frozen
    await Promise.all(
      [...byNode(selected)].map(async ([node, components]) => {
        try {
          await ctx.cluster.client(node).point(leaseId, ctx.backupId, components);
        } catch (err) {
          for (const c of components) markFailed(ctx, { node, component: c }, `point in time failed: ${toErrorInfo(err).message}`, toErrorInfo(err, undefined, node));
        }
      }),
    );
    phases.pointMs = Math.round(performance.now() - t0) - phases.freezeMs;
    await thawAll();
    if (expiredOn.length > 0) {
      for (const t of selected) markFailed(ctx, t, 'the freeze lease expired before the cut was complete');
      throw new LockstepError('LOCKSTEP_E_FREEZE_FAILED', `the freeze lease on ${expiredOn.join(', ')} expired before every point in time was fixed; the cut would not be consistent`, {
        hint: 'raise freeze.ttlMs in the cluster config (the coordinator, agents or network were too slow)',
      });
    }
  } finally {
    clearInterval(renew);
    await thawAll(); // whatever happened above, nothing stays frozen
    const end = thawEnd || performance.now();
    ctx.pause = { windowMs: Math.round(end - t0), ttlMs, components: toFreeze.length, ...phases, thawMs: Math.round(end - (thawStart || end)) };
    for (const t of selected) {
      const r = componentReport(ctx, t);
      if (r.status === 'ok') ctx.log.info({ node: t.node, component: t.component, pauseMs: r.pauseMs }, 'point in time fixed');
    }
  }
}
