/**
 * Starts one Ceph RGW for the whole test run (scripts/rgw.sh, ~12 s) and hands its
 * endpoint to the test files; stops it at the end. A missing radosgw fails the run.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

const run = promisify(execFile);
const script = join(import.meta.dirname, '..', '..', 'scripts', 'rgw.sh');

export interface RgwEndpoint {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    rgw: RgwEndpoint;
  }
}

let dir: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  dir = await mkdtemp(join(tmpdir(), 'lockstep-rgw-'));
  const port = 17480 + Math.floor(Math.random() * 400) * 2;
  const { stdout } = await run('bash', [script, 'start', dir, String(port)], { timeout: 120_000 });
  const [endpoint, accessKeyId, secretAccessKey] = stdout.trim().split(/\s+/);
  project.provide('rgw', { endpoint: endpoint!, accessKeyId: accessKeyId!, secretAccessKey: secretAccessKey! });
}

export async function teardown(): Promise<void> {
  if (dir) await run('bash', [script, 'stop', dir], { timeout: 60_000 });
}
