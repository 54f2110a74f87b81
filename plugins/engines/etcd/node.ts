/**
 * The `etcd` plugin's node half. A snapshot is `etcdctl snapshot save` from one member
 * (consistent through Raft: no freeze needed). A restore stages that snapshot beside
 * the member's data dir and turns it into a data dir with `etcdctl snapshot restore`,
 * using the membership and the new cluster token the cluster half computed; the swap
 * and the start then bring up a new cluster with the backed-up data.
 */
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { LockstepError, toErrorInfo } from '../../../lib/errors.js';
import { runCommand } from '../../../lib/exec.js';
import type { Health, ServiceResult } from '../../../lib/wire.js';
import type { ComponentBase, EngineNode, NodeContext } from '../types.js';
import { waitUntilHealthy } from '../health.js';
import type { EtcdSettings } from './settings.js';
import type { ClientTlsFiles } from '../../../lib/client-tls.js';

type Comp = ComponentBase & EtcdSettings;

const SNAPSHOT_FILE = 'snapshot.db';

/** etcdctl's flags for a member's client TLS */
export function etcdctlTls(t: ClientTlsFiles | undefined): string[] {
  return t ? [`--cacert=${t.ca}`, ...(t.cert ? [`--cert=${t.cert}`] : []), ...(t.key ? [`--key=${t.key}`] : [])] : [];
}

/**
 * etcdctl's environment: the v3 API, and with `auth` the user and its password (etcdctl
 * takes `ETCDCTL_USER` and `ETCDCTL_PASSWORD` as its flags: a command line is visible to
 * every user of the host, an environment only to the agent's own user)
 */
function etcdctlEnv(comp: Comp, node: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ETCDCTL_API: '3' };
  if (!comp.auth) return env;
  const password = process.env[comp.auth.passwordEnv];
  if (password === undefined) {
    throw new LockstepError('LOCKSTEP_E_CONFIG_INVALID', `environment variable ${comp.auth.passwordEnv} (auth.passwordEnv of etcd member ${comp.member}) is not set for the agent`, { node });
  }
  return { ...env, ETCDCTL_USER: comp.auth.user, ETCDCTL_PASSWORD: password };
}

async function etcdctl(comp: Comp, ctx: NodeContext, args: string[], what: string, timeoutMs = 10_000) {
  // etcdctl's own deadline covers the whole command (a snapshot save of a large database too);
  // it ends 2 s before ours, so that etcdctl says why (a refused client certificate, say),
  // not just that it was killed
  const own = Math.max(1, Math.ceil(timeoutMs / 1000) - 2);
  return runCommand([comp.etcdctl, `--endpoints=${comp.endpoint}`, ...etcdctlTls(comp.tls), '--dial-timeout=3s', `--command-timeout=${own}s`, ...args], {
    timeoutMs,
    signal: ctx.signal,
    what: `${what} of etcd member ${comp.member}`,
    node: ctx.node,
    env: etcdctlEnv(comp, ctx.node),
  });
}

interface Status {
  memberId: string;
  leader: string;
  clusterId: string;
  dbSize: number;
}

async function status(comp: Comp, ctx: NodeContext): Promise<Status> {
  const r = await etcdctl(comp, ctx, ['endpoint', 'status', '-w', 'json'], 'endpoint status');
  const [s] = JSON.parse(r.stdout) as { Status: { header: { cluster_id: number | string; member_id: number | string }; leader: number | string; dbSize: number } }[];
  if (!s) throw new LockstepError('LOCKSTEP_E_ENGINE', `etcd member ${comp.member} returned no status`, { node: ctx.node });
  return { memberId: String(s.Status.header.member_id), leader: String(s.Status.leader), clusterId: String(s.Status.header.cluster_id), dbSize: s.Status.dbSize };
}

