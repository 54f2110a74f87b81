/** What of a file the kernel holds in its page cache: how tests see that a write went to the disk direct. */
import { execFileSync } from 'node:child_process';

/** bytes of `file` in the page cache (util-linux's fincore) */
export const cachedBytes = (file: string): number =>
  Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file], { encoding: 'utf8' }).trim());
