// memory is set up before anything else loads: see tuning.ts (and main.cts, the entry)
import './tuning.js';
/**
 * lockstep-agent: the node daemon. Reads agent.yaml, refuses to start on any config
 * problem (each with its path), recovers interrupted jobs, then serves the API over
 * mutual TLS. Certificates are reloaded when their files change.
 */
import { Command } from 'commander';
import { mkdir, writeFile, rename } from 'node:fs/promises';
import { watchFile, unwatchFile } from 'node:fs';
import { join } from 'node:path';
import { LockstepError, toErrorInfo } from '../lib/errors.js';
import { createLogger } from '../lib/log.js';
import { describeCertificate } from '../lib/tls/identity.js';
import { readTlsMaterial } from '../lib/tls/files.js';
import { loadAgentConfig, type AgentConfig } from './config.js';
import { AgentNode, AGENT_VERSION } from './node.js';
import { JobRunner } from './jobs/runner.js';
import { jobHandlers } from './jobs/handlers.js';
import { uploadsSettled } from './transfer/upload.js';
import { startSyncHelper } from '../lib/syncfs.js';
import { compileStoredChecks } from '../lib/repo/stored.js';
import { ManifestSchema } from '../lib/repo/manifest.js';
import { ComponentIndexSchema, IndexEntriesSchema, PendingRecordSchema } from '../lib/repo/index-file.js';
import { createServer } from './server.js';
import { FreezeLeases } from './leases.js';

const EXIT_CONFIG = 2;
const EXIT_START_FAILED = 1;
const CONFIG_CODES = new Set(['LOCKSTEP_E_CONFIG_INVALID', 'LOCKSTEP_E_CONFIG_UNREADABLE', 'LOCKSTEP_E_CERT_INVALID']);

async function checkOwnCertificate(cfg: AgentConfig, cert: Buffer): Promise<void> {
  const info = describeCertificate(cert);
  const problems: string[] = [];
  if (info.role !== 'agent') problems.push(`it has role ${info.role ?? 'none'}, an agent needs role agent`);
  if (info.name !== cfg.node) problems.push(`it names node ${info.name ?? '(none)'}, this agent is node ${cfg.node}`);
  if (info.expired) problems.push(`it expired at ${info.notAfter}`);
  if (problems.length > 0) {
    throw new LockstepError('LOCKSTEP_E_CERT_INVALID', `${cfg.file}: tls.cert ${cfg.tls.cert}: ${problems.join('; ')}`, {
      hint: `issue one with "lockstep ca issue agent --name ${cfg.node} --host <address>"`,
    });
  }
}

