/** Every error code the code can raise is documented in the README, and every exit code too. */
import { describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { libErrorCodes } from '../../lib/errors.js';
import { agentErrorCodes } from '../../agent/errors.js';
import { coordinatorErrorCodes } from '../../coordinator/errors.js';
import { EXIT } from '../../coordinator/exit-codes.js';
import { resolveFromRoot } from '../../demo/local-cluster.js';
import { execFile } from 'node:child_process';

const all = [...libErrorCodes, ...agentErrorCodes, ...coordinatorErrorCodes];

describe('documentation of codes', () => {
  it('every LOCKSTEP_E_ code is declared once', () => {
    expect(new Set(all).size).toBe(all.length);
  });

  it('every declared error code has a row in the README', async () => {
    const readme = await readFile(resolveFromRoot('README.md'), 'utf8');
    const missing = all.filter((c) => !readme.includes(`| \`${c}\``));
    expect(missing).toEqual([]);
  });

  it('every code used in the sources is declared', async () => {
    const out = await new Promise<string>((res) =>
      execFile('grep', ['-rhoE', 'LOCKSTEP_E_[A-Z_]+', 'agent', 'coordinator', 'lib', 'plugins'], { cwd: resolveFromRoot() }, (_e, stdout) => res(stdout)),
    );
    const used = new Set(out.split('\n').filter((s) => s.length > 0 && !s.endsWith('_')));
    expect([...used].filter((c) => !all.includes(c as (typeof all)[number])).sort()).toEqual([]);
  });

  it('every exit code has a row in the README', async () => {
    const readme = await readFile(resolveFromRoot('README.md'), 'utf8');
    for (const [name, code] of Object.entries(EXIT)) expect(readme, name).toMatch(new RegExp(`\\| ${code} \\| \`${name}\``));
  });
});
