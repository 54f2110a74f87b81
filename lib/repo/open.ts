/**
 * Opening the repository a config names: the driver settings, plus the settings that
 * belong to the repository itself (`encryption`: where its key is; `compression` at
 * init). The key never appears in a config file, only where to find it.
 */
import { readFile } from 'node:fs/promises';
import { Type } from '@sinclair/typebox';
import { LockstepError, errnoCode } from '../errors.js';
import { checkSchema, resolvePath, type ConfigProblem } from '../config.js';
import { Repository, type InitOptions } from './repository.js';
import type { StorageDriver } from '../../plugins/storage/types.js';

export const RepoEncryptionSchema = Type.Object(
  {
    /** a file holding the secret (at least 16 bytes; trailing newline ignored) */
    keyFile: Type.Optional(Type.String({ minLength: 1 })),
    /** an environment variable holding the secret */
    keyEnv: Type.Optional(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' })),
  },
  { additionalProperties: false },
);

export const REPO_OWN_SETTINGS = ['encryption', 'compression', 'chunkSize'] as const;

export function checkRepoOwnSettings(settings: Record<string, unknown>, prefix: string): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const enc = settings.encryption;
  if (enc !== undefined) {
    problems.push(...checkSchema(RepoEncryptionSchema, enc, `${prefix}.encryption`));
    const e = enc as { keyFile?: string; keyEnv?: string };
    if (problems.length === 0 && (e.keyFile === undefined) === (e.keyEnv === undefined)) {
      problems.push({ path: `${prefix}.encryption`, message: 'give exactly one of keyFile or keyEnv' });
    }
  }
  const c = settings.compression;
  if (c !== undefined && c !== 'lz4' && c !== 'none') problems.push({ path: `${prefix}.compression`, message: 'must be "lz4" or "none"' });
  const size = settings.chunkSize;
  if (size !== undefined && !(Number.isInteger(size) && (size as number) >= 32768 && (size as number) <= 64 * 1024 * 1024 && ((size as number) & ((size as number) - 1)) === 0)) {
    problems.push({ path: `${prefix}.chunkSize`, message: 'must be a power of two from 32768 (32 KiB) to 67108864 (64 MiB)' });
  }
  return problems;
}

const MIN_SECRET = 16;

/** The encryption secret the settings point at; undefined when the repository is not encrypted. */
export async function readSecret(settings: Record<string, unknown>, baseDir: string, node?: string): Promise<Buffer | undefined> {
  const enc = settings.encryption as { keyFile?: string; keyEnv?: string } | undefined;
  if (!enc) return undefined;
  let secret: Buffer;
  let where: string;
  if (enc.keyFile) {
    where = resolvePath(baseDir, enc.keyFile);
    try {
      secret = await readFile(where);
    } catch (err) {
      throw new LockstepError('LOCKSTEP_E_REPO_KEY_MISSING', `cannot read the repository key file ${where} (${errnoCode(err) ?? String(err)})`, {
        node,
        cause: err,
        hint: 'repository.encryption.keyFile must name a readable file holding the key',
      });
    }
    // a key written with echo ends in a newline that is not part of it
    while (secret.length > 0 && (secret[secret.length - 1] === 0x0a || secret[secret.length - 1] === 0x0d)) secret = secret.subarray(0, -1);
  } else {
    where = `environment variable ${enc.keyEnv}`;
    const v = process.env[enc.keyEnv!];
    if (v === undefined || v === '') {
      throw new LockstepError('LOCKSTEP_E_REPO_KEY_MISSING', `the repository key is to come from ${where}, which is not set`, { node });
    }
    secret = Buffer.from(v, 'utf8');
  }
  if (secret.length < MIN_SECRET) {
    throw new LockstepError('LOCKSTEP_E_REPO_KEY_MISSING', `the repository key in ${where} is shorter than ${MIN_SECRET} bytes`, {
      node,
      hint: 'make one with: head -c 32 /dev/urandom | base64 > repo.key',
    });
  }
  return secret;
}

/** the settings without the repository's own ones: what the storage driver gets */
export function driverSettings<T extends Record<string, unknown>>(settings: T): T {
  const out: Record<string, unknown> = { ...settings };
  for (const k of REPO_OWN_SETTINGS) delete out[k];
  return out as T;
}

export async function openRepository(driver: StorageDriver, settings: Record<string, unknown>, baseDir: string, node?: string): Promise<Repository> {
  return Repository.open(driver, { node, secret: await readSecret(settings, baseDir, node) });
}

export async function initRepository(driver: StorageDriver, settings: Record<string, unknown>, baseDir: string, opts: Omit<InitOptions, 'secret'> = {}): Promise<Repository> {
  return Repository.init(driver, {
    ...opts,
    compression: opts.compression ?? (settings.compression as InitOptions['compression']),
    chunkSize: opts.chunkSize ?? (settings.chunkSize as number | undefined),
    secret: await readSecret(settings, baseDir),
  });
}
