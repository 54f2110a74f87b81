/**
 * The `redis` plugin's node half, for Redis Cluster (and standalone servers).
 * Freeze = CLIENT PAUSE … WRITE on masters (Redis ends the pause by itself at the
 * lease's end); point = a replica catches up with its frozen master and is then held
 * there by a pause of its own (a master whose replicas are down forks its BGSAVE at
 * once); thaw = CLIENT UNPAUSE. The snapshot job forks the held replica's save, releases
 * it, waits for the save and captures the RDB, nodes.conf and the config file. Writes
 * are never blocked while an RDB is forked, written or copied.
 */
import { copyFile, link, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { basename, isAbsolute, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LockstepError, toErrorInfo } from '../../../lib/errors.js';
import { runCommand } from '../../../lib/exec.js';
import type { Health, ServiceResult } from '../../../lib/wire.js';
import type { ComponentBase, EngineNode, NodeContext } from '../types.js';
import { waitUntilHealthy } from '../health.js';
import { configGet, connect, info, parseClusterNodes, parseInfo, redisError, withRedis, type ClusterNode, type RedisConn } from './client.js';
import type { RedisSettings } from './settings.js';

type Comp = ComponentBase & RedisSettings;

/** what each server said last time it answered: a server that is down still belongs to its shard */
const lastKnown = new Map<string, { shard?: string; role: string }>();

/**
 * Points taken, waiting for their snapshot job (backupId/component): a save already
 * forked (LASTSAVE before it), or a replica held at its replication offset.
 */
type Point = { kind: 'saved'; before: number } | { kind: 'held'; offset: number; dirty: number };
const pending = new Map<string, Point>();
/** replicas held for a point: a lease thaw must not release them before their save forks */
const pointHeld = new Set<string>();

const keyOf = (comp: Comp) => `${comp.host}:${comp.port}`;

/**
 * BGSAVE once no other save runs, nor an AOF rewrite (which a BGSAVE would only be
 * scheduled after: forked later than the cut); returns LASTSAVE from before it. Replies
 * after the fork.
 */
async function forkSave(r: RedisConn, comp: Comp, ctx: NodeContext): Promise<number> {
  await until('a running background save or AOF rewrite to finish', comp.saveTimeoutMs, ctx, async () => {
    const p = await info(r, 'persistence');
    return p.get('rdb_bgsave_in_progress') === '0' && p.get('aof_rewrite_in_progress') !== '1';
  });
  const before = saveMark(await info(r, 'persistence'));
  await r.bgsave();
  return before;
}

/**
 * Which save the server is at: its count of RDB saves (Redis ≥ 7.0). LASTSAVE is in
 * whole seconds, so a save that ends in the same second as the one before it would look
 * like no save at all (and the snapshot would wait out its deadline); older servers,
 * without the count, still fall back to it.
 */
function saveMark(persistence: Map<string, string>): number {
  return Number(persistence.get('rdb_saves') ?? persistence.get('rdb_last_save_time'));
}
/** one kept connection per component for freeze/renew/thaw, so a pause costs one round trip */
const held = new Map<string, RedisConn>();

async function heldConn(comp: Comp, node: string): Promise<RedisConn> {
  const key = keyOf(comp);
  const r = held.get(key);
  if (r && r.status === 'ready') return r;
  r?.disconnect();
  const fresh = connect(comp, node);
  fresh.on('error', () => undefined);
  try {
    await fresh.connect();
  } catch (err) {
    fresh.disconnect();
    throw redisError(err, comp, node);
  }
  held.set(key, fresh);
  return fresh;
}

async function onHeld<T>(comp: Comp, ctx: NodeContext, fn: (r: RedisConn) => Promise<T>): Promise<T> {
  const r = await heldConn(comp, ctx.node);
  try {
    return await fn(r);
  } catch (err) {
    throw redisError(err, comp, ctx.node);
  }
}

interface Facts {
  role: 'master' | 'replica';
  cluster: boolean;
  shard?: string;
  masterHost?: string;
  masterPort?: number;
  dir: string;
  rdbFile: string;
  nodesConf?: string;
  appendonly: boolean;
  /** with `appendonly`: its AOF's folder in `dir` and the AOF's base name (`appenddirname`, `appendfilename`) */
  aof?: { dir: string; file: string };
  /** Redis' version's major number (`redis_version`) */
  major: number;
  clusterState?: string;
  /** replicas: the link to the master is up (not syncing) */
  linkUp?: boolean;
  /** it is loading its dataset (after a start, or a replica's full sync) */
  loading: boolean;
}

/** `inf`: its INFO, when the caller already asked for it */
async function facts(r: RedisConn, inf?: Map<string, string>): Promise<Facts> {
  inf ??= await info(r);
  const cluster = inf.get('cluster_enabled') === '1';
  const dir = await configGet(r, 'dir');
  const rdbFile = await configGet(r, 'dbfilename');
  const f: Facts = {
    role: inf.get('role') === 'slave' ? 'replica' : 'master',
    cluster,
    dir,
    rdbFile,
    appendonly: (await configGet(r, 'appendonly')) === 'yes',
    major: Number((inf.get('redis_version') ?? '0').split('.')[0]),
    masterHost: inf.get('master_host'),
    masterPort: inf.has('master_port') ? Number(inf.get('master_port')) : undefined,
    linkUp: inf.get('master_link_status') === 'up' && inf.get('master_sync_in_progress') !== '1',
    loading: isLoading(inf),
  };
  if (f.appendonly && f.major >= 7) f.aof = { dir: await configGet(r, 'appenddirname'), file: await configGet(r, 'appendfilename') };
  if (cluster) {
    const conf = await configGet(r, 'cluster-config-file');
    f.nodesConf = isAbsolute(conf) ? conf : join(dir, conf);
    f.shard = placeOf(parseClusterNodes((await r.call('CLUSTER', 'NODES')) as string))?.shard;
    f.clusterState = parseInfo((await r.call('CLUSTER', 'INFO')) as string).get('cluster_state');
  }
  return f;
}

/** a file name a restore writes and an AOF manifest lists as it is (Redis quotes a name with spaces or quotes) */
const isPlainName = (name: string) => /^[A-Za-z0-9._-]+$/.test(name) && name !== '.' && name !== '..';

/** A server that is down: its shard and role from the nodes.conf it left on disk. */
async function fromNodesConf(comp: Comp): Promise<{ shard?: string; role: string } | undefined> {
  const text = await readFile(join(comp.dir, 'nodes.conf'), 'utf8').catch(() => undefined);
  if (!text) return undefined;
  return placeOf(parseClusterNodes(text.split('\n').filter((l) => !l.startsWith('vars ')).join('\n')));
}

/** This node's role and shard in a CLUSTER NODES view (the live one, or nodes.conf). */
function placeOf(nodes: ClusterNode[]): { shard?: string; role: 'master' | 'replica' } | undefined {
  const me = nodes.find((n) => n.flags.includes('myself'));
  if (!me) return undefined;
  const master = me.flags.includes('master') ? me : nodes.find((n) => n.id === me.masterId);
  // a shard is named by its slots: stable across failovers, unlike node ids
  return { role: me.flags.includes('master') ? 'master' : 'replica', shard: master?.slots.length ? `slots:${master.slots.join(',')}` : undefined };
}

/**
 * Pause client writes on a master. A replica takes no client writes, and pausing it
 * would also stop it applying its master's stream, so it could never catch up.
 */
async function pauseWrites(r: RedisConn, ttlMs: number): Promise<void> {
  if ((await info(r, 'replication')).get('role') === 'slave') return;
  await r.call('CLIENT', 'PAUSE', String(ttlMs), 'WRITE');
}

/** What keeps this server from being backed up (or, with `cluster`, from serving after a start). */
function problems(comp: Comp, f: Facts, needClusterOk: boolean): string[] {
  const out: string[] = [];
  if (f.dir !== comp.dir) out.push(`redis reports dir ${f.dir}, the agent config says ${comp.dir}`);
  // (Redis 7 keeps its AOF as parts listed by a manifest, whose base may be an RDB: what a restore writes)
  if (f.appendonly && f.major < 7) out.push(`appendonly is yes on Redis ${f.major}: a restore can give the restored RDB as the AOF of Redis 7 or later only`);
  else if (f.aof && !isPlainName(f.aof.dir)) out.push(`appenddirname ${JSON.stringify(f.aof.dir)} is not a plain name in dir: a restore could not write the AOF there`);
  else if (f.aof && !isPlainName(f.aof.file)) out.push(`appendfilename ${JSON.stringify(f.aof.file)} is not a plain file name: a restore could not list it in the AOF's manifest`);
  // (a server not in cluster mode answers INFO and CONFIG while it loads: it is not serving yet)
  if (f.loading) out.push('still loading its dataset');
  if (f.role === 'replica' && !f.linkUp) out.push('replica is not in sync with its master (link down or full sync running)');
  if (needClusterOk && f.cluster && f.clusterState !== 'ok') out.push(`cluster_state is ${f.clusterState ?? 'unknown'}`);
  return out;
}

function healthOf(comp: Comp, f: Facts, needClusterOk: boolean): Health {
  const p = problems(comp, f, needClusterOk);
  return p.length === 0 ? { ok: true, message: `${f.role}, cluster_state ${f.clusterState ?? 'n/a'}` } : { ok: false, message: p.join('; ') };
}

/**
 * Healthy for a backup: answering, with the expected dir; a degraded cluster can still be
 * backed up. Not healthy while it loads its dataset (`LOADING`, at a start, or a replica
 * after a full sync) or receives its master's: then how far it got is its `progress`.
 */
async function health(comp: Comp, ctx: NodeContext, needClusterOk = false): Promise<Health> {
  // (from the INFO the check asks for first: a loading server in cluster mode then fails CLUSTER NODES with LOADING)
  let progress: string | undefined;
  let h: Health;
  try {
    let inf: Map<string, string> | undefined;
    const f = await withRedis(comp, ctx.node, async (r) => {
      inf = await info(r);
      progress = loadingProgress(inf);
      return facts(r, inf);
    });
    h = healthOf(comp, f, needClusterOk);
    if (!h.ok && inf && waitsForMasterSave(inf)) progress = (await masterSaveProgress(comp, ctx, f.masterHost, f.masterPort)) ?? progress;
  } catch (err) {
    h = { ok: false, message: toErrorInfo(err).message };
  }
  return h.ok || progress === undefined ? h : { ...h, progress };
}

/** whether a Redis whose INFO is `inf` is loading its dataset (after a start, or a replica's full sync) */
const isLoading = (inf: Map<string, string>) => inf.get('loading') === '1' || inf.get('async_loading') === '1';

/** how far a Redis whose INFO is `inf` got loading its dataset, or receiving its master's; undefined when it does neither */
function loadingProgress(inf: Map<string, string>): string | undefined {
  if (isLoading(inf)) return `loaded ${inf.get('loading_loaded_bytes') ?? '?'} bytes of the dataset (${inf.get('loading_loaded_perc') ?? '?'}%)`;
  if (inf.get('master_sync_in_progress') === '1') return `received ${inf.get('master_sync_read_bytes') ?? '?'} bytes of its master's dataset`;
  return undefined;
}

/**
 * Whether a replica whose INFO is `inf` has asked its master for a full sync and received
 * nothing yet: a master that replicates through a file (`repl-diskless-sync no`) first saves
 * its whole dataset, and the replica's own fields stay still until it is saved.
 */
const waitsForMasterSave = (inf: Map<string, string>) => inf.get('master_sync_in_progress') === '1' && (inf.get('master_sync_read_bytes') ?? '0') === '0';

/**
 * How far the master of a replica waiting for a full sync (at `host`:`port`, as the
 * replica's facts tell) got saving the dataset the sync sends: the keys its save went
 * through (Redis 7's `current_save_keys_processed`, told about once a second while it
 * saves). Asked of the master at the address the replica follows, with the component's
 * credentials and TLS;
 * undefined when it does not answer, saves nothing, or does not tell (Redis 6): the wait is
 * then judged by the replica's own fields, as before.
 */
async function masterSaveProgress(comp: Comp, ctx: NodeContext, host: string | undefined, port: number | undefined): Promise<string | undefined> {
  if (!host || port === undefined || !Number.isInteger(port) || port <= 0) return undefined;
  try {
    const p = await withRedis({ ...comp, host, port }, ctx.node, (r) => info(r, 'persistence'), 1000);
    const keys = p.get('current_save_keys_processed');
    if (p.get('rdb_bgsave_in_progress') !== '1' || keys === undefined) return undefined;
    return `its master ${host}:${port} is saving the dataset the sync sends: ${keys} of ${p.get('current_save_keys_total') ?? '?'} keys (${p.get('current_fork_perc') ?? '?'}%)`;
  } catch {
    return undefined;
  }
}

/**
 * A server with `appendonly yes` loads its AOF at its start, not its RDB: started on a
 * restored RDB alone, it would start empty and write an empty AOF. So the staged RDB also
 * becomes the base of a new AOF (Redis 7's folder of parts and the manifest that lists
 * them: `file NAME.1.base.rdb seq 1 type b`), a hard link to it where the filesystem allows.
 * The server then loads it, and appends its writes in a part of its own.
 */
async function rdbAsAofBase(rdb: string, aofDir: string, aofFile: string): Promise<string> {
  const base = `${aofFile}.1.base.rdb`;
  await mkdir(aofDir, { recursive: true });
  await link(rdb, join(aofDir, base)).catch(() => copyFile(rdb, join(aofDir, base)));
  await writeFile(join(aofDir, `${aofFile}.manifest`), `file ${base} seq 1 type b\n`);
  return `appendonly: the restored RDB is the base of its AOF (${basename(aofDir)}/${base}), which it loads at its start`;
}

/** Poll until `check` is true or the deadline passes. */
async function until(what: string, timeoutMs: number, ctx: NodeContext, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new LockstepError('LOCKSTEP_E_TIMEOUT', `${what} did not happen within ${timeoutMs} ms`, { node: ctx.node });
    await sleep(20, undefined, { signal: ctx.signal });
  }
}

