/**
 * Loaded with `node --import` into a process the benchmark measures: on exit it writes
 * the process's own resource usage (peak RSS, CPU time) to $LOCKSTEP_BENCH_RUSAGE.
 */
import { writeFileSync } from 'node:fs';

const out = process.env.LOCKSTEP_BENCH_RUSAGE;
if (out) {
  process.on('exit', () => {
    const u = process.resourceUsage();
    writeFileSync(out, JSON.stringify({ maxRssKiB: u.maxRSS, userCpuMs: u.userCPUTime / 1000, systemCpuMs: u.systemCPUTime / 1000 }));
  });
}
