/**
 * The one place that knows the repository layout. Path builders sit beside the
 * parsers of what they point at (see manifest.ts, index-file.ts).
 *
 *   lockstep-repo.json                               repository config (format, id, parameters), plain JSON
 *   chunks/<n0n1>/<name>                              one chunk of a large file; name = sha256 of the
 *                                                     content, or its HMAC when encrypted
 *   packs/<p0p1>/<pack-id>                            blocks in file order and small files, back to back (~4 MiB)
 *   pending/<node>/<component>/<backup-id>/<pack-id>.json
 *                                                     blobs of a pack a backup wrote but has not
 *                                                     indexed yet: the next run reuses them (resume);
 *                                                     older lockstep wrote <component>/<pack-id>.json
 *   backups/<backup-id>/nodes/<node>/<component>.json per-component file index (written by agents)
 *   backups/<backup-id>/nodes/<node>/<component>.parts/NNNNNN.json
 *                                                     the entries of an index too big for one object
 *   backups/<backup-id>/manifest.json                 written last, create-if-absent: the backup exists
 *   backups/<backup-id>/checks/<time>_<status>_<percent>_<rand>.json
 *                                                     what one `backup verify` of it found (checks.ts);
 *                                                     the name alone tells when, the outcome and how much
 *                                                     was read back, so a listing shows every backup's checks
 *   locks/exclusive.json, locks/lease/<lock-id>.json, locks/takeover/<lock-id>    the repository lease (see lock.ts)
 * Every object but the config and the locks is stored through the codec (codec.ts).
 */
export const REPO_CONFIG_KEY = 'lockstep-repo.json';
export const REPO_FORMAT = 2;

export function chunkKey(sha256: string): string {
  return `chunks/${sha256.slice(0, 2)}/${sha256}`;
}

export function packKey(packId: string): string {
  return `packs/${packId.slice(0, 2)}/${packId}`;
}

export function pendingPrefix(node: string, component: string): string {
  return `pending/${node}/${component}/`;
}

export function pendingKey(node: string, component: string, backupId: string, packId: string): string {
  return `${pendingPrefix(node, component)}${backupId}/${packId}.json`;
}

/** the backup that wrote the pending record at `key` under `prefix` (undefined: an older record, which does not say) */
export function pendingBackupOf(prefix: string, key: string): string | undefined {
  const parts = key.slice(prefix.length).split('/');
  return parts.length === 2 ? parts[0] : undefined;
}

/**
 * What the key of a pending record in its backup's own folder (as `pendingKey` makes it)
 * says: whose run wrote it, and the pack it names (`pack` undefined for a name `pendingKey`
 * does not make); undefined for another key (an older record, which says neither).
 */
export function pendingRecordOf(key: string): { node: string; component: string; backupId: string; pack?: string } | undefined {
  const parts = key.split('/');
  if (parts[0] !== 'pending' || parts.length !== 5) return undefined;
  const [, node, component, backupId, name] = parts as [string, string, string, string, string];
  return { node, component, backupId, pack: name.endsWith('.json') ? name.slice(0, -'.json'.length) : undefined };
}

/** whether `key` is a pending record in its backup's own folder (as `pendingKey` makes), which goes with its last record */
export function inPendingBackupFolder(key: string): boolean {
  return pendingRecordOf(key) !== undefined;
}

export function backupPrefix(backupId: string): string {
  return `backups/${backupId}/`;
}

export function manifestKey(backupId: string): string {
  return `backups/${backupId}/manifest.json`;
}

export function indexKey(backupId: string, node: string, component: string): string {
  return `backups/${backupId}/nodes/${node}/${component}.json`;
}

/** the key of part `n` of the index at `indexKey` */
export function indexPartKey(indexKey: string, n: number): string {
  return `${indexKey.replace(/\.json$/, '')}.parts/${String(n).padStart(6, '0')}.json`;
}

export function probeKey(node: string): string {
  return `probes/${node}`;
}

/**
 * Whose index (or part of one) the key under backups/ is, as `indexKey` and `indexPartKey`
 * make them; undefined for any other key (a manifest, a check record).
 */
export function indexOwnerOf(key: string): { backupId: string; node: string; component: string } | undefined {
  const p = key.split('/');
  if (p[0] !== 'backups' || p[2] !== 'nodes') return undefined;
  const [, backupId, , node, name, part] = p as [string, string, string, string, string | undefined, string | undefined];
  if (name === undefined) return undefined;
  if (p.length === 5 && name.endsWith('.json')) return { backupId, node, component: name.slice(0, -'.json'.length) };
  if (p.length === 6 && name.endsWith('.parts') && part !== undefined) return { backupId, node, component: name.slice(0, -'.parts'.length) };
  return undefined;
}

/** backup id from a key under backups/, if it is a manifest */
export function backupIdOfManifestKey(key: string): string | undefined {
  const m = /^backups\/([^/]+)\/manifest\.json$/.exec(key);
  return m?.[1];
}

const CHECK_KEY = /^backups\/([^/]+)\/checks\/(\d{8}T\d{9}Z)_(ok|damaged)_([^_/]+)_[0-9a-f]+\.json$/;

/** what the name of a check record tells */
export interface CheckSummary {
  backupId: string;
  /** ISO time the check ended */
  at: string;
  status: 'ok' | 'damaged';
  /** how much of the data it read back (0: only that every object exists) */
  readDataPercent: number;
}

/** what a check found, where the backup it is of goes without saying (a report of that backup) */
export type CheckOutcome = Omit<CheckSummary, 'backupId'>;

export function outcomeOf(c: CheckSummary): CheckOutcome {
  return { at: c.at, status: c.status, readDataPercent: c.readDataPercent };
}

/** the key of a check record of `c.backupId` */
export function checkKey(c: CheckSummary, rand: string): string {
  const at = c.at.replace(/[-:]/g, '').replace('.', '');
  return `backups/${c.backupId}/checks/${at}_${c.status}_${c.readDataPercent}_${rand}.json`;
}

export function checksPrefix(backupId: string): string {
  return `backups/${backupId}/checks/`;
}

/** what the key of a check record tells, if `key` is one */
export function checkOfKey(key: string): CheckSummary | undefined {
  const m = CHECK_KEY.exec(key);
  if (!m) return undefined;
  const t = m[2]!;
  const percent = Number(m[4]);
  if (!(percent >= 0 && percent <= 100)) return undefined;
  const at = `${t.slice(0, 4)}-${t.slice(4, 6)}-${t.slice(6, 8)}T${t.slice(9, 11)}:${t.slice(11, 13)}:${t.slice(13, 15)}.${t.slice(15, 18)}Z`;
  if (Number.isNaN(Date.parse(at))) return undefined;
  return { backupId: m[1]!, at, status: m[3] as 'ok' | 'damaged', readDataPercent: percent };
}
