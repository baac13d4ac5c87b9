/**
 * The `Subscriber` mixin: subscribing and unsubscribing, and the user's side of message
 * delivery (`messages()`, `setPublishHandler`). What happens to a received message until the
 * application has it is the {@linkcode Inbox}'s work; the mixin owns one and hands it the
 * client's messages.
 *
 * @module
 */

import { MqttError, SubscribeError } from "../errors.ts";
import type { Subscription } from "../packet/types.ts";
import type { BaseClient } from "./base_client.ts";
import {
  Inbox,
  type InboxOptions,
  type MessageData,
  type MessagesOptions,
  type PublishHandler,
  type PublishHandlerOptions,
} from "./inbox.ts";
import type { Constructor } from "./publisher.ts";
import type { ClientOptions, Message, SubscribeOptions, SubscriptionRequest } from "./types.ts";

export type { AckMode, MessagesOptions, PublishHandler, PublishHandlerOptions } from "./inbox.ts";

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
   * detaches it, and what it had not yielded goes to the next handler or iterator attached.
   *
   * A QoS 1 or 2 message is acknowledged when yielded, or, with `{ ack: "manual" }`, when its
   * `ack()` is called; acknowledgements reach the broker in the order the messages arrived.
   *
   * @example At least once: acknowledge after handling
   * ```ts ignore
   * for await (const message of client.messages("jobs/#", { ack: "manual" })) {
   *   await handle(message);
   *   message.ack();
   * }
   * ```
   */
  messages(filter?: string, options?: MessagesOptions): AsyncIterableIterator<Message>;
  /**
   * Sets the function that receives every message (the twisted-mqtt way); `undefined` removes
   * it. A QoS 1 or 2 message is acknowledged when the handler returns or its promise settles,
   * or, with `{ ack: "manual" }`, when its `ack()` is called.
   *
   * @example Acknowledged once the handler's promise settles
   * ```ts ignore
   * client.setPublishHandler(async (message) => {
   *   await handle(message);
   * }, { ack: "auto" });
   * ```
   */
  setPublishHandler(handler: PublishHandler | undefined, options?: PublishHandlerOptions): void;
}

/**
 * Adds subscribing and message delivery to a client class.
 *
 * Messages that arrive before any handler or iterator is attached are held (up to
 * `maxHeldMessages`, then the client stops reading) and handed to the first one attached; their
 * QoS 1 and 2 acknowledgements wait until then, and until the consumer has taken each message
 * (or, in manual mode, called its `ack()`).
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
    // What the inbox calls back: one small object a client, with methods, not two closures.
    static readonly #Callbacks = class implements InboxOptions {
      readonly #client: Subscriber;

      constructor(client: Subscriber) {
        this.#client = client;
      }

      acknowledge(message: MessageData): void {
        this.#client.acknowledge(message);
      }

      onError(error: MqttError): void {
        this.#client.dispatchEvent(new CustomEvent<MqttError>("error", { detail: error }));
      }
    };

    // Made on first use (a message, messages(), a handler): a client that never receives holds
    // none. maxHeldMessages, until then, when it is not the default.
    #inbox: Inbox | undefined;
    #maxHeld: number | undefined;

    protected override inbox(): Inbox {
      let inbox = this.#inbox;
      if (inbox === undefined) {
        inbox = this.#inbox = new Inbox(new Subscriber.#Callbacks(this));
        if (this.#maxHeld !== undefined) inbox.maxHeld = this.#maxHeld;
        if (this.state === "closed") inbox.close();
      }
      return inbox;
    }

    protected override closeInbox(): void {
      this.#inbox?.close();
    }

    protected override configure(options: ClientOptions): void {
      super.configure(options);
      const maxHeld = options.maxHeldMessages;
      if (this.#inbox !== undefined) this.#inbox.maxHeld = maxHeld ?? 1000;
      else this.#maxHeld = maxHeld;
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

    messages(filter?: string, options?: MessagesOptions): AsyncIterableIterator<Message> {
      return this.inbox().messages(filter, options);
    }

    setPublishHandler(
      handler: PublishHandler | undefined,
      options?: PublishHandlerOptions,
    ): void {
      this.inbox().setHandler(handler, options);
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
