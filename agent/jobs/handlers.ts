/** Every job kind bound to its handler. */
import type { AgentNode } from '../node.js';
import type { JobHandlers } from './runner.js';
import { cleanupJob, snapshotJob } from './snapshot.js';
import { uploadJob } from './upload.js';
import { stageJob } from './stage.js';
import { hookJob, startJob, stopJob } from './service.js';
import { finishJob, rollbackJob, swapJob } from './swap.js';
import { thenCollect } from '../../lib/memory.js';

export function jobHandlers(node: AgentNode): JobHandlers {
  return {
    snapshot: (req, ctx) => snapshotJob(node, req, ctx),
    // the two that move data: their buffers and index are freed before the next job makes its own
    upload: (req, ctx) => thenCollect(uploadJob(node, req, ctx)),
    cleanup: (req) => cleanupJob(node, req),
    // a restore's index parts and buffers: its heap's pages given back too (lib/memory.ts)
    stage: (req, ctx) => thenCollect(stageJob(node, req, ctx), true),
    stop: (req, ctx) => stopJob(node, req, ctx),
    start: (req, ctx) => startJob(node, req, ctx),
    hook: (req, ctx) => hookJob(node, req, ctx),
    swap: (req, ctx) => swapJob(node, req, ctx),
    rollback: (req, ctx) => rollbackJob(node, req, ctx),
    finish: (req, ctx) => finishJob(node, req, ctx),
  };
}