async function main(configFile: string): Promise<void> {
  let cfg: AgentConfig;
  try {
    cfg = await loadAgentConfig(configFile);
  } catch (err) {
    const e = toErrorInfo(err);
    process.stderr.write(`lockstep-agent: ${e.message}\n`);
    process.exit(EXIT_CONFIG);
  }
  const log = createLogger({ name: 'lockstep-agent', level: cfg.logLevel }).child({ node: cfg.node });
  try {
    const tls = await readTlsMaterial(cfg.tls, cfg.file);
    await checkOwnCertificate(cfg, tls.cert);
    await mkdir(cfg.stateDir, { recursive: true, mode: 0o700 });
    // while the process is small: flushing the repository later forks this helper, not the agent
    startSyncHelper();
    const node = new AgentNode(cfg, log);
    const runner = new JobRunner(
      cfg.node,
      join(cfg.stateDir, 'jobs'),
      jobHandlers(node),
      log,
      cfg.jobHistory,
      async (component) => {
        const { config, plugin } = node.component(component);
        await plugin.node.start(config, node.ctx(AbortSignal.timeout(300_000)));
      },
      { kinds: ['upload', 'stage'], afterMs: cfg.abandonTransferMs },
    );
    await runner.recover();
    const swept = await node.sweep();
    if (swept.length > 0) log.info({ removed: swept }, 'removed leftovers: snapshots, staging, local copies of removed components');
    const gc = setInterval(() => {
      const busy = new Set(
        runner
          .list()
          .filter((j) => j.state === 'running' || Date.now() - Date.parse(j.finishedAt ?? j.createdAt) < cfg.staleSnapshotMs)
          .map((j) => (j.request as { backupId?: string }).backupId ?? ''),
      );
      node
        .sweepStaleSnapshots(busy, cfg.staleSnapshotMs)
        .then((removed) => removed.length > 0 && log.warn({ removed }, 'removed stale local snapshots (a backup never cleaned up)'))
        .catch((err: unknown) => log.error({ err: toErrorInfo(err) }, 'stale snapshot sweep failed'));
    }, Math.min(cfg.staleSnapshotMs, 600_000));
    gc.unref();

    const leases = new FreezeLeases(node);
    const app = await createServer(node, runner, leases, tls, log);
    await app.listen({ host: cfg.listen.host, port: cfg.listen.port });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : cfg.listen.port;
    // a status file: what is listening where (tests and operators read it)
    const status = join(cfg.stateDir, 'agent.json');
    await writeFile(`${status}.tmp`, JSON.stringify({ node: cfg.node, pid: process.pid, host: cfg.listen.host, port, version: AGENT_VERSION, startedAt: new Date().toISOString() }));
    await rename(`${status}.tmp`, status);
    log.info({ host: cfg.listen.host, port, version: AGENT_VERSION }, 'agent listening');
    // what a backup reads back from the repository is checked: compiled now, not during the first one
    setImmediate(() => compileStoredChecks([ManifestSchema, ComponentIndexSchema, IndexEntriesSchema, PendingRecordSchema]));

    const reload = async () => {
      try {
        const fresh = await readTlsMaterial(cfg.tls, cfg.file);
        await checkOwnCertificate(cfg, fresh.cert);
        app.server.setSecureContext({ key: fresh.key, cert: fresh.cert, ca: fresh.ca });
        log.info('certificates reloaded');
      } catch (err) {
        log.error({ err: toErrorInfo(err) }, 'new certificates refused; keeping the old ones');
      }
    };
    for (const f of [cfg.tls.ca, cfg.tls.cert, cfg.tls.key]) watchFile(f, { interval: 2000 }, (cur, prev) => void (cur.mtimeMs !== prev.mtimeMs && reload()));

    const shutdown = async (signal: string) => {
      log.info({ signal }, 'shutting down');
      for (const f of [cfg.tls.ca, cfg.tls.cert, cfg.tls.key]) unwatchFile(f);
      await leases.thawAll();
      for (const j of runner.list()) if (j.state === 'running') runner.cancel(j.id);
      const deadline = Date.now() + 20_000;
      while (runner.list().some((j) => j.state === 'running') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      // what uploads left for after they returned is finished (else the next upload does it)
      await Promise.race([uploadsSettled(), new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())).unref())]);
      runner.close();
      await app.close();
      log.flush();
      process.exit(0);
    };
    process.once('SIGTERM', () => void shutdown('SIGTERM'));
    process.once('SIGINT', () => void shutdown('SIGINT'));
  } catch (err) {
    const e = toErrorInfo(err);
    log.fatal({ err: e }, 'agent could not start');
    process.stderr.write(`lockstep-agent: ${e.message}${e.hint ? `\n  hint: ${e.hint}` : ''}\n`);
    process.exit(err instanceof LockstepError && CONFIG_CODES.has(err.code) ? EXIT_CONFIG : EXIT_START_FAILED);
  }
}

new Command('lockstep-agent')
  .description('lockstep node agent: runs backup and restore jobs for the coordinator over mutual TLS')
  .requiredOption('-c, --config <file>', 'agent config file (YAML)')
  .version(AGENT_VERSION)
  .action((opts: { config: string }) => main(opts.config))
  .parseAsync()
  .catch((err: unknown) => {
    process.stderr.write(`lockstep-agent: ${toErrorInfo(err).message}\n`);
    process.exit(EXIT_START_FAILED);
  });
