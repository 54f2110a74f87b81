/**
 * Freeze leases. A freeze blocks writes on some components for a TTL; the coordinator
 * renews it while it needs it. When the TTL passes the agent thaws by itself, whatever
 * happened to the coordinator (and engines that can, like Redis, also expire the pause
 * on their own, so even a dead agent cannot leave writes blocked).
 */
import { LockstepError, toErrorInfo } from '../lib/errors.js';
import type { FreezeRequest, Lease } from '../lib/wire.js';
import type { AgentNode, BoundComponent } from './node.js';

interface Live {
  lease: Lease;
  ttlMs: number;
  frozenAt: Map<string, number>;
  timer: NodeJS.Timeout;
}

export class FreezeLeases {
  private readonly live = new Map<string, Live>();

  constructor(private readonly node: AgentNode) {}

  private freezable(name: string): BoundComponent {
    const c = this.node.component(name);
    if (!c.plugin.node.freeze || !c.plugin.node.thaw) {
      throw new LockstepError('LOCKSTEP_E_FREEZE_UNSUPPORTED', `component ${name} (${c.plugin.name}) on ${this.node.name} cannot be frozen`, { node: this.node.name });
    }
    return c;
  }

  private ctx() {
    return this.node.ctx(AbortSignal.timeout(10_000));
  }

  /** Freeze every named component; if one fails, the ones already frozen are thawed at once. */
  async freeze(req: FreezeRequest): Promise<Lease> {
    if (this.live.has(req.leaseId)) throw new LockstepError('LOCKSTEP_E_BAD_REQUEST', `lease ${req.leaseId} already exists on ${this.node.name}`, { node: this.node.name });
    const comps = req.components.map((n) => this.freezable(n));
    const frozenAt = new Map<string, number>();
    const results = await Promise.allSettled(
      comps.map(async (c) => {
        await c.plugin.node.freeze!(c.config, this.ctx(), req.ttlMs);
        frozenAt.set(c.config.name, performance.now());
      }),
    );
    const failed = results.findIndex((r) => r.status === 'rejected');
    if (failed >= 0) {
      await Promise.allSettled(comps.filter((c) => frozenAt.has(c.config.name)).map((c) => c.plugin.node.thaw!(c.config, this.ctx())));
      const err = (results[failed] as PromiseRejectedResult).reason;
      throw new LockstepError('LOCKSTEP_E_FREEZE_FAILED', `freezing ${comps[failed]!.config.name} on ${this.node.name} failed: ${toErrorInfo(err).message}`, {
        node: this.node.name,
        cause: err,
      });
    }
    const now = Date.now();
    const lease: Lease = {
      leaseId: req.leaseId,
      node: this.node.name,
      components: req.components,
      frozenAt: new Date(now).toISOString(),
      expiresAt: new Date(now + req.ttlMs).toISOString(),
      state: 'frozen',
    };
    this.live.set(req.leaseId, { lease, ttlMs: req.ttlMs, frozenAt, timer: this.expiry(req.leaseId, req.ttlMs) });
    this.node.log.info({ lease: req.leaseId, components: req.components, ttlMs: req.ttlMs }, 'frozen');
    return lease;
  }

  private expiry(leaseId: string, ttlMs: number): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.node.log.warn({ lease: leaseId }, 'freeze lease expired; thawing');
      void this.thaw(leaseId, 'expired').catch((err: unknown) => this.node.log.error({ lease: leaseId, err: toErrorInfo(err) }, 'thaw after expiry failed'));
    }, ttlMs);
    t.unref();
    return t;
  }

  private get(leaseId: string): Live {
    const l = this.live.get(leaseId);
    if (!l) {
      throw new LockstepError('LOCKSTEP_E_LEASE_NOT_FOUND', `no freeze lease ${leaseId} on ${this.node.name} (it may have expired and thawed)`, { node: this.node.name });
    }
    return l;
  }

  async renew(leaseId: string, ttlMs: number): Promise<Lease> {
    const l = this.get(leaseId);
    clearTimeout(l.timer);
    l.timer = this.expiry(leaseId, ttlMs);
    await Promise.all(l.lease.components.map((n) => {
      const c = this.freezable(n);
      return c.plugin.node.renew?.(c.config, this.ctx(), ttlMs);
    }));
    l.lease.expiresAt = new Date(Date.now() + ttlMs).toISOString();
    l.ttlMs = ttlMs;
    return l.lease;
  }

  /** Fix the point in time of each named component while frozen. */
  async point(leaseId: string, backupId: string, components: string[]): Promise<void> {
    const { ttlMs } = this.get(leaseId);
    await Promise.all(
      components.map(async (n) => {
        const c = this.node.component(n);
        await c.plugin.node.point?.(c.config, this.node.ctx(AbortSignal.timeout(60_000)), backupId, ttlMs);
      }),
    );
  }

  async thaw(leaseId: string, why: 'thawed' | 'expired' = 'thawed'): Promise<Lease> {
    const l = this.get(leaseId);
    clearTimeout(l.timer);
    this.live.delete(leaseId);
    const pausedMs: Record<string, number> = {};
    const errors: string[] = [];
    await Promise.all(
      l.lease.components.map(async (n) => {
        const c = this.node.component(n);
        try {
          await c.plugin.node.thaw!(c.config, this.ctx());
        } catch (err) {
          errors.push(`${n}: ${toErrorInfo(err).message}`);
        }
        pausedMs[n] = Math.round(performance.now() - (l.frozenAt.get(n) ?? performance.now()));
      }),
    );
    l.lease.state = why;
    l.lease.pausedMs = pausedMs;
    this.node.log.info({ lease: leaseId, pausedMs, why }, 'thawed');
    if (errors.length > 0) {
      throw new LockstepError('LOCKSTEP_E_FREEZE_FAILED', `thawing on ${this.node.name} failed: ${errors.join('; ')}`, {
        node: this.node.name,
        hint: 'the engine also ends the pause by itself at the lease TTL',
      });
    }
    return l.lease;
  }

  async thawAll(): Promise<void> {
    await Promise.allSettled([...this.live.keys()].map((id) => this.thaw(id)));
  }
}
