/** Test helpers: a local cluster in a temp dir, torn down after the file's tests. */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalCluster, resolveFromRoot, runCli, type LocalClusterOptions } from '../../demo/local-cluster.js';

export { runCli };

export const FAKE_SERVICE = resolveFromRoot('test', 'fixtures', 'fake-service.mjs');

/** a TCP port on 127.0.0.1 that nothing listens on right now */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

export async function tempDir(prefix = 'lockstep-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function startCluster(opts: Omit<LocalClusterOptions, 'root'>): Promise<LocalCluster> {
  const root = await tempDir();
  return new LocalCluster({ ...opts, root }).start();
}

export async function stopCluster(c: LocalCluster | undefined): Promise<void> {
  if (!c) return;
  await c.stop();
  await rm(c.opts.root, { recursive: true, force: true });
}

/** argv for the fake service, as a component's stop/start/health setting */
export function service(cmd: string, pidfile: string, log?: string): string[] {
  return [process.execPath, FAKE_SERVICE, cmd, pidfile, ...(log ? [log] : [])];
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function json<T>(text: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(`not JSON: ${text.slice(0, 2000)}`);
  }
}

/** `dir` bind-mounted onto itself (a mount point of the same filesystem): whether it could be (root only) */
export function bindMount(dir: string): Promise<boolean> {
  return new Promise((res) => execFile('mount', ['--bind', dir, dir], (e) => res(!e)));
}

/** undo `bindMount`: whether it was unmounted */
export function unmount(dir: string): Promise<boolean> {
  return new Promise((res) => execFile('umount', [dir], (e) => res(!e)));
}

/** one node whose component `data` has its data directory bind-mounted onto itself; `mounted` false where that cannot be done (not root) */
export interface MountedNode {
  cluster: LocalCluster;
  data: string;
  mounted: boolean;
}

/** a one-node cluster whose component `data` has `settings`, its data directory a mount point where it can be (`bindMount`) */
export async function startMountedNode(settings: Record<string, unknown>): Promise<MountedNode> {
  const cluster = await startCluster({ nodes: 1, components: () => [{ name: 'data', settings }] });
  const data = cluster.agents[0]!.data.data!;
  return { cluster, data, mounted: await bindMount(data) };
}

/** undo `startMountedNode`: its data directory unmounted while it still is a mount point, its cluster stopped */
export async function stopMountedNode(n: Partial<MountedNode>): Promise<void> {
  if (n.mounted && n.data) await unmount(n.data);
  await stopCluster(n.cluster);
}
