/** The `redis` plugin's settings of a component in agent.yaml. */
import { Type, type Static } from '@sinclair/typebox';
import { Argv } from '../../../lib/schema.js';
import { ClientTls } from '../../../lib/client-tls.js';

export const RedisSettingsSchema = Type.Object(
  {
    host: Type.String({ minLength: 1, default: '127.0.0.1' }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    /**
     * the server's `tls-port` is `port` (files on the node, relative to agent.yaml): the CA
     * that signed the server's certificate, and the client certificate and key when the
     * server asks for one (`tls-auth-clients`, on by default)
     */
    tls: Type.Optional(ClientTls),
    /** name of an environment variable of the agent that holds the password (never in a request) */
    passwordEnv: Type.Optional(Type.String({ minLength: 1 })),
    /** the server's `dir` (where dump.rdb and nodes.conf live); checked against CONFIG GET dir */
    dir: Type.String({ minLength: 1 }),
    /** the server's config file: captured with every snapshot, not restored */
    configFile: Type.String({ minLength: 1 }),
    /** argv that starts the server after a restore (e.g. systemctl start redis-server@7001) */
    start: Argv,
    /** argv that stops it; default SHUTDOWN NOSAVE through the client */
    stop: Type.Optional(Argv),
    startTimeoutMs: Type.Integer({ minimum: 100, default: 60_000 }),
    healthTimeoutMs: Type.Integer({ minimum: 100, default: 60_000 }),
    /** how long a background save may take */
    saveTimeoutMs: Type.Integer({ minimum: 1000, default: 3_600_000 }),
    /** how long a replica may take to catch up with its frozen master */
    catchUpTimeoutMs: Type.Integer({ minimum: 100, default: 10_000 }),
  },
  { additionalProperties: false },
);

export type RedisSettings = Static<typeof RedisSettingsSchema>;
