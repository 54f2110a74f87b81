/**
 * A worker thread of verify's read-back (blob-check-pool.ts): blobs out of a stretch of a
 * pack, each decoded and checked against its hash as the repository checks them
 * (blob-check.ts), only whether each is sound (and its length) going back.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Codec, type CodecSettings } from './codec.js';
import { verdictsOf } from './blob-check.js';
import type { CheckRequest } from './blob-check-pool.js';

const codec = Codec.fromSettings(workerData as CodecSettings);

parentPort!.on('message', (req: CheckRequest) => {
  const extent = Buffer.from(req.extent.buffer, req.extent.byteOffset, req.extent.byteLength);
  void verdictsOf(codec, req.blobs, extent, req.start, req.location).then((results) => parentPort!.postMessage({ id: req.id, results }));
});
