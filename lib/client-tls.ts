/**
 * How an agent reaches an engine that serves its clients over TLS (etcd's
 * `--client-cert-auth`, Redis's `tls-port`): files on the node, relative to agent.yaml
 * (agent/config.ts resolves them), read when a connection is made, so a renewed
 * certificate is used without a restart.
 */
import { readFileSync } from 'node:fs';
import { Type, type Static } from '@sinclair/typebox';
import type { ConfigProblem } from './config.js';
import { LockstepError } from './errors.js';

export const ClientTls = Type.Object(
  {
    /** the CA that signed the server's certificate */
    ca: Type.String({ minLength: 1 }),
    /** the client certificate and its key, when the server asks for one */
    cert: Type.Optional(Type.String({ minLength: 1 })),
    key: Type.Optional(Type.String({ minLength: 1 })),
    /**
     * the name the server's certificate holds, when it is not the host connected to (a
     * Redis replica's master is reached at the address CLUSTER NODES gives, where
     * certificates often name hosts by DNS only); sent as SNI too
     */
    serverName: Type.Optional(Type.String({ minLength: 1, maxLength: 253 })),
  },
  { additionalProperties: false },
);

export type ClientTlsFiles = Static<typeof ClientTls>;

/** a certificate goes with its key (paths relative to the component) */
export function clientTlsProblems(tls: ClientTlsFiles | undefined): ConfigProblem[] {
  if (!tls) return [];
  const problems: ConfigProblem[] = [];
  if (tls.cert && !tls.key) problems.push({ path: 'tls.key', message: 'is missing: tls.cert needs the key of that certificate' });
  if (tls.key && !tls.cert) problems.push({ path: 'tls.cert', message: 'is missing: tls.key needs the certificate it belongs to' });
  return problems;
}

/** the files' contents (and the name to check), for Node's TLS; `what` names the component in an error */
export function readClientTls(tls: ClientTlsFiles, what: string, node: string): { ca: Buffer; cert?: Buffer; key?: Buffer; servername?: string } {
  const read = (name: 'ca' | 'cert' | 'key', file: string) => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new LockstepError('LOCKSTEP_E_CONFIG_INVALID', `tls.${name} of ${what}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { node });
    }
  };
  return { ca: read('ca', tls.ca), ...(tls.cert ? { cert: read('cert', tls.cert) } : {}), ...(tls.key ? { key: read('key', tls.key) } : {}), ...(tls.serverName ? { servername: tls.serverName } : {}) };
}
