/**
 * A lockstep command run against a bench's agents, with each agent's peak RSS during it:
 * what the benches that back up and restore share.
 */
import { runCli, type LocalCluster } from '../demo/local-cluster.js';
import { AgentMeter, settle } from './peers.js';
import type { BackupReport } from '../lib/report.js';

/** `lockstep ARGS --json` on `cluster` after the machine settled; its report, each agent's peak RSS (MiB) and the agents' CPU seconds during it */
export async function metered<R>(cluster: LocalCluster, args: string[]): Promise<{ report: R; peaks: number[]; cpuS: number }> {
  await settle();
  const meter = new AgentMeter(cluster.agents.map((a) => a.process?.pid ?? 0));
  await meter.start();
  const r = await runCli([...args, '--json'], { config: cluster.configFile, timeoutMs: 3_600_000 });
  const { peaks, cpuS } = await meter.stop();
  return { report: JSON.parse(r.stdout) as R, peaks, cpuS };
}

/** a backup, which must complete; its report, each agent's peak RSS and the agents' CPU seconds during it */
export async function backup(cluster: LocalCluster, name: string): Promise<{ report: BackupReport; peaks: number[]; cpuS: number }> {
  const done = await metered<BackupReport>(cluster, ['backup', 'create', '--name', name]);
  if (done.report.status !== 'complete') throw new Error(`backup ${name} ended ${done.report.status}: ${done.report.error?.message ?? ''}`);
  return done;
}
