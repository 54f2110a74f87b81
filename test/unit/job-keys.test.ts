/**
 * A job start under a key (the coordinator's own for that start) that started a job still
 * kept answers with that job, running or ended, and starts nothing; once the job is
 * forgotten (past the runner's history) the key starts a job anew. Through a real job
 * runner and its journal; the jobs wait for their stop, or end when told.
 */
import { describe, expect, it } from 'vitest';
import { JobRunner, type JobContext, type JobHandlers } from '../../agent/jobs/runner.js';
import { LockstepError } from '../../lib/errors.js';
import { silentLogger } from '../../lib/log.js';
import type { JobKind, JobRequest } from '../../lib/wire.js';
import { tempFolders } from '../helpers/temp.js';

const temp = tempFolders();
const REPO = 'repo-a';

/** jobs that run until stopped, or until `finish` is called for their component */
function handlersOf(finish: Map<string, () => void>): JobHandlers {
  const run = (req: JobRequest, ctx: JobContext) =>
    new Promise((resolve, reject) => {
      finish.set(req.component, () => resolve({}));
      ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error), { once: true });
    });
  return Object.fromEntries((['upload', 'stage', 'snapshot'] as JobKind[]).map((k) => [k, run])) as unknown as JobHandlers;
}

async function runnerWith(history = 50): Promise<{ runner: JobRunner; finish: Map<string, () => void> }> {
  const finish = new Map<string, () => void>();
  const runner = new JobRunner('n1', await temp('journal'), handlersOf(finish), silentLogger(), history, async () => undefined);
  await runner.recover();
  return { runner, finish };
}

const snapshot = (component: string, backupId = '20261206-100000-keys'): JobRequest => ({ kind: 'snapshot', component, backupId });

async function ended(runner: JobRunner, id: string): Promise<void> {
  for (let i = 0; i < 200 && runner.get(id).state === 'running'; i++) await new Promise((r) => setTimeout(r, 10));
}

describe('a job start under a key', () => {
  it('asked again while its job runs, and after it ended, answers with that job and starts nothing', async () => {
    const { runner, finish } = await runnerWith();
    const first = await runner.start(snapshot('db'), 'k1');
    const again = await runner.start(snapshot('db'), 'k1');
    expect(again.id).toBe(first.id);
    expect(runner.list()).toHaveLength(1);
    finish.get('db')!();
    await ended(runner, first.id);
    const late = await runner.start(snapshot('db'), 'k1');
    expect(late.id).toBe(first.id);
    expect(late.state).toBe('succeeded');
    expect(runner.list()).toHaveLength(1);
    // without a key, or under another one, a start is a start
    const other = await runner.start(snapshot('db'), 'k2');
    expect(other.id).not.toBe(first.id);
    expect(runner.list()).toHaveLength(2);
  });

  it('is refused when another request started a job under it', async () => {
    const { runner } = await runnerWith();
    const first = await runner.start(snapshot('db'), 'k1');
    const err = await runner.start(snapshot('db', '20261206-100100-other'), 'k1').then(
      () => undefined,
      (e: unknown) => e as LockstepError,
    );
    expect(err).toBeInstanceOf(LockstepError);
    expect(err?.code).toBe('LOCKSTEP_E_BAD_REQUEST');
    expect(err?.message).toBe(`job key k1 already started job ${first.id} (snapshot of db) with another request`);
    expect(runner.list()).toHaveLength(1);
  });

  it('starts a job anew once the job it started is forgotten', async () => {
    const { runner, finish } = await runnerWith(1);
    const first = await runner.start(snapshot('a'), 'k1');
    finish.get('a')!();
    await ended(runner, first.id);
    const second = await runner.start(snapshot('b'));
    finish.get('b')!();
    await ended(runner, second.id);
    // a history of one: the first job is forgotten, and its key with it
    expect(runner.list().map((j) => j.id)).toEqual([second.id]);
    const anew = await runner.start(snapshot('a'), 'k1');
    expect(anew.id).not.toBe(first.id);
    expect(anew.state).toBe('running');
  });

  it("two starts of one stage under the lock, both waiting for an orphaned upload's stop, start one job", async () => {
    const { runner } = await runnerWith();
    const orphan = await runner.start({ kind: 'upload', component: 'db', backupId: '20261206-090000-orphaned', repositoryId: REPO });
    const stage: JobRequest = { kind: 'stage', component: 'db', restoreId: 'r20261206-100000-abcdef', backupId: '20261206-090000-orphaned', repositoryId: REPO, indexKey: 'k', indexSha256: '0'.repeat(64), lockHeld: true };
    const [one, two] = await Promise.all([runner.start(stage, 'k-stage'), runner.start(stage, 'k-stage')]);
    expect(one.id).toBe(two.id);
    expect(runner.get(orphan.id).state).toBe('cancelled');
    expect(runner.list().filter((j) => j.kind === 'stage')).toHaveLength(1);
  });
});
