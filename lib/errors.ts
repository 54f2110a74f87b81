/**
 * The one error type that crosses every boundary in lockstep. Each carries a stable
 * code (documented in the README), a message a person can act on, the node it came
 * from, and an optional hint. Codes are declared per side in `errors.ts` files; this
 * file holds the ones both sides raise.
 */
export const libErrorCodes = [
  'LOCKSTEP_E_CONFIG_INVALID',
  'LOCKSTEP_E_CONFIG_UNREADABLE',
  'LOCKSTEP_E_CERT_INVALID',
  'LOCKSTEP_E_REPO_NOT_INITIALIZED',
  'LOCKSTEP_E_REPO_EXISTS',
  'LOCKSTEP_E_REPO_MISMATCH',
  'LOCKSTEP_E_REPO_UNREADABLE',
  'LOCKSTEP_E_REPO_WRITE_FAILED',
  'LOCKSTEP_E_REPO_CORRUPT',
  'LOCKSTEP_E_REPO_KEY_MISSING',
  'LOCKSTEP_E_REPO_KEY_WRONG',
  'LOCKSTEP_E_REPO_LOCKED',
  'LOCKSTEP_E_REPO_LOCK_LOST',
  'LOCKSTEP_E_REPO_NO_ATOMIC_CREATE',
  'LOCKSTEP_E_BACKUP_NOT_FOUND',
  'LOCKSTEP_E_BACKUP_EXISTS',
  'LOCKSTEP_E_OBJECT_NOT_FOUND',
  'LOCKSTEP_E_COMMAND_FAILED',
  'LOCKSTEP_E_ENGINE',
  'LOCKSTEP_E_TIMEOUT',
  'LOCKSTEP_E_CANCELLED',
  'LOCKSTEP_E_INTERNAL',
] as const;

export interface ErrorInfo {
  code: string;
  message: string;
  node?: string;
  hint?: string;
  details?: unknown;
}

export interface LockstepErrorOptions {
  node?: string;
  hint?: string;
  cause?: unknown;
  details?: unknown;
}

export class LockstepError extends Error {
  readonly code: string;
  readonly node?: string;
  readonly hint?: string;
  readonly details?: unknown;

  constructor(code: string, message: string, opts: LockstepErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'LockstepError';
    this.code = code;
    this.node = opts.node;
    this.hint = opts.hint;
    this.details = opts.details;
  }

  toJSON(): ErrorInfo {
    return stripUndefined({
      code: this.code,
      message: this.message,
      node: this.node,
      hint: this.hint,
      details: this.details,
    });
  }

  static fromInfo(info: ErrorInfo): LockstepError {
    return new LockstepError(info.code, info.message, info);
  }
}

/** Any thrown value as wire-safe error info; unknown errors keep their message only. */
export function toErrorInfo(err: unknown, fallbackCode = 'LOCKSTEP_E_INTERNAL', node?: string): ErrorInfo {
  if (err instanceof LockstepError) {
    const info = err.toJSON();
    return node && !info.node ? { ...info, node } : info;
  }
  const message = err instanceof Error ? err.message : String(err);
  return stripUndefined({ code: fallbackCode, message, node });
}

/** Node's system errors carry a `code` such as ENOENT; this reads it without `any`. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

export function stripUndefined<T extends object>(obj: T): T {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as T;
}
