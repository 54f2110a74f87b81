/** `lockstep ca`: a CA and certificates made in-process, keys private, details readable. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CertInfo } from '../../lib/tls/certs.js';
import { json, runCli, tempDir } from '../helpers/cluster.js';

describe('lockstep ca', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('init, issue agent and coordinator, show', async () => {
    const ca = join(dir, 'ca');
    expect((await runCli(['ca', 'init', '--dir', ca, '--cluster', 'prod'])).code).toBe(0);
    expect((await stat(join(ca, 'ca.key'))).mode & 0o777).toBe(0o600);
    // a second init never replaces the CA
    const again = await runCli(['ca', 'init', '--dir', ca]);
    expect(again.code).toBe(4);
    expect(again.stderr).toContain('LOCKSTEP_E_CA_EXISTS');

    const a = await runCli(['ca', 'issue', 'agent', '--name', 'db-1', '--host', '10.0.0.5', 'db-1.example', '--dir', ca]);
    expect(a.code, a.stderr).toBe(0);
    expect((await stat(join(ca, 'agent-db-1.key'))).mode & 0o777).toBe(0o600);
    const c = await runCli(['ca', 'issue', 'coordinator', '--name', 'ops', '--dir', ca, '--out', join(dir, 'ops')]);
    expect(c.code, c.stderr).toBe(0);

    const show = await runCli(['ca', 'show', join(ca, 'agent-db-1.crt'), '--json']);
    expect(show.code).toBe(0);
    const info = json<CertInfo>(show.stdout);
    expect(info).toMatchObject({ role: 'agent', name: 'db-1', hosts: ['10.0.0.5', 'db-1.example'], expired: false });
    expect(new Date(info.notAfter).getTime()).toBeGreaterThan(Date.now() + 800 * 86_400_000);
    const human = await runCli(['ca', 'show', join(dir, 'ops', 'coordinator-ops.crt')]);
    expect(human.stdout).toMatch(/role:\s+coordinator/);
    expect(human.stdout).toMatch(/name:\s+ops/);

    // re-issuing needs --force (rotation)
    expect((await runCli(['ca', 'issue', 'agent', '--name', 'db-1', '--host', 'x', '--dir', ca])).code).not.toBe(0);
    expect((await runCli(['ca', 'issue', 'agent', '--name', 'db-1', '--host', 'x', '--dir', ca, '--force'])).code).toBe(0);
  });

  it('refuses bad input with a clear message', async () => {
    const noHost = await runCli(['ca', 'issue', 'agent', '--name', 'n', '--dir', join(dir, 'ca')]);
    expect(noHost.code).toBe(2);
    expect(noHost.stderr).toContain('--host');
    const noCa = await runCli(['ca', 'issue', 'coordinator', '--name', 'n', '--dir', join(dir, 'missing')]);
    expect(noCa.code).toBe(4);
    expect(noCa.stderr).toContain('no CA in');
    const badRole = await runCli(['ca', 'issue', 'admin', '--name', 'n', '--dir', join(dir, 'ca')]);
    expect(badRole.code).toBe(2);
    const badName = await runCli(['ca', 'issue', 'coordinator', '--name', '../evil', '--dir', join(dir, 'ca')]);
    expect(badName.code).toBe(2);
    expect(badName.stderr).toContain('not a valid name');
    const notCert = await runCli(['ca', 'show', join(dir, 'ca', 'ca.key')]);
    expect(notCert.code).toBe(2);
  });
});
