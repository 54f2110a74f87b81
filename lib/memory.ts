/**
 * Buffers that native code hands back (LZ4 output, cipher output) live outside V8's heap;
 * a dead one is freed only when V8 next collects its young generation, and that runs when
 * the young generation's 2 MiB of small objects fill (see the agent's flags), not when the
 * buffers pile up. An upload cut into 32 KiB blocks made ~60 MiB of dead compressor output
 * between two collections, and glibc keeps resident what it once held.
 *
 * `nativeGarbage(bytes)` counts such bytes once they are dead (or about to be) and runs a
 * young-generation collection every 4 MiB: ~0.1 ms each, with the dead buffers' memory
 * reused at once instead of grown. Measured on 32 KiB blocks of half-random data, one
 * core: RSS growth 65 → 19 MiB, time 99 → 79 ms for 256 MiB compressed. The codec counts
 * what it encodes, not what it decodes (see Codec.decode).
 *
 * Objects that live across two young collections (a read in flight, a pending upload's
 * promise) move to the old generation, and die there soon after; V8 lets that garbage
 * grow to its own limit before a full collection (~40 MiB more during a 5 GiB upload).
 * So at every young collection it also looks at the heap and its buffers: once they hold
 * `GROWTH` more than after the last full collection, it runs one (~10–30 ms; a few per
 * 5 GiB). It does nothing unless the process runs with --expose-gc (the agent does).
 */
import { getHeapStatistics } from 'node:v8';

/**
 * `gc()` is a full collection; `gc({ type: 'minor' })` a young-generation one. On Node 20
 * (V8 11.3) any options object means a young-generation collection, `{ type: 'major' }` too.
 */
type Gc = (options?: { type: 'minor' }) => void;

const gc = (globalThis as { gc?: Gc }).gc;
const EVERY = 4 * 1024 * 1024;
/**
 * 16 MiB, not 24: the backup right after a restore reads every file again and leaves most
 * garbage; it peaked at 140–141 MiB with 24, 128 with 16 (5 GiB node, goal 143); a full
 * backup 136–138 either way, in the same time.
 */
const GROWTH = 16 * 1024 * 1024;
/** heap and buffers in use after the last full collection (before the first: when first looked at) */
let live = -1;

function inUse(): number {
  const h = getHeapStatistics();
  return h.used_heap_size + h.external_memory;
}

/** bytes counted since the last young collection each counter set off */
const counters = { garbage: 0, dead: 0 };

/** count `bytes` on `counter`: a young collection (true) once it reaches `EVERY` */
function youngEvery(counter: keyof typeof counters, bytes: number): boolean {
  if (!gc) return false;
  counters[counter] += bytes;
  if (counters[counter] < EVERY) return false;
  counters[counter] = 0;
  gc({ type: 'minor' });
  return true;
}

export function nativeGarbage(bytes: number): void {
  if (youngEvery('garbage', bytes)) collectIfGrown();
}

/**
 * `bytes` of native buffers that are dead already (a decipher's output slices, copied out):
 * a young-generation collection every 4 MiB frees them for the next slices to reuse, with
 * no look at the old generation (see Codec.decode: the full collections that counting
 * decoded blobs set off made a restore 15–25% slower). Without it an encrypted restore's
 * 16 KiB slices piled up between collections and grew glibc's heap, which shrinks only
 * from its top: one 5 GiB node held 75 MiB of it after the restore (7 unencrypted), and the
 * backup after that started there.
 */
export function deadNative(bytes: number): void {
  youngEvery('dead', bytes);
}

/** a full collection if the heap and its buffers grew by `GROWTH` since the last one */
export function collectIfGrown(): void {
  if (!gc) return;
  const now = inUse();
  if (live < 0) live = now;
  else if (now > live + GROWTH) collect();
}

/**
 * `bytes` more are held on purpose from now on (an index part's buffer grown for a big
 * file's entry): not growth that a full collection could free. A 5 GiB incremental's index
 * write ran one (~20 ms) that found ~2.5 MB to free. Not for an upload's pools: the
 * collections their growth sets off keep the garbage of the file phase, where the upload
 * peaks, lower (see BufferPool.acquire).
 */
export function held(bytes: number): void {
  if (live >= 0) live += bytes;
}

/**
 * What is alive now is to stay (an index write's part buffers just made): the young
 * generation is collected, and growth is counted from here. Without it the first look in
 * an index's write ran a full collection that found ~1 MB to free (~20 ms of a 5 GiB
 * incremental's thread). Not where the heap still holds garbage of the old generation: an
 * upload that did the same once its previous index was loaded skipped a collection that
 * would have freed 3–5 MB, and the backup after a restore peaked at 143 MiB instead of 134
 * in one pair of runs (goal 143): not worth ~20 ms.
 */
export function settled(): void {
  if (!gc) return;
  gc({ type: 'minor' });
  live = inUse();
}

/**
 * Collect everything now: after a step that left much garbage in the old generation
 * (a part of an index parsed and turned into compact refs) or let go of big buffers
 * (an upload's pools before its index is written). ~5–30 ms, by what is alive.
 */
export function collect(): void {
  if (!gc) return;
  gc();
  live = inUse();
}

/**
 * Run a job that holds big buffers and a whole index, then collect everything: its pools
 * go back to the system before the next such job makes its own (without this an
 * incremental right after a full backup held both jobs' pools for a moment: +34 MiB at
 * peak). One full collection per job, ~10–30 ms, once the job has settled (its result is
 * not held back by it); not for jobs inside a downtime window.
 *
 * `compact`: a second one right after. A restore's stage job held its whole index as
 * objects (~50 MB of heap at 5 GiB; it reads it part by part now, ~40 MB of heap at its
 * peak, and the second collection was kept); the first collection frees them but leaves the heap's
 * pages sparse, and V8 picks pages to compact by what the last collection found alive, so
 * only a second one moves what is left together and gives the pages back (--trace-gc, 5 GiB:
 * 64 → 33 MB of heap after the first, → 22 MB after the second). Without it the next
 * backup started ~20 MiB larger and peaked at 142–151 MiB (goal 143); with it, 88–94 MiB
 * before and 140–141 at its peak (128 with `GROWTH` at 16 MiB).
 */
export async function thenCollect<T>(work: Promise<T>, compact = false): Promise<T> {
  try {
    return await work;
  } finally {
    setImmediate(() => {
      collect();
      if (compact) collect();
    });
  }
}
