/**
 * Failpoints for tests that must hold the cluster in a state for a while (e.g. to kill
 * the coordinator while it is frozen). Read from LOCKSTEP_FAILPOINTS, like
 * "freeze.hold=5000" (the cluster held frozen) or "lock.hold=5000" (a backup holding the
 * repository lock before it goes on); off unless set. Never used to fake an outcome.
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
