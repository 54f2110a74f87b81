/**
 * A job's AbortSignal as the loops that run for every file or read look at it.
 *
 * On Node 20 no two AbortSignals share a hidden class (each is an EventTarget whose
 * prototype is set afterwards, so its class has no place in V8's transition tree), and
 * optimized code that read one (`throwIfAborted`, `aborted`) checked that signal's own class.
 * Once the job's signal died, V8 threw the code away ("weak objects" in --trace-deopt) and
 * compiled it again in the next job, with everything inlined into it: the upload's file
 * loop, its buffer pool, the workers of `forEachLimit`. A Stop is one class for every job;
 * it listens to its signal once, and what waits on it is a plain callback, not a listener
 * on the signal (Node's listener objects were thrown away with it too).
 */
export class Stop {
  private stopped = false;
  private why: unknown;
  private readonly waiting = new Set<(reason: unknown) => void>();

  private constructor(readonly signal: AbortSignal) {
    if (signal.aborted) this.fire();
    else signal.addEventListener('abort', () => this.fire(), { once: true });
  }

  /** the one Stop of `signal` */
  static of(signal: AbortSignal): Stop {
    let s = stops.get(signal);
    if (!s) stops.set(signal, (s = new Stop(signal)));
    return s;
  }

  get aborted(): boolean {
    return this.stopped;
  }

  /** throws the signal's reason once it has aborted */
  check(): void {
    if (this.stopped) throw this.why;
  }

  /** `fn` is called with the reason when the signal aborts (at once if it has); the function returned forgets it */
  onStop(fn: (reason: unknown) => void): () => void {
    if (this.stopped) {
      fn(this.why);
      return () => undefined;
    }
    this.waiting.add(fn);
    return () => void this.waiting.delete(fn);
  }

  private fire(): void {
    this.stopped = true;
    this.why = this.signal.reason;
    const waiting = [...this.waiting];
    this.waiting.clear();
    for (const fn of waiting) fn(this.why);
  }
}

const stops = new WeakMap<AbortSignal, Stop>();

/** the Stop of `signal`, none without one */
export const stopOf = (signal: AbortSignal | undefined): Stop | undefined => (signal ? Stop.of(signal) : undefined);
