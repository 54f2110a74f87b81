/** Reading and writing certificate material on disk. Private keys are always 0600. */
import { readFile, writeFile, mkdir, access, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { LockstepError, errnoCode } from '../errors.js';
import type { Pem, Role } from './certs.js';

export interface TlsFiles {
  ca: string;
  cert: string;
  key: string;
}

export interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export async function readTlsMaterial(files: TlsFiles, where: string): Promise<TlsMaterial> {
  const read = async (field: keyof TlsFiles): Promise<Buffer> => {
    try {
      return await readFile(files[field]);
    } catch (err) {
      throw new LockstepError('LOCKSTEP_E_CERT_INVALID', `${where}.tls.${field}: cannot read ${files[field]} (${errnoCode(err) ?? String(err)})`, {
        cause: err,
        hint: 'issue certificates with "lockstep ca issue"',
      });
    }
  };
  return { ca: await read('ca'), cert: await read('cert'), key: await read('key') };
}

export function caPaths(dir: string): { cert: string; key: string } {
  return { cert: join(dir, 'ca.crt'), key: join(dir, 'ca.key') };
}

export function issuedPaths(dir: string, role: Role, name: string): { cert: string; key: string } {
  return { cert: join(dir, `${role}-${name}.crt`), key: join(dir, `${role}-${name}.key`) };
}

export async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Write a cert/key pair; refuses to replace existing files unless `force`. */
export async function writePem(paths: { cert: string; key: string }, pem: Pem, force = false): Promise<void> {
  for (const p of [paths.cert, paths.key]) {
    if (!force && (await exists(p))) {
      throw new LockstepError('LOCKSTEP_E_CERT_INVALID', `${p} already exists; not replacing it`, {
        hint: 'pass --force to replace it (certificate rotation)',
      });
    }
  }
  await mkdir(join(paths.cert, '..'), { recursive: true });
  await writeFile(paths.key, pem.key, { mode: 0o600 });
  await chmod(paths.key, 0o600);
  await writeFile(paths.cert, pem.cert, { mode: 0o644 });
}
