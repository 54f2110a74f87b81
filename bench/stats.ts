/** What every benchmark shares: its options, medians and spreads, and where results go. */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { projectRoot } from '../demo/local-cluster.js';

/** `--name value` from the command line, or the default */
export function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

/** the middle value; of an even count the mean of the two middle ones (rounded when they are whole), not the larger */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  if (s.length % 2 === 1) return s[mid]!;
  const m = (s[mid - 1]! + s[mid]!) / 2;
  return Number.isInteger(s[mid - 1]) && Number.isInteger(s[mid]) ? Math.round(m) : m;
}
export const spread = (xs: number[]) => `${Math.min(...xs)}–${Math.max(...xs)}`;

/** bench/results/<name>.json */
export async function writeResults(name: string, data: unknown): Promise<void> {
  const out = join(projectRoot(), 'bench', 'results');
  await mkdir(out, { recursive: true });
  await writeFile(join(out, `${name}.json`), JSON.stringify({ at: new Date().toISOString(), ...(data as object) }, null, 2));
}

/** run a benchmark's main, printing a failure without a stack */
export function runBench(main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
