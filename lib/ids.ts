/** Backup and restore ids: they sort by time and carry the name, e.g. 20261122-101307-nightly. */
import { randomBytes } from 'node:crypto';

export const BACKUP_NAME_RE = /^[a-z0-9][a-z0-9_-]{0,39}$/;
export const BACKUP_ID_RE = /^\d{8}-\d{6}-[a-z0-9][a-z0-9_-]{0,39}$/;
/** what `newRestoreId` makes */
export const RESTORE_ID_RE = /^r\d{8}-\d{6}-[0-9a-f]{6}$/;

function stamp(d: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}-${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
}

export function newBackupId(name: string, at = new Date()): string {
  return `${stamp(at)}-${name}`;
}

export function newRestoreId(at = new Date()): string {
  return `r${stamp(at)}-${randomBytes(3).toString('hex')}`;
}

export function newJobId(): string {
  return `j${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}
