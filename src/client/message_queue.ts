/**
 * The `messages()` iterator: a bounded queue of one consumer's message objects, read in order,
 * that makes the inbox's read loop wait while it is full, acknowledges what it yields (automatic
 * mode) and, when the consumer leaves early, hands back what it had not yielded.
 *
 * @module
 */

import { Deferred } from "../_async.ts";
import { Queue } from "../_queue.ts";
import { ARRIVAL, SETTLE, type View, WITHDRAW } from "./received_message.ts";
import type { Message } from "./types.ts";

/**
 * One `messages()` consumer. Its queue is a `ReadableStream` whose `CountQueuingStrategy` bounds
 * it: `desiredSize <= 0` after an enqueue means full, and the stream's `pull`, called once a read
 * leaves room, lets the waiting read loop go on. It is read through its own reader rather than the
 * stream's async iterator, whose `return()` waits for a pending `next()` (and which not every
 * browser has): here `return()` detaches at once and ends a pending `next()`.
 *
 * It also keeps the messages it has not yielded yet, in order: `return()` hands them back.
 */
export class MessageQueue implements AsyncIterableIterator<Message> {
  /** The topic filter its messages match; all messages when absent. */
  readonly filter: string | undefined;
  /** Whether its messages are acknowledged on `ack()` rather than when yielded. */
  readonly manual: boolean;
  #controller!: ReadableStreamDefaultController<View>;
  #reader: ReadableStreamDefaultReader<View>;
  #space: Deferred<void> | undefined;
  // The promise the last pull returned, left pending while the queue has room: the stream
  // calls pull only once it settles, so an enqueue does not call pull every time (for speed).
  #pulling: Deferred<void> | undefined;
  #detach: (queue: MessageQueue) => void;
  #detached = false;
  // What the stream holds, in order: pushed, not yet read.
  #unread = new Queue<View>();
  // Reads waiting for a message: the next ones pushed go straight to them.
  #reads = 0;

  /** An empty queue of `highWaterMark` messages; `detach` is called once when it is left. */
  constructor(
    filter: string | undefined,
    highWaterMark: number,
    manual: boolean,
    detach: (queue: MessageQueue) => void,
  ) {
    this.filter = filter;
    this.manual = manual;
    this.#detach = detach;
    const stream = new ReadableStream<View>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: () => {
        this.#roomMade();
        return (this.#pulling = new Deferred<void>()).promise;
      },
      cancel: () => this.#cancelled(),
    }, new CountQueuingStrategy({ highWaterMark }));
    this.#reader = stream.getReader();
  }

  /** Adds a message; returns a promise when the queue is full, settled once there is room. */
  push(message: View): Promise<void> | undefined {
    const controller = this.#controller;
    controller.enqueue(message);
    if (this.#reads > 0) {
      // A pending next() takes it at once: yielded.
      this.#reads--;
      if (!this.manual) message[ARRIVAL][SETTLE](true);
    } else {
      this.#unread.push(message);
    }
    if (controller.desiredSize! > 0) return undefined;
    // Full: settle the last pull, so that the stream calls pull again once a read makes room.
    this.#pulling?.resolve();
    this.#pulling = undefined;
    return (this.#space ??= new Deferred<void>()).promise;
  }

  /** The next message, once there is one; done once it ended and what was queued is read. */
  next(): Promise<IteratorResult<Message>> {
    // The read resolves with the oldest unread message, or with the next one pushed: it is
    // yielded now, or in push(), without a callback per read.
    const message = this.#unread.shift();
    if (message !== undefined) {
      if (!this.manual) message[ARRIVAL][SETTLE](true);
    } else if (!this.#detached) {
      this.#reads++;
    }
    return this.#reader.read() as Promise<IteratorResult<Message>>;
  }

  /** Leaves at once: ends a pending `next()` and hands back what it had not yielded. */
  return(): Promise<IteratorResult<Message>> {
    // Cancelling drops what is queued and ends a pending read; it calls #cancelled at once,
    // unless the stream had already ended.
    this.#reader.cancel().catch(() => {});
    this.#cancelled();
    return Promise.resolve({ value: undefined, done: true });
  }

  /** No more messages: what is queued can still be read, then the iterator is done. */
  end(): void {
    this.#controller.close();
    this.#reads = 0;
    this.#roomMade();
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Message> {
    return this;
  }

  #roomMade(): void {
    const space = this.#space;
    if (space === undefined) return;
    this.#space = undefined;
    space.resolve();
  }

  #cancelled(): void {
    if (this.#detached) return;
    this.#detached = true;
    this.#detach(this);
    // What it had not yielded goes back, oldest first, once it is detached: no message handed
    // back can come to it again.
    this.#reads = 0;
    // Counted first, so that the loop ends whatever a withdrawal does.
    const unread = this.#unread;
    for (let count = unread.length; count > 0; count--) unread.shift()![WITHDRAW]();
    this.#roomMade();
  }
}
