/**
 * `changes.json`, beside a snapshot's sets: the snapshot was made by bringing the copy
 * kept from backup `basedOn` up to date, and these are the files it changed (byte ranges
 * patched in place, or 'all' for a file written anew). Every other file of those sets is
 * byte for byte the file that backup's upload read. The upload trusts it only when its
 * own previous backup of the component is `basedOn`: then an untouched file is not read
 * at all and a patched one only where it was patched.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mergeRanges, type Changed, type Ranges } from './tree.js';

export const CHANGES_FILE = 'changes.json';

export interface SnapshotChanges {
  basedOn: string;
  /** set → path in the set → what changed; a set not here is not known to be unchanged */
  sets: Map<string, Changed>;
}

/** on disk: { basedOn, sets: { set: [[path, ranges | 'all'], ...] } } */
export async function writeChanges(snapshotDir: string, basedOn: string, sets: Record<string, Changed>): Promise<void> {
  const doc = { basedOn, sets: Object.fromEntries(Object.entries(sets).map(([set, c]) => [set, [...c]])) };
  await writeFile(join(snapshotDir, CHANGES_FILE), JSON.stringify(doc), { mode: 0o600 });
}

const isRanges = (r: unknown): r is Ranges =>
  Array.isArray(r) && r.every((x) => Array.isArray(x) && x.length === 2 && Number.isSafeInteger(x[0]) && Number.isSafeInteger(x[1]) && x[0] <= x[1]);

/** The snapshot's changes, if it recorded them (anything unreadable counts as not recorded: everything is read). */
export async function readChanges(snapshotDir: string): Promise<SnapshotChanges | undefined> {
  try {
    const doc = JSON.parse(await readFile(join(snapshotDir, CHANGES_FILE), 'utf8')) as { basedOn?: unknown; sets?: Record<string, unknown> };
    if (typeof doc.basedOn !== 'string' || typeof doc.sets !== 'object' || doc.sets === null) return undefined;
    const sets = new Map<string, Changed>();
    for (const [set, files] of Object.entries(doc.sets)) {
      if (!Array.isArray(files)) return undefined;
      const changed: Changed = new Map();
      for (const f of files as unknown[]) {
        if (!Array.isArray(f) || typeof f[0] !== 'string' || (f[1] !== 'all' && !isRanges(f[1]))) return undefined;
        // sorted and joined, whoever wrote it
        changed.set(f[0], f[1] === 'all' ? 'all' : mergeRanges(f[1] as Ranges, []));
      }
      sets.set(set, changed);
    }
    return { basedOn: doc.basedOn, sets };
  } catch {
    return undefined;
  }
}
