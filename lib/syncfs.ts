/**
 * syncfs(2) of the filesystem a path is on (`sync --file-system`), for a long-running process
 * that is big by the time it asks: the agent, ~140 MiB during a 5 GiB upload, which flushes
 * its repository twice per upload.
 *
 * Spawning `sync` forks the asking process; afterwards every page it writes faults once,
 * shared with the child until that child ran `exec` (measured: 100 MiB rewritten after one
 * spawn, 25,600 faults and 35 ms instead of 0.7 ms; the spawn itself 8–22 ms, on the
 * process's one thread). `startSyncHelper()`, called while the agent is still small, starts a
 * shell that runs `sync --file-system` for each path written to its stdin, one at a time,
 * and answers a line each; the agent then never forks to flush. Without it (the coordinator,
 * tests), or once it died, `syncFileSystem` spawns `sync` itself as before.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { LockstepError } from './errors.js';
import { runCommand } from './exec.js';

/** per path read from stdin: `ok`, or `fail` and what sync said, on one line */
const LOOP = 'while IFS= read -r p; do if err=$(sync --file-system -- "$p" 2>&1); then echo ok; else printf \'fail %s\\n\' "$(printf %s "$err" | tr \'\\n\' \' \')"; fi; done';

interface Waiter {
  path: string;
  what: string;
  timeoutMs: number;
  resolve: () => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

let helper: ChildProcess | undefined;
const waiting: Waiter[] = [];
let pending = '';

/** Start the helper (once); a process that never calls this spawns `sync` for every flush. */
export function startSyncHelper(): void {
  if (helper) return;
  const child = spawn('sh', ['-c', LOOP], { stdio: ['pipe', 'pipe', 'ignore'] });
  helper = child;
  // it keeps nothing alive while idle (the agent exits without waiting for it; it ends when its stdin closes)
  child.unref();
  refPipes(child, false);
  child.stdin!.on('error', () => stopped(child));
  child.stdout!.setEncoding('utf8').on('data', (text: string) => {
    pending += text;
    for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      const w = waiting.shift();
      if (waiting.length === 0) refPipes(child, false);
      if (!w) continue;
      clearTimeout(w.timer);
      if (line === 'ok') w.resolve();
      else w.reject(failed(w.path, line.replace(/^fail ?/, '')));
    }
  });
  child.on('error', () => stopped(child));
  child.on('exit', () => stopped(child));
}

/** Stop the helper (flushes waiting on it spawn `sync` themselves, as every later one does). */
export function stopSyncHelper(): void {
  if (helper) stopped(helper, true);
}

/** while a flush waits on it, the helper's pipes keep the process alive; otherwise not */
function refPipes(child: ChildProcess, yes: boolean): void {
  for (const s of [child.stdin, child.stdout] as unknown as ({ ref?: () => void; unref?: () => void } | null)[]) {
    if (yes) s?.ref?.();
    else s?.unref?.();
  }
}

function failed(path: string, said: string): LockstepError {
  return new LockstepError('LOCKSTEP_E_COMMAND_FAILED', `sync --file-system ${path} failed${said ? `: ${said.trim()}` : ''}`);
}

/**
 * the helper is gone, or made to go: flushes spawn `sync` from now on, and those that
 * waited on it are run that way, unless it is gone because one of them timed out (`why`)
 */
function stopped(child: ChildProcess, kill = false, why?: string): void {
  if (helper !== child) return;
  helper = undefined;
  pending = '';
  refPipes(child, false);
  if (kill) child.kill('SIGKILL');
  for (const w of waiting.splice(0)) {
    clearTimeout(w.timer);
    if (why) w.reject(failed(w.path, why));
    else spawnedSync(w.path, w.what, w.timeoutMs).then(w.resolve, w.reject);
  }
}

const spawnedSync = (path: string, what: string, timeoutMs: number) => runCommand(['sync', '--file-system', path], { timeoutMs, what }).then(() => undefined);

/** Flush the filesystem `path` is on; `what` names it in an error (as runCommand does). */
export function syncFileSystem(path: string, what: string, timeoutMs = 600_000): Promise<void> {
  const child = helper;
  // a path the helper's line protocol cannot carry goes the old way
  if (!child || path.includes('\n') || path.includes('\0')) return spawnedSync(path, what, timeoutMs);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => stopped(child, true, `timed out after ${timeoutMs} ms`), timeoutMs);
    waiting.push({ path, what, timeoutMs, resolve, reject: (err) => reject(err instanceof LockstepError && err.message.startsWith('sync ') ? Object.assign(err, { message: `${what}: ${err.message}` }) : err), timer });
    refPipes(child, true);
    child.stdin!.write(`${path}\n`);
  });
}
