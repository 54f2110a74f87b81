/** Test helpers for S3: a fresh bucket on the run's RGW, and driver settings for it. */
import { randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { inject } from 'vitest';

export interface S3Settings {
  driver: 's3';
  bucket: string;
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  prefix?: string;
  [k: string]: unknown;
}

/** a new, empty bucket on the test run's RGW */
export async function rgwBucket(): Promise<S3Settings> {
  const rgw = inject('rgw');
  const bucket = `lockstep-${randomBytes(6).toString('hex')}`;
  const client = new S3Client({ region: 'us-east-1', endpoint: rgw.endpoint, forcePathStyle: true, credentials: rgw });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  client.destroy();
  return { driver: 's3', bucket, endpoint: rgw.endpoint, accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey };
}

/**
 * A TCP proxy in front of an S3 endpoint that can cut responses short: `cutGets(n)` makes
 * the next `n` GET responses stop after `after` bytes (status line and headers included)
 * with the connection reset, as a network does to a long download.
 */
export async function cuttingProxy(endpoint: string, after = 64 * 1024): Promise<{ endpoint: string; cutGets(n: number): void; cut: () => number; close(): Promise<void> }> {
  const target = new URL(endpoint);
  let armed = 0;
  let cut = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    let cutting = false;
    let sent = 0;
    client.on('data', (d: Buffer) => {
      if (armed > 0 && d.subarray(0, 4).toString('latin1') === 'GET ') {
        armed--;
        cutting = true;
      }
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      if (!cutting) return void client.write(d);
      const room = after - sent;
      sent += d.length;
      if (room > d.length) return void client.write(d);
      client.write(d.subarray(0, Math.max(0, room)), () => client.resetAndDestroy());
      upstream.destroy();
      cutting = false;
      cut++;
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    cutGets: (n) => void (armed = n),
    cut: () => cut,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
