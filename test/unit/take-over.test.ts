/**
 * A backup's preflight, sent under the repository's lock, stops an upload of another backup
 * into that repository (its coordinator lost the lock: died, or lost the store) and frees
 * the component; any other job, an upload into another repository or one of the same
 * backup keeps the component busy. Through a real job runner and the agent's preflight; the
 * jobs wait for their stop as an upload held up by its store would.
 */
import { describe, expect, it } from 'vitest';
import { JobRunner, type JobContext, type JobHandlers } from '../../agent/jobs/runner.js';
import { preflight } from '../../agent/preflight.js';
import type { AgentNode } from '../../agent/node.js';
import { silentLogger } from '../../lib/log.js';
import type { JobKind, JobRequest } from '../../lib/wire.js';
import { tempFolders } from '../helpers/temp.js';

const temp = tempFolders();
const REPO = 'repo-a';
const OLD = '20261205-100000-orphaned';
const NEW = '20261205-100100-next';

/** a job that runs until it is stopped */
const untilStopped = (_req: unknown, ctx: JobContext) =>
  new Promise((_, reject) => {
    ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error), { once: true });
  });

async function runnerWith(): Promise<JobRunner> {
  const handlers = Object.fromEntries((['upload', 'stage'] as JobKind[]).map((k) => [k, untilStopped])) as unknown as JobHandlers;
  const runner = new JobRunner('n1', await temp('journal'), handlers, silentLogger(), 50, async () => undefined);
  await runner.recover();
  return runner;
}

/** an agent of one component `db` whose repository checks pass and whose state dir is real */
async function nodeOf(): Promise<AgentNode> {
  const stateDir = await temp('state');
  return {
    name: 'n1',
    config: { stateDir },
    components: new Map([['db', { config: { name: 'db' } }]]),
    repositoryFor: async () => ({ location: 'test', probeWrite: async () => undefined }),
  } as unknown as AgentNode;
}

const upload = (backupId: string, repositoryId = REPO): JobRequest => ({ kind: 'upload', component: 'db', backupId, repositoryId });

describe("a backup's preflight under the repository's lock", () => {
  it('stops an upload of another backup into the same repository, frees its component and warns', async () => {
    const runner = await runnerWith();
    const node = await nodeOf();
    const old = await runner.start(upload(OLD));
    // not under the lock: busy, nothing stopped
    const asked = await preflight(node, runner, { repositoryId: REPO, backupId: NEW });
    expect(asked.ok).toBe(false);
    expect(runner.get(old.id).state).toBe('running');

    const r = await preflight(node, runner, { repositoryId: REPO, backupId: NEW, lockHeld: true });
    expect(r.ok).toBe(true);
    const c = r.checks.find((x) => x.check === 'component db')!;
    expect(c.warning).toMatch(new RegExp(`upload job ${old.id} of backup ${OLD} was stopped: its coordinator no longer held the repository's lock`));
    const stopped = runner.get(old.id);
    expect(stopped.state).toBe('cancelled');
    expect(stopped.error?.code).toBe('LOCKSTEP_E_JOB_TAKEN_OVER');
    expect(stopped.error?.message).toContain(`backup ${NEW} took the repository's lock over`);
    expect(runner.busyComponents().has('db')).toBe(false);
    // the component takes the new backup's upload
    const next = await runner.start(upload(NEW));
    runner.cancel(next.id);
    expect((await runner.wait(next.id, 5000)).state).toBe('cancelled');
  });

  it('leaves busy an upload into another repository, one of the same backup, and any other job', async () => {
    for (const req of [upload(OLD, 'repo-b'), upload(NEW), { kind: 'stage', component: 'db', restoreId: 'r20261205-100000-abcdef', backupId: OLD, repositoryId: REPO, indexKey: 'k', indexSha256: '0'.repeat(64) } as JobRequest]) {
      const runner = await runnerWith();
      const job = await runner.start(req);
      const r = await preflight(await nodeOf(), runner, { repositoryId: REPO, backupId: NEW, lockHeld: true });
      expect(r.ok, req.kind).toBe(false);
      expect(r.checks.find((x) => x.check === 'component db')!.message).toBe(`component db is busy with job ${job.id}`);
      expect(runner.get(job.id).state).toBe('running');
      runner.cancel(job.id);
      await runner.wait(job.id, 5000);
    }
  });
});
