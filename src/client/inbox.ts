/**
 * The inbox: what happens to a received message until the application has it. It holds
 * messages until the first consumer is attached, hands them to the publish handler and to the
 * `messages()` iterators whose filter matches, makes the read loop wait when a consumer is full,
 * and acknowledges a message once every consumer it went to has taken it (automatic mode) or
 * called its `ack()` (manual mode). A consumer that leaves hands back what it had not taken yet.
 *
 * It knows no client: acknowledging and reporting a handler's failure are callbacks it is given,
 * and the client tells it when a message arrives (`deliver`) and when it closes (`close`). The
 * order in which acknowledgements reach the broker is the session's to keep.
 *
 * The message objects the consumers get are `received_message.ts`'s, and each `messages()`
 * iterator is a `MessageQueue` (`message_queue.ts`); this module decides who gets what, and when.
 *
 * @module
 */

import { Deferred } from "../_async.ts";
import { MqttError } from "../errors.ts";
import { validateTopicFilter } from "../packet/topic.ts";
import { topicMatches } from "../topic.ts";
import { MessageQueue } from "./message_queue.ts";
import {
  type ArrivalSink,
  BEGIN,
  CLAIM,
  DATA,
  HANDED_BACK,
  type MessageData,
  ORDER,
  ReceivedCopy,
  ReceivedMessage,
  SETTLE,
  type View,
} from "./received_message.ts";
import type { Message } from "./types.ts";

export type { MessageData } from "./received_message.ts";

/** A function that receives every message. A returned promise holds back the next message. */
export type PublishHandler = (message: Message) => void | Promise<void>;

/**
 * When a consumer's QoS 1 and 2 messages are acknowledged: `"auto"` (the default) when the
 * consumer takes one (the iterator yields it, or the handler returns or its promise settles);
 * `"manual"` when the application calls the message's `ack()`.
 */
export type AckMode = "auto" | "manual";

/** The options of `messages()`. */
export interface MessagesOptions {
  /**
   * How many messages may wait in this iterator before the client stops reading; default 100.
   * A message waiting here is not acknowledged yet: leaving a `for await` early hands what waits
   * back to the client, for the next handler or iterator attached.
   */
  highWaterMark?: number;
  /** When this iterator's messages count as handled: when yielded (default) or on `ack()`. */
  ack?: AckMode;
}

/** The options of `setPublishHandler`. */
export interface PublishHandlerOptions {
  /**
   * When the handler's messages count as handled: when it returns, or its promise settles
   * (default), or on `ack()`.
   */
  ack?: AckMode;
}

/** What an {@linkcode Inbox} is given by the client that owns it. */
export interface InboxOptions {
  /**
   * Called once a message is handled: every consumer it went to took it (automatic mode) or
   * called `ack()` on it (manual mode), or none of the attached consumers' filters match it.
   * `message` is the object given to `deliver`. The client sends the QoS 1 or 2 acknowledgement
   * here (the session keeps them in arrival order).
   */
  acknowledge(message: MessageData): void;
  /** Called when the publish handler throws or its promise rejects. */
  onError(error: MqttError): void;
  /** How many messages to hold while no consumer is attached; default 1,000. */
  maxHeld?: number;
}

/** An internal consumer of an {@linkcode Inbox}: see `listen`. */
interface InboxListener {
  filter: string;
  receive: (message: MessageData) => void;
}

// The empty lists every inbox starts with, shared: the lists are replaced, never changed in place.
const NO_QUEUES: readonly MessageQueue[] = [];
const NO_LISTENERS: readonly InboxListener[] = [];
// What every inbox holding no message holds: frozen, so a missed write fails loudly.
const NONE_HELD: ReceivedMessage[] = Object.freeze([]) as unknown as ReceivedMessage[];

/**
 * Where received messages go until the application has them.
 *
 * Messages that arrive while no handler or iterator is attached are held (up to `maxHeld`; then
 * `deliver` returns a promise and the read loop waits) and handed, in order, to the first one
 * attached. Each `messages()` iterator is a `ReadableStream` with a
 * `CountQueuingStrategy`: when it holds `highWaterMark` messages, `deliver` returns a promise
 * that settles once the consumer has read one.
 *
 * A message goes to the handler and to every iterator whose filter matches, and is acknowledged
 * (the `acknowledge` callback) once each of them has taken it: in automatic mode when the
 * iterator yields it or the handler returns (or its promise settles, also by rejecting); in
 * manual mode when the message's `ack()` is called, by each manual consumer on its own object.
 * A message that none of the attached consumers' filters match is acknowledged at once. An
 * iterator left early (`return()`, a `break` out of `for await`) hands back the messages it had
 * not yielded: one that no other consumer took goes back to the held messages, in arrival
 * order, for the next handler or iterator attached, and is not acknowledged until one takes it.
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
 * inbox.deliver({ topic: "a/b", payload, qos: 1, retain: false, dup: false, packetId: 2 });
 * console.log(acknowledged); // [] (held: nobody takes messages yet)
 *
 * const iterator = inbox.messages("a/#", { ack: "manual" });
 * const first = (await iterator.next()).value!;
 * console.log(acknowledged); // [] (manual: not before ack())
 * first.ack();
 * console.log(acknowledged); // [ 1 ]
 *
 * inbox.close();
 * console.log((await iterator.next()).value?.packetId); // 2 (what was queued can still be read)
 * console.log((await iterator.next()).done); // true
 * ```
 */
