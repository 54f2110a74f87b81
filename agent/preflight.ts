/** What an agent checks before the coordinator touches anything. */
import { statfs } from 'node:fs/promises';
import { toErrorInfo } from '../lib/errors.js';
import type { PreflightResult } from '../lib/wire.js';
import type { AgentNode } from './node.js';
import { NOT_ENDED, TAKE_OVER_WAIT_MS, takenOver, type JobRunner } from './jobs/runner.js';

type Check = PreflightResult['checks'][number];

async function check(name: string, fn: () => Promise<string>): Promise<Check> {
  try {
    return { check: name, ok: true, message: await fn() };
  } catch (err) {
    const error = toErrorInfo(err);
    return { check: name, ok: false, message: error.message, error };
  }
}

/** the caller's request: the repository, and for a backup, its id and whether the caller holds the repository's lock for it */
export interface PreflightAsk {
  repositoryId: string;
  backupId?: string;
  lockHeld?: boolean;
}

export async function preflight(node: AgentNode, runner: JobRunner, ask: PreflightAsk): Promise<PreflightResult> {
  const { repositoryId } = ask;
  const checks: Check[] = [];
  checks.push(
    await check('repository', async () => {
      const repo = await node.repositoryFor(repositoryId);
      await repo.probeWrite(node.name);
      return `repository ${repo.location} is the expected one and writable`;
    }),
  );
  checks.push(
    await check('state-dir', async () => {
      const fs = await statfs(node.config.stateDir);
      const free = fs.bavail * fs.bsize;
      return `${Math.round(free / 1048576)} MiB free in ${node.config.stateDir}`;
    }),
  );
  // component health is not checked here: an unhealthy replica is skipped by the
  // coverage policy (the coordinator reads health from the node description)
  for (const { config } of node.components.values()) {
    checks.push(await componentIdle(runner, config.name, ask));
  }
  return { node: node.name, ok: checks.every((c) => c.ok), checks };
}

/**
 * Whether `component` is free for the caller's jobs. A transfer of another operation into
 * the caller's repository (an upload of another backup, a restore's stage), when the
 * caller holds that repository's lock, lost its own lock: its coordinator died or lost the
 * store (a coordinator killed mid-backup leaves its uploads running until
 * `abandonTransferMs`). It is stopped, and the check passes with a warning once it has
 * ended; any other job keeps the component busy.
 */
async function componentIdle(runner: JobRunner, component: string, ask: PreflightAsk): Promise<Check> {
  const name = `component ${component}`;
  const taken = ask.lockHeld && ask.backupId ? await runner.takeOver(component, ask.repositoryId, { backupId: ask.backupId }, TAKE_OVER_WAIT_MS) : undefined;
  const busy = runner.busyComponents().get(component);
  if (busy) {
    const still = taken?.job.id === busy ? NOT_ENDED : '';
    return check(name, async () => {
      throw new Error(`component ${component} is busy with job ${busy}${still}`);
    });
  }
  if (!taken) return { check: name, ok: true, message: 'idle' };
  return { check: name, ok: true, message: `idle (an orphaned ${taken.job.kind} stopped)`, warning: `component ${component}: ${takenOver(taken.job, 'this backup')}` };
}
