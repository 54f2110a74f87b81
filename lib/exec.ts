/**
 * External programs run with execFile and an argv array, each under a deadline and an
 * AbortSignal. A failure names the command and carries its exit code and stderr tail.
 */
import { execFile } from 'node:child_process';
import { LockstepError } from './errors.js';

export interface RunOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** what the command is for, e.g. "stop command of component web" */
  what: string;
  node?: string;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  durationMs: number;
}

function tail(s: string, max = 600): string {
  const t = s.trim();
  return t.length > max ? `…${t.slice(-max)}` : t;
}

export function formatArgv(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

export function runCommand(argv: readonly string[], opts: RunOptions): Promise<RunResult> {
  const started = performance.now();
  const [file, ...args] = argv;
  if (!file) return Promise.reject(new LockstepError('LOCKSTEP_E_COMMAND_FAILED', `${opts.what} is empty`, { node: opts.node }));
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        timeout: opts.timeoutMs,
        killSignal: 'SIGKILL',
        signal: opts.signal,
        cwd: opts.cwd,
        env: opts.env,
        maxBuffer: 8 * 1024 * 1024,
        encoding: 'utf8',
      },
      (err, stdout, stderr) => {
        const durationMs = Math.round(performance.now() - started);
        if (!err) return resolve({ stdout, stderr, durationMs });
        const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string; code?: number | string };
        const cmd = formatArgv(argv);
        let why: string;
        let code = 'LOCKSTEP_E_COMMAND_FAILED';
        if (opts.signal?.aborted) {
          why = 'was cancelled';
          code = 'LOCKSTEP_E_CANCELLED';
        } else if (e.killed && durationMs >= opts.timeoutMs - 50) {
          why = `did not finish within ${opts.timeoutMs} ms and was killed`;
          code = 'LOCKSTEP_E_TIMEOUT';
        } else if (e.code === 'ENOENT') why = `could not start: ${file} not found`;
        else if (e.code === 'EACCES') why = `could not start: ${file} is not executable`;
        else if (typeof e.code === 'number') why = `exited with code ${e.code}`;
        else if (e.signal) why = `was killed by ${e.signal}`;
        else why = `failed: ${e.message}`;
        const err2 = tail(stderr);
        reject(
          new LockstepError(code, `${opts.what} (${cmd}) ${why}${err2 ? `: ${err2}` : ''}`, {
            node: opts.node,
            cause: err,
            details: { argv, exitCode: typeof e.code === 'number' ? e.code : undefined, stderr: err2 },
          }),
        );
      },
    );
  });
}
