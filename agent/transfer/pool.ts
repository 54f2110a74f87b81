import { stopOf } from '../../lib/stop.js';

/** Run `work` over items with at most `limit` in flight; the first error stops the rest. */
export async function forEachLimit<T>(items: readonly T[], limit: number, work: (item: T, i: number) => Promise<void>, signal?: AbortSignal): Promise<void> {
  let next = 0;
  await forEachTaken(() => (next < items.length ? next++ : -1), Math.min(limit, items.length), (i) => work(items[i]!, i), signal);
}

/**
 * `forEachLimit` over numbers (-1: no more) that `take` hands out as workers get free: one
 * that passes over items that need no work, settling them as it goes, lets the work on the
 * first that does start at once, with no async call for the others.
 */
export async function forEachTaken(take: () => number, limit: number, work: (n: number) => Promise<void>, signal?: AbortSignal): Promise<void> {
  let failed: unknown;
  // not the signal itself in the loop (lib/stop.ts)
  const stop = stopOf(signal);
  const worker = async () => {
    while (failed === undefined) {
      stop?.check();
      const n = take();
      if (n < 0) return;
      try {
        await work(n);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  if (failed !== undefined) throw failed;
}

/**
 * `forEachLimit` over items that come as they are produced: the workers take the next one
 * when they are free, so a producer that reads its items in batches (an index, part by part)
 * is asked for the next batch only when the last item of this one was taken, and a slow item
 * at the end of a batch does not hold the others back. The first error (the producer's
 * too) stops the rest.
 */
export async function forEachOf<T>(items: AsyncIterable<T>, limit: number, work: (item: T) => Promise<void>, signal?: AbortSignal): Promise<void> {
  const it = items[Symbol.asyncIterator]();
  let failed: unknown;
  let done = false;
  const stop = stopOf(signal);
  const worker = async () => {
    while (failed === undefined && !done) {
      try {
        stop?.check();
        const r = await it.next();
        if (r.done) {
          done = true;
          return;
        }
        await work(r.value);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  if (failed !== undefined) {
    await it.return?.(undefined).catch(() => undefined);
    throw failed;
  }
}