export class Inbox {
  // Called as methods of the options object: a client passes one object, not two closures.
  readonly #callbacks: InboxOptions;
  #handler: PublishHandler | undefined;
  #handlerManual = false;
  // Replaced, never changed in place: a dispatch loop keeps the array it started with.
  #queues: readonly MessageQueue[] = NO_QUEUES;
  // In arrival order: messages no consumer has yet, and messages handed back by one that left.
  #held: ReceivedMessage[] = NONE_HELD;
  #heldSpace: Deferred<void> | undefined;
  #maxHeld: number;
  #closed = false;
  // Settles once held messages being handed to a new consumer are all delivered.
  #draining: Promise<void> | undefined;
  #arrivals = 0;
  // Internal consumers (request/response): replaced, never changed in place.
  #listeners: readonly InboxListener[] = NO_LISTENERS;
  // Made with the first message: an idle client holds none of these.
  #sink: ArrivalSink | undefined;
  #handlerFailedBound: ((error: unknown) => void) | undefined;

  /** Creates an empty, open inbox. */
  constructor(options: InboxOptions) {
    this.#callbacks = options;
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
   * Takes a message from the broker. The object is handed back to the `acknowledge` callback;
   * the consumers get their own objects, with its fields and `ack()`.
   *
   * @returns A promise when the read loop must wait before it delivers the next message (a
   * consumer is full, the handler's promise is pending, or too many messages are held), settled
   * once it may go on; otherwise `undefined`.
   */
  deliver(message: MessageData): Promise<void> | undefined {
    const listeners = this.#listeners;
    for (let i = 0; i < listeners.length; i++) {
      const listener = listeners[i];
      if (!topicMatches(listener.filter, message.topic)) continue;
      // An internal consumer takes the message alone, at once: it never reaches the user's
      // handler or iterators, and is acknowledged now (the session keeps acks in order).
      try {
        listener.receive(message);
      } catch (error) {
        this.#handlerFailed(error);
      }
      this.#callbacks.acknowledge(message);
      return undefined;
    }
    const sink = this.#sink ??= {
      handled: (arrival) => this.#callbacks.acknowledge(arrival[DATA]),
      handBack: (arrival) => this.#handBack(arrival),
    };
    return this.#deliver(new ReceivedMessage(message, sink, this.#arrivals++));
  }

  #deliver(arrival: ReceivedMessage): Promise<void> | undefined {
    // Held messages are still being handed over: this one waits its turn, to keep the order.
    const draining = this.#draining;
    if (draining !== undefined) return draining.then(() => this.#deliver(arrival));
    if (this.#handler === undefined && this.#queues.length === 0) {
      if (this.#held === NONE_HELD) this.#held = [];
      this.#held.push(arrival);
      if (this.#held.length < this.#maxHeld) return undefined;
      return (this.#heldSpace ??= new Deferred<void>()).promise;
    }
    return this.#dispatch(arrival);
  }

  /**
   * The messages that match `filter` (all when absent), as an async iterator over a bounded
   * queue of `options.highWaterMark` messages. It ends when the inbox closes, after what is
   * queued; `return()` (a `break` out of `for await`) detaches it at once and hands back what it
   * had not yielded.
   *
   * @throws {ProtocolError} When `filter` is not a valid topic filter.
   */
  messages(filter?: string, options: MessagesOptions = {}): AsyncIterableIterator<Message> {
    if (filter !== undefined) validateTopicFilter(filter);
    const queue = new MessageQueue(
      filter,
      options.highWaterMark ?? 100,
      options.ack === "manual",
      (detached) => {
        this.#queues = this.#queues.filter((other) => other !== detached);
      },
    );
    if (this.#closed) {
      queue.end();
      return queue;
    }
    this.#queues = [...this.#queues, queue];
    this.#releaseHeld();
    return queue;
  }

  /**
   * Adds an internal consumer (the client's request/response support): the messages whose topic
   * matches `filter` go to `receive` alone, before any held message, handler or iterator, and are
   * acknowledged once it returns. Unlike an iterator, it does not count as the user's consumer:
   * other messages are held as before.
   *
   * @returns A function that removes it.
   */
  listen(filter: string, receive: (message: MessageData) => void): () => void {
    validateTopicFilter(filter);
    const listener: InboxListener = { filter, receive };
    this.#listeners = [...this.#listeners, listener];
    return () => {
      this.#listeners = this.#listeners.filter((other) => other !== listener);
    };
  }

  /** Sets the function that receives every message; `undefined` removes it. */
  setHandler(handler: PublishHandler | undefined, options: PublishHandlerOptions = {}): void {
    this.#handler = handler;
    this.#handlerManual = options.ack === "manual";
    this.#releaseHeld();
  }

  /**
   * Ends every iterator (what is queued can still be read) and lets a read loop waiting on held
   * messages go. Messages delivered later are held, as when no consumer is attached.
   */
  close(): void {
    this.#closed = true;
    const queues = this.#queues;
    this.#queues = NO_QUEUES;
    for (let i = 0; i < queues.length; i++) queues[i].end();
    this.#heldSpace?.resolve();
    this.#heldSpace = undefined;
  }

  /** Hands a message to the handler and every matching iterator. */
  #dispatch(arrival: ReceivedMessage): Promise<void> | undefined {
    arrival[BEGIN]();
    let pause: Promise<void> | undefined;
    // The object automatic consumers share, and whether the arrival itself is given out yet.
    let shared: View | undefined;
    let given = false;
    const handler = this.#handler;
    if (handler !== undefined) {
      // The first consumer gets the arrival itself.
      const manual = this.#handlerManual;
      if (!manual) shared = arrival;
      given = true;
      arrival[CLAIM](manual);
      pause = this.#callHandler(handler, arrival, manual);
    }
    // Usually one to three iterators: a plain loop beats a trie here.
    const queues = this.#queues;
    for (let i = 0; i < queues.length; i++) {
      const queue = queues[i];
      if (queue.filter !== undefined && !topicMatches(queue.filter, arrival.topic)) continue;
      let view: View;
      if (queue.manual) {
        view = given ? new ReceivedCopy(arrival, true) : arrival;
        arrival[CLAIM](!given);
      } else {
        view = shared ??= given ? new ReceivedCopy(arrival, false) : arrival;
        arrival[CLAIM](false);
      }
      given = true;
      const full = queue.push(view);
      if (full !== undefined) {
        pause = pause === undefined ? full : Promise.all([pause, full]).then();
      }
    }
    arrival[SETTLE](false);
    return pause;
  }

  /**
   * Calls the handler. In automatic mode it has taken the message once it returns, or once its
   * promise settles; a failure is reported, and the message still counts as taken (manual mode
   * leaves a failed message unacknowledged). Returns the pause the read loop waits for.
   */
  #callHandler(
    handler: PublishHandler,
    arrival: ReceivedMessage,
    manual: boolean,
  ): Promise<void> | undefined {
    let result: void | Promise<void>;
    try {
      result = handler(arrival);
    } catch (error) {
      this.#handlerFailed(error);
      if (!manual) arrival[SETTLE](true);
      return undefined;
    }
    if (result === undefined || typeof result.then !== "function") {
      if (!manual) arrival[SETTLE](true);
      return undefined;
    }
    if (manual) {
      return result.then(
        undefined,
        this.#handlerFailedBound ??= (error) => this.#handlerFailed(error),
      );
    }
    return result.then(
      () => arrival[SETTLE](true),
      (error) => {
        this.#handlerFailed(error);
        arrival[SETTLE](true);
      },
    );
  }

  #handlerFailed(error: unknown): void {
    this.#callbacks.onError(
      new MqttError(
        `the publish handler threw: ${error instanceof Error ? error.message : error}`,
        { cause: error },
      ),
    );
  }

