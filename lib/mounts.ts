/**
 * Whether a directory is a mount point. A restore moves the live data aside and the
 * restored data into place by renaming directories, and the kernel refuses to rename a
 * mount point (EBUSY): a restore onto one stages inside it and moves its entries instead
 * (agent/jobs/swap.ts), which staging decides before anything is written.
 */
import { readFile, realpath, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

/** a path in /proc/self/mountinfo: space, tab, newline and backslash are octal escapes */
const unescapeMountPath = (p: string) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/**
 * `path` (or what it resolves to) is mounted on: its own filesystem, or a bind mount of
 * the same one. False when it does not exist (nothing to move aside).
 */
export async function isMountPoint(path: string): Promise<boolean> {
  const real = await realpath(path).catch(() => undefined);
  if (!real) return false;
  const info = await readFile('/proc/self/mountinfo', 'utf8').catch(() => undefined);
  // field 5 is the mount point
  if (info !== undefined) return info.split('\n').some((line) => unescapeMountPath(line.split(' ')[4] ?? '') === real);
  // no /proc: another filesystem than its parent's (a bind mount of the same one goes unseen)
  const [self, parent] = await Promise.all([stat(real), stat(dirname(real))]);
  return self.dev !== parent.dev;
}