export const redisNode = {
  paths(comp) {
    return { data: comp.dir };
  },

  async describe(comp, ctx) {
    let f: Facts | undefined;
    let h: Health;
    try {
      f = await withRedis(comp, ctx.node, facts);
      h = healthOf(comp, f, false);
    } catch (err) {
      // down: describe what the config and the disk say
      h = { ok: false, message: toErrorInfo(err).message };
    }
    const key = keyOf(comp);
    if (f) lastKnown.set(key, { shard: f.shard, role: f.role });
    const known = f ?? lastKnown.get(key) ?? (await fromNodesConf(comp));
    const rdb = f ? join(f.dir, f.rdbFile) : join(comp.dir, 'dump.rdb');
    const size = await stat(rdb).then((s) => s.size, () => 0);
    return {
      tier: comp.tier,
      role: known?.role ?? comp.role ?? 'unknown',
      shard: comp.shard ?? known?.shard ?? `${ctx.node}/${comp.name}`,
      paths: { data: comp.dir },
      configFiles: [comp.configFile, ...(f?.nodesConf ? [f.nodesConf] : [])],
      sizeBytes: size,
      files: size > 0 ? 1 : 0,
      health: h,
    };
  },

  health: (comp, ctx) => health(comp, ctx),

  async freeze(comp, ctx, ttlMs) {
    await onHeld(comp, ctx, (r) => pauseWrites(r, ttlMs));
  },

  async renew(comp, ctx, ttlMs) {
    await onHeld(comp, ctx, (r) => pauseWrites(r, ttlMs));
  },

  async thaw(comp, ctx) {
    if (pointHeld.has(keyOf(comp))) return; // released by its snapshot, or by Redis at the TTL
    await onHeld(comp, ctx, (r) => r.call('CLIENT', 'UNPAUSE'));
  },

  async point(comp, ctx, backupId, ttlMs) {
    // the cluster is frozen while this runs: only the round trips it needs
    await onHeld(comp, ctx, async (r) => {
      const repl = await info(r, 'replication');
      const masterHost = repl.get('master_host');
      const masterPort = Number(repl.get('master_port'));
      if (repl.get('role') === 'slave' && masterHost && masterPort) {
        // the master is frozen: wait until this replica has everything it acknowledged…
        const master = await heldConn({ ...comp, host: masterHost, port: masterPort }, ctx.node);
        const target = Number((await info(master, 'replication')).get('master_repl_offset'));
        let offset = 0;
        await until(`replica ${comp.host}:${comp.port} catching up to offset ${target}`, comp.catchUpTimeoutMs, ctx, async () => {
          const rep = await info(r, 'replication');
          offset = Number(rep.get('slave_repl_offset'));
          return rep.get('master_link_status') === 'up' && offset >= target;
        });
        // …then hold it there: a paused replica stops applying its master's stream, so the
        // masters can be thawed now and the fork happens later, outside the write pause.
        // The snapshot checks the offset did not move before the fork.
        await r.call('CLIENT', 'PAUSE', String(ttlMs), 'WRITE');
        pointHeld.add(keyOf(comp));
        const dirty = Number((await info(r, 'persistence')).get('rdb_changes_since_last_save'));
        pending.set(`${backupId}/${comp.name}`, { kind: 'held', offset, dirty });
        return;
      }
      // a master (its replicas are down): fork now, inside the pause
      pending.set(`${backupId}/${comp.name}`, { kind: 'saved', before: await forkSave(r, comp, ctx) });
    });
  },

  async snapshot(comp, ctx, { into, backupId }) {
    const key = `${ctx.node}/${comp.name}`;
    const point = pending.get(`${backupId}/${comp.name}`);
    if (point === undefined) {
      throw new LockstepError('LOCKSTEP_E_SNAPSHOT_MISSING', `redis component ${comp.name}: no point in time was taken for backup ${backupId}`, {
        node: ctx.node,
        hint: 'redis snapshots need the coordinator\'s freeze step (the agent may have restarted since)',
      });
    }
    pending.delete(`${backupId}/${comp.name}`);
    let before: number;
    if (point.kind === 'held') {
      // fork the held replica's save, check it was still at the cut, release it
      before = await onHeld(comp, ctx, async (r) => {
        try {
          // no write may have reached the held replica since the cut (masters take writes again)
          const dirty = Number((await info(r, 'persistence')).get('rdb_changes_since_last_save'));
          if (dirty !== point.dirty) {
            throw new LockstepError('LOCKSTEP_E_SNAPSHOT_FAILED', `replica ${comp.host}:${comp.port} applied writes after the cut (offset ${point.offset}) before its save forked; the cut would not be consistent`, {
              node: ctx.node,
              hint: 'the replica hold ended early (freeze.ttlMs too short?); run the backup again',
            });
          }
          return await forkSave(r, comp, ctx);
        } finally {
          pointHeld.delete(keyOf(comp));
          await r.call('CLIENT', 'UNPAUSE');
        }
      });
    } else before = point.before;
    return withRedis(comp, ctx.node, async (r) => {
      let saved = 0;
      await until(`the background save of ${key}`, comp.saveTimeoutMs, ctx, async () => {
        const p = await info(r, 'persistence');
        saved = saveMark(p);
        if (p.get('rdb_bgsave_in_progress') === '0' && p.get('rdb_last_bgsave_status') !== 'ok') {
          throw new LockstepError('LOCKSTEP_E_SNAPSHOT_FAILED', `redis ${comp.host}:${comp.port}: background save failed (see the redis log)`, { node: ctx.node });
        }
        return p.get('rdb_bgsave_in_progress') === '0' && saved > before;
      });
      const f = await facts(r);
      await mkdir(join(into, 'data'), { recursive: true });
      await mkdir(join(into, 'config'), { recursive: true });
      await copyFile(join(f.dir, f.rdbFile), join(into, 'data', f.rdbFile));
      if (f.nodesConf) await copyFile(f.nodesConf, join(into, 'data', basename(f.nodesConf)));
      await copyFile(comp.configFile, join(into, 'config', basename(comp.configFile)));
      // a scheduled save that replaced the RDB while we copied would mix two points in time
      if (saveMark(await info(r, 'persistence')) !== saved) {
        throw new LockstepError('LOCKSTEP_E_SNAPSHOT_FAILED', `redis ${comp.host}:${comp.port}: another save replaced ${f.rdbFile} while it was copied`, {
          node: ctx.node,
          hint: 'run the backup again, or turn off "save" rules on the servers',
        });
      }
      return { downtimeMs: 0, configFiles: [comp.configFile, ...(f.nodesConf ? [f.nodesConf] : [])] };
    });
  },

  async stop(comp, ctx): Promise<ServiceResult> {
    const t0 = performance.now();
    if (comp.stop) {
      await runCommand(comp.stop, { timeoutMs: comp.startTimeoutMs, signal: ctx.signal, what: `stop command of component ${comp.name}`, node: ctx.node });
    } else {
      const r = connect(comp, ctx.node);
      r.on('error', () => undefined);
      try {
        await r.connect();
        await r.call('SHUTDOWN', 'NOSAVE').catch(() => undefined); // the connection drops: that is the answer
      } catch {
        // not running: nothing to stop
      } finally {
        r.disconnect();
      }
    }
    // check real state: nothing answers on the port any more
    await until(`redis ${comp.host}:${comp.port} to stop`, comp.startTimeoutMs, ctx, async () =>
      withRedis(comp, ctx.node, (r) => r.ping(), 500).then(() => false, () => true),
    );
    held.get(keyOf(comp))?.disconnect();
    return { ran: true, durationMs: Math.round(performance.now() - t0) };
  },

  async start(comp, ctx): Promise<ServiceResult> {
    const t0 = performance.now();
    await runCommand(comp.start, { timeoutMs: comp.startTimeoutMs, signal: ctx.signal, what: `start command of component ${comp.name}`, node: ctx.node });
    // serving again means cluster_state ok, not only answering
    await waitUntilHealthy(`redis ${keyOf(comp)} (component ${comp.name})`, comp.healthTimeoutMs, ctx, () => health(comp, ctx, true), { intervalMs: 200 });
    return { ran: true, durationMs: Math.round(performance.now() - t0) };
  },

  async afterStage(comp, ctx, staged) {
    const actions: string[] = [];
    const dataDir = staged.data;
    if (!dataDir) return actions;
    const f = await withRedis(comp, ctx.node, facts);
    if (f.nodesConf) {
      // the node keeps its own identity (node id, epochs); the backup may come from another member
      await copyFile(f.nodesConf, join(dataDir, basename(f.nodesConf)));
      actions.push(`kept this node's own ${basename(f.nodesConf)}`);
    }
    if (f.role === 'replica') {
      await rm(join(dataDir, f.rdbFile), { force: true });
      actions.push('replica: starts empty and re-syncs from its restored master');
    } else if (f.aof) {
      actions.push(await rdbAsAofBase(join(dataDir, f.rdbFile), join(dataDir, f.aof.dir), f.aof.file));
    }
    return actions;
  },
} satisfies EngineNode<Comp>;
