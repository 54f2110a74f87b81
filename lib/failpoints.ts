/**
 * Failpoints for tests that must hold the cluster in a state for a while (e.g. to kill
 * the coordinator while it is frozen, or an agent in the middle of a rollback). Read from
 * LOCKSTEP_FAILPOINTS, like "freeze.hold=5000" (the cluster held frozen), "lock.hold=5000"
 * (a backup holding the repository lock before it goes on), in the coordinator, or
 * "rollback.hold=3000" (an agent's rollback job held once it is journaled, before it moves
 * anything) and "jobs.answer.drop=1" (the first job start's answer lost: the job runs, the
 * connection closes without an answer), in an agent; off unless set. Never used to fake an
 * outcome.
 */
export function failpoint(name: string): number | undefined {
  const spec = process.env.LOCKSTEP_FAILPOINTS;
  if (!spec) return undefined;
  for (const part of spec.split(',')) {
    const [k, v] = part.split('=');
    if (k === name) return Number(v ?? 0);
  }
  return undefined;
}
