/**
 * The cluster CA and the certificates it issues, made in-process (EC P-256).
 * A certificate's subject carries lockstep's identity: `CN=<name>, OU=<role>, O=lockstep`.
 * Agents get serverAuth only, coordinators clientAuth only, so TLS itself refuses a
 * certificate used in the wrong role before our own role check runs.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { LockstepError } from '../errors.js';
import type { Role } from './identity.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type KeyPair = webcrypto.CryptoKeyPair;

export { roles, describeCertificate, parseSubject, type CertInfo, type Role } from './identity.js';

const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;

export interface Pem {
  cert: string;
  key: string;
}

export interface IssueOptions {
  role: Role;
  name: string;
  hosts?: string[];
  notBefore?: Date;
  notAfter?: Date;
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f; // positive
  return b.toString('hex');
}

async function exportKey(key: webcrypto.CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode([{ type: 'PRIVATE KEY', rawData: der }]);
}

async function newKeys(): Promise<KeyPair> {
  return (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as KeyPair;
}

/** A name that is safe in a subject and a file name. */
export function checkName(name: string, what: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name)) {
    throw new LockstepError('LOCKSTEP_E_CERT_INVALID', `${what} "${name}" is not a valid name`, {
      hint: 'use 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit',
    });
  }
}

export async function createCa(clusterName: string, days = 3650): Promise<Pem> {
  checkName(clusterName, 'cluster name');
  const keys = await newKeys();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=lockstep CA ${clusterName}, O=lockstep`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + days * DAY_MS),
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: cert.toString('pem'), key: await exportKey(keys.privateKey) };
}

export async function issueCertificate(ca: Pem, opts: IssueOptions): Promise<Pem> {
  checkName(opts.name, `${opts.role} name`);
  const caCert = new x509.X509Certificate(ca.cert);
  const caKey = await webcrypto.subtle.importKey(
    'pkcs8',
    x509.PemConverter.decodeFirst(ca.key),
    alg,
    false,
    ['sign'],
  );
  const keys = await newKeys();
  const now = Date.now();
  const hosts = opts.hosts ?? [];
  const sans = hosts.map((h) => (isIP(h) ? { type: 'ip' as const, value: h } : { type: 'dns' as const, value: h }));
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
    new x509.ExtendedKeyUsageExtension(
      [opts.role === 'agent' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth],
      false,
    ),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(caCert),
  ];
  if (sans.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(sans));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${opts.name}, OU=${opts.role}, O=lockstep`,
    issuer: caCert.subject,
    notBefore: opts.notBefore ?? new Date(now - 60_000),
    notAfter: opts.notAfter ?? new Date(now + 825 * DAY_MS),
    signingAlgorithm: alg,
    publicKey: keys.publicKey,
    signingKey: caKey as unknown as x509.X509CertificateCreateWithKeyParams['signingKey'],
    extensions,
  });
  return { cert: cert.toString('pem'), key: await exportKey(keys.privateKey) };
}
