/** The shipped unit files pass systemd-analyze verify. */
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveFromRoot } from '../../demo/local-cluster.js';

describe('systemd units', () => {
  it('every unit in systemd/ verifies clean', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lockstep-units-'));
    try {
      const units = (await readdir(resolveFromRoot('systemd'))).filter((f) => /\.(service|timer)$/.test(f));
      expect(units).toContain('lockstep-agent.service');
      for (const u of units) {
        // the binary is not installed here: point ExecStart at one that exists
        const text = (await readFile(resolveFromRoot('systemd', u), 'utf8')).replace(/ExecStart=\/usr\/bin\/\S+/g, 'ExecStart=/bin/true');
        await writeFile(join(dir, u), text);
      }
      const result = await new Promise<{ code: number; out: string }>((res) =>
        execFile('systemd-analyze', ['verify', ...units.map((u) => join(dir, u))], (err, stdout, stderr) =>
          res({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
        ),
      );
      expect(result.out).toBe('');
      expect(result.code).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
