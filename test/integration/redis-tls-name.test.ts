/**
 * A Redis server whose certificate names it by DNS only, reached at its address (as the
 * agent reaches a replica's master, at the address CLUSTER NODES gives): refused unless
 * `tls.serverName` names what the certificate holds. A real redis-server over TLS.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { engineTestTls, clientTls, type EngineTestTls } from '../../demo/engine-tls.js';
import { withRedis } from '../../plugins/engines/redis/client.js';
import { checkEtcdSettings } from '../../plugins/engines/etcd/settings.js';
import { rm } from 'node:fs/promises';
import { freePort, tempDir } from '../helpers/cluster.js';

const NAME = 'cache-1.redis.lockstep.test';

describe('redis over TLS, a certificate that names the server by DNS only', () => {
  let tls: EngineTestTls;
  let port: number;
  let server: ChildProcess;
  let dir: string;

  beforeAll(async () => {
    dir = await tempDir();
    tls = await engineTestTls(dir, 'redis', [NAME]);
    port = await freePort();
    server = spawn(
      'redis-server',
      ['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--tls-cert-file', tls.serverCert, '--tls-key-file', tls.serverKey, '--tls-ca-cert-file', tls.ca, '--save', '', '--appendonly', 'no', '--dir', dir],
      { stdio: 'ignore' },
    );
    // up once it answers (with the name given)
    const s = { host: '127.0.0.1', port, tls: { ...clientTls(tls), serverName: NAME } };
    for (let i = 0; i < 100; i++) {
      if (await withRedis(s, 'n1', (r) => r.ping()).then(() => true, () => false)) return;
      await sleep(100);
    }
    throw new Error('redis-server did not start');
  });
  afterAll(async () => {
    server?.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('is refused at its address, naming the mismatch; reached with serverName', async () => {
    const at = { host: '127.0.0.1', port, tls: clientTls(tls) };
    const refused = await withRedis(at, 'n1', (r) => r.ping()).catch((e: unknown) => e as Error);
    expect(refused).toBeInstanceOf(Error);
    expect((refused as Error).message).toContain(`redis 127.0.0.1:${port}`);
    expect((refused as Error).message).toMatch(/altnames|IP: 127\.0\.0\.1 is not in the cert/i);
    expect(await withRedis({ ...at, tls: { ...clientTls(tls), serverName: NAME } }, 'n1', (r) => r.ping())).toBe('PONG');
  });

  it('etcd refuses the setting: etcdctl has no way to check another name', () => {
    expect(checkEtcdSettings({ endpoint: 'https://127.0.0.1:2379', tls: { ca: 'ca.crt', serverName: NAME } } as never)).toEqual([
      { path: 'tls.serverName', message: 'is not supported for etcd: give the endpoint by the name its certificate holds' },
    ]);
  });
});
