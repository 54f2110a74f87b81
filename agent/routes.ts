/** The agent API, version 1. Long work runs as jobs: POST returns the job at once. */
import { Type } from '@sinclair/typebox';
import {
  API_PREFIX,
  JOB_KEY_HEADER,
  JOB_KEY_RE,
  JobRequestSchema,
  JobSchema,
  NodeDescriptionSchema,
  PreflightRequestSchema,
  PreflightResultSchema,
  type JobRequest,
  FreezeRequestSchema,
  LeaseSchema,
  PointRequestSchema,
  RenewRequestSchema,
  RestorePlanRequestSchema,
  type RestorePlanRequest,
  type FreezeRequest,
  type PreflightResult,
} from '../lib/wire.js';
import type { AgentNode } from './node.js';
import type { JobRunner } from './jobs/runner.js';
import { preflight, type PreflightAsk } from './preflight.js';
import { restorePlan } from './restore-plan.js';
import type { AgentApp } from './server.js';
import type { FreezeLeases } from './leases.js';
import { LockstepError } from '../lib/errors.js';
import { failpoint } from '../lib/failpoints.js';

/** answers to job starts dropped so far (failpoint "jobs.answer.drop=N": the first N) */
let dropped = 0;

export function registerRoutes(app: AgentApp, node: AgentNode, runner: JobRunner, leases: FreezeLeases): void {
  app.get<{ Querystring: { sizes?: boolean } }>(
    `${API_PREFIX}/node`,
    { schema: { querystring: Type.Object({ sizes: Type.Optional(Type.Boolean()) }), response: { 200: NodeDescriptionSchema } } },
    async (req) => node.describe(req.query.sizes !== false),
  );

  app.post<{ Body: PreflightAsk }>(
    `${API_PREFIX}/preflight`,
    { schema: { body: PreflightRequestSchema, response: { 200: PreflightResultSchema } } },
    async (req): Promise<PreflightResult> => preflight(node, runner, req.body),
  );

  app.post<{ Body: JobRequest }>(`${API_PREFIX}/jobs`, { schema: { body: JobRequestSchema, response: { 202: JobSchema } } }, async (req, reply) => {
    node.component(req.body.component); // unknown component: 404 before a job exists
    const key = req.headers[JOB_KEY_HEADER];
    if (key !== undefined && (typeof key !== 'string' || !JOB_KEY_RE.test(key))) {
      throw new LockstepError('LOCKSTEP_E_BAD_REQUEST', `header ${JOB_KEY_HEADER} of a job start must be 1–128 letters, digits, '-' or '_'`, { node: node.name });
    }
    const job = await runner.start(req.body, key);
    // a test's lost answer: the job runs, its coordinator hears nothing and the connection closes
    if (dropped < (failpoint('jobs.answer.drop') ?? 0)) {
      dropped++;
      reply.hijack();
      req.raw.socket.destroy();
      return reply;
    }
    return reply.code(202).send(job);
  });

  app.get(`${API_PREFIX}/jobs`, { schema: { response: { 200: Type.Object({ jobs: Type.Array(JobSchema) }) } } }, async () => ({ jobs: runner.list() }));

  // ?waitMs=N: answer when the job ends, or after N ms with its progress (a long poll)
  app.get<{ Params: { id: string }; Querystring: { waitMs?: number } }>(
    `${API_PREFIX}/jobs/:id`,
    {
      schema: {
        params: Type.Object({ id: Type.String() }),
        querystring: Type.Object({ waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 30_000 })) }),
        response: { 200: JobSchema },
      },
    },
    async (req) => runner.wait(req.params.id, req.query.waitMs ?? 0),
  );

  app.post<{ Params: { id: string } }>(
    `${API_PREFIX}/jobs/:id/cancel`,
    { schema: { params: Type.Object({ id: Type.String() }), response: { 200: JobSchema } } },
    async (req) => runner.cancel(req.params.id),
  );

  // freeze leases: synchronous, so a write pause costs round trips, not polling
  app.post<{ Body: FreezeRequest }>(`${API_PREFIX}/leases`, { schema: { body: FreezeRequestSchema, response: { 200: LeaseSchema } } }, async (req) => leases.freeze(req.body));
  app.post<{ Params: { id: string }; Body: { ttlMs: number } }>(
    `${API_PREFIX}/leases/:id/renew`,
    { schema: { body: RenewRequestSchema, response: { 200: LeaseSchema } } },
    async (req) => leases.renew(req.params.id, req.body.ttlMs),
  );
  app.post<{ Params: { id: string }; Body: { backupId: string; components: string[] } }>(
    `${API_PREFIX}/leases/:id/point`,
    { schema: { body: PointRequestSchema } },
    async (req) => {
      await leases.point(req.params.id, req.body.backupId, req.body.components);
      return { ok: true };
    },
  );
  app.post<{ Params: { id: string } }>(`${API_PREFIX}/leases/:id/thaw`, { schema: { response: { 200: LeaseSchema } } }, async (req) => leases.thaw(req.params.id));

  // restore --dry-run: what staging would download and likely reuse (no hashing, no writes)
  app.post<{ Body: RestorePlanRequest }>(`${API_PREFIX}/restore-plan`, { schema: { body: RestorePlanRequestSchema } }, async (req) => restorePlan(node, req.body));

  // liveness of the agent itself (component health is in GET /node)
  app.get(`${API_PREFIX}/health`, async () => ({ ok: true, node: node.name }));
}
