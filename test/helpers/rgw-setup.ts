/**
 * Starts one Ceph RGW for the whole test run (demo/rgw.ts, ~12 s) and hands its endpoint
 * to the test files; stops it at the end. A missing radosgw fails the run.
 */
import { tmpdir } from 'node:os';
import type { TestProject } from 'vitest/node';
import { startRgw, type RgwEndpoint } from '../../demo/rgw.js';

export type { RgwEndpoint };

declare module 'vitest' {
  export interface ProvidedContext {
    rgw: RgwEndpoint;
  }
}

let rgw: Awaited<ReturnType<typeof startRgw>> | undefined;

export async function setup(project: TestProject): Promise<void> {
  rgw = await startRgw(tmpdir(), 17480);
  project.provide('rgw', { endpoint: rgw.endpoint, accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey });
}

export async function teardown(): Promise<void> {
  await rgw?.stop();
}
