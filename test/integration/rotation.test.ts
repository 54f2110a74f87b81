/** Agents reload their certificate files when they change (rotation without a restart). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:tls';
import { readFile, writeFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LocalCluster } from '../../demo/local-cluster.js';
import { issueCertificate } from '../../lib/tls/certs.js';
import { issuedPaths } from '../../lib/tls/files.js';
import { runCli, startCluster, stopCluster } from '../helpers/cluster.js';

async function servedFingerprint(cluster: LocalCluster): Promise<string> {
  const a = cluster.agent('node1');
  const coord = issuedPaths(cluster.caDir, 'coordinator', 'operator');
  const [cert, key] = [await readFile(coord.cert), await readFile(coord.key)];
  return new Promise((res, rej) => {
    const s = connect({ host: a.host, port: a.port, ca: cluster.ca.cert, cert, key, servername: 'localhost' }, () => {
      res(s.getPeerCertificate().fingerprint256);
      s.end();
    });
    s.on('error', rej);
  });
}

describe('certificate rotation', () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = await startCluster({ nodes: 1 });
  });
  afterAll(() => stopCluster(cluster));

  it('an agent serves a re-issued certificate without a restart, and refuses one for another node', async () => {
    const paths = issuedPaths(cluster.caDir, 'agent', 'node1');
    const before = await servedFingerprint(cluster);
    expect(before).toBe(new X509Certificate(await readFile(paths.cert)).fingerprint256);

    const r = await runCli(['ca', 'issue', 'agent', '--name', 'node1', '--host', '127.0.0.1', 'localhost', '--dir', cluster.caDir, '--force']);
    expect(r.code, r.stderr).toBe(0);
    const rotated = new X509Certificate(await readFile(paths.cert)).fingerprint256;
    expect(rotated).not.toBe(before);
    let served = before;
    for (let i = 0; i < 50 && served !== rotated; i++) {
      await sleep(200);
      served = await servedFingerprint(cluster);
    }
    expect(served).toBe(rotated);
    const pid = cluster.agent('node1').process!.pid;

    // a certificate naming another node is refused; the agent keeps serving the last good one
    const wrong = await issueCertificate(cluster.ca, { role: 'agent', name: 'node9', hosts: ['127.0.0.1'] });
    await writeFile(paths.key, wrong.key);
    await writeFile(paths.cert, wrong.cert);
    await sleep(5000);
    expect(await servedFingerprint(cluster)).toBe(rotated);
    expect(cluster.agent('node1').process!.pid).toBe(pid);
    expect(cluster.agent('node1').stderr.join('')).toContain('new certificates refused');
  });
});