  /**
   * A message whose consumers all left without taking it: held again, in arrival order, for the
   * next handler or iterator attached.
   */
  #handBack(arrival: ReceivedMessage): void {
    if (this.#held === NONE_HELD) this.#held = [];
    const held = this.#held;
    const order = arrival[ORDER];
    let i = held.length;
    while (i > 0 && held[i - 1][ORDER] > order) i--;
    held.splice(i, 0, arrival);
  }

  /**
   * Hands held messages to the consumer just attached, in order, one at a time: a handler's
   * promise or a full iterator holds back the next one, as for any message. A message handed
   * back by a consumer that left stays held until a consumer whose filter matches it is
   * attached: it is not acknowledged unseen.
   */
  #releaseHeld(): void {
    if (this.#draining !== undefined || this.#held.length === 0 || !this.#hasConsumer()) return;
    const step = (): Promise<void> | undefined => {
      while (!this.#closed && this.#hasConsumer()) {
        const index = this.#nextReleasable();
        if (index < 0) break;
        const arrival = this.#held[index];
        this.#held.splice(index, 1);
        const pause = this.#dispatch(arrival);
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

  /** The index of the first held message an attached consumer may take, or -1. */
  #nextReleasable(): number {
    const held = this.#held;
    if (this.#handler !== undefined) return held.length > 0 ? 0 : -1;
    const queues = this.#queues;
    for (let i = 0; i < held.length; i++) {
      const arrival = held[i];
      if (!arrival[HANDED_BACK]) return i;
      for (let j = 0; j < queues.length; j++) {
        const filter = queues[j].filter;
        if (filter === undefined || topicMatches(filter, arrival.topic)) return i;
      }
    }
    return -1;
  }

  #hasConsumer(): boolean {
    return this.#handler !== undefined || this.#queues.length > 0;
  }

  #releaseHeldSpace(): void {
    // With a consumer attached the read loop goes on: what stays held is waiting for another.
    if (this.#held.length >= this.#maxHeld && !this.#hasConsumer()) return;
    this.#heldSpace?.resolve();
    this.#heldSpace = undefined;
  }
}
