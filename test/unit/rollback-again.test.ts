/**
 * A rollback cut short by its agent's death is run again at the agent's next start
 * (agent/jobs/journal.ts `again`): the old data back in place, whole, whatever part of
 * the restored data the first run had removed. Through a real job runner's journal and
 * recovery, with the restore laid out beside the data as a swap leaves it.
 */
import { describe, expect, it } from 'vitest';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { JobRunner, type JobContext, type JobHandlers } from '../../agent/jobs/runner.js';
import { rollbackJob } from '../../agent/jobs/swap.js';
import { AgentNode } from '../../agent/node.js';
import type { AgentConfig } from '../../agent/config.js';
import type { JobRequestOf } from '../../lib/wire.js';
import { createLogger } from '../../lib/log.js';
import { tempFolders, textFiles as files } from '../helpers/temp.js';

const temp = tempFolders();
const RESTORE = 'r20261205-130000-abcdef';
const quiet = () => createLogger({ name: 'test', level: 'silent' });

describe('a rollback cut short by the death of its agent', () => {
  it('is run again at the next start: the old data back in place, whole, nothing of the restore left', async () => {
    const root = await temp('node');
    const live = join(root, 'data');
    const state = join(root, 'state');
    // as the swap left it: the restored data in place, the old data beside it
    const aside = `${live}.lockstep-old-${RESTORE}`;
    await mkdir(join(live, 'sub'), { recursive: true });
    for (const [name, text] of [['a.txt', 'restored a'], ['sub/b.txt', 'restored b'], ['sub/c.txt', 'restored c']]) await writeFile(join(live, name!), text!);
    await mkdir(join(aside, 'sub'), { recursive: true });
    await writeFile(join(aside, 'a.txt'), 'old a');
    await writeFile(join(aside, 'sub', 'b.txt'), 'old b');
    const node = new AgentNode({ node: 'n1', stateDir: state, components: [{ name: 'db', plugin: 'directory', tier: 'storage', path: live }] } as unknown as AgentConfig, quiet());
    const journal = join(state, 'jobs');

    // the rollback starts; its agent dies once it has removed part of the restored data
    let cut = false;
    const dying = {
      rollback: async (req: JobRequestOf<'rollback'>, ctx: JobContext) => {
        const dies: JobContext = {
          ...ctx,
          progress: ctx.progress.bind(ctx),
          dropLeftover: ctx.dropLeftover.bind(ctx),
          addLeftover: async (l) => {
            await ctx.addLeftover(l);
            await rm(join(live, 'sub'), { recursive: true });
            cut = true;
            await new Promise(() => undefined);
          },
        };
        return rollbackJob(node, req, dies);
      },
    } as unknown as JobHandlers;
    const first = new JobRunner('n1', journal, dying, quiet(), 50, async () => undefined);
    await first.recover();
    await first.start({ kind: 'rollback', component: 'db', restoreId: RESTORE });
    for (let i = 0; i < 200 && !cut; i++) await sleep(10);
    expect(cut).toBe(true);
    expect(await files(live)).toEqual({ 'a.txt': 'restored a' });

    // the next start runs it again
    const handlers = { rollback: (req: JobRequestOf<'rollback'>, ctx: JobContext) => rollbackJob(node, req, ctx) } as unknown as JobHandlers;
    const next = new JobRunner('n1', journal, handlers, quiet(), 50, async () => undefined);
    const interrupted = await next.recover();
    expect(interrupted.map((j) => [j.kind, j.state, j.error?.code])).toEqual([['rollback', 'interrupted', 'LOCKSTEP_E_AGENT_INTERRUPTED']]);
    expect(interrupted[0]!.recovery?.join('\n')).toContain(`ran the rollback of db again: removed restored ${live}; moved ${aside} back to ${live}`);
    expect(await files(live)).toEqual({ 'a.txt': 'old a', 'sub/b.txt': 'old b' });
    expect((await readdir(root)).sort()).toEqual(['data', 'state']);

    // and only once: the start after that finds nothing to do
    const third = new JobRunner('n1', journal, handlers, quiet(), 50, async () => undefined);
    expect(await third.recover()).toEqual([]);
    expect(await files(live)).toEqual({ 'a.txt': 'old a', 'sub/b.txt': 'old b' });
  });

  it('a rollback that fails is not run again by the agent: its coordinator is told, and decides', async () => {
    const root = await temp('node');
    const live = join(root, 'data');
    const state = join(root, 'state');
    await mkdir(live, { recursive: true });
    await writeFile(join(live, 'a.txt'), 'restored a');
    let runs = 0;
    const failing = {
      rollback: async (req: JobRequestOf<'rollback'>, ctx: JobContext) => {
        runs++;
        await ctx.addLeftover({ kind: 'again', request: req });
        throw new Error('the disk said no');
      },
    } as unknown as JobHandlers;
    const runner = new JobRunner('n1', join(state, 'jobs'), failing, quiet(), 50, async () => undefined);
    await runner.recover();
    const job = await runner.start({ kind: 'rollback', component: 'db', restoreId: RESTORE });
    const ended = await runner.wait(job.id, 5000);
    expect(ended.state).toBe('failed');
    expect(ended.error?.message).toContain('the disk said no');
    expect(runs).toBe(1);
    // (its end is journaled just after it reads as ended)
    const record = join(state, 'jobs', `${job.id}.json`);
    for (let i = 0; i < 200 && (JSON.parse(await readFile(record, 'utf8')) as { job: { state: string } }).job.state === 'running'; i++) await sleep(10);
    // nor at the next start: it ended
    const next = new JobRunner('n1', join(state, 'jobs'), failing, quiet(), 50, async () => undefined);
    expect(await next.recover()).toEqual([]);
    expect(runs).toBe(1);
  });
});
