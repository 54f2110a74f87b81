/**
 * A worker thread of verify's read-back (blob-check-pool.ts): blobs out of a stretch of a
 * pack, each decoded and checked against its hash as the repository checks them
 * (blob-check.ts), only whether each is sound (and its length) going back.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Codec, type CodecSettings } from './codec.js';
import { blobOutOf } from './blob-check.js';
import { toErrorInfo } from '../errors.js';
import type { CheckRequest, CheckResult } from './blob-check-pool.js';

const codec = Codec.fromSettings(workerData as CodecSettings);

parentPort!.on('message', (req: CheckRequest) => {
  void (async () => {
    const extent = Buffer.from(req.extent.buffer, req.extent.byteOffset, req.extent.byteLength);
    const results: CheckResult[] = [];
    for (const b of req.blobs) {
      try {
        results.push({ length: (await blobOutOf(codec, b, extent, req.start, req.location)).length });
      } catch (err) {
        results.push({ error: toErrorInfo(err, 'LOCKSTEP_E_REPO_CORRUPT') });
      }
    }
    parentPort!.postMessage({ id: req.id, results });
  })();
});
