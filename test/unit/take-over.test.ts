/**
 * A backup's preflight, sent under the repository's lock, stops a transfer of another
 * operation into that repository (an upload of another backup, a restore's stage: its
 * coordinator lost the lock, it died or lost the store) and frees the component; a restore's
 * stage sent under the lock does the same when it starts. Any other job, a transfer into
 * another repository or one of the same operation keeps the component busy. Through a real
 * job runner and the agent's preflight; the jobs wait for their stop as a transfer held up
 * by its store would.
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
  const handlers = Object.fromEntries((['upload', 'stage', 'snapshot'] as JobKind[]).map((k) => [k, untilStopped])) as unknown as JobHandlers;
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
const RESTORE_OLD = 'r20261205-100000-abcdef';
const RESTORE_NEW = 'r20261205-100100-fedcba';
const stage = (restoreId: string, opts: { repositoryId?: string; lockHeld?: boolean } = {}): JobRequest => ({
  kind: 'stage',
  component: 'db',
  restoreId,
  backupId: OLD,
  repositoryId: opts.repositoryId ?? REPO,
  indexKey: 'k',
  indexSha256: '0'.repeat(64),
  ...(opts.lockHeld ? { lockHeld: true } : {}),
});
const snapshot: JobRequest = { kind: 'snapshot', component: 'db', backupId: OLD };

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

  it("stops a restore's stage in the same repository, its staging removed", async () => {
    const runner = await runnerWith();
    const old = await runner.start(stage(RESTORE_OLD));
    const r = await preflight(await nodeOf(), runner, { repositoryId: REPO, backupId: NEW, lockHeld: true });
    expect(r.ok).toBe(true);
    expect(r.checks.find((x) => x.check === 'component db')!.warning).toBe(
      `component db: stage job ${old.id} of restore ${RESTORE_OLD} was stopped: its coordinator no longer held the repository's lock (it died or lost the store); what it staged was removed`,
    );
    expect(runner.get(old.id).error?.message).toContain(`(stage of db for restore ${RESTORE_OLD}) was stopped: backup ${NEW} took the repository's lock over`);
  });

  it('leaves busy a transfer into another repository, one of the same backup, and any other job', async () => {
    for (const req of [upload(OLD, 'repo-b'), upload(NEW), stage(RESTORE_OLD, { repositoryId: 'repo-b' }), snapshot]) {
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

describe("a restore's stage under the repository's lock", () => {
  it('stops a transfer of another operation into the same repository as it starts, and says so in its job', async () => {
    for (const req of [upload(OLD), stage(RESTORE_OLD)]) {
      const runner = await runnerWith();
      const old = await runner.start(req);
      // not under the lock: busy, nothing stopped
      await expect(runner.start(stage(RESTORE_NEW))).rejects.toThrow(`is busy with job ${old.id}`);
      expect(runner.get(old.id).state).toBe('running');

      const next = await runner.start(stage(RESTORE_NEW, { lockHeld: true }));
      const what = req.kind === 'upload' ? `upload job ${old.id} of backup ${OLD}` : `stage job ${old.id} of restore ${RESTORE_OLD}`;
      expect(next.tookOver).toBe(
        `${what} was stopped: its coordinator no longer held the repository's lock (it died or lost the store); ${req.kind === 'upload' ? 'the next backup picks up what it stored' : 'what it staged was removed'}`,
      );
      const stopped = runner.get(old.id);
      expect(stopped.state).toBe('cancelled');
      expect(stopped.error?.code).toBe('LOCKSTEP_E_JOB_TAKEN_OVER');
      expect(stopped.error?.message).toContain(`restore ${RESTORE_NEW} took the repository's lock over`);
      runner.cancel(next.id);
      await runner.wait(next.id, 5000);
    }
  });

  it('leaves busy a stage of the same restore, a transfer into another repository, and any other job', async () => {
    for (const req of [stage(RESTORE_NEW), upload(OLD, 'repo-b'), stage(RESTORE_OLD, { repositoryId: 'repo-b' }), snapshot]) {
      const runner = await runnerWith();
      const job = await runner.start(req);
      await expect(runner.start(stage(RESTORE_NEW, { lockHeld: true }))).rejects.toThrow(`component db on n1 is busy with job ${job.id} (${req.kind})`);
      expect(runner.get(job.id).state).toBe('running');
      runner.cancel(job.id);
      await runner.wait(job.id, 5000);
    }
  });
});
