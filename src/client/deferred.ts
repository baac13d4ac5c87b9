/**
 * A promise with its resolve and reject functions.
 *
 * @module
 */

/** A promise that is settled from outside. Its promise never counts as an unhandled rejection. */
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

function noop(): void {}
