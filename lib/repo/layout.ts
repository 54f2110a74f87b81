/**
 * The one place that knows the repository layout. Path builders sit beside the
 * parsers of what they point at (see manifest.ts, index-file.ts).
 *
 *   lockstep-repo.json                               repository config (format, id, parameters)
 *   chunks/<h0h1>/<sha256>                            content-addressed file data
 *   backups/<backup-id>/nodes/<node>/<component>.json per-component file index (written by agents)
 *   backups/<backup-id>/manifest.json                 written last, create-if-absent: the backup exists
 */
export const REPO_CONFIG_KEY = 'lockstep-repo.json';
export const REPO_FORMAT = 1;

export function chunkKey(sha256: string): string {
  return `chunks/${sha256.slice(0, 2)}/${sha256}`;
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

export function probeKey(node: string): string {
  return `probes/${node}`;
}

/** backup id from a key under backups/, if it is a manifest */
export function backupIdOfManifestKey(key: string): string | undefined {
  const m = /^backups\/([^/]+)\/manifest\.json$/.exec(key);
  return m?.[1];
}