async function health(comp: Comp, ctx: NodeContext): Promise<Health> {
  try {
    await etcdctl(comp, ctx, ['endpoint', 'health'], 'health check');
    return { ok: true, message: 'endpoint healthy' };
  } catch (err) {
    return { ok: false, message: toErrorInfo(err).message };
  }
}

export const etcdNode = {
  paths(comp) {
    return { data: comp.dataDir };
  },

  async describe(comp, ctx) {
    const h = await health(comp, ctx);
    const s = h.ok ? await status(comp, ctx).catch(() => undefined) : undefined;
    return {
      tier: comp.tier,
      role: s ? (s.leader === s.memberId ? 'leader' : 'follower') : (comp.role ?? 'unknown'),
      // every member holds all the data: one shard, named stably (a restore changes the cluster id)
      shard: comp.shard ?? 'etcd',
      paths: { data: comp.dataDir },
      configFiles: [],
      sizeBytes: s?.dbSize ?? 0,
      files: s ? 1 : 0,
      health: h,
      details: { member: comp.member, peerUrl: comp.peerUrl, endpoint: comp.endpoint, ...(s ? { memberId: s.memberId, clusterId: s.clusterId } : {}) },
    };
  },

  health,

  async snapshot(comp, ctx, { into }) {
    await mkdir(join(into, 'data'), { recursive: true, mode: 0o700 });
    await etcdctl(comp, ctx, ['snapshot', 'save', join(into, 'data', SNAPSHOT_FILE)], 'snapshot save', comp.snapshotTimeoutMs);
    return { downtimeMs: 0, configFiles: [] };
  },

  async stop(comp, ctx): Promise<ServiceResult> {
    const t0 = performance.now();
    await runCommand(comp.stop, { timeoutMs: comp.startTimeoutMs, signal: ctx.signal, what: `stop command of etcd member ${comp.member}`, node: ctx.node });
    return { ran: true, durationMs: Math.round(performance.now() - t0) };
  },

  async start(comp, ctx): Promise<ServiceResult> {
    const t0 = performance.now();
    await runCommand(comp.start, { timeoutMs: comp.startTimeoutMs, signal: ctx.signal, what: `start command of etcd member ${comp.member}`, node: ctx.node });
    await waitUntilHealthy(`etcd member ${comp.member}`, comp.healthTimeoutMs, ctx, () => health(comp, ctx), { intervalMs: 200 });
    return { ran: true, durationMs: Math.round(performance.now() - t0) };
  },

  async afterStage(comp, ctx, staged, params) {
    const dir = staged.data;
    if (!dir) return [];
    const cluster = params.initialCluster;
    const token = params.token;
    if (!cluster || !token) {
      throw new LockstepError('LOCKSTEP_E_STAGE_FAILED', `etcd member ${comp.member}: the restore plan gave no membership to restore with`, { node: ctx.node });
    }
    // snapshot restore writes a fresh data dir; it must not exist yet
    const restored = join(dir, 'restored');
    await runCommand(
      [
        comp.etcdctl,
        'snapshot',
        'restore',
        join(dir, SNAPSHOT_FILE),
        `--name=${comp.member}`,
        `--initial-cluster=${cluster}`,
        `--initial-cluster-token=${token}`,
        `--initial-advertise-peer-urls=${comp.peerUrl}`,
        `--data-dir=${restored}`,
      ],
      { timeoutMs: comp.snapshotTimeoutMs, signal: ctx.signal, what: `snapshot restore for etcd member ${comp.member}`, node: ctx.node, env: { ...process.env, ETCDCTL_API: '3' } },
    );
    // the staged dir becomes the data dir: member/ from the restore, nothing else
    for (const name of await readdir(restored)) await rename(join(restored, name), join(dir, name));
    await rm(restored, { recursive: true });
    await rm(join(dir, SNAPSHOT_FILE));
    return [`rebuilt the data dir with etcdctl snapshot restore (cluster ${cluster}, token ${token})`];
  },
} satisfies EngineNode<Comp>;
