/** Every job kind bound to its handler. */
import type { AgentNode } from '../node.js';
import type { JobHandlers } from './runner.js';
import { cleanupJob, snapshotJob } from './snapshot.js';
import { uploadJob } from './upload.js';
import { stageJob } from './stage.js';
import { hookJob, startJob, stopJob } from './service.js';
import { finishJob, rollbackJob, swapJob } from './swap.js';

export function jobHandlers(node: AgentNode): JobHandlers {
  return {
    snapshot: (req, ctx) => snapshotJob(node, req, ctx),
    upload: (req, ctx) => uploadJob(node, req, ctx),
    cleanup: (req) => cleanupJob(node, req),
    stage: (req, ctx) => stageJob(node, req, ctx),
    stop: (req, ctx) => stopJob(node, req, ctx),
    start: (req, ctx) => startJob(node, req, ctx),
    hook: (req, ctx) => hookJob(node, req, ctx),
    swap: (req, ctx) => swapJob(node, req, ctx),
    rollback: (req, ctx) => rollbackJob(node, req, ctx),
    finish: (req, ctx) => finishJob(node, req, ctx),
  };
}
