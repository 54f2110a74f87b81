/**
 * Worker threads that decode and check blobs for `backup verify --read-data`. On the
 * calling thread, decoding (AES-GCM, LZ4) and hashing a backup's blobs ran at ~540 MB/s
 * and bounded the whole read-back: the storage hands out stretches of packs faster than
 * one core checks them. A stretch read goes to the least busy worker (moved, not copied),
 * and only each blob's verdict comes back. Verify runs on the coordinator's host, where a
 * few threads' memory is not the agent's budget.
 *
 * Built code only: the worker is the compiled `blob-check-worker.js` beside this module;
 * where it is not there (code run from source), `open` gives undefined and the caller
 * checks on its own thread.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { LockstepError } from '../errors.js';
import type { Codec } from './codec.js';
import type { CheckResult, PackedBlob } from './blob-check.js';

export interface CheckRequest {
  id: number;
  extent: Uint8Array;
  start: number;
  blobs: PackedBlob[];
  location: string;
}

interface Busy {
  worker: Worker;
  waiting: Map<number, { resolve: (r: CheckResult[]) => void; reject: (err: unknown) => void }>;
  dead?: unknown;
}

/** workers at most: beyond ~4 the storage, not the checking, bounds a read-back */
const MAX_WORKERS = 4;

export class BlobCheckPool {
  private next = 0;

  private constructor(private readonly busy: Busy[]) {}

  /** a pool for `codec`'s repository; undefined where the compiled worker is not there (`url`: another build's, for tests) */
  static open(codec: Codec, size = Math.min(availableParallelism(), MAX_WORKERS), url = new URL('./blob-check-worker.js', import.meta.url)): BlobCheckPool | undefined {
    if (!existsSync(fileURLToPath(url))) return undefined;
    const busy: Busy[] = [];
    for (let i = 0; i < Math.max(1, size); i++) {
      let worker: Worker;
      try {
        worker = new Worker(url, { workerData: codec.settings });
      } catch {
        // no thread to be had: the workers there are (or none, and the caller checks itself)
        break;
      }
      const b: Busy = { worker, waiting: new Map() };
      b.worker.on('message', (m: { id: number; results: CheckResult[] }) => {
        b.waiting.get(m.id)?.resolve(m.results);
        b.waiting.delete(m.id);
      });
      const fail = (err: unknown) => {
        b.dead ??= err;
        for (const w of b.waiting.values()) w.reject(err);
        b.waiting.clear();
      };
      b.worker.on('error', fail);
      b.worker.on('exit', (code) => fail(new LockstepError('LOCKSTEP_E_INTERNAL', `a blob check worker stopped (exit code ${code})`)));
      // not unref'd: a check in flight is what the process waits on (`close` ends them)
      busy.push(b);
    }
    return busy.length > 0 ? new BlobCheckPool(busy) : undefined;
  }

  /**
   * Each of `blobs` out of `extent` (the stored bytes of their pack from `start` on),
   * checked; in their order. `extent` is moved to the worker (unusable here after) when
   * it is the whole of its memory. Rejects only when no worker can take it.
   */
  check(extent: Buffer, start: number, blobs: PackedBlob[], location: string): Promise<CheckResult[]> {
    const alive = this.busy.filter((b) => b.dead === undefined);
    if (alive.length === 0) return Promise.reject(this.busy[0]?.dead ?? new LockstepError('LOCKSTEP_E_INTERNAL', 'no blob check worker'));
    const b = alive.reduce((least, x) => (x.waiting.size < least.waiting.size ? x : least));
    const id = this.next++;
    const whole = extent.byteOffset === 0 && extent.byteLength === extent.buffer.byteLength;
    const view = whole ? new Uint8Array(extent.buffer, 0, extent.byteLength) : new Uint8Array(extent);
    return new Promise((resolve, reject) => {
      b.waiting.set(id, { resolve, reject });
      b.worker.postMessage({ id, extent: view, start, blobs, location } satisfies CheckRequest, [view.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.busy.map((b) => b.worker.terminate().catch(() => undefined)));
  }
}
