/**
 * The `Subscriber` mixin: subscribing, and delivering messages to a handler or to async
 * iterators, with back-pressure and nothing lost before the first consumer is attached.
 *
 * @module
 */

import { MqttError, SubscribeError } from "../errors.ts";
import type { Subscription } from "../packet/types.ts";
import { validateTopicFilter } from "../packet/topic.ts";
import { topicMatches } from "../topic.ts";
import type { BaseClient } from "./base_client.ts";
import { Deferred } from "../_async.ts";
import type { Constructor } from "./publisher.ts";
import type { Message, SubscribeOptions, SubscriptionRequest } from "./types.ts";

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

/** The options of `unsubscribe`. */
export interface UnsubscribeOptions {
  /** MQTT 5 UNSUBSCRIBE properties. */
  properties?: SubscribeOptions["properties"];
}

/** The methods the `Subscriber` mixin adds. */
export interface SubscriberMethods {
  /**
   * Subscribes to one filter.
   *
   * @returns The QoS the broker granted.
   * @throws {SubscribeError} When the broker refuses it.
   */
  subscribe(topic: string, options?: SubscribeOptions): Promise<number>;
  /**
   * Subscribes to several filters in one SUBSCRIBE.
   *
   * @returns The QoS granted for each, in order.
   * @throws {SubscribeError} When the broker refuses any of them.
   */
  subscribe(
    topics: (string | SubscriptionRequest)[],
    options?: SubscribeOptions,
  ): Promise<number[]>;
  /** Unsubscribes; resolves on UNSUBACK. */
  unsubscribe(topics: string | string[], options?: UnsubscribeOptions): Promise<void>;
  /**
   * The messages that match `filter` (all when absent), as an async iterator. Several may run
   * at once; each sees every message that matches it. It ends when the client closes; `break`
   * detaches it.
   */
  messages(filter?: string, options?: MessagesOptions): AsyncIterableIterator<Message>;
  /** Sets the function that receives every message (the twisted-mqtt way); `undefined` removes it. */
  setPublishHandler(handler: PublishHandler | undefined): void;
}

/** A bounded queue of messages for one `messages()` consumer. */
class MessageIterator implements AsyncIterableIterator<Message> {
  readonly filter: string | undefined;
  #highWaterMark: number;
  #queue: Message[] = [];
  #head = 0;
  #reader: Deferred<IteratorResult<Message>> | undefined;
  #space: Deferred<void> | undefined;
  #done = false;
  #detach: (iterator: MessageIterator) => void;

  constructor(
    filter: string | undefined,
    highWaterMark: number,
    detach: (iterator: MessageIterator) => void,
  ) {
    this.filter = filter;
    this.#highWaterMark = highWaterMark;
    this.#detach = detach;
  }

