/**
 * The tools lockstep is measured against, run on the same data in the same run:
 * GNU tar, an SSH fan-out (`ssh node tar -c DIR`, sshd on loopback), rsync over SSH and
 * restic. Missing tools are installed through apt (as root) when the benchmark starts.
 */
import { spawn, type StdioOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** run a program to its end; rejects with its stderr when it fails */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; stdio?: StdioOptions } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.slice(0, 3).join(' ')} … exited ${code}: ${err.trim()}`))));
  });
}

/**
 * Write out every dirty page (`sync`) before a timed step, so that what the step before it
 * left in the page cache to write back (a 5 GiB tar copy, a generated dataset) is not
 * timed in the next one.
 */
export async function settle(): Promise<void> {
  await run('sync', []);
}

const which = (bin: string) => ['/usr/bin', '/usr/sbin', '/bin', '/sbin'].some((d) => existsSync(join(d, bin)));

/** install the peers through apt when one is missing */
export async function ensurePeers(): Promise<void> {
  const wanted: Record<string, string> = { restic: 'restic', rsync: 'rsync', sshd: 'openssh-server', ssh: 'openssh-client', tar: 'tar' };
  const missing = [...new Set(Object.entries(wanted).filter(([bin]) => !which(bin)).map(([, pkg]) => pkg))];
  if (missing.length === 0) return;
  if (userInfo().uid !== 0) throw new Error(`the benchmark needs ${missing.join(', ')}: install them (apt-get install ${missing.join(' ')}) or run it as root`);
  process.stderr.write(`installing ${missing.join(', ')} through apt …\n`);
  await run('apt-get', ['update', '-qq']);
  await run('apt-get', ['install', '-y', '-qq', ...missing], { env: { DEBIAN_FRONTEND: 'noninteractive' } });
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** `tar -c DIR | tar -x` into DEST */
export async function tarCopy(src: string, dest: string): Promise<void> {
  await mkdir(dest, { recursive: true });
  await new Promise<void>((resolve, reject) => {
    const c = spawn('tar', ['-C', src, '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const x = spawn('tar', ['-C', dest, '-xf', '-'], { stdio: ['pipe', 'ignore', 'inherit'] });
    c.stdout.pipe(x.stdin);
    x.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`tar -x exited ${code}`))));
  });
}

/** An sshd on loopback (one port on several 127.0.0.x addresses) with a key only this run knows. */
export class Sshd {
  private child?: ReturnType<typeof spawn>;
  port = 0;
  readonly key: string;
  readonly user = userInfo().username;

  constructor(private readonly dir: string, private readonly hosts: string[]) {
    this.key = join(dir, 'id_ed25519');
  }

  async start(): Promise<this> {
    await mkdir(this.dir, { recursive: true });
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(this.dir, 'host_ed25519')]);
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', this.key]);
    await writeFile(join(this.dir, 'authorized_keys'), await readFile(`${this.key}.pub`), { mode: 0o600 });
    if (userInfo().uid === 0) await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
    this.port = await freePort();
    const config = [
      `Port ${this.port}`,
      ...this.hosts.map((h) => `ListenAddress ${h}`),
      `HostKey ${join(this.dir, 'host_ed25519')}`,
      `PidFile ${join(this.dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(this.dir, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'MaxStartups 100',
      'MaxSessions 100',
    ];
    await writeFile(join(this.dir, 'sshd_config'), `${config.join('\n')}\n`);
    this.child = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(this.dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (log = (log + d).slice(-4000)));
    for (let i = 0; i < 100; i++) {
      if (this.child.exitCode !== null) throw new Error(`sshd exited ${this.child.exitCode}: ${log}`);
      try {
        await run('ssh', [...this.args(this.hosts[0]!), 'true']);
        return this;
      } catch {
        await sleep(100);
      }
    }
    throw new Error(`sshd did not accept a login within 10 s: ${log}`);
  }

  get pid(): number {
    return this.child?.pid ?? 0;
  }

  /** the ssh command line up to the remote command */
  args(host: string): string[] {
    return [...this.options(), '-p', String(this.port), `${this.user}@${host}`];
  }

  /** ssh options (for rsync -e, without the port) */
  options(): string[] {
    return ['-i', this.key, '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR'];
  }

  /** `ssh host tar -c DIR > file` */
  async tarTo(host: string, dir: string, file: string): Promise<void> {
    const fh = await open(file, 'w');
    try {
      await run('ssh', [...this.args(host), 'tar', '-C', dir, '-cf', '-', '.'], { stdio: ['ignore', fh.fd, 'pipe'] });
    } finally {
      await fh.close();
    }
  }

  /** `ssh host tar -x -C DIR < file` */
  async tarFrom(host: string, file: string, dir: string): Promise<void> {
    const fh = await open(file, 'r');
    try {
      await run('ssh', [...this.args(host), 'mkdir', '-p', dir, '&&', 'tar', '-C', dir, '-xf', '-'], { stdio: [fh.fd, 'ignore', 'pipe'] });
    } finally {
      await fh.close();
    }
  }

  /** `rsync -a --delete -e ssh host:DIR/ DEST/`; returns the bytes of the files it (re)wrote */
  async rsyncFrom(host: string, dir: string, dest: string): Promise<{ bytesWritten: number; literalBytes: number }> {
    await mkdir(dest, { recursive: true });
    const e = ['ssh', ...this.options(), '-p', String(this.port)].join(' ');
    const out = await run('rsync', ['-a', '--delete', '--stats', '-e', e, `${this.user}@${host}:${dir}/`, `${dest}/`]);
    const num = (label: string) => Number(new RegExp(`${label}: ([\\d,]+)`).exec(out)?.[1]?.replaceAll(',', '') ?? Number.NaN);
    return { bytesWritten: num('Total transferred file size'), literalBytes: num('Literal data') };
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await gone;
  }
}

