/**
 * The coordinator's client for one agent: mutual TLS over undici, with a check that
 * the agent's certificate names the node we meant to reach. Transport failures become
 * errors a person can act on (which agent, what likely went wrong).
 */
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { isIP } from 'node:net';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { LockstepError, errnoCode, type ErrorInfo } from '../lib/errors.js';
import type { TlsMaterial } from '../lib/tls/files.js';
import { API_PREFIX, JOB_KEY_HEADER, isTerminal, type FreezeRequest, type Job, type JobRequest, type Lease, type NodeDescription, type PreflightResult, type RestorePlanRequest, type RestorePlanResult } from '../lib/wire.js';
import type { AgentRef, ClusterConfig } from './config.js';

const TLS_VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_SIGNATURE_FAILURE',
]);

const IDENTITY = 'LOCKSTEP_IDENTITY';

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Walk an error's cause chain for the first `code`. */
function codes(err: unknown): { code?: string; message: string } {
  let e: unknown = err;
  let message = err instanceof Error ? err.message : String(err);
  for (let i = 0; i < 5 && e; i++) {
    const c = errnoCode(e);
    if (c && c !== 'UND_ERR_SOCKET' && !c.startsWith('UND_ERR_CONNECT')) return { code: c, message: (e as Error).message };
    if (c) message = (e as Error).message;
    e = (e as { cause?: unknown }).cause;
  }
  return { code: errnoCode(err), message };
}

export class AgentClient {
  private readonly dispatcher: Agent;
  readonly node: string;
  readonly address: string;
  /** the agent has answered this client before: a connection it closes since is not a refused certificate */
  private answered = false;
  /** errors of requests that may have reached the agent, whose answer was lost (see `startKeyed`) */
  private readonly unanswered = new WeakSet<LockstepError>();

  constructor(
    ref: AgentRef,
    tls: TlsMaterial,
    private readonly timeouts: ClusterConfig['timeouts'],
  ) {
    this.node = ref.node;
    this.address = ref.address;
    const expected = ref.node;
    this.dispatcher = new Agent({
      connect: {
        ca: tls.ca,
        cert: tls.cert,
        key: tls.key,
        minVersion: 'TLSv1.2',
        servername: isIP(ref.host) ? undefined : ref.host,
        timeout: timeouts.connectMs,
        checkServerIdentity: (host: string, cert: PeerCertificate) => {
          const role = first(cert.subject?.OU);
          const name = first(cert.subject?.CN);
          if (role !== 'agent' || name !== expected) {
            const what = role !== 'agent' ? `has role ${role ?? 'none'}, not agent` : `names node ${name ?? '(none)'}`;
            return Object.assign(new Error(`the certificate of ${ref.address} ${what}; expected agent ${expected}`), { code: IDENTITY });
          }
          return checkServerIdentity(host, cert);
        },
      },
      headersTimeout: timeouts.requestMs,
      bodyTimeout: timeouts.requestMs,
      keepAliveTimeout: 10_000,
    });
  }

  /** `e`, a request that may have reached the agent and whose answer was lost (not one that never left: refused, no route, no name) */
  private lost(e: LockstepError): LockstepError {
    this.unanswered.add(e);
    return e;
  }

