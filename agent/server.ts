/**
 * The agent's HTTPS server. Mutual TLS: a client must present a certificate of the
 * cluster CA (TLS refuses anything else), and this hook admits only the coordinator
 * role. Every route has a JSON schema; every error answers with a stable code.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { LockstepError, toErrorInfo } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { TlsMaterial } from '../lib/tls/files.js';
import { registerRoutes } from './routes.js';
import type { AgentNode } from './node.js';
import type { JobRunner } from './jobs/runner.js';
import type { FreezeLeases } from './leases.js';

const STATUS_BY_CODE: Record<string, number> = {
  LOCKSTEP_E_BAD_REQUEST: 400,
  LOCKSTEP_E_FORBIDDEN: 403,
  LOCKSTEP_E_COMPONENT_UNKNOWN: 404,
  LOCKSTEP_E_JOB_NOT_FOUND: 404,
  LOCKSTEP_E_LEASE_NOT_FOUND: 404,
  LOCKSTEP_E_FREEZE_UNSUPPORTED: 400,
  LOCKSTEP_E_FREEZE_FAILED: 409,
  LOCKSTEP_E_COMPONENT_BUSY: 409,
};

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

export type AgentApp = FastifyInstance<Server, IncomingMessage, ServerResponse, FastifyBaseLogger>;

export async function createServer(node: AgentNode, runner: JobRunner, leases: FreezeLeases, tls: TlsMaterial, log: Logger): Promise<AgentApp> {
  const app = Fastify({
    https: { key: tls.key, cert: tls.cert, ca: tls.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' },
    loggerInstance: log as FastifyBaseLogger,
    // every request is not a log line (the agent logs jobs, not polls of them)
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    ajv: { customOptions: { removeAdditional: false, allErrors: true } },
  });

  // why TLS refused a client, for the operator (the client only sees a reset)
  app.server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
    log.warn({ remote: socket.remoteAddress, reason: err.message }, 'TLS handshake refused');
  });

  app.addHook('onRequest', async (req) => {
    const socket = req.raw.socket as TLSSocket;
    const peer = socket.getPeerCertificate?.();
    const role = first(peer?.subject?.OU);
    const name = first(peer?.subject?.CN);
    if (!socket.authorized || role !== 'coordinator') {
      log.warn({ remote: req.ip, role, name, url: req.url }, 'request refused: not a coordinator certificate');
      throw new LockstepError('LOCKSTEP_E_FORBIDDEN', `node ${node.name} accepts requests only from coordinator certificates (got role ${role ?? 'none'})`, {
        node: node.name,
      });
    }
    req.log = req.log.child({ coordinator: name });
  });

  app.setErrorHandler((err: FastifyError | LockstepError, req, reply) => {
    if (err instanceof LockstepError) {
      return reply.code(STATUS_BY_CODE[err.code] ?? 500).send(toErrorInfo(err, undefined, node.name));
    }
    if ((err as FastifyError).validation) {
      return reply.code(400).send({ code: 'LOCKSTEP_E_BAD_REQUEST', message: `invalid request: ${err.message}`, node: node.name });
    }
    req.log.error({ err }, 'request failed');
    const status = (err as FastifyError).statusCode ?? 500;
    return reply.code(status).send({ code: status < 500 ? 'LOCKSTEP_E_BAD_REQUEST' : 'LOCKSTEP_E_INTERNAL', message: err.message, node: node.name });
  });

  registerRoutes(app, node, runner, leases);
  return app;
}
