/**
 * The inbox: what happens to a received message until the application has it. It holds
 * messages until the first consumer is attached, hands them to the publish handler and to the
 * `messages()` iterators whose filter matches, makes the read loop wait when a consumer is full,
 * and acknowledges a message once every consumer has taken it.
 *
 * It knows no client: acknowledging and reporting a handler's failure are callbacks it is given,
 * and the client tells it when a message arrives (`deliver`) and when it closes (`close`).
 *
 * @module
 */

import { Deferred } from "../_async.ts";
import { MqttError } from "../errors.ts";
import { validateTopicFilter } from "../packet/topic.ts";
import { topicMatches } from "../topic.ts";
import type { Message } from "./types.ts";

/** A function that receives every message. A returned promise holds back the next message. */
export type PublishHandler = (message: Message) => void | Promise<void>;

/** The options of `messages()`. */
export interface MessagesOptions {
  /**
   * How many messages may wait in this iterator before the client stops reading; default 100.
   * A QoS 1 or 2 message is acknowledged once it waits here, so leaving a `for await` early
   * drops up to this many acknowledged messages: keep it small (1) where every message matters
   * and the loop may stop.
   */
  highWaterMark?: number;
}

/** What an {@linkcode Inbox} is given by the client that owns it. */
export interface InboxOptions {
  /**
   * Called once a message is delivered: every consumer took it into its queue, or the handler
   * returned (or its promise settled). The client sends the QoS 1 or 2 acknowledgement here.
   */
  acknowledge(message: Message): void;
  /** Called when the publish handler throws or its promise rejects; the message still counts as delivered. */
  onError(error: MqttError): void;
  /** How many messages to hold while no consumer is attached; default 1,000. */
  maxHeld?: number;
}

/**
 * Where received messages go until the application has them.
 *
 * Messages that arrive while no handler or iterator is attached are held (up to `maxHeld`; then
 * `deliver` returns a promise and the read loop waits) and handed, in order, to the first one
 * attached. Each `messages()` iterator is a `ReadableStream` with a
 * `CountQueuingStrategy`: when it holds `highWaterMark` messages, `deliver` returns a promise
 * that settles once the consumer has read one.
 *
 * @example
 * ```ts
 * import { Inbox } from "./inbox.ts";
 *
 * const acknowledged: number[] = [];
 * const inbox = new Inbox({
 *   acknowledge: (message) => acknowledged.push(message.packetId!),
 *   onError: (error) => console.error(error),
 * });
 * const payload = new TextEncoder().encode("hi");
 * inbox.deliver({ topic: "a/b", payload, qos: 1, retain: false, dup: false, packetId: 1 });
 * console.log(acknowledged); // [] (held: nobody takes messages yet)
 *
 * const iterator = inbox.messages("a/#");
 * console.log(acknowledged); // [ 1 ]
 * console.log((await iterator.next()).value?.topic); // "a/b"
 *
 * inbox.close();
 * console.log((await iterator.next()).done); // true
 * ```
 */
export class Inbox {
  #acknowledge: (message: Message) => void;
  #onError: (error: MqttError) => void;
  #handler: PublishHandler | undefined;
  // Replaced, never changed in place: a dispatch loop keeps the array it started with.
  #queues: MessageQueue[] = [];
  #held: Message[] = [];
  #heldSpace: Deferred<void> | undefined;
  #maxHeld: number;
  #closed = false;
  // Settles once held messages being handed to a new consumer are all delivered.
  #draining: Promise<void> | undefined;

  /** Creates an empty, open inbox. */
  constructor(options: InboxOptions) {
    this.#acknowledge = options.acknowledge;
    this.#onError = options.onError;
    this.#maxHeld = options.maxHeld ?? 1000;
  }

  /** How many messages are held while no consumer is attached before `deliver` makes the read loop wait. */
  get maxHeld(): number {
    return this.#maxHeld;
  }

  set maxHeld(value: number) {
    this.#maxHeld = value;
    this.#releaseHeldSpace();
  }

