/** Test helpers for S3: a fresh bucket on the run's RGW, and driver settings for it. */
import { randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { inject } from 'vitest';
import { forwardingProxy, type ProxyOptions } from '../../demo/http-proxy.js';
import { s3Driver } from '../../plugins/storage/s3.js';
import type { StorageDriver } from '../../plugins/storage/types.js';

export type { SeenRequest } from '../../demo/http-proxy.js';

export interface S3Settings {
  driver: 's3';
  bucket: string;
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  prefix?: string;
  [k: string]: unknown;
}

/** an SDK client of the store `b` is on, to look at what a driver wrote as an operator's own tools would */
export function clientOf(b: { endpoint: string; accessKeyId: string; secretAccessKey: string }): S3Client {
  return new S3Client({ region: 'us-east-1', endpoint: b.endpoint, forcePathStyle: true, credentials: { accessKeyId: b.accessKeyId, secretAccessKey: b.secretAccessKey } });
}

/** an s3 driver for bucket `b`, with settings of its own (another endpoint: a proxy; a prefix, a storage class …) */
export function driverOf(b: S3Settings, own: Record<string, unknown> = {}): StorageDriver {
  return s3Driver.open({ ...b, driver: undefined, ...own }, '/');
}

/** a new, empty bucket on the test run's RGW */
export async function rgwBucket(): Promise<S3Settings> {
  const rgw = inject('rgw');
  const bucket = `lockstep-${randomBytes(6).toString('hex')}`;
  const client = clientOf(rgw);
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  client.destroy();
  return { driver: 's3', bucket, endpoint: rgw.endpoint, accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey };
}

/** what `cuttingProxy` gives: its endpoint, what to cut next, how many it cut */
export interface CuttingProxy {
  endpoint: string;
  cutGets(n: number): void;
  cutPuts(n: number, match: string): void;
  cutPutAnswers(n: number, match: string): void;
  cut: () => number;
  close(): Promise<void>;
}

/**
 * `test` with a fresh bucket and a `cuttingProxy` in front of the run's RGW (cutting after
 * `after` bytes), closed whatever the test does.
 */
export async function behindProxy(test: (bucket: S3Settings, proxy: CuttingProxy) => Promise<void>, after?: number): Promise<void> {
  const bucket = await rgwBucket();
  const proxy = await cuttingProxy(bucket.endpoint, after);
  try {
    await test(bucket, proxy);
  } finally {
    await proxy.close();
  }
}

/**
 * A TCP proxy in front of an S3 endpoint that cuts requests off part way, as a network
 * does to a long transfer: `cutGets(n)` makes the next `n` GET responses stop after
 * `after` bytes (status line and headers included), `cutPuts(n, match)` the next `n` PUT
 * requests whose request line contains `match` after `after` bytes of the request,
 * `cutPutAnswers(n, match)` the answers to such requests (the store has done the write;
 * the writer does not hear so); each with the client's connection reset.
 */
export async function cuttingProxy(endpoint: string, after = 64 * 1024): Promise<CuttingProxy> {
  const target = new URL(endpoint);
  let gets = 0;
  let puts = 0;
  let putMatch = '';
  let answers = 0;
  let answerMatch = '';
  let cut = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    /** the direction being cut on this connection, and the bytes let through so far */
    let cutting: 'response' | 'request' | undefined;
    let sent = 0;
    const pass = (d: Buffer, to: Socket, mine: boolean) => {
      if (!mine) return void to.write(d);
      const room = after - sent;
      sent += d.length;
      if (room > d.length) return void to.write(d);
      to.write(d.subarray(0, Math.max(0, room)), () => client.resetAndDestroy());
      upstream.destroy();
      cutting = undefined;
      cut++;
    };
    client.on('data', (d: Buffer) => {
      const line = d.subarray(0, Math.min(d.length, 512)).toString('latin1');
      if (gets > 0 && line.startsWith('GET ')) {
        gets--;
        cutting = 'response';
      } else if (puts > 0 && line.startsWith('PUT ') && line.split('\r\n', 1)[0]!.includes(putMatch)) {
        puts--;
        cutting = 'request';
        sent = 0;
      } else if (answers > 0 && line.startsWith('PUT ') && line.split('\r\n', 1)[0]!.includes(answerMatch)) {
        answers--;
        cutting = 'response';
        sent = 0;
      }
      pass(d, upstream, cutting === 'request');
    });
    upstream.on('data', (d: Buffer) => pass(d, client, cutting === 'response'));
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
    cutGets: (n) => void (gets = n),
    cutPuts: (n, match) => {
      puts = n;
      putMatch = match;
    },
    cutPutAnswers: (n, match) => {
      answers = n;
      answerMatch = match;
    },
    cut: () => cut,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * An HTTP proxy in front of an S3 endpoint that answers some requests itself, as a store
 * that lacks an operation or refuses part of one would: `answer` sees every request and
 * gives the status and XML body to send instead, or undefined to pass it on unchanged
 * (demo/http-proxy.ts).
 */
export function answeringProxy(endpoint: string, answer: NonNullable<ProxyOptions['answer']>): Promise<{ endpoint: string; close(): Promise<void> }> {
  return forwardingProxy(endpoint, { answer });
}
