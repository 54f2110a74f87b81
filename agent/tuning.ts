/**
 * How the agent process uses memory, set before any other module loads (the
 * agent imports this first). Its memory stays flat while it moves data (its big buffers
 * are pooled, off the heap); with all of the below a 5 GiB backup peaks at ~136-140 MiB. (The
 * LZ4 binding also keeps memory in its own mimalloc; MIMALLOC_PURGE_DELAY=0 made it hand freed
 * output back at once, 5–12 MiB less at peak, but cost ~8% of the agent's CPU: not set.)
 *
 * On the agent's `#!` line, read when the process starts (and then taken out of its
 * environment: the commands it runs get the environment it was given, lib/own-env.ts):
 * - glibc keeps two malloc arenas, not one per thread (16 I/O threads): ~15 MiB less at peak;
 * - glibc maps every block of 32 KiB or more on its own and unmaps it when freed (setting it
 *   also stops glibc from raising that threshold as big buffers come and go, which held
 *   ~25 MiB more after a 5 GiB backup). Without it a restore left the agent ~70 MiB larger
 *   for good: V8's optimizing compiler takes its working memory in 36 KiB segments, ~10k of
 *   them during a 2 GiB restore, and once freed they sat in the middle of glibc's heap, which
 *   only shrinks from its top. Measured, one 5 GiB node: RSS after the restore 166 -> 97 MiB,
 *   the next full backup's peak 200 -> 154 MiB, the next incremental's 179 -> 139 MiB;
 *   backups before any restore the same (136-138 MiB). The price: LZ4's output buffers of
 *   32 KiB and up are mapped and unmapped each time (the binding's synchronous calls, at
 *   least, take their output through glibc's malloc: with this setting a micro-benchmark of
 *   them spent most of its time in the kernel).
 *   A 2 GiB full backup's agent CPU 10.6-11.0 -> 10.7-11.2 s (noise); a 2 GiB restore's
 *   25.7-28.5 -> 29.9-35.9 s (~15% more, ~10% more wall time), for an agent that no longer
 *   stays ~70-110 MiB larger after it (a decompressor writing into reused buffers would
 *   take that price away);
 * - a young generation of 2 MiB instead of 16: ~50 MiB less at peak, no measured cost in time;
 * - gc() for lib/memory.ts, which frees dead native buffers (LZ4 output) as they pile up and
 *   collects the old generation when it grows.
 * Here (that line stays under the 127 characters old kernels read of it):
 * - no pretenuring: once V8 saw enough buffers survive (the pools) it allocated every new one in
 *   the old generation, where only a full collection frees it (that was ~60 MiB of dead LZ4
 *   output in one run in three);
 * - array buffers swept during the collection itself, so their memory is reused at once.
 * libuv's thread pool is sized in main.cts, the entry, before any module is loaded.
 */
import { setFlagsFromString } from 'node:v8';
import { dropOwnEnv } from '../lib/own-env.js';

setFlagsFromString('--no-allocation-site-pretenuring');
setFlagsFromString('--no-concurrent-array-buffer-sweeping');
// read by glibc when the process started: the commands the agent runs get the environment it was given (lib/own-env.ts)
dropOwnEnv(process.env);
