/**
 * Flushing a filesystem through the helper process the agent starts while it is small: the
 * answers come back in order, a failure names the path and what sync said, and a helper
 * that died or was stopped leaves flushes working (each spawns `sync` as before).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSyncHelper, stopSyncHelper, syncFileSystem } from '../../lib/syncfs.js';

const dirs: string[] = [];
afterAll(async () => {
  stopSyncHelper();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** every process: pid, parent pid, command (the helper is an `sh` whose parent is this process) */
const helperChildren = () => execFileSync('ps', ['-o', 'pid=,ppid=,comm=', '-e'], { encoding: 'utf8' });

/** the helper's pid */
function helperPid(): number {
  const line = helperChildren()
    .split('\n')
    .find((l) => new RegExp(`^\\s*\\d+\\s+${process.pid}\\s+sh$`).test(l));
  expect(line).toBeDefined();
  return Number(line!.trim().split(/\s+/)[0]);
}

describe('syncfs through the helper', () => {
  it('flushes, several at once, each answered; a missing path fails naming it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lockstep-syncfs-'));
    dirs.push(dir);
    startSyncHelper();
    // the helper is a shell, a child of this process
    expect(helperChildren()).toMatch(new RegExp(`\\s${process.pid}\\s+sh\\n`));
    await Promise.all([1, 2, 3, 4].map(() => syncFileSystem(dir, 'flushing the test dir')));
    const missing = join(dir, 'no such dir');
    await expect(syncFileSystem(missing, 'flushing a missing dir')).rejects.toThrow(`flushing a missing dir: sync --file-system ${missing} failed: sync: `);
    // and it still answers after a failure
    await syncFileSystem(dir, 'flushing again');
  });

  it('a helper that died or was stopped: flushes spawn sync themselves', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lockstep-syncfs-'));
    dirs.push(dir);
    startSyncHelper();
    stopSyncHelper();
    await syncFileSystem(dir, 'flushing without the helper');
    await expect(syncFileSystem(join(dir, 'gone'), 'flushing a missing dir')).rejects.toThrow('flushing a missing dir');
    // started again, then killed from outside while idle
    startSyncHelper();
    await syncFileSystem(dir, 'flushing');
    process.kill(helperPid(), 'SIGKILL');
    await new Promise((r) => setTimeout(r, 200));
    await syncFileSystem(dir, 'flushing after the helper died');
    // killed while flushes wait on it: they are run without it, not failed
    startSyncHelper();
    // stopped first, so that it cannot answer before it dies
    const pid = helperPid();
    process.kill(pid, 'SIGSTOP');
    const waiting = [1, 2, 3].map(() => syncFileSystem(dir, 'flushing while the helper dies'));
    process.kill(pid, 'SIGKILL');
    await Promise.all(waiting);
  });
});
