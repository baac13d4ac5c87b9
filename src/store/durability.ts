/**
 * When a `FileStore`'s writes are durable: the `fdatasync` policy (`"always"`, `"batch"`,
 * `"never"`) — group flushes per turn of the event loop, the timed flush of a batch — and the
 * promises of the calls, which resolve once their records are as durable as the policy makes
 * them, or wait for a compaction to end; and the failure that rejects them all.
 *
 * @module
 */

import { MqttError } from "../errors.ts";
import { type Clock, Deferred, systemClock } from "../_async.ts";

/** How often, at most, `"batch"` flushes the log, in milliseconds. */
const BATCH_SYNC_INTERVAL = 100;
/** What a call returns when nothing is left to wait for: one settled promise, shared. */
export const DONE: Promise<void> = Promise.resolve();

/** A file to flush: the log. */
export interface Flushable {
  /** Flushes the file's data to the disk. */
  datasync(): Promise<void>;
}

/**
 * The flushes of one log under one `fsync` policy, and the promises that wait for them. It makes
 * no flush itself but in {@linkcode Flusher.flushNext}: it calls `wake` when one is due, and the
 * store's background work, which also runs compaction, one thing at a time, calls `flushNext`
 * while {@linkcode Flusher.flushDue} says so.
 *
 * @example
 * ```ts
 * import { Flusher } from "./durability.ts";
 *
 * const flusher = new Flusher("batch", "session.log", () => {});
 * const durable = flusher.written(); // a record reached the operating system
 * await durable; // "batch" resolves at once, and flushes within 100 ms
 * flusher.stop();
 * console.log(flusher.failure); // undefined
 * ```
 */
export class Flusher {
  readonly #fsync: "always" | "batch" | "never";
  readonly #logPath: string;
  readonly #wake: () => void;
  readonly #clock: Clock;
  #failure: MqttError | undefined;
  #stopped = false;

  // Settles once the compaction that is due (or running) has ended: under "batch" and "never",
  // what the calls made meanwhile wait for, so that a writer cannot outrun compaction.
  #compaction: Deferred<void> | undefined;

  // fsync: "always": the calls whose records the next flush covers.
  #group: Deferred<void> | undefined;

  // fsync: "batch": whether written bytes await a flush, and when the last flush was.
  #dirty = false;
  #syncDue = false;
  #lastSync = 0;
  #syncTimer: unknown;

  /**
   * @param fsync The policy.
   * @param logPath The log, for the message of a failure.
   * @param wake Called when a flush becomes due, for the background work to call `flushNext`.
   * @param clock The time and the timer of `"batch"`'s timed flush.
   * @throws {TypeError} When `fsync` is none of the policies.
   */
  constructor(
    fsync: "always" | "batch" | "never",
    logPath: string,
    wake: () => void,
    clock: Clock = systemClock,
  ) {
    if (fsync !== "always" && fsync !== "batch" && fsync !== "never") {
      throw new TypeError(`fsync must be "always", "batch" or "never", not ${String(fsync)}`);
    }
    this.#fsync = fsync;
    this.#logPath = logPath;
    this.#wake = wake;
    this.#clock = clock;
  }

  /** Why the store failed for good, once a write or a flush has failed. */
  get failure(): MqttError | undefined {
    return this.#failure;
  }

  /**
   * A record has reached the operating system.
   *
   * @returns The promise of the call that wrote it: when it is durable under the policy.
   */
  written(): Promise<void> {
    if (this.#fsync === "always") {
      let group = this.#group;
      if (group === undefined) {
        group = this.#group = new Deferred<void>();
        this.#wake();
      }
      return group.promise;
    }
    if (this.#fsync === "batch") {
      this.#dirty = true;
      this.#scheduleSync();
    }
    return this.#compaction?.promise ?? DONE;
  }

  /**
   * Records reached the log without `written()`: the records compaction moved to the new log.
   * Under `"batch"` the next timed flush covers them.
   */
  moved(): void {
    if (this.#fsync === "batch") this.#dirty = true;
  }

  /** A compaction is due: under `"batch"` and `"never"`, calls wait for it from now on. */
  compactionDue(): void {
    this.#compaction = new Deferred<void>();
  }

  /** Whether a compaction is due or running. */
  get compactionPending(): boolean {
    return this.#compaction !== undefined;
  }

  /** The compaction has ended: the calls that waited for it resolve. */
  compactionEnded(): void {
    const compaction = this.#compaction;
    this.#compaction = undefined;
    compaction?.resolve();
  }

  /**
   * Whether a flush is due: a group's under `"always"`, the timed one under `"batch"`. Checked
   * synchronously by the background work before it ends, so that no group is left behind.
   */
  get flushDue(): boolean {
    return this.#group !== undefined || this.#syncDue;
  }

  /**
   * Makes the flush that is due, while {@linkcode Flusher.flushDue} says one is. A flush that
   * fails makes the store fail.
   */
  async flushNext(log: Flushable): Promise<void> {
    const group = this.#group;
    if (group !== undefined) {
      this.#group = undefined;
      try {
        await log.datasync();
      } catch (error) {
        this.#fail(error, group);
        return;
      }
      group.resolve();
    } else if (this.#syncDue) {
      this.#syncDue = false;
      if (this.#dirty) {
        this.#dirty = false;
        this.#lastSync = this.#clock.now();
        try {
          await log.datasync();
        } catch (error) {
          this.fail(error);
        }
      }
    }
  }

  /** No more timed flushes: the store is closing. */
  stop(): void {
    this.#stopped = true;
    if (this.#syncTimer !== undefined) this.#clock.clearTimeout(this.#syncTimer);
    this.#syncTimer = undefined;
  }

  /**
   * Flushes what was written and not flushed yet, unless the store has failed; for closing,
   * once the background work has ended.
   */
  async finish(log: Flushable): Promise<void> {
    this.stop();
    if (this.#dirty && this.#failure === undefined) await log.datasync();
  }

  /**
   * Makes the store fail for good: every call waiting rejects, and so does every later call.
   *
   * @returns The failure: an {@linkcode MqttError} that names the log, with `error` as cause.
   */
  fail(error: unknown): MqttError {
    return this.#fail(error, undefined);
  }

  // As fail(), rejecting first `group`: the one a flush took, if it was a group's.
  #fail(error: unknown, group: Deferred<void> | undefined): MqttError {
    if (this.#failure === undefined) {
      const message = error instanceof Error ? error.message : String(error);
      this.#failure = new MqttError(
        `the session store could not write ${this.#logPath}: ${message}`,
        { cause: error },
      );
    }
    group?.reject(this.#failure);
    const pending = this.#group;
    this.#group = undefined;
    pending?.reject(this.#failure);
    const compaction = this.#compaction;
    this.#compaction = undefined;
    compaction?.reject(this.#failure);
    return this.#failure;
  }

  #scheduleSync(): void {
    if (this.#syncTimer !== undefined) return;
    const delay = Math.max(0, this.#lastSync + BATCH_SYNC_INTERVAL - this.#clock.now());
    this.#syncTimer = this.#clock.setTimeout(() => {
      this.#syncTimer = undefined;
      if (this.#stopped || this.#failure !== undefined) return;
      this.#syncDue = true;
      this.#wake();
    }, delay);
  }
}