  /** Adds a message; returns a promise when the queue is full, settled once there is room. */
  push(message: Message): Promise<void> | undefined {
    const reader = this.#reader;
    if (reader !== undefined) {
      this.#reader = undefined;
      reader.resolve({ value: message, done: false });
      return undefined;
    }
    this.#queue.push(message);
    if (this.#queue.length - this.#head < this.#highWaterMark) return undefined;
    return (this.#space ??= new Deferred<void>()).promise;
  }

  next(): Promise<IteratorResult<Message>> {
    const queue = this.#queue;
    if (this.#head < queue.length) {
      const value = queue[this.#head];
      queue[this.#head++] = undefined as unknown as Message;
      if (this.#head === queue.length) {
        queue.length = 0;
        this.#head = 0;
      }
      if (this.#space !== undefined && queue.length - this.#head < this.#highWaterMark) {
        this.#space.resolve();
        this.#space = undefined;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.#done) return Promise.resolve({ value: undefined, done: true });
    this.#reader = new Deferred<IteratorResult<Message>>();
    return this.#reader.promise;
  }

  return(): Promise<IteratorResult<Message>> {
    this.#detach(this);
    this.end();
    this.#queue = [];
    this.#head = 0;
    return Promise.resolve({ value: undefined, done: true });
  }

  /** No more messages: what is queued can still be read, then the iterator is done. */
  end(): void {
    this.#done = true;
    this.#reader?.resolve({ value: undefined, done: true });
    this.#reader = undefined;
    this.#space?.resolve();
    this.#space = undefined;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Message> {
    return this;
  }
}

/**
 * Adds subscribing and message delivery to a client class.
 *
 * Messages that arrive before any handler or iterator is attached are held (up to
 * `maxHeldMessages`, then the client stops reading) and handed to the first one attached; their
 * QoS 1 and 2 acknowledgements wait until then.
 *
 * @example A subscriber profile of one's own
 * ```ts
 * import { BaseClient } from "./base_client.ts";
 * import { Subscriber } from "./subscriber.ts";
 *
 * class Dashboard extends Subscriber(BaseClient) {}
 * console.log(typeof new Dashboard().messages); // "function"
 * ```
 */
export function Subscriber<T extends Constructor<BaseClient>>(
  Base: T,
): T & Constructor<SubscriberMethods> {
  return class Subscriber extends Base implements SubscriberMethods {
    #handler: PublishHandler | undefined;
    #iterators: MessageIterator[] = [];
    #held: Message[] = [];
    #heldSpace: Deferred<void> | undefined;
    #maxHeld = 1000;
    #closed = false;
    // Settles once held messages being handed to a new consumer are all delivered.
    #draining: Promise<void> | undefined;

    override connect(options: Parameters<BaseClient["connect"]>[0] = {}): Promise<boolean> {
      this.#maxHeld = options.maxHeldMessages ?? 1000;
      return super.connect(options);
    }

    subscribe(topic: string, options?: SubscribeOptions): Promise<number>;
    subscribe(
      topics: (string | SubscriptionRequest)[],
      options?: SubscribeOptions,
    ): Promise<number[]>;
    subscribe(
      topics: string | (string | SubscriptionRequest)[],
      options: SubscribeOptions = {},
    ): Promise<number | number[]> {
      try {
        const list = Array.isArray(topics) ? topics : [topics];
        const subscriptions = list.map((item) =>
          toSubscription(typeof item === "string" ? { ...options, topic: item } : item, options)
        );
        const promise = this.sendSubscribe({
          type: "subscribe",
          subscriptions,
          ...(options.properties ? { properties: options.properties } : {}),
        }).then((suback) => {
          const codes = suback.reasonCodes;
          if (codes.some((code) => code >= 0x80)) {
            throw new SubscribeError(
              subscriptions.map((s) => s.topicFilter),
              codes,
              suback.properties?.reasonString,
            );
          }
          return Array.isArray(topics) ? codes : codes[0];
        });
        promise.catch(() => {});
        return promise;
      } catch (error) {
        return Promise.reject(error);
      }
    }

    unsubscribe(topics: string | string[], options: UnsubscribeOptions = {}): Promise<void> {
      try {
        const topicFilters = Array.isArray(topics) ? topics : [topics];
        const promise = this.sendUnsubscribe({
          type: "unsubscribe",
          topicFilters,
          ...(options.properties ? { properties: options.properties } : {}),
        }).then((unsuback) => {
          const codes = unsuback.reasonCodes ?? [];
          const refused = topicFilters.filter((_, i) => codes[i] >= 0x80);
          if (refused.length > 0) {
            throw new MqttError(
              `the broker refused to unsubscribe from ${refused.join(", ")} (${
                codes.map((c) => `0x${c.toString(16)}`).join(", ")
              })`,
            );
          }
        });
        promise.catch(() => {});
        return promise;
      } catch (error) {
        return Promise.reject(error);
      }
    }

    messages(filter?: string, options: MessagesOptions = {}): AsyncIterableIterator<Message> {
      if (filter !== undefined) validateTopicFilter(filter);
      const iterator = new MessageIterator(
        filter,
        options.highWaterMark ?? 100,
        (it) => {
          this.#iterators = this.#iterators.filter((other) => other !== it);
        },
      );
      if (this.#closed) {
        iterator.end();
        return iterator;
      }
      this.#iterators = [...this.#iterators, iterator];
      this.#releaseHeld();
      return iterator;
    }

    setPublishHandler(handler: PublishHandler | undefined): void {
      this.#handler = handler;
      this.#releaseHeld();
    }

    protected override deliver(message: Message): Promise<void> | void {
      // Held messages are still being handed over: this one waits its turn, to keep the order.
      const draining = this.#draining;
      if (draining !== undefined) return draining.then(() => this.deliver(message));
      if (this.#handler === undefined && this.#iterators.length === 0) {
        this.#held.push(message);
        if (this.#held.length < this.#maxHeld) return;
        return (this.#heldSpace ??= new Deferred<void>()).promise;
      }
      return this.#dispatch(message);
    }

    /** Hands a message to the handler and every matching iterator, then acknowledges it. */
    #dispatch(message: Message): Promise<void> | void {
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
      const iterators = this.#iterators;
      for (let i = 0; i < iterators.length; i++) {
        const iterator = iterators[i];
        if (iterator.filter !== undefined && !topicMatches(iterator.filter, message.topic)) {
          continue;
        }
        const full = iterator.push(message);
        if (full !== undefined) {
          pause = pause === undefined ? full : Promise.all([pause, full]).then();
        }
      }
      if (pause === undefined) {
        this.acknowledge(message);
        return;
      }
      return pause.then(() => this.acknowledge(message));
    }

    #handlerFailed(error: unknown): void {
      this.dispatchEvent(
        new CustomEvent<MqttError>("error", {
          detail: new MqttError(
            `the publish handler threw: ${error instanceof Error ? error.message : error}`,
            { cause: error },
          ),
        }),
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
      return this.#handler !== undefined || this.#iterators.length > 0;
    }

    #releaseHeldSpace(): void {
      if (this.#held.length >= this.#maxHeld) return;
      this.#heldSpace?.resolve();
      this.#heldSpace = undefined;
    }

    protected override onClose(): void {
      this.#closed = true;
      for (const iterator of this.#iterators) iterator.end();
      this.#iterators = [];
      this.#heldSpace?.resolve();
      this.#heldSpace = undefined;
      super.onClose();
    }
  };
}

function toSubscription(request: SubscriptionRequest, defaults: SubscribeOptions): Subscription {
  const subscription: Subscription = {
    topicFilter: request.topic,
    qos: request.qos ?? defaults.qos ?? 0,
  };
  const noLocal = request.noLocal ?? defaults.noLocal;
  const retainAsPublished = request.retainAsPublished ?? defaults.retainAsPublished;
  const retainHandling = request.retainHandling ?? defaults.retainHandling;
  if (noLocal !== undefined) subscription.noLocal = noLocal;
  if (retainAsPublished !== undefined) subscription.retainAsPublished = retainAsPublished;
  if (retainHandling !== undefined) subscription.retainHandling = retainHandling;
  return subscription;
}
