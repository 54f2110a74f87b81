/**
 * The agent's own settings are its own: its malloc settings (its `#!` line) and the size of
 * libuv's thread pool (main.cts) run the agent, and a command it runs, such as a
 * component's start command that starts a database, gets the environment the agent was
 * given, not two malloc arenas, a 32 KiB mmap threshold and 16 I/O threads.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { agentLaunch, type LocalCluster } from '../../demo/local-cluster.js';
import { dropOwnEnv, OWN_ENV } from '../../lib/own-env.js';
import { runCli, startCluster, stopCluster, tempDir } from '../helpers/cluster.js';

/** the environment in a file written by `env` */
const envIn = async (file: string) => Object.fromEntries((await readFile(file, 'utf8')).trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));

/** an agent's threads */
const threads = async (c: LocalCluster) => (await readdir(`/proc/${c.agents[0]!.process!.pid!}/task`)).length;

describe("the agent's own settings", () => {
  let dir: string;
  /** an agent started as the operator gave it; one given its own pool size */
  let given: LocalCluster;
  let sized: LocalCluster;
  /** their threads once started, before either ran a job */
  let counts: number[];

  const withStartEnv = (file: string, agentEnv: NodeJS.ProcessEnv) =>
    startCluster({ nodes: 1, components: () => [{ name: 'db', settings: { stop: ['true'], start: ['sh', '-c', `env > ${join(dir, file)}`] } }], agentEnv });

  beforeAll(async () => {
    dir = await tempDir();
    given = await withStartEnv('given.env', { LOCKSTEP_TEST_GIVEN: 'by the operator' });
    sized = await withStartEnv('sized.env', { UV_THREADPOOL_SIZE: '1' });
    counts = [await threads(given), await threads(sized)];
  });
  afterAll(async () => {
    await stopCluster(given);
    await stopCluster(sized);
    await rm(dir, { recursive: true, force: true });
  });

  it('are what its first line sets', () => {
    expect(agentLaunch().env).toEqual(OWN_ENV);
  });

  it('run the agent, and do not reach the commands it runs', async () => {
    const pid = given.agents[0]!.process!.pid!;
    const agentEnv = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0');
    // the process was started with them (glibc read them then)
    for (const [k, v] of Object.entries(OWN_ENV)) expect(agentEnv).toContain(`${k}=${v}`);
    const r = await runCli(['backup', 'create', '--json'], { config: given.configFile });
    expect(r.code, r.stderr).toBe(0);
    const seen = await envIn(join(dir, 'given.env'));
    expect(seen.LOCKSTEP_TEST_GIVEN).toBe('by the operator');
    for (const k of [...Object.keys(OWN_ENV), 'UV_THREADPOOL_SIZE']) expect(seen[k], k).toBeUndefined();
  });

  it('give the agent 16 I/O threads, or as many as the operator says', async () => {
    // the same agent but for its pool: 16 threads against 1 (libuv's default would be 4 against 1)
    expect(counts[0]! - counts[1]!).toBeGreaterThanOrEqual(10);
    const r = await runCli(['backup', 'create', '--json'], { config: sized.configFile });
    expect(r.code, r.stderr).toBe(0);
    expect((await envIn(join(dir, 'sized.env'))).UV_THREADPOOL_SIZE).toBe('1');
  });

  it("keep an operator's own value of the same variable for the commands", () => {
    const env: NodeJS.ProcessEnv = { MALLOC_ARENA_MAX: '8', MALLOC_MMAP_THRESHOLD_: '32768', PATH: '/usr/bin' };
    dropOwnEnv(env);
    expect(env).toEqual({ MALLOC_ARENA_MAX: '8', PATH: '/usr/bin' });
  });
});
