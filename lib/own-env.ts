/**
 * Settings the agent's `#!` line gives the agent alone. glibc reads them when the process
 * starts; left in the environment they went on to every command the agent runs, and a
 * database started by a component's start command ran with two malloc arenas and every
 * block of 32 KiB or more mapped on its own: tuning for a small agent, not for a database.
 */
export const OWN_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '32768' };

/**
 * Take the `#!` line's settings out of `env` (once the process has started on them). A
 * variable the operator set to something else stays: the `#!` line overrides it for the
 * agent, and the commands get what the operator gave.
 */
export function dropOwnEnv(env: NodeJS.ProcessEnv): void {
  for (const [k, v] of Object.entries(OWN_ENV)) if (env[k] === v) delete env[k];
}
