/** Jobs `stop` and `start` (start waits for health under the plugin's deadline). */
import type { JobRequestOf, ServiceResult } from '../../lib/wire.js';
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
