/**
 * Before anything is stopped or copied: every agent reachable and the node it claims
 * to be, every plugin healthy, the repository the same one everywhere and writable.
 * Any problem refuses the backup, naming every node and what is wrong there.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { LockstepError, toErrorInfo } from '../../lib/errors.js';
import { newBackupId } from '../../lib/ids.js';
import type { NodeReport } from '../../lib/report.js';
import { topologyNode } from '../../lib/repo/manifest.js';
import type { BackupContext } from './context.js';

/**
 * A second backup of the same name within the same second (a retry, a script, a timer right
 * after a manual run) takes the next second's id. Asked before the lock is taken, so the
 * lock names the id the backup will have, and again under it (`preflight`), where no other
 * backup of this repository can take the id meanwhile.
 */
export async function takeFreeId(ctx: BackupContext): Promise<void> {
  for (let tries = 0; await ctx.repo.hasManifest(ctx.backupId); tries++) {
    if (tries === 3) throw new LockstepError('LOCKSTEP_E_BACKUP_EXISTS', `backup ${ctx.backupId} already exists`, { hint: "is this host's clock going backwards? pick another --name" });
    await sleep(1005 - (Date.now() % 1000), undefined, { signal: ctx.signal });
    const taken = ctx.backupId;
    ctx.backupId = newBackupId(ctx.name);
    ctx.log.info({ taken, backupId: ctx.backupId }, 'a backup of this name already has this second: this one takes the next');
  }
}

/**
 * Every agent checks itself under the repository's lock. An upload that an earlier backup's
 * dead coordinator left running on an agent is stopped there (the lock it wrote under is
 * this backup's now), rather than the component reported busy: what each agent said of
 * such uploads is returned, for the report's warnings.
 */
export async function preflight(ctx: BackupContext): Promise<string[]> {
  const { cluster, repo } = ctx;
  // again under the lock, while the agents check themselves (nothing they do names the id)
  const free = takeFreeId(ctx);
  free.catch(() => undefined); // awaited below, after the agents' checks
  // what the components hold is counted by the upload that reads it, not by a walk beforehand
  const described = await ctx.described;
  const problems: string[] = [];
  const warnings: string[] = [];
  await Promise.all(
    described.map(async (d) => {
      const report: NodeReport = { node: d.node, address: d.address, status: 'ok', components: [] };
      ctx.nodes.push(report);
      if (!d.description) {
        report.status = 'failed';
        report.error = d.error;
        problems.push(`${d.node}: ${d.error?.message ?? 'unknown error'}`);
        return;
      }
      ctx.topology.push(topologyNode(d.description, d.address));
      for (const c of d.description.components) {
        const cr = { node: d.node, component: c.name, plugin: c.plugin, tier: c.tier, role: c.role, shard: c.shard, status: 'ok' as const, health: c.health };
        ctx.capabilities.set(`${d.node}/${c.name}`, c.capabilities);
        report.components.push(cr);
        ctx.components.set(`${d.node}/${c.name}`, cr);
      }
      try {
        const pf = await cluster.client(d.node).preflight({ repositoryId: repo.id, backupId: ctx.backupId, lockHeld: true }, ctx.signal);
        for (const c of pf.checks) if (c.warning) warnings.push(`${d.node}: ${c.warning}`);
        for (const c of pf.checks.filter((x) => !x.ok)) {
          // what the operator can do about it (a setting to check) goes with the line
          problems.push(`${d.node}: ${c.message}${c.error?.hint ? ` (hint: ${c.error.hint})` : ''}`);
          report.status = 'failed';
          report.error ??= c.error ?? { code: 'LOCKSTEP_E_PREFLIGHT_FAILED', message: c.message, node: d.node };
        }
      } catch (err) {
        report.status = 'failed';
        report.error = toErrorInfo(err, 'LOCKSTEP_E_PREFLIGHT_FAILED', d.node);
        problems.push(`${d.node}: ${report.error.message}`);
      }
    }),
  );
  await free;
  ctx.nodes.sort((a, b) => a.node.localeCompare(b.node));
  ctx.topology.sort((a, b) => a.node.localeCompare(b.node));
  if (problems.length > 0) {
    problems.sort();
    throw new LockstepError('LOCKSTEP_E_PREFLIGHT_FAILED', `preflight failed on ${new Set(problems.map((p) => p.split(':')[0])).size} node(s); nothing was stopped or copied:\n  ${problems.join('\n  ')}`, {
      details: { problems },
    });
  }
  return warnings.sort();
}
