/**
 * The repository an agent's jobs use: its config is read again for each job unless it was
 * read less than a few seconds ago (a backup's description, preflight and upload come one
 * after another: on S3 each read is a round trip). A repository re-created in its place (a
 * new id) is seen at once; a location that now holds another repository under the same
 * name is seen once those seconds have passed.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentNode } from '../../agent/node.js';
import type { AgentConfig } from '../../agent/config.js';
import { FsDriver } from '../../plugins/storage/fs.js';
import { Repository } from '../../lib/repo/repository.js';
import { REPO_CONFIG_KEY } from '../../lib/repo/layout.js';
import { createLogger } from '../../lib/log.js';
import { LockstepError } from '../../lib/errors.js';
import { tempFolders } from '../helpers/temp.js';

const temp = tempFolders();
afterEach(() => {
  vi.useRealTimers();
});

async function agentOn(dir: string): Promise<AgentNode> {
  const config = { node: 'n1', stateDir: await temp('state'), components: [], repository: { driver: 'fs', path: dir }, repositoryBaseDir: '/' };
  return new AgentNode(config as unknown as AgentConfig, createLogger({ name: 'test', level: 'silent' }));
}

describe("an agent's repository", () => {
  it('re-created in its place (a new id): the next job sees the new one at once, and a job naming the old one is refused, naming both', async () => {
    const dir = await temp('repo');
    const first = await Repository.init(new FsDriver(dir));
    const node = await agentOn(dir);
    expect((await node.repositoryFor(first.id)).id).toBe(first.id);
    await rm(dir, { recursive: true });
    const second = await Repository.init(new FsDriver(dir));
    expect((await node.repositoryFor(second.id)).id).toBe(second.id);
    const err = await node.repositoryFor(first.id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockstepError);
    expect((err as LockstepError).code).toBe('LOCKSTEP_E_REPO_MISMATCH');
    expect((err as LockstepError).message).toContain(second.id);
    expect((err as LockstepError).message).toContain(first.id);
  });

  it('its config is taken as read for a few seconds, then read again', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const dir = await temp('repo');
    const repo = await Repository.init(new FsDriver(dir));
    const node = await agentOn(dir);
    await node.repositoryFor(repo.id);
    // the place now holds another repository's config (a remount, say)
    const config = JSON.parse(await readFile(join(dir, REPO_CONFIG_KEY), 'utf8')) as { id: string };
    await writeFile(join(dir, REPO_CONFIG_KEY), JSON.stringify({ ...config, id: '00000000-0000-4000-8000-000000000000' }));
    vi.advanceTimersByTime(1000);
    expect((await node.repositoryFor(repo.id)).id).toBe(repo.id);
    vi.advanceTimersByTime(5000);
    const err = await node.repositoryFor(repo.id).catch((e: unknown) => e);
    expect((err as LockstepError).code).toBe('LOCKSTEP_E_REPO_MISMATCH');
    expect((err as LockstepError).message).toContain('00000000-0000-4000-8000-000000000000');
  });
});
