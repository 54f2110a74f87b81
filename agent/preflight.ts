/** What an agent checks before the coordinator touches anything. */
import { statfs } from 'node:fs/promises';
import { toErrorInfo } from '../lib/errors.js';
import type { PreflightResult } from '../lib/wire.js';
import type { AgentNode } from './node.js';
import type { JobRunner } from './jobs/runner.js';

type Check = PreflightResult['checks'][number];

async function check(name: string, fn: () => Promise<string>): Promise<Check> {
  try {
    return { check: name, ok: true, message: await fn() };
  } catch (err) {
    const error = toErrorInfo(err);
    return { check: name, ok: false, message: error.message, error };
  }
}

export async function preflight(node: AgentNode, runner: JobRunner, repositoryId: string): Promise<PreflightResult> {
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
    const busy = runner.busyComponents().get(config.name);
    checks.push(
      await check(`component ${config.name}`, async () => {
        if (busy) throw new Error(`component ${config.name} is busy with job ${busy}`);
        return 'idle';
      }),
    );
  }
  return { node: node.name, ok: checks.every((c) => c.ok), checks };
}
