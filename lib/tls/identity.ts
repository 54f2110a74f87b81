/**
 * Who a certificate says it is: lockstep's identity (`CN=<name>, OU=<role>`) read with
 * Node's own X509Certificate. Kept apart from issuing (certs.ts), whose library the
 * agent and the coordinator's everyday commands never need to load.
 */
import { X509Certificate } from 'node:crypto';
import { LockstepError } from '../errors.js';

export const roles = ['agent', 'coordinator'] as const;
export type Role = (typeof roles)[number];

export interface CertInfo {
  role?: Role;
  name?: string;
  hosts: string[];
  issuer: string;
  notBefore: string;
  notAfter: string;
  expired: boolean;
  fingerprint256: string;
  isCa: boolean;
}

/** Read lockstep's identity fields out of a subject string such as "CN=n1\nOU=agent\nO=lockstep". */
export function parseSubject(subject: string): { name?: string; role?: Role } {
  const fields = new Map<string, string>();
  for (const line of subject.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) fields.set(line.slice(0, i), line.slice(i + 1));
  }
  const ou = fields.get('OU');
  return {
    name: fields.get('CN'),
    role: (roles as readonly string[]).includes(ou ?? '') ? (ou as Role) : undefined,
  };
}

export function describeCertificate(pem: string | Buffer): CertInfo {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (err) {
    throw new LockstepError('LOCKSTEP_E_CERT_INVALID', 'not a PEM certificate', { cause: err });
  }
  const { name, role } = parseSubject(cert.subject);
  const hosts = (cert.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.length > 0)
    .map((s) => s.replace(/^(DNS|IP Address):/, ''));
  return {
    role,
    name,
    hosts,
    issuer: cert.issuer.replace(/\n/g, ', '),
    notBefore: new Date(cert.validFrom).toISOString(),
    notAfter: new Date(cert.validTo).toISOString(),
    expired: new Date(cert.validTo).getTime() < Date.now(),
    fingerprint256: cert.fingerprint256,
    isCa: cert.ca,
  };
}
