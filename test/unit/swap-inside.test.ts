/**
 * The swap inside a data directory that is a mount point moves entries one by one
 * (agent/jobs/swap.ts). An agent that dies when every move is made but before its job is
 * marked done has its moves undone at its next start, the record that the swap was whole
 * first; the rollback that follows must then take nothing in the data directory for
 * restored data: the old data stays, whole. Through a real job runner's journal and
 * recovery; the staging laid out inside the directory as a restore onto a mount point
 * does (no mount needed to tell).
 */
import { describe, expect, it } from 'vitest';
import { mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { JobRunner, type JobHandlers } from '../../agent/jobs/runner.js';
import { rollbackJob, swapJob } from '../../agent/jobs/swap.js';
import { AgentNode } from '../../agent/node.js';
import type { AgentConfig } from '../../agent/config.js';
import { createLogger } from '../../lib/log.js';
import { tempFolders, textFiles as files } from '../helpers/temp.js';

const temp = tempFolders();
const RESTORE = 'r20261205-120000-abcdef';

describe('a swap inside a mount point cut short', () => {
  it('is undone at the next start, and the rollback after it gives the old data back whole', async () => {
    const root = await temp('node');
    const live = join(root, 'data');
    const state = join(root, 'state');
    await mkdir(join(live, 'sub'), { recursive: true });
    await writeFile(join(live, 'a.txt'), 'old a');
    await writeFile(join(live, 'sub', 'b.txt'), 'old b');
    // the filesystem's own, which no swap moves
    await mkdir(join(live, 'lost+found'));
    await writeFile(join(live, 'lost+found', '#1234'), 'fsck found it');
    const staging = join(live, `.lockstep-staging-${RESTORE}`);
    await mkdir(join(staging, 'sub'), { recursive: true });
    await writeFile(join(staging, 'a.txt'), 'restored a');
    await writeFile(join(staging, 'sub', 'c.txt'), 'restored c');
    await mkdir(join(staging, 'lost+found'));
    const node = new AgentNode({ node: 'n1', stateDir: state, components: [{ name: 'db', plugin: 'directory', tier: 'storage', path: live }] } as unknown as AgentConfig, createLogger({ name: 'test', level: 'silent' }));
    const journal = join(state, 'jobs');

    // the swap makes every move, then its agent dies before the job is done
    let swapped = false;
    const dying = { swap: async (req: never, ctx: never) => {
      await swapJob(node, req, ctx);
      swapped = true;
      await new Promise(() => undefined);
    } } as unknown as JobHandlers;
    const first = new JobRunner('n1', journal, dying, createLogger({ name: 'test', level: 'silent' }), 50, async () => undefined);
    await first.recover();
    await first.start({ kind: 'swap', component: 'db', restoreId: RESTORE });
    for (let i = 0; i < 200 && !swapped; i++) await sleep(10);
    expect(swapped).toBe(true);
    expect(await files(live)).toMatchObject({ 'a.txt': 'restored a', 'sub/c.txt': 'restored c', 'lost+found/#1234': 'fsck found it', [`.lockstep-old-${RESTORE}/a.txt`]: 'old a', [`.lockstep-old-${RESTORE}/.lockstep-swapped.json`]: expect.any(String) });

    // the next start undoes it: the record first, then each move
    const next = new JobRunner('n1', journal, {} as JobHandlers, createLogger({ name: 'test', level: 'silent' }), 50, async () => undefined);
    const interrupted = await next.recover();
    expect(interrupted.map((j) => j.kind)).toEqual(['swap']);
    expect(await files(live)).toEqual({ 'a.txt': 'old a', 'sub/b.txt': 'old b', 'lost+found/#1234': 'fsck found it', [`.lockstep-staging-${RESTORE}/a.txt`]: 'restored a', [`.lockstep-staging-${RESTORE}/sub/c.txt`]: 'restored c' });

    // the coordinator's rollback: the old data as it was, nothing of the restore left
    const { actions } = await rollbackJob(node, { kind: 'rollback', component: 'db', restoreId: RESTORE }, { progress: () => undefined, addLeftover: async () => undefined } as never);
    expect(actions.join('\n')).not.toContain('restored entries');
    expect(await files(live)).toEqual({ 'a.txt': 'old a', 'sub/b.txt': 'old b', 'lost+found/#1234': 'fsck found it' });
    expect((await readdir(live)).sort()).toEqual(['a.txt', 'lost+found', 'sub']);
  });

  it('a rollback after a whole swap, cut short and run again, keeps the old data', async () => {
    const root = await temp('node');
    const live = join(root, 'data');
    await mkdir(live, { recursive: true });
    await writeFile(join(live, 'a.txt'), 'old a');
    await writeFile(join(live, 'only-old.txt'), 'old only');
    const staging = join(live, `.lockstep-staging-${RESTORE}`);
    await mkdir(staging, { recursive: true });
    await writeFile(join(staging, 'a.txt'), 'restored a');
    const node = new AgentNode({ node: 'n1', stateDir: join(root, 'state'), components: [{ name: 'db', plugin: 'directory', tier: 'storage', path: live }] } as unknown as AgentConfig, createLogger({ name: 'test', level: 'silent' }));
    const ctx = { progress: () => undefined, addLeftover: async () => undefined } as never;
    await swapJob(node, { kind: 'swap', component: 'db', restoreId: RESTORE }, ctx);
    // the service made a file of its own
    await writeFile(join(live, 'service.pid'), '42');
    // a rollback cut short once it had moved the restored data out and one old entry back
    const aside = join(live, `.lockstep-old-${RESTORE}`);
    for (const name of ['a.txt', 'service.pid']) await rename(join(live, name), join(staging, name));
    await writeFile(join(aside, '.lockstep-rolling-back'), '');
    await rename(join(aside, 'a.txt'), join(live, 'a.txt'));
    // run again: the old entry already back is not taken for restored data
    await rollbackJob(node, { kind: 'rollback', component: 'db', restoreId: RESTORE }, ctx);
    expect(await files(live)).toEqual({ 'a.txt': 'old a', 'only-old.txt': 'old only' });
    expect(await readdir(live)).toEqual(['a.txt', 'only-old.txt']);
    // and once more, with nothing left to do
    await rollbackJob(node, { kind: 'rollback', component: 'db', restoreId: RESTORE }, ctx);
    expect(await files(live)).toEqual({ 'a.txt': 'old a', 'only-old.txt': 'old only' });
  });
});
