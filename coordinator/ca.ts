/** `lockstep ca …`: the cluster CA and its certificates, made in-process. */
import { readFile } from 'node:fs/promises';
import { LockstepError, errnoCode } from '../lib/errors.js';
import { createCa, describeCertificate, issueCertificate, type CertInfo, type Role } from '../lib/tls/certs.js';
import { caPaths, exists, issuedPaths, writePem } from '../lib/tls/files.js';

export async function caInit(dir: string, cluster: string, days: number): Promise<{ cert: string; key: string }> {
  const paths = caPaths(dir);
  if ((await exists(paths.cert)) || (await exists(paths.key))) {
    throw new LockstepError('LOCKSTEP_E_CA_EXISTS', `a CA already exists in ${dir}; not replacing it`, {
      hint: 'a new CA would orphan every certificate it issued; use another --dir if you really want a second CA',
    });
  }
  await writePem(paths, await createCa(cluster, days));
  return paths;
}

async function readCa(dir: string): Promise<{ cert: string; key: string }> {
  const paths = caPaths(dir);
  try {
    return { cert: await readFile(paths.cert, 'utf8'), key: await readFile(paths.key, 'utf8') };
  } catch (err) {
    throw new LockstepError('LOCKSTEP_E_CA_MISSING', `no CA in ${dir} (${errnoCode(err) ?? String(err)})`, {
      hint: 'create one with "lockstep ca init --dir DIR", or point --dir at it',
    });
  }
}

export interface IssueArgs {
  dir: string;
  out: string;
  role: Role;
  name: string;
  hosts: string[];
  days: number;
  force: boolean;
}

export async function caIssue(a: IssueArgs): Promise<{ cert: string; key: string }> {
  if (a.role === 'agent' && a.hosts.length === 0) {
    throw new LockstepError('LOCKSTEP_E_USAGE', 'an agent certificate needs at least one --host (the name or IP the coordinator dials)');
  }
  const ca = await readCa(a.dir);
  const pem = await issueCertificate(ca, { role: a.role, name: a.name, hosts: a.hosts, notAfter: new Date(Date.now() + a.days * 86_400_000) });
  const paths = issuedPaths(a.out, a.role, a.name);
  await writePem(paths, pem, a.force);
  return paths;
}

export async function caShow(file: string): Promise<CertInfo> {
  let pem: Buffer;
  try {
    pem = await readFile(file);
  } catch (err) {
    throw new LockstepError('LOCKSTEP_E_USAGE', `cannot read ${file} (${errnoCode(err) ?? String(err)})`);
  }
  try {
    return describeCertificate(pem);
  } catch {
    throw new LockstepError('LOCKSTEP_E_CERT_INVALID', `${file} is not a PEM certificate`);
  }
}

export function renderCertInfo(file: string, i: CertInfo): string {
  return [
    `${file}`,
    `  role:      ${i.isCa ? 'CA' : (i.role ?? '(none: not a lockstep certificate)')}`,
    `  name:      ${i.name ?? '-'}`,
    `  hosts:     ${i.hosts.length ? i.hosts.join(', ') : '-'}`,
    `  issuer:    ${i.issuer}`,
    `  valid:     ${i.notBefore} → ${i.notAfter}${i.expired ? '  (EXPIRED)' : ''}`,
    `  sha256:    ${i.fingerprint256}`,
  ].join('\n');
}