  /** Whether {@linkcode Inbox.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Takes a message from the broker.
   *
   * @returns A promise when the read loop must wait before it delivers the next message (a
   * consumer is full, the handler's promise is pending, or too many messages are held), settled
   * once it may go on; otherwise `undefined`.
   */
  deliver(message: Message): Promise<void> | undefined {
    // Held messages are still being handed over: this one waits its turn, to keep the order.
    const draining = this.#draining;
    if (draining !== undefined) return draining.then(() => this.deliver(message));
    if (this.#handler === undefined && this.#queues.length === 0) {
      this.#held.push(message);
      if (this.#held.length < this.#maxHeld) return undefined;
      return (this.#heldSpace ??= new Deferred<void>()).promise;
    }
    return this.#dispatch(message);
  }

  /**
   * The messages that match `filter` (all when absent), as an async iterator over a bounded
   * queue of `options.highWaterMark` messages. It ends when the inbox closes, after what is
   * queued; `return()` (a `break` out of `for await`) detaches it at once.
   *
   * @throws {ProtocolError} When `filter` is not a valid topic filter.
   */
  messages(filter?: string, options: MessagesOptions = {}): AsyncIterableIterator<Message> {
    if (filter !== undefined) validateTopicFilter(filter);
    const queue = new MessageQueue(filter, options.highWaterMark ?? 100, (detached) => {
      this.#queues = this.#queues.filter((other) => other !== detached);
    });
    if (this.#closed) {
      queue.end();
      return queue;
    }
    this.#queues = [...this.#queues, queue];
    this.#releaseHeld();
    return queue;
  }

  /** Sets the function that receives every message; `undefined` removes it. */
  setHandler(handler: PublishHandler | undefined): void {
    this.#handler = handler;
    this.#releaseHeld();
  }

  /**
   * Ends every iterator (what is queued can still be read) and lets a read loop waiting on held
   * messages go. Messages delivered later are held, as when no consumer is attached.
   */
  close(): void {
    this.#closed = true;
    const queues = this.#queues;
    this.#queues = [];
    for (let i = 0; i < queues.length; i++) queues[i].end();
    this.#heldSpace?.resolve();
    this.#heldSpace = undefined;
  }

  /** Hands a message to the handler and every matching iterator, then acknowledges it. */
  #dispatch(message: Message): Promise<void> | undefined {
    let pause: Promise<void> | undefined;
    const handler = this.#handler;
    if (handler !== undefined) {
      try {
        const result = handler(message);
        if (result !== undefined && typeof result.then === "function") {
          pause = result.then(undefined, (error) => this.#handlerFailed(error));
        }
      } catch (error) {
        this.#handlerFailed(error);
      }
    }
    // Usually one to three iterators: a plain loop beats a trie here.
    const queues = this.#queues;
    for (let i = 0; i < queues.length; i++) {
      const queue = queues[i];
      if (queue.filter !== undefined && !topicMatches(queue.filter, message.topic)) continue;
      const full = queue.push(message);
      if (full !== undefined) {
        pause = pause === undefined ? full : Promise.all([pause, full]).then();
      }
    }
    if (pause === undefined) {
      this.#acknowledge(message);
      return undefined;
    }
    return pause.then(() => this.#acknowledge(message));
  }

  #handlerFailed(error: unknown): void {
    this.#onError(
      new MqttError(
        `the publish handler threw: ${error instanceof Error ? error.message : error}`,
        { cause: error },
      ),
    );
  }

  /**
   * Hands held messages to the consumer just attached, in order, one at a time: a handler's
   * promise or a full iterator holds back the next one, as for any message.
   */
  #releaseHeld(): void {
    if (this.#draining !== undefined || this.#held.length === 0 || !this.#hasConsumer()) return;
    const held = this.#held;
    this.#held = [];
    let next = 0;
    const step = (): Promise<void> | undefined => {
      while (next < held.length) {
        if (this.#closed || !this.#hasConsumer()) {
          // The consumer left: what it did not take is held again, ahead of anything newer.
          this.#held = [...held.slice(next), ...this.#held];
          return undefined;
        }
        const pause = this.#dispatch(held[next++]);
        if (pause !== undefined) return pause.then(step);
      }
      return undefined;
    };
    const pending = step();
    if (pending === undefined) {
      this.#releaseHeldSpace();
      return;
    }
    this.#draining = pending.catch(() => {}).then(() => {
      this.#draining = undefined;
      this.#releaseHeldSpace();
    });
  }

  #hasConsumer(): boolean {
    return this.#handler !== undefined || this.#queues.length > 0;
  }

  #releaseHeldSpace(): void {
    if (this.#held.length >= this.#maxHeld) return;
    this.#heldSpace?.resolve();
    this.#heldSpace = undefined;
  }
}

/**
 * One `messages()` consumer. Its queue is a `ReadableStream` whose `CountQueuingStrategy` bounds
 * it: `desiredSize <= 0` after an enqueue means full, and the stream's `pull`, called once a read
 * leaves room, lets the waiting read loop go on. It is read through its own reader rather than the
 * stream's async iterator, whose `return()` waits for a pending `next()` (and which not every
 * browser has): here `return()` detaches at once and ends a pending `next()`.
 */
class MessageQueue implements AsyncIterableIterator<Message> {
  readonly filter: string | undefined;
  #controller!: ReadableStreamDefaultController<Message>;
  #reader: ReadableStreamDefaultReader<Message>;
  #space: Deferred<void> | undefined;
  // The promise the last pull returned, left pending while the queue has room: the stream
  // calls pull only once it settles, so an enqueue does not call pull every time (for speed).
  #pulling: Deferred<void> | undefined;
  #detach: (queue: MessageQueue) => void;

  constructor(
    filter: string | undefined,
    highWaterMark: number,
    detach: (queue: MessageQueue) => void,
  ) {
    this.filter = filter;
    this.#detach = detach;
    const stream = new ReadableStream<Message>({
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
  push(message: Message): Promise<void> | undefined {
    const controller = this.#controller;
    controller.enqueue(message);
    if (controller.desiredSize! > 0) return undefined;
    // Full: settle the last pull, so that the stream calls pull again once a read makes room.
    this.#pulling?.resolve();
    this.#pulling = undefined;
    return (this.#space ??= new Deferred<void>()).promise;
  }

  next(): Promise<IteratorResult<Message>> {
    return this.#reader.read() as Promise<IteratorResult<Message>>;
  }

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
    this.#detach(this);
    this.#roomMade();
  }
}