/** restic with a local repository */
export class Restic {
  private readonly env: NodeJS.ProcessEnv;

  constructor(readonly repo: string) {
    this.env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: 'lockstep-bench', RESTIC_CACHE_DIR: `${repo}.cache` };
  }

  async init(): Promise<void> {
    await rm(this.repo, { recursive: true, force: true });
    await rm(`${this.repo}.cache`, { recursive: true, force: true });
    await run('restic', ['init', '--quiet'], { env: this.env });
  }

  backup(host: string, dir: string): Promise<string> {
    return run('restic', ['backup', '--quiet', '--host', host, dir], { env: this.env });
  }

  async restore(host: string, dir: string, target: string): Promise<void> {
    await run('restic', ['restore', 'latest', '--quiet', '--host', host, '--path', dir, '--target', target], { env: this.env });
  }

  version(): Promise<string> {
    return run('restic', ['version']).then((v) => v.split(' ').slice(0, 2).join(' '));
  }
}

/** bytes under a folder as the disk holds them (`du -sb`) */
export async function diskBytes(dir: string): Promise<number> {
  if (!existsSync(dir)) return 0;
  return Number((await run('du', ['-sb', dir])).split('\t')[0]);
}

/** this process's reaped children's CPU seconds (user + system), from /proc/self/stat */
export async function childrenCpuSeconds(pid: number | 'self' = 'self'): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): cutime and cstime are fields 16 and 17
  return (Number(fields[13] ?? 0) + Number(fields[14] ?? 0)) / 100;
}

/** a process's own CPU seconds (utime + stime) */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) / 100;
}

/** reset a process's peak RSS (needs Linux ≥ 4.0 and the right to write its clear_refs) */
export async function resetPeakRss(pid: number): Promise<void> {
  await writeFile(`/proc/${pid}/clear_refs`, '5').catch(() => undefined);
}

