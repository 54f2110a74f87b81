/**
 * A throw-away S3 endpoint: Ceph RGW over a one-node memstore cluster (scripts/rgw.sh,
 * ~12 s to start, its data in memory), for the tests and the benches.
 */
import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from './local-cluster.js';

const run = promisify(execFile);
const script = join(projectRoot(), 'scripts', 'rgw.sh');

export interface RgwEndpoint {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/**
 * An RGW in a new folder under `parent`, on a random even port from `portFrom` (the mon
 * takes the next one); `stop` stops its daemons and removes the folder.
 */
export async function startRgw(parent: string, portFrom: number): Promise<RgwEndpoint & { stop(): Promise<void> }> {
  const dir = await mkdtemp(join(parent, 'lockstep-rgw-'));
  const port = portFrom + Math.floor(Math.random() * 400) * 2;
  const { stdout } = await run('bash', [script, 'start', dir, String(port)], { timeout: 120_000 });
  const [endpoint, accessKeyId, secretAccessKey] = stdout.trim().split(/\s+/) as [string, string, string];
  return {
    endpoint,
    accessKeyId,
    secretAccessKey,
    stop: async () => void (await run('bash', [script, 'stop', dir], { timeout: 60_000 })),
  };
}
