/**
 * One small object of each shape an upload works with, kept for the life of the process,
 * so that the code optimized for it is kept too.
 *
 * V8's optimized code checks the shape (the "map") of the objects it handles and holds
 * those maps only weakly. Once no object of a shape is left, an explicit full collection
 * (lib/memory.ts runs several in every job, and one after it) frees the map, clears the
 * feedback that named it, and throws away the code optimized against it ("weak objects"
 * in --trace-deopt). Nearly everything an upload makes lives for that job only, so every
 * backup compiled its hot code again: 1.9–2.4 s of CPU on V8's compiler threads in each
 * 5 GiB incremental (the main thread itself used ~2.5 s), on the same two cores that do
 * the work. With these kept: 1.1–1.5 s, and about half the deoptimizations. Kept since
 * (the job's context and progress counter, pack numbers, a file handle and what its read
 * gives back, a directory entry): a 5 GiB incremental compiles ~30 functions again, ~0.3 s
 * of the compiler thread (--trace-opt), not ~45 and ~0.45 s. The cancellation check was
 * one of them: no two of Node's AbortSignals share a shape, so keeping one did not help; the
 * loops look at a Stop instead (lib/stop.ts). Kept later (the walk's visitor, the reader of
 * the walked rows, the index's part planner, what a read on a descriptor resolves to): of
 * the eight functions a 5 GiB incremental still threw away for "weak objects" in each job,
 * one is left, Node's own `read` (its request objects cannot be kept from here); ~13 are
 * compiled in each job for other reasons (--trace-opt). Measured, 12 incrementals each,
 * the two builds alternated: 1.60 s against 1.64 s and 2.14 against 2.25 s of CPU, within
 * the noise. What is still compiled again: a file handle's close and read, the upload's
 * per-file work while its feedback still changes (sizes past 2^30 are not small integers),
 * the index's part reader.
 */
const kept: object[] = [];
const keys = new Set<string>();

/** keep `o` (a small object of a shape hot code works on) for good; `o` */
export function keepShape<T extends object>(o: T): T {
  kept.push(o);
  return o;
}

/** keep the first object `make` gives, once: for a shape only a job's own arguments can make */
export function keepShapeOnce(key: string, make: () => object): void {
  if (keys.has(key)) return;
  keys.add(key);
  keepShape(make());
}