  private transportError(err: unknown): LockstepError {
    const { code, message } = codes(err);
    const at = `agent ${this.node} at ${this.address}`;
    if (code === IDENTITY) {
      return new LockstepError('LOCKSTEP_E_AGENT_IDENTITY', `${at}: ${message}`, {
        node: this.node,
        hint: 'the address may point at another node, or the agent has another node\'s certificate; check the cluster config and the agent\'s tls.cert',
      });
    }
    if (code === 'ECONNREFUSED') {
      return new LockstepError('LOCKSTEP_E_AGENT_UNREACHABLE', `cannot reach ${at}: connection refused`, {
        node: this.node,
        cause: err,
        hint: 'is lockstep-agent running there and listening on that port? (systemctl status lockstep-agent)',
      });
    }
    if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
      return new LockstepError('LOCKSTEP_E_AGENT_UNREACHABLE', `cannot reach ${at}: ${code === 'ENOTFOUND' ? 'host name not found' : `no answer (${code})`}`, {
        node: this.node,
        cause: err,
        hint: 'is the host up, and the port open in its firewall?',
      });
    }
    if (code && TLS_VERIFY_CODES.has(code)) {
      return new LockstepError('LOCKSTEP_E_AGENT_TLS_REFUSED', `${at} presented a certificate we do not trust (${code}): ${message}`, {
        node: this.node,
        cause: err,
        hint: 'agent and coordinator certificates must come from the same cluster CA and be valid now; is the agent\'s clock right?',
      });
    }
    const closed = code === 'ECONNRESET' || code === 'EPIPE' || /other side closed|socket hang up/i.test(message);
    const alert = /alert/i.test(message);
    if (this.answered && closed && !alert) {
      // it took this client's certificate before: it went away in the middle (killed, restarted, its host down)
      return this.lost(
        new LockstepError('LOCKSTEP_E_AGENT_UNREACHABLE', `${at} closed the connection before answering (${message}): the agent stopped or restarted`, {
          node: this.node,
          cause: err,
          hint: 'see the agent\'s log (journalctl -u lockstep-agent); systemd starts a dead agent again after 5 s',
        }),
      );
    }
    if (closed || alert) {
      return new LockstepError('LOCKSTEP_E_AGENT_TLS_REFUSED', `${at} closed the connection (${message})`, {
        node: this.node,
        cause: err,
        hint: 'the agent most likely refused our certificate: it must be issued by this cluster\'s CA with role coordinator and not be expired (the agent\'s log says why)',
      });
    }
    return this.lost(new LockstepError('LOCKSTEP_E_AGENT_UNREACHABLE', `request to ${at} failed: ${message}`, { node: this.node, cause: err }));
  }

  async call<T>(method: 'GET' | 'POST', path: string, body?: unknown, signal?: AbortSignal, headers: Record<string, string> = {}): Promise<T> {
    let res: Awaited<ReturnType<typeof request>> | undefined;
    let text: string;
    try {
      res = await request(`https://${this.address}${API_PREFIX}${path}`, {
        method,
        dispatcher: this.dispatcher,
        headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(this.timeouts.requestMs)]) : AbortSignal.timeout(this.timeouts.requestMs),
      });
      text = await res.body.text();
    } catch (err) {
      if (signal?.aborted) throw new LockstepError('LOCKSTEP_E_CANCELLED', `request to agent ${this.node} cancelled`, { node: this.node });
      // its answer began: a body cut short is the agent going away, not a refused certificate
      if (res) this.answered = true;
      throw this.transportError(err);
    }
    this.answered = true;
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      throw new LockstepError('LOCKSTEP_E_AGENT_PROTOCOL', `agent ${this.node} answered ${method} ${path} with HTTP ${res.statusCode} and a body that is not JSON`, { node: this.node });
    }
    if (res.statusCode >= 400) {
      const info = parsed as Partial<ErrorInfo> | undefined;
      if (info?.code && info.message) throw LockstepError.fromInfo({ ...info, node: info.node ?? this.node } as ErrorInfo);
      throw new LockstepError('LOCKSTEP_E_AGENT_PROTOCOL', `agent ${this.node} answered ${method} ${path} with HTTP ${res.statusCode}`, { node: this.node });
    }
    return parsed as T;
  }

  /** `sizes` false: the agent does not count what each component's paths hold (sizeBytes and files are absent) */
  describe(signal?: AbortSignal, sizes = true): Promise<NodeDescription> {
    return this.call('GET', sizes ? '/node' : '/node?sizes=false', undefined, signal);
  }

  /** `lockHeld`: the caller holds the repository's lock for `backupId` (an orphaned upload into it is stopped, see agent/preflight.ts) */
  preflight(ask: { repositoryId: string; backupId?: string; lockHeld?: boolean }, signal?: AbortSignal): Promise<PreflightResult> {
    return this.call('POST', '/preflight', ask, signal);
  }

  freeze(req: FreezeRequest): Promise<Lease> {
    return this.call('POST', '/leases', req);
  }

  renewLease(leaseId: string, ttlMs: number): Promise<Lease> {
    return this.call('POST', `/leases/${encodeURIComponent(leaseId)}/renew`, { ttlMs });
  }

  point(leaseId: string, backupId: string, components: string[]): Promise<unknown> {
    return this.call('POST', `/leases/${encodeURIComponent(leaseId)}/point`, { backupId, components });
  }

  thaw(leaseId: string): Promise<Lease> {
    return this.call('POST', `/leases/${encodeURIComponent(leaseId)}/thaw`, {});
  }

  restorePlan(req: RestorePlanRequest, signal?: AbortSignal): Promise<RestorePlanResult> {
    return this.call('POST', '/restore-plan', req, signal);
  }

  /** `key`: this start's own (`JOB_KEY_HEADER`), to ask it again safely */
  startJob(req: JobRequest, signal?: AbortSignal, key?: string): Promise<Job> {
    return this.call('POST', '/jobs', req, signal, key === undefined ? {} : { [JOB_KEY_HEADER]: key });
  }

  /**
   * Start a job under a key of its own. A start whose answer was lost after it may have
   * reached the agent (the connection closed or timed out before the answer) is asked
   * again under the same key until the agent answers or `lostAfterMs` pass: an agent that
   * started the job answers with it, so the job runs once, and one that never got the
   * request starts it then. A start the agent refused, or that never left (connection
   * refused, no route), fails at once as before.
   */
  private async startKeyed(req: JobRequest, signal: AbortSignal, lostAfterMs: number): Promise<Job> {
    const key = randomUUID();
    let failingSince: number | undefined;
    for (;;) {
      try {
        return await this.startJob(req, signal, key);
      } catch (err) {
        // once asked again, the agent may be restarting: refused connections are waited out too
        const retry = err instanceof LockstepError && (this.unanswered.has(err) || (failingSince !== undefined && err.code === 'LOCKSTEP_E_AGENT_UNREACHABLE'));
        if (!retry || signal.aborted) throw err;
        failingSince ??= Date.now();
        if (Date.now() - failingSince > lostAfterMs) {
          throw new LockstepError('LOCKSTEP_E_JOB_LOST', `lost contact with agent ${this.node} while starting ${req.kind} of ${req.component} (asked again for ${Math.round((Date.now() - failingSince) / 1000)} s): ${err.message}`, {
            node: this.node,
            cause: err,
            hint: 'the job may have started there before contact was lost: see the agent\'s log (journalctl -u lockstep-agent)',
          });
        }
        await sleep(this.timeouts.pollMs, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  /** `waitMs`: the agent answers as soon as the job ends, else after that long */
  getJob(id: string, signal?: AbortSignal, waitMs = 0): Promise<Job> {
    return this.call('GET', `/jobs/${encodeURIComponent(id)}${waitMs > 0 ? `?waitMs=${waitMs}` : ''}`, undefined, signal);
  }

  cancelJob(id: string): Promise<Job> {
    return this.call('POST', `/jobs/${encodeURIComponent(id)}/cancel`, undefined, AbortSignal.timeout(5000));
  }

  /**
   * Start a job and follow it to its end. Brief connection losses are ridden out;
   * an agent gone for longer than `lostAfterMs` fails the job. Cancelling `signal`
   * cancels the job on the agent and waits for it to stop.
   */
  async runJob(req: JobRequest, opts: { signal: AbortSignal; onProgress?: (job: Job) => void; lostAfterMs?: number }): Promise<Job> {
    const lostAfter = opts.lostAfterMs ?? 15_000;
    let job = await this.startKeyed(req, opts.signal, lostAfter);
    const deadline = Date.now() + this.timeouts.jobMs;
    let failingSince: number | undefined;
    let cancelled = false;
    while (!isTerminal(job.state)) {
      if (opts.signal.aborted && !cancelled) {
        cancelled = true;
        await this.cancelJob(job.id).catch(() => undefined);
      }
      if (Date.now() > deadline) {
        await this.cancelJob(job.id).catch(() => undefined);
        throw new LockstepError('LOCKSTEP_E_TIMEOUT', `${req.kind} of ${req.component} on ${this.node} did not finish within ${this.timeouts.jobMs} ms; it was cancelled`, {
          node: this.node,
          hint: 'raise timeouts.jobMs in the cluster config for larger data',
        });
      }
      try {
        // a long poll: progress every pollMs, and the end heard of at once
        job = await this.getJob(job.id, undefined, this.timeouts.pollMs);
        failingSince = undefined;
        opts.onProgress?.(job);
      } catch (err) {
        if (err instanceof LockstepError && err.code === 'LOCKSTEP_E_JOB_NOT_FOUND') {
          throw new LockstepError('LOCKSTEP_E_JOB_LOST', `agent ${this.node} no longer knows job ${job.id} (${req.kind} of ${req.component})`, { node: this.node });
        }
        failingSince ??= Date.now();
        await sleep(this.timeouts.pollMs);
        if (Date.now() - failingSince > lostAfter) {
          throw new LockstepError('LOCKSTEP_E_JOB_LOST', `lost contact with agent ${this.node} during ${req.kind} of ${req.component}: ${(err as Error).message}`, {
            node: this.node,
            cause: err,
          });
        }
      }
    }
    return job;
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}

/** A failed/cancelled/interrupted job as an error. */
export function jobError(job: Job): LockstepError {
  if (job.error) return LockstepError.fromInfo({ ...job.error, node: job.error.node ?? job.node });
  return new LockstepError('LOCKSTEP_E_INTERNAL', `job ${job.id} ended ${job.state}`, { node: job.node });
}