/** a memory field of a process's /proc status (kB there), in MiB; 0 once it is gone */
async function statusMiB(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Math.round(Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024);
}

/** a process's resident memory now */
export const rssMiB = (pid: number) => statusMiB(pid, 'VmRSS');

/** a process's peak resident memory */
export const peakRssMiB = (pid: number) => statusMiB(pid, 'VmHWM');

/**
 * Agents' CPU seconds and peak RSS over one phase. The kernel's peak (VmHWM) cannot be
 * reset everywhere (clear_refs is refused in some sandboxes), so it would carry one
 * phase's peak into the next: the RSS is also sampled every 20 ms, and a phase's peak is
 * the kernel's when that rose during the phase, else the largest sample.
 */
export class AgentMeter {
  private cpu0 = 0;
  private hwm0: number[] = [];
  private sampled: number[] = [];
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly pids: number[]) {}
  async start(): Promise<void> {
    await Promise.all(this.pids.map(resetPeakRss));
    this.hwm0 = await Promise.all(this.pids.map(peakRssMiB));
    this.sampled = this.pids.map(() => 0);
    this.timer = setInterval(() => {
      this.pids.forEach((pid, i) => void rssMiB(pid).then((m) => (this.sampled[i] = Math.max(this.sampled[i]!, m))));
    }, 20);
    this.cpu0 = await this.cpu();
  }
  private async cpu(): Promise<number> {
    return (await Promise.all(this.pids.map(cpuSeconds))).reduce((a, b) => a + b, 0);
  }
  /** the phase's CPU seconds (all agents), its peak (the largest agent's) and each agent's peak, in order */
  async stop(): Promise<{ cpuS: number; peakMiB: number; peaks: number[] }> {
    clearInterval(this.timer);
    const hwm = await Promise.all(this.pids.map(peakRssMiB));
    const peaks = hwm.map((h, i) => (h > this.hwm0[i]! ? h : this.sampled[i]!));
    return { cpuS: (await this.cpu()) - this.cpu0, peakMiB: Math.max(...peaks), peaks };
  }
}

/** every file under `dir` modified at or after `sinceMs` */
export async function filesChangedSince(dir: string, sinceMs: number): Promise<{ path: string; size: number }[]> {
  const out: { path: string; size: number }[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const path = join(e.parentPath, e.name);
    const st = await stat(path);
    if (st.mtimeMs >= sinceMs) out.push({ path, size: st.size });
  }
  return out;
}

/** what `readWhole`'s reader runs: the paths (JSON) on stdin, each file read whole in 1 MiB reads, the bytes dropped; prints the ms it read for */
const READER = `
const fs = require('node:fs');
const paths = JSON.parse(fs.readFileSync(0, 'utf8'));
const buf = Buffer.allocUnsafe(1 << 20);
const t0 = performance.now();
for (const p of paths) {
  const fd = fs.openSync(p, 'r');
  try { while (fs.readSync(fd, buf, 0, buf.length, null) > 0); } finally { fs.closeSync(fd); }
}
process.stdout.write(String(Math.round(performance.now() - t0)));
`;

/**
 * Read files whole into memory, one after another, 1 MiB reads (as dd with bs=1M), and
 * drop the bytes; the milliseconds that took. One process for all of them, its start not
 * counted: a `dd` a file cost ~4 ms of process start each, and the ~340 small files a 1%
 * change adds made ~1.2 s of a 1.4 s "floor" whose reading took ~0.25 s (cat > /dev/null
 * would splice, never copying the data out of the page cache).
 */
export function readWhole(paths: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['-e', READER], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    c.stdout!.on('data', (d: Buffer) => (out += d.toString('utf8')));
    c.on('error', reject);
    c.on('close', (code) => (code === 0 && /^\d+$/.test(out) ? resolve(Number(out)) : reject(new Error(`the reader exited ${code}`))));
    c.stdin!.end(JSON.stringify(paths));
  });
}
