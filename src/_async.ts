/**
 * Small asynchronous helpers that several layers share: a promise settled from outside, a wait
 * bounded in time, a wait that an `AbortSignal` ends, closing what nobody will use, and the
 * runtime's clock. Private to the package (the `_` prefix); nothing here knows MQTT.
 *
 * @module
 */

/** A source of time and timers; tests pass a fake one. */
export interface Clock {
  /** Milliseconds on a monotonic clock. */
  now(): number;
  /** Calls `callback` after `ms` milliseconds; returns a handle for `clearTimeout`. */
  setTimeout(callback: () => void, ms: number): unknown;
  /** Cancels a timer. */
  clearTimeout(handle: unknown): void;
}

/**
 * The longest delay a timer holds: `setTimeout` fires at once for more (2^31 - 1 ms, 24.8
 * days), so a longer wait must be treated as none.
 */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * The runtime's clock: `performance.now()` and its timers.
 *
 * @example
 * ```ts
 * import { systemClock } from "./_async.ts";
 *
 * const started = systemClock.now();
 * console.log(systemClock.now() >= started); // true
 * ```
 */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as number),
};

/**
 * A promise that is settled from outside. Its promise never counts as an unhandled rejection.
 *
 * @example
 * ```ts
 * import { Deferred } from "./_async.ts";
 *
 * const done = new Deferred<number>();
 * done.resolve(42);
 * console.log(await done.promise); // 42
 * ```
 */
export class Deferred<T> {
  /** The promise. */
  readonly promise: Promise<T>;
  /** Fulfils the promise. */
  resolve!: (value: T) => void;
  /** Rejects the promise. */
  reject!: (reason: unknown) => void;

  /** Creates a pending promise. */
  constructor() {
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // A caller that fires and forgets must not crash the process when the connection drops.
    this.promise.catch(noop);
  }
}

/** Does nothing: the handler of a rejection that is reported elsewhere, or not at all. */
export function noop(): void {}

/**
 * Waits for `promise`, but no longer than `ms` milliseconds of `clock`; never rejects.
 *
 * @returns Whether `promise` fulfilled in time.
 *
 * @example
 * ```ts
 * import { within } from "./_async.ts";
 *
 * console.log(await within(Promise.resolve(), 1000)); // true
 * console.log(await within(new Promise(() => {}), 0)); // false
 * ```
 */
export async function within(
  promise: Promise<unknown>,
  ms: number,
  clock: Clock = systemClock,
): Promise<boolean> {
  let timer: unknown;
  const timeout = new Promise<boolean>((resolve) => {
    timer = clock.setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true, () => false), timeout]);
  } finally {
    clock.clearTimeout(timer);
  }
}

/**
 * Waits for an attempt, or rejects with the signal's reason as soon as the signal aborts. What
 * the attempt yields after the abort is handed to `dispose`, so nothing is left half-open.
 *
 * @param attempt The pending work, a connect say.
 * @param signal Gives up the wait when aborted; none means wait for the attempt.
 * @param dispose Closes what the attempt yields after the abort.
 * @param onAbort Called once when the signal aborts first, to cancel the attempt where the
 * runtime allows it.
 * @returns What the attempt yields, if the signal did not abort first.
 *
 * @example
 * ```ts
 * import { abortable } from "./_async.ts";
 *
 * const controller = new AbortController();
 * const pending = abortable(new Promise<string>(() => {}), controller.signal, () => {});
 * controller.abort(new Error("gave up"));
 * await pending.catch((error) => console.log(error.message)); // "gave up"
 * ```
 */
export function abortable<T>(
  attempt: Promise<T>,
  signal: AbortSignal | undefined,
  dispose: (value: T) => void,
  onAbort?: () => void,
): Promise<T> {
  if (signal === undefined) return attempt;
  if (signal.aborted) {
    attempt.then(dispose, noop);
    onAbort?.();
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    let aborted = false;
    const abort = () => {
      aborted = true;
      reject(signal.reason);
      onAbort?.();
    };
    signal.addEventListener("abort", abort, { once: true });
    attempt.then(
      (value) => {
        signal.removeEventListener("abort", abort);
        if (aborted) dispose(value);
        else resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", abort);
        reject(error);
      },
    );
  });
}

/**
 * Closes something nobody will use: one that is closed already, or whose close fails, is fine.
 *
 * @example
 * ```ts
 * import { closeQuietly } from "./_async.ts";
 *
 * closeQuietly({ close: () => { throw new Error("closed already"); } }); // no throw
 * ```
 */
export function closeQuietly(closable: { close?(): void | Promise<void> }): void {
  try {
    const closing = closable.close?.();
    if (closing instanceof Promise) closing.catch(noop);
  } catch {
    // Already closed.
  }
}
