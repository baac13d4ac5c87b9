/**
 * A first-in first-out queue on one array: taken from the front by moving a head index rather
 * than by `shift()`, which moves every element each time, and compacted now and then. It sits
 * on the hot path of every QoS 1 and 2 message (our publishes waiting for the window, the order
 * of the acknowledgements we owe, a `messages()` consumer's unread messages), so no operation
 * allocates once the array has room. Private to the package (the `_` prefix); nothing here
 * knows MQTT.
 *
 * @module
 */

/**
 * How far the head may run before the taken slots are dropped: below this, only emptying the
 * queue resets it, so a short queue never copies.
 */
const COMPACT_AT = 1024;

/**
 * The longest array an emptied queue keeps for its next items: one that held a few items at a
 * time (an item in, an item out) takes the next without allocating. A longer one is given back
 * (a new empty array takes its place), so that an idle holder does not keep a burst's memory:
 * with many thousands of holders, that adds up.
 */
const KEEP_EMPTY = 16;

/**
 * A first-in first-out queue: `push` at the back, `shift` from the front, and the items in
 * between read and replaced by their position from the front. `undefined` is what `peek` and
 * `shift` answer when it is empty, so it does not hold `undefined` as an item.
 *
 * Taking moves a head index and clears the slot it leaves (the item is not kept alive). Once the
 * queue is empty, both indexes go back to the start of the same array if it held 16 items or
 * fewer; a longer one is given back. Once the taken slots reach 1,024 and make up half of those
 * in use, the rest moves down in place. So each item is copied at most once on average, and
 * nothing is allocated but the array's growth, and a new array after a burst of more than 16.
 *
 * It is one object with its array, kept while it is empty: a holder with many idle instances
 * makes it on first use.
 *
 * @example
 * ```ts
 * import { Queue } from "./_queue.ts";
 *
 * const queue = new Queue<string>();
 * queue.push("a");
 * queue.push("b");
 * console.log(queue.shift(), queue.peek(), queue.length); // "a" "b" 1
 * ```
 */
export class Queue<T> {
  // The items, oldest first, from #head up to #tail; the slots outside are cleared. Either
  // #head < #tail, or both are 0. The array's length is not reset on every emptying: setting it
  // costs a runtime call in V8 and drops the backing store, which the next push makes again.
  #items: T[] = [];
  #head = 0;
  #tail = 0;

  /**
   * How many items it holds.
   *
   * @example
   * ```ts
   * import { Queue } from "./_queue.ts";
   *
   * const queue = new Queue<number>();
   * queue.push(1);
   * console.log(queue.length); // 1
   * ```
   */
  get length(): number {
    return this.#tail - this.#head;
  }

  /**
   * Adds `item` at the back.
   *
   * @example
   * ```ts
   * import { Queue } from "./_queue.ts";
   *
   * const queue = new Queue<number>();
   * queue.push(1);
   * queue.push(2);
   * console.log([...queue]); // [1, 2]
   * ```
   */
  push(item: T): void {
    this.#items[this.#tail++] = item;
  }

  /**
   * The item at the front, left in the queue; `undefined` when it is empty.
   *
   * @example
   * ```ts
   * import { Queue } from "./_queue.ts";
   *
   * const queue = new Queue<number>();
   * console.log(queue.peek()); // undefined
   * queue.push(1);
   * console.log(queue.peek(), queue.length); // 1 1
   * ```
   */
  peek(): T | undefined {
    const head = this.#head;
    return head < this.#tail ? this.#items[head] : undefined;
  }

  /**
   * Takes the item at the front; `undefined` when it is empty.
   *
   * @example
   * ```ts
   * import { Queue } from "./_queue.ts";
   *
   * const queue = new Queue<number>();
   * queue.push(1);
   * console.log(queue.shift(), queue.shift()); // 1 undefined
   * ```
   */
  shift(): T | undefined {
    const head = this.#head;
    const tail = this.#tail;
    if (head === tail) return undefined;
    const items = this.#items;
    const item = items[head];
    items[head] = undefined as T;
    const next = head + 1;
    if (next === tail) {
      // Emptied: start again at the front of the same array, unless a burst made it long.
      this.#head = 0;
      this.#tail = 0;
      if (items.length > KEEP_EMPTY) this.#items = [];
    } else {
      this.#head = next;
      // Rare, and out of line, so that this stays small enough to inline.
      if (next >= COMPACT_AT && next * 2 >= tail) this.#compact();
    }
    return item;
  }

  /** Drops the taken slots of a head that never catches up: now and then, not on every take. */
  #compact(): void {
    const items = this.#items;
    const head = this.#head;
    const tail = this.#tail;
    for (let from = head; from < tail; from++) items[from - head] = items[from];
    items.length = tail - head;
    this.#head = 0;
    this.#tail = tail - head;
  }

  /**
   * The item `index` places from the front (0 is the front); `undefined` outside the queue.
   *
   * @example
   * ```ts
   * import { Queue } from "./_queue.ts";
   *
   * const queue = new Queue<string>();
   * queue.push("a");
   * queue.push("b");
   * console.log(queue.at(1), queue.at(2)); // "b" undefined
   * ```
   */
  at(index: number): T | undefined {
    const at = this.#head + index;
    return index >= 0 && at < this.#tail ? this.#items[at] : undefined;
  }

  /**
   * Replaces the item `index` places from the front (0 is the front).
   *
   * @throws {RangeError} When `index` is outside the queue.
   *
   * @example
   * ```ts
   * import { Queue } from "./_queue.ts";
   *
   * const queue = new Queue<string>();
   * queue.push("a");
   * queue.set(0, "b");
   * console.log(queue.peek()); // "b"
   * ```
   */
  set(index: number, item: T): void {
    const at = this.#head + index;
    if (!(index >= 0 && at < this.#tail)) {
      throw new RangeError(`index ${index} is outside the queue of ${this.length} items`);
    }
    this.#items[at] = item;
  }

  /**
   * The place from the front of the first item that is `item` (`===`); -1 when none is.
   *
   * @example
   * ```ts
   * import { Queue } from "./_queue.ts";
   *
   * const queue = new Queue<string>();
   * queue.push("a");
   * queue.push("b");
   * console.log(queue.indexOf("b"), queue.indexOf("c")); // 1 -1
   * ```
   */
  indexOf(item: T): number {
    const head = this.#head;
    const at = this.#items.indexOf(item, head);
    return at < 0 || at >= this.#tail ? -1 : at - head;
  }

  /**
   * Empties it, and gives its array back.
   *
   * @example
   * ```ts
   * import { Queue } from "./_queue.ts";
   *
   * const queue = new Queue<number>();
   * queue.push(1);
   * queue.clear();
   * console.log(queue.length); // 0
   * ```
   */
  clear(): void {
    // A new array rather than a length of 0: not every engine frees the old one's slots then.
    this.#items = [];
    this.#head = 0;
    this.#tail = 0;
  }

  /**
   * Its items, front first, left in the queue. Not for the hot path: a generator allocates.
   * Items pushed while iterating are seen; do not take any while iterating.
   *
   * @example
   * ```ts
   * import { Queue } from "./_queue.ts";
   *
   * const queue = new Queue<number>();
   * queue.push(1);
   * queue.push(2);
   * for (const item of queue) console.log(item); // 1, then 2
   * ```
   */
  *[Symbol.iterator](): IterableIterator<T> {
    // Read afresh each time: a push while iterating is seen, as with an array.
    for (let index = 0; index < this.length; index++) yield this.#items[this.#head + index];
  }
}
