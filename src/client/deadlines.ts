/**
 * One timer for the keepalive deadlines of every connection on a clock, in place of a timer
 * each: with thousands of idle connections, a runtime timer per connection costs more memory
 * than the rest of the connection's keepalive. The deadlines stay exact: the one timer is set
 * for the earliest of them. The session still computes each deadline, with the time passed in;
 * this is only the alarm clock at the edge.
 *
 * @module
 */

import type { Clock } from "../_async.ts";

/** A deadline in a {@linkcode Deadlines}: when, and what to call then. */
export interface Deadline {
  /** When it falls due, on the clock's time; `Infinity` while not scheduled. */
  at: number;
  /** Its place in the heap, -1 while not scheduled. */
  slot: number;
  /** Called once it falls due (it is no longer scheduled by then). */
  readonly due: () => void;
}

/**
 * The deadlines on one clock: a binary min-heap by time, and one timer for the first of them.
 *
 * @example
 * ```ts
 * import { systemClock } from "../_async.ts";
 * import { Deadlines } from "./deadlines.ts";
 *
 * const deadlines = Deadlines.of(systemClock);
 * const ping = { at: Infinity, slot: -1, due: () => console.log("due") };
 * deadlines.schedule(ping, systemClock.now() + 10);
 * deadlines.cancel(ping); // nothing is printed
 * ```
 */
export class Deadlines {
  static readonly #byClock = new WeakMap<Clock, Deadlines>();

  /** The deadlines of `clock`, made on first use. */
  static of(clock: Clock): Deadlines {
    let deadlines = Deadlines.#byClock.get(clock);
    if (deadlines === undefined) {
      deadlines = new Deadlines(clock);
      Deadlines.#byClock.set(clock, deadlines);
    }
    return deadlines;
  }

  readonly #clock: Clock;
  readonly #heap: Deadline[] = [];
  #timer: unknown;
  #timerAt = Infinity;

  private constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** How many deadlines are scheduled. */
  get size(): number {
    return this.#heap.length;
  }

  /** Schedules `deadline` at `at`, or moves it there if it is scheduled already. */
  schedule(deadline: Deadline, at: number): void {
    const heap = this.#heap;
    if (deadline.slot < 0) {
      deadline.slot = heap.length;
      heap.push(deadline);
      deadline.at = at;
      this.#up(deadline.slot);
    } else {
      const earlier = at < deadline.at;
      deadline.at = at;
      if (earlier) this.#up(deadline.slot);
      else this.#down(deadline.slot);
    }
    this.#arm();
  }

  /** Unschedules `deadline`, if it is scheduled. */
  cancel(deadline: Deadline): void {
    const slot = deadline.slot;
    if (slot < 0) return;
    this.#remove(slot);
    this.#arm();
  }

  #remove(slot: number): void {
    const heap = this.#heap;
    const removed = heap[slot];
    const last = heap.pop()!;
    removed.slot = -1;
    removed.at = Infinity;
    if (last === removed) return;
    heap[slot] = last;
    last.slot = slot;
    this.#up(slot);
    this.#down(last.slot);
  }

  /** Sets the one timer for the earliest deadline, or clears it when there is none. */
  #arm(): void {
    const clock = this.#clock;
    const first = this.#heap.length > 0 ? this.#heap[0].at : Infinity;
    if (first === this.#timerAt) return;
    // A timer set for earlier stays: it fires early, finds nothing due and is set again. When
    // thousands of deadlines go one after the other (clients closing at once), the first of
    // them changes each time: this saves a runtime timer each.
    if (first !== Infinity && this.#timer !== undefined && first > this.#timerAt) return;
    if (this.#timer !== undefined) clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = first;
    if (first === Infinity) return;
    this.#timer = clock.setTimeout(this.#fire, Math.max(0, first - clock.now()));
  }

  #fire = (): void => {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const heap = this.#heap;
    const now = this.#clock.now();
    if (heap.length > 0 && heap[0].at <= now) {
      // All that falls due now is taken out before any is called: each may schedule itself
      // again as it runs, at once even, which the next timer handles.
      const due: Deadline[] = [];
      while (heap.length > 0 && heap[0].at <= now) {
        due.push(heap[0]);
        this.#remove(0);
      }
      for (let i = 0; i < due.length; i++) due[i].due();
    }
    this.#arm();
  };

  #up(slot: number): void {
    const heap = this.#heap;
    const item = heap[slot];
    while (slot > 0) {
      const parentSlot = (slot - 1) >> 1;
      const parent = heap[parentSlot];
      if (parent.at <= item.at) break;
      heap[slot] = parent;
      parent.slot = slot;
      slot = parentSlot;
    }
    heap[slot] = item;
    item.slot = slot;
  }

  #down(slot: number): void {
    const heap = this.#heap;
    const length = heap.length;
    const item = heap[slot];
    while (true) {
      let child = 2 * slot + 1;
      if (child >= length) break;
      if (child + 1 < length && heap[child + 1].at < heap[child].at) child++;
      if (heap[child].at >= item.at) break;
      heap[slot] = heap[child];
      heap[slot].slot = slot;
      slot = child;
    }
    heap[slot] = item;
    item.slot = slot;
  }
}

/**
 * Whether `promise` fulfils within `ms` on `clock`: `true` once it does, `false` when it rejects
 * or the time is up first. What `within` of `_async.ts` does, with a deadline in the clock's one
 * timer in place of a runtime timer per wait: closing thousands of clients at once arms a grace
 * for each, and a runtime timer costs more memory than the rest of the wait.
 *
 * @example
 * ```ts
 * import { systemClock } from "../_async.ts";
 * import { settlesWithin } from "./deadlines.ts";
 *
 * console.log(await settlesWithin(Promise.resolve(), 1000, systemClock)); // true
 * ```
 */
export function settlesWithin(
  promise: Promise<unknown>,
  ms: number,
  clock: Clock,
): Promise<boolean> {
  const deadlines = Deadlines.of(clock);
  return new Promise<boolean>((resolve) => {
    const deadline: Deadline = { at: Infinity, slot: -1, due: () => resolve(false) };
    deadlines.schedule(deadline, clock.now() + ms);
    promise.then(
      () => {
        deadlines.cancel(deadline);
        resolve(true);
      },
      () => {
        deadlines.cancel(deadline);
        resolve(false);
      },
    );
  });
}
