/** The `etcd` plugin's settings of a component in agent.yaml. */
import { Type, type Static } from '@sinclair/typebox';
import { Argv } from '../../../lib/schema.js';
import type { ConfigProblem } from '../../../lib/config.js';
import { ClientTls, clientTlsProblems } from '../../../lib/client-tls.js';

export const EtcdSettingsSchema = Type.Object(
  {
    /** the member's --name */
    member: Type.String({ minLength: 1 }),
    /** client URL the agent talks to, e.g. http://127.0.0.1:2379 (https://… with `tls`) */
    endpoint: Type.String({ minLength: 1 }),
    /**
     * client TLS of an https:// endpoint (files on the node, relative to agent.yaml): the CA
     * that signed the member's certificate (`--trusted-ca-file`), and the client certificate
     * and key when the member asks for one (`--client-cert-auth`)
     */
    tls: Type.Optional(ClientTls),
    /**
     * etcd's own authentication (`etcdctl auth enable`): the user the agent acts as (one
     * with the root role: a snapshot is a maintenance call), and the name of an environment
     * variable of the agent that holds its password (never on a command line, never in a
     * request)
     */
    auth: Type.Optional(Type.Object({ user: Type.String({ minLength: 1, pattern: '^[^:]+$' }), passwordEnv: Type.String({ minLength: 1 }) }, { additionalProperties: false })),
    /** the member's advertised peer URL, used to rebuild membership on restore */
    peerUrl: Type.String({ minLength: 1 }),
    /** the member's --data-dir */
    dataDir: Type.String({ minLength: 1 }),
    /** argv that starts the member (with the same flags as always; a restored data dir brings its membership) */
    start: Argv,
    stop: Argv,
    etcdctl: Type.String({ minLength: 1, default: 'etcdctl' }),
    startTimeoutMs: Type.Integer({ minimum: 100, default: 60_000 }),
    healthTimeoutMs: Type.Integer({ minimum: 100, default: 60_000 }),
    snapshotTimeoutMs: Type.Integer({ minimum: 1000, default: 3_600_000 }),
  },
  { additionalProperties: false },
);

export type EtcdSettings = Static<typeof EtcdSettingsSchema>;

/** what the schema cannot say: a certificate goes with its key, TLS with an https endpoint */
export function checkEtcdSettings(s: EtcdSettings): ConfigProblem[] {
  const problems = clientTlsProblems(s.tls);
  if (s.tls && !s.endpoint.startsWith('https://')) problems.push({ path: 'endpoint', message: `"${s.endpoint}" is not an https:// URL, but tls is set` });
  // etcdctl checks the certificate against the endpoint's host and has no flag to name another
  if (s.tls?.serverName) problems.push({ path: 'tls.serverName', message: 'is not supported for etcd: give the endpoint by the name its certificate holds' });
  return problems;
}
