/** The CLI's exit codes. Stable: scripts and timers depend on them (README "Exit codes"). */
export const EXIT = {
  /** the command did what it was asked: backup complete, restore done, listing printed */
  OK: 0,
  /** the operation ran and failed (nothing usable was backed up; a restore failed and was rolled back) */
  FAILED: 1,
  /** bad command line or config file: nothing was contacted */
  USAGE: 2,
  /** backup taken but at least one shard is missing: kept, restorable only with --allow-partial */
  PARTIAL: 3,
  /** refused before anything changed: preflight failed, topology differs, backup partial or corrupt */
  REFUSED: 4,
  /** a restore failed and its rollback failed too: a person must act (the report says what) */
  NEEDS_ATTENTION: 5,
  /** verify found a backup damaged: objects missing or not matching their hashes (the report names each); list found a damaged manifest, or a backup its last check found damaged */
  DAMAGED: 6,
  /** interrupted by SIGINT/SIGTERM; everything was thawed, started again and cleaned up */
  INTERRUPTED: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

const USAGE_CODES = new Set(['LOCKSTEP_E_USAGE', 'LOCKSTEP_E_CONFIG_INVALID', 'LOCKSTEP_E_CONFIG_UNREADABLE', 'LOCKSTEP_E_CERT_INVALID']);
const REFUSED_CODES = new Set([
  'LOCKSTEP_E_PREFLIGHT_FAILED',
  'LOCKSTEP_E_TOPOLOGY_MISMATCH',
  'LOCKSTEP_E_PLAN_UNSUPPORTED',
  'LOCKSTEP_E_BACKUP_PARTIAL',
  'LOCKSTEP_E_BACKUP_NOT_FOUND',
  'LOCKSTEP_E_BACKUP_EXISTS',
  'LOCKSTEP_E_REPO_NOT_INITIALIZED',
  'LOCKSTEP_E_REPO_EXISTS',
  'LOCKSTEP_E_CA_EXISTS',
  'LOCKSTEP_E_CA_MISSING',
  'LOCKSTEP_E_AGENT_UNREACHABLE',
  'LOCKSTEP_E_AGENT_TLS_REFUSED',
  'LOCKSTEP_E_AGENT_IDENTITY',
  'LOCKSTEP_E_REPO_LOCKED',
  'LOCKSTEP_E_REPO_NO_ATOMIC_CREATE',
  'LOCKSTEP_E_REPO_KEY_MISSING',
  'LOCKSTEP_E_REPO_KEY_WRONG',
]);

/** Exit code for an error that ended a command before it produced a report. */
export function exitCodeForError(code: string): ExitCode {
  if (USAGE_CODES.has(code)) return EXIT.USAGE;
  if (REFUSED_CODES.has(code)) return EXIT.REFUSED;
  if (code === 'LOCKSTEP_E_CANCELLED') return EXIT.INTERRUPTED;
  if (code === 'LOCKSTEP_E_ROLLBACK_FAILED') return EXIT.NEEDS_ATTENTION;
  return EXIT.FAILED;
}
