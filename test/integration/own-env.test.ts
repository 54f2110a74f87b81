/**
 * The agent's own malloc settings (its `#!` line) are its own: a command it runs, such as a
 * component's start command that starts a database, gets the environment the agent was
 * given, not two malloc arenas and a 32 KiB mmap threshold.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { agentLaunch, type LocalCluster } from '../../demo/local-cluster.js';
import { dropOwnEnv, OWN_ENV } from '../../lib/own-env.js';
import { runCli, startCluster, stopCluster, tempDir } from '../helpers/cluster.js';

/** the environment in a file written by `env` */
const envIn = async (file: string) => Object.fromEntries((await readFile(file, 'utf8')).trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));

describe("the agent's own settings", () => {
  let cluster: LocalCluster;
  let dir: string;

  beforeAll(async () => {
    dir = await tempDir();
    const envFile = join(dir, 'start-env.txt');
    cluster = await startCluster({
      nodes: 1,
      components: () => [{ name: 'db', settings: { stop: ['true'], start: ['sh', '-c', `env > ${envFile}`] } }],
      agentEnv: { LOCKSTEP_TEST_GIVEN: 'by the operator' },
    });
  });
  afterAll(async () => {
    await stopCluster(cluster);
    await rm(dir, { recursive: true, force: true });
  });

  it('are what its first line sets', () => {
    expect(agentLaunch().env).toEqual(OWN_ENV);
  });

  it('run the agent, and do not reach the commands it runs', async () => {
    const pid = cluster.agents[0]!.process!.pid!;
    const agentEnv = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0');
    // the process was started with them (glibc read them then)
    for (const [k, v] of Object.entries(OWN_ENV)) expect(agentEnv).toContain(`${k}=${v}`);
    const r = await runCli(['backup', 'create', '--json'], { config: cluster.configFile });
    expect(r.code, r.stderr).toBe(0);
    const seen = await envIn(join(dir, 'start-env.txt'));
    expect(seen.LOCKSTEP_TEST_GIVEN).toBe('by the operator');
    for (const k of Object.keys(OWN_ENV)) expect(seen[k], k).toBeUndefined();
  });

  it("keep an operator's own value of the same variable for the commands", () => {
    const env: NodeJS.ProcessEnv = { MALLOC_ARENA_MAX: '8', MALLOC_MMAP_THRESHOLD_: '32768', PATH: '/usr/bin' };
    dropOwnEnv(env);
    expect(env).toEqual({ MALLOC_ARENA_MAX: '8', PATH: '/usr/bin' });
  });
});
