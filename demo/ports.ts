/**
 * Test engines (Redis, etcd) on ports picked at random: the retry both clusters share when
 * one of the ports turns out taken (another test's cluster picked the same, a daemon of the
 * machine's).
 */

/** an engine's port was taken by something else when it started */
export class PortTaken extends Error {}

/** what `onFreePorts` does around the cluster's own start */
export interface PortRetry {
  /** start every process on the ports placed last */
  start(): Promise<void>;
  /** stop what was started (a process that did not start is not there to stop) */
  stop(): Promise<void>;
  /** whether `err` (or what the processes left) says a port was taken */
  taken(err: unknown): Promise<boolean>;
  /** what the failed start wrote that names its ports (data, cluster configs, logs) removed */
  forget(): Promise<void>;
  /** new ports from `base` */
  place(base: number): void;
  /** a random base for the next attempt */
  randomBase(): number;
}

/** `start`; when a port was taken, everything stopped and forgotten and other ports tried, up to five times */
export async function onFreePorts(r: PortRetry): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await r.start();
      return;
    } catch (err) {
      await r.stop();
      if (!(await r.taken(err)) || attempt >= 5) throw err;
      await r.forget();
      r.place(r.randomBase());
    }
  }
}
