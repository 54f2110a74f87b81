/**
 * An HTTP proxy in front of an S3 endpoint, for the tests and the benches: it passes every
 * request on unchanged (signatures hold: the Host header is passed as the client signed
 * it), after `delayMs` (a store far away), unless `answer` gives the status and XML body to
 * send instead (a store that lacks an operation or refuses part of one).
 */
import { createServer, request, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

/** a request as the proxy shows it to `answer`: method, path with its query, headers, body */
export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface ProxyOptions {
  /** how long each request is held before it is passed on (or answered) */
  delayMs?: number;
  /** the answer to send instead of passing the request on; undefined: pass it on */
  answer?: (req: SeenRequest) => { status: number; body: string } | undefined;
  /** true: the request is held, never answered (until the proxy closes): a store that stalls */
  hold?: (req: SeenRequest) => boolean;
}

export async function forwardingProxy(endpoint: string, opts: ProxyOptions = {}): Promise<{ endpoint: string; close(): Promise<void> }> {
  const target = new URL(endpoint);
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (p: Buffer) => parts.push(p));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      const pass = () => {
        const seen = { method: req.method ?? '', url: req.url ?? '/', headers: req.headers, body };
        if (opts.hold?.(seen)) return;
        const mine = opts.answer?.(seen);
        if (mine) {
          res.writeHead(mine.status, { 'content-type': 'application/xml' }).end(mine.body);
          return;
        }
        const up = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        });
        up.on('error', () => res.destroy());
        up.end(body);
      };
      if (opts.delayMs) setTimeout(pass, opts.delayMs);
      else pass();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
