/**
 * Certificates for an engine started by the tests that serves its clients over TLS and asks
 * them for a certificate: a CA of its own, a server certificate (for 127.0.0.1 unless told) and a client
 * certificate (the agent's, and the engine's own where it connects to its peers as a client).
 */
import { join } from 'node:path';
import { createCa, issueCertificate } from '../lib/tls/certs.js';
import { writePem } from '../lib/tls/files.js';
import type { ClientTlsFiles } from '../lib/client-tls.js';

export interface EngineTestTls {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

/** the files, written under `dir`; `engine` names the CA; `hosts`: the names the server's certificate holds */
export async function engineTestTls(dir: string, engine: string, hosts = ['127.0.0.1']): Promise<EngineTestTls> {
  const ca = await createCa(engine);
  const tls: EngineTestTls = {
    ca: join(dir, 'ca.crt'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.crt'),
    clientKey: join(dir, 'client.key'),
  };
  await writePem({ cert: tls.ca, key: join(dir, 'ca.key') }, ca);
  // the roles' key usages: serverAuth for the server, clientAuth for the client
  await writePem({ cert: tls.serverCert, key: tls.serverKey }, await issueCertificate(ca, { role: 'agent', name: engine, hosts }));
  await writePem({ cert: tls.clientCert, key: tls.clientKey }, await issueCertificate(ca, { role: 'coordinator', name: 'lockstep' }));
  return tls;
}

/** a component's `tls` settings for these files: the agent is the client */
export function clientTls(t: EngineTestTls): ClientTlsFiles {
  return { ca: t.ca, cert: t.clientCert, key: t.clientKey };
}
