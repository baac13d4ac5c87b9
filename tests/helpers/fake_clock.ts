/**
 * A clock for tests: time moves only when the test says so.
 *
 * @module
 */

import type { Clock } from "../../src/client/types.ts";

interface Timer {
  at: number;
  callback: () => void;
}

/** How a {@linkcode FakeClock} lets what its timers start run. */
export interface FakeClockOptions {
  /** Waits after each timer fired until what it started has run; default {@linkcode settle}. */
  settle?: () => Promise<void>;
  /** The most timers one `advance` fires; past it, it stops and returns false. Default: no bound. */
  maxFired?: number;
}

/** A {@linkcode Clock} whose time moves only with `advance`. */
export class FakeClock implements Clock {
  #now = 0;
  #nextId = 1;
  #timers = new Map<number, Timer>();
  readonly #settle: () => Promise<void>;
  readonly #maxFired: number;

  /** A clock at 0 with no timers. */
  constructor(options: FakeClockOptions = {}) {
    this.#settle = options.settle ?? settle;
    this.#maxFired = options.maxFired ?? Infinity;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, ms: number): unknown {
    const id = this.#nextId++;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), callback });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** The number of timers set and not yet fired or cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  /** The time the next timer fires at, or `Infinity`. */
  get nextAt(): number {
    let next = Infinity;
    for (const timer of this.#timers.values()) next = Math.min(next, timer.at);
    return next;
  }

  /**
   * Moves time forward by `ms`, firing every timer that falls due, in order, and letting what
   * each one starts run before the next. Returns false when more than `maxFired` timers fell due:
   * a timer that keeps setting itself again at once.
   */
  async advance(ms: number): Promise<boolean> {
    const end = this.#now + ms;
    for (let fired = 0; fired < this.#maxFired; fired++) {
      let due: [number, Timer] | undefined;
      for (const entry of this.#timers) {
        if (entry[1].at <= end && (due === undefined || entry[1].at < due[1].at)) due = entry;
      }
      if (due === undefined) {
        this.#now = end;
        await this.#settle();
        return true;
      }
      this.#timers.delete(due[0]);
      this.#now = due[1].at;
      due[1].callback();
      await this.#settle();
    }
    return false;
  }
}

/**
 * Lets every pending promise callback and in-memory stream operation run: a few rounds of
 * microtasks, then one turn of the event loop, which runs only once the microtask queue is
 * empty. In-memory streams and the client's flushes move on microtasks alone, so after this
 * nothing that a step started is still on its way. It is not a sleep: no real time is waited on.
 */
export async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
  await new Promise<void>((resolve) => setTimeout(resolve, 0));
}
