import { readdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * What lockstep left beside a data directory (names with `.lockstep-`), once there is none
 * or `withinMs` passed: a restore's agents remove the old data in the background after it
 * reports, so it may still be going for a moment.
 */
export async function leftoversBeside(dataDir: string, withinMs = 20_000): Promise<string[]> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const left = (await readdir(dirname(dataDir))).filter((s) => s.includes('.lockstep-'));
    if (left.length === 0 || Date.now() > deadline) return left;
    await sleep(50);
  }
}
