/** Jobs `stop` and `start` (start waits for health under the plugin's deadline), and `hook`. */
import { runCommand } from '../../lib/exec.js';
import type { HookResult, JobRequestOf, ServiceResult } from '../../lib/wire.js';
import type { AgentNode } from '../node.js';
import type { JobContext } from './runner.js';

export async function stopJob(node: AgentNode, req: JobRequestOf<'stop'>, ctx: JobContext): Promise<ServiceResult> {
  const { config, plugin } = node.component(req.component);
  ctx.progress({ phase: 'stopping' });
  return plugin.node.stop(config, node.ctx(ctx.signal, ctx.log));
}

export async function startJob(node: AgentNode, req: JobRequestOf<'start'>, ctx: JobContext): Promise<ServiceResult> {
  const { config, plugin } = node.component(req.component);
  ctx.progress({ phase: 'starting' });
  return plugin.node.start(config, node.ctx(ctx.signal, ctx.log));
}

/**
 * Job `hook`: the component's before-restore command (`when: 'before'`: everything staged,
 * no service stopped yet), or its after-restore command (once the whole restored cluster is
 * healthy).
 */
export async function hookJob(node: AgentNode, req: JobRequestOf<'hook'>, ctx: JobContext): Promise<HookResult> {
  const { config } = node.component(req.component);
  const before = req.when === 'before';
  const command = before ? config.beforeRestore : config.afterRestore;
  if (!command) return { ran: false, durationMs: 0 };
  const which = before ? 'before-restore hook' : 'after-restore hook';
  ctx.progress({ phase: which });
  const r = await runCommand(command, {
    timeoutMs: (before ? config.beforeRestoreTimeoutMs : config.afterRestoreTimeoutMs) ?? 600_000,
    signal: ctx.signal,
    what: `${which} of component ${config.name}`,
    node: node.name,
    env: { ...process.env, LOCKSTEP_NODE: node.name, LOCKSTEP_COMPONENT: config.name, LOCKSTEP_RESTORE_ID: req.restoreId, LOCKSTEP_BACKUP_ID: req.backupId },
  });
  const output = r.stdout.trim().split('\n').slice(-5).join('\n');
  return { ran: true, durationMs: r.durationMs, command, output: output || undefined };
}
