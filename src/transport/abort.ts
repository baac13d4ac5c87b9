/**
 * Giving up a pending connect when an `AbortSignal` fires.
 *
 * @module
 */

/**
 * Waits for a connect attempt, or rejects with the signal's reason as soon as the signal aborts.
 * A connection that the attempt yields after the abort is handed to `dispose`, so nothing is
 * left half-open.
 *
 * @param attempt The pending connect.
 * @param signal Gives up the wait when aborted; none means wait for the attempt.
 * @param dispose Closes what the attempt yields after the abort.
 * @param onAbort Called once when the signal aborts first, to cancel the attempt where the
 * runtime allows it.
 * @returns What the attempt yields, if the signal did not abort first.
 *
 * @example
 * ```ts
 * import { abortable } from "./abort.ts";
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
    attempt.then(dispose, () => {});
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
