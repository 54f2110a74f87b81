#!/usr/bin/env -S MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=32768 node --max-semi-space-size=2 --expose-gc
/**
 * lockstep-agent's entry. Its first line sets what must be known when the process starts
 * (see tuning.ts); this file sizes libuv's thread pool, then loads the daemon (daemon.ts).
 *
 * A CommonJS file, so that nothing is queued on the pool before it is sized: libuv reads
 * UV_THREADPOOL_SIZE once, when the first piece of work is queued, and loading an ES module
 * is such work (its file is read asynchronously). Set in the first module the daemon
 * imported, it came too late: the agent ran on the default 4 threads.
 *
 * 16 threads, for file I/O on many small files at once. An operator's own value is kept.
 * Ours goes out of the environment once the pool has started, so the commands the agent
 * runs do not inherit it (lib/own-env.ts).
 */
import { stat } from 'node:fs';

const ours = process.env.UV_THREADPOOL_SIZE === undefined;
if (ours) process.env.UV_THREADPOOL_SIZE = '16';
// the first piece of work: the pool starts, reading the variable, before this call returns
stat(__filename, () => undefined);
if (ours) delete process.env.UV_THREADPOOL_SIZE;
void import('./daemon.js');
