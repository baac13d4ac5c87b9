/**
 * The `Requester` mixin: MQTT 5 request / response. `request()` publishes with a Response Topic
 * and a fresh Correlation Data and resolves with the matching response; `respond()` answers
 * requests on a filter. Both need a client that publishes and subscribes, connected with MQTT 5.
 *
 * The responses reach the client through one response-topic subscription per client, made on
 * the first request and kept while the client lives (the session subscribes again itself after
 * a reconnection that lost the session). The topic is the Response Information the server
 * gave when `properties.requestResponseInformation` asked for it, else
 * `kite/response/<clientId>`. Messages on it, and requests on a `respond()` filter, go to
 * request/response alone: never to the publish handler or the `messages()` iterators.
 *
 * @module
 */

import type { Clock } from "../_async.ts";
import { MAX_TIMER_MS, systemClock } from "../_async.ts";
import { ConnectionClosedError, MqttError, TimeoutError } from "../errors.ts";
import type { Properties, QoS } from "../packet/types.ts";
import type { BaseClient } from "./base_client.ts";
import type { ConnectEventDetail, DisconnectEventDetail } from "./events.ts";
import type { MessageData } from "./inbox.ts";
import type { Constructor, PublisherMethods } from "./publisher.ts";
import type { SubscriberMethods } from "./subscriber.ts";
import type { ClientOptions, Message } from "./types.ts";

/** The options of `client.request()`. */
export interface RequestOptions {
  /**
   * How long to wait for the response, in milliseconds, from the call; default 30,000.
   * `Infinity` waits until the response, an abort or the client's close.
   */
  timeout?: number;
  /** Aborts the request: it rejects with the signal's reason and forgets the response. */
  signal?: AbortSignal;
  /** The QoS of the request; default 0. */
  qos?: QoS;
  /**
   * Further MQTT 5 properties of the request (`contentType`, `userProperties`, ...);
   * `responseTopic` and `correlationData` are the client's own and replaced.
   */
  properties?: Properties;
}

/** What a responder returns for a request: the response's payload, or a promise of it. */
export type ResponseHandler = (
  request: Message,
) => string | Uint8Array | Promise<string | Uint8Array>;

/** The options of `client.respond()`. */
export interface RespondOptions {
  /** The QoS of the subscription to the request filter; default 1. */
  qos?: QoS;
}

/**
 * What `client.respond()` returns: call it to stop answering (it unsubscribes; resolves on
 * UNSUBACK, or at once when the client has closed). Calling it again does nothing.
 */
export interface StopResponding {
  /** Stops answering and unsubscribes from the request filter. */
  (): Promise<void>;
  /**
   * Settles once the subscription to the request filter is in place (the granted QoS);
   * rejects, and the responder stops, when the broker refuses it.
   */
  readonly ready: Promise<number>;
}

/** The methods the `Requester` mixin adds. */
export interface RequesterMethods {
  /**
   * Sends a request and resolves with its response: publishes `payload` to `topic` with a
   * Response Topic and a fresh Correlation Data, and resolves with the first message on the
   * response topic that carries the same Correlation Data. Needs MQTT 5.
   *
   * @throws {MqttError} When the client is not connected with MQTT 5.
   * @throws {TimeoutError} When no response arrives within `timeout`.
   * @throws {ConnectionClosedError} When the client closes first.
   * @throws The signal's reason, when `signal` aborts first.
   *
   * @example
   * ```ts ignore
   * const reply = await client.request("svc/add", "1 2", { timeout: 5_000 });
   * console.log(new TextDecoder().decode(reply.payload));
   * ```
   */
  request(topic: string, payload: string | Uint8Array, options?: RequestOptions): Promise<Message>;
  /**
   * Answers the requests published to `filter`: for each one with a Response Topic, publishes
   * what `handler` returns there, with the request's Correlation Data copied, at the request's
   * QoS, not retained. A request without a Response Topic cannot be answered and is ignored; a
   * handler that throws or rejects sends nothing and is reported as an `error` event. Requests
   * are acknowledged when they arrive, and handlers run concurrently. Needs MQTT 5.
   *
   * @returns A function that stops answering; its `ready` settles once subscribed.
   * @throws {MqttError} When the client is not connected with MQTT 5.
   *
   * @example
   * ```ts ignore
   * const stop = client.respond("svc/add", (request) => {
   *   const [a, b] = new TextDecoder().decode(request.payload).split(" ").map(Number);
   *   return String(a + b);
   * });
   * await stop.ready;
   * // ...
   * await stop();
   * ```
   */
  respond(filter: string, handler: ResponseHandler, options?: RespondOptions): StopResponding;
}

/** A request waiting for its response. */
interface Pending {
  resolve(message: Message): void;
  reject(error: unknown): void;
  timer: unknown;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

const DEFAULT_TIMEOUT = 30_000;
const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

function hexKey(bytes: Uint8Array): string {
  let key = "";
  for (let i = 0; i < bytes.length; i++) key += HEX[bytes[i]];
  return key;
}

/** The message as the user sees it; the inbox acknowledges it, so `ack()` does nothing. */
function toMessage(data: MessageData): Message {
  const message: Message = {
    topic: data.topic,
    payload: data.payload,
    qos: data.qos,
    retain: data.retain,
    dup: data.dup,
    ack() {},
  };
  if (data.packetId !== undefined) message.packetId = data.packetId;
  if (data.properties !== undefined) message.properties = data.properties;
  return message;
}

/**
 * Adds MQTT 5 request / response to a client class that publishes and subscribes.
 *
 * @example
 * ```ts
 * import { ClientBase } from "./clients.ts";
 * import { Requester } from "./request.ts";
 *
 * class Rpc extends Requester(ClientBase) {}
 * console.log(typeof new Rpc().request, typeof new Rpc().respond); // "function" "function"
 * ```
 */
export function Requester<
  T extends Constructor<BaseClient & PublisherMethods & SubscriberMethods>,
>(Base: T): T & Constructor<RequesterMethods> {
  return class Requester extends Base implements RequesterMethods {
    #clock: Clock = systemClock;
    // Correlation Data (hex) → the request waiting for it.
    // Made on the first request: most clients make none.
    #pending: Map<string, Pending> | undefined;
    // The response topic, once subscribed (or being subscribed) to it.
    #responses: Promise<string> | undefined;
    #unlistenResponses: (() => void) | undefined;
    #watching = false;
    #resubscribe = true;

    protected override configure(options: ClientOptions): void {
      super.configure(options);
      this.#clock = options.clock ?? systemClock;
      this.#resubscribe = options.resubscribe ?? true;
    }

    request(
      topic: string,
      payload: string | Uint8Array,
      options: RequestOptions = {},
    ): Promise<Message> {
      const refused = this.#refuse("request");
      if (refused !== undefined) return Promise.reject(refused);
      const signal = options.signal;
      if (signal?.aborted) return Promise.reject(signal.reason);
      this.#watch();
      const correlationData = crypto.getRandomValues(new Uint8Array(16));
      const key = hexKey(correlationData);
      return new Promise<Message>((resolve, reject) => {
        const entry: Pending = { resolve, reject, timer: undefined, signal, onAbort: undefined };
        (this.#pending ??= new Map()).set(key, entry);
        const timeout = options.timeout ?? DEFAULT_TIMEOUT;
        // A wait longer than a timer holds is no timeout: the timer would fire at once.
        if (timeout <= MAX_TIMER_MS) {
          entry.timer = this.#clock.setTimeout(() => {
            this.#settle(key)?.reject(
              new TimeoutError(`no response to the request on ${topic} within ${timeout} ms`),
            );
          }, Math.max(0, timeout));
        }
        if (signal !== undefined) {
          entry.onAbort = () => this.#settle(key)?.reject(signal.reason);
          signal.addEventListener("abort", entry.onAbort, { once: true });
        }
        this.#responseTopic().then((responseTopic) => {
          if (!this.#pending?.has(key)) return;
          return this.publish(topic, payload, {
            qos: options.qos ?? 0,
            properties: { ...options.properties, responseTopic, correlationData },
          });
        }).catch((error) => this.#settle(key)?.reject(error));
      });
    }

    respond(
      filter: string,
      handler: ResponseHandler,
      options: RespondOptions = {},
    ): StopResponding {
      const refused = this.#refuse("respond");
      if (refused !== undefined) throw refused;
      const unlisten = this.inbox()!.listen(filter, (request) => this.#answer(request, handler));
      let stopped = false;
      const ready = this.subscribe(filter, { qos: options.qos ?? 1 });
      ready.catch(() => {
        stopped = true;
        unlisten();
      });
      const stop = (): Promise<void> => {
        if (stopped) return Promise.resolve();
        stopped = true;
        unlisten();
        return ready.then(() => this.unsubscribe(filter), () => {}).catch((error) => {
          // A client that closed has no subscription left to remove.
          if (this.state !== "closed" && this.state !== "disconnecting") throw error;
        });
      };
      return Object.assign(stop, { ready });
    }

    /** Why request/response cannot be used now, if it cannot. */
    #refuse(operation: string): MqttError | undefined {
      if (this.inbox() === undefined) {
        return new MqttError(`${operation} needs a client that subscribes`);
      }
      if (this.state === "closed") return new ConnectionClosedError("the client closed");
      // Before CONNECT the version is not known yet: subscribe() and publish() refuse then.
      if (this.state !== "idle" && this.protocolVersion !== 5) {
        return new MqttError(
          `${operation} needs MQTT 5 (Response Topic and Correlation Data); this client uses ` +
            `protocol version ${this.protocolVersion}`,
        );
      }
      return undefined;
    }

    /** The response topic, subscribed to once for the client's life. */
    #responseTopic(): Promise<string> {
      if (this.#responses !== undefined) return this.#responses;
      const given = this.connack?.properties?.responseInformation;
      const id = (this.clientId ?? "").replace(/[+#/]/g, "_") ||
        hexKey(crypto.getRandomValues(new Uint8Array(8)));
      const topic = given ? given : `kite/response/${id}`;
      const unlisten = this.inbox()!.listen(topic, (message) => this.#received(message));
      const subscribed = this.subscribe(topic, { qos: 1 }).then(() => topic, (error) => {
        // Forget it: the next request tries again.
        if (this.#responses === subscribed) this.#forgetResponseTopic();
        throw error;
      });
      this.#responses = subscribed;
      this.#unlistenResponses = unlisten;
      return subscribed;
    }

    /** The response topic is not subscribed to any more: the next request subscribes again. */
    #forgetResponseTopic(): void {
      this.#unlistenResponses?.();
      this.#unlistenResponses = undefined;
      this.#responses = undefined;
    }

    /** A message on the response topic: the response of the request with its Correlation Data. */
    #received(message: MessageData): void {
      const data = message.properties?.correlationData;
      if (data === undefined) return;
      const entry = this.#settle(hexKey(data));
      if (entry === undefined) return;
      entry.resolve(toMessage(message));
    }

    /** Removes a pending request, its timer and abort listener; returns it, if it was there. */
    #settle(key: string): Pending | undefined {
      const entry = this.#pending?.get(key);
      if (entry === undefined) return undefined;
      this.#pending!.delete(key);
      if (entry.timer !== undefined) this.#clock.clearTimeout(entry.timer);
      if (entry.onAbort !== undefined) entry.signal!.removeEventListener("abort", entry.onAbort);
      return entry;
    }

    /** Once: rejects every pending request when the client closes for good. */
    #watch(): void {
      if (this.#watching) return;
      this.#watching = true;
      this.addEventListener("connect", (event) => {
        const { reconnected, sessionPresent } = (event as CustomEvent<ConnectEventDetail>).detail;
        // A lost session lost the subscription; the session makes it again unless told not to.
        if (reconnected && !sessionPresent && !this.#resubscribe) this.#forgetResponseTopic();
      });
      this.addEventListener("disconnect", (event) => {
        if ((event as CustomEvent<DisconnectEventDetail>).detail.reconnecting) return;
        this.#forgetResponseTopic();
        for (const key of [...(this.#pending?.keys() ?? [])]) {
          this.#settle(key)?.reject(
            new ConnectionClosedError("the client closed before the response arrived"),
          );
        }
      });
    }

    /** A request on a `respond()` filter: runs the handler and publishes its result. */
    #answer(request: MessageData, handler: ResponseHandler): void {
      const responseTopic = request.properties?.responseTopic;
      if (responseTopic === undefined) return;
      const correlationData = request.properties?.correlationData;
      let result: string | Uint8Array | Promise<string | Uint8Array>;
      try {
        result = handler(toMessage(request));
      } catch (error) {
        this.#failed(error);
        return;
      }
      Promise.resolve(result).then((payload) =>
        this.publish(responseTopic, payload, {
          // At the request's QoS, within what the server accepts.
          qos: Math.min(request.qos, this.connack?.properties?.maximumQoS ?? 2) as QoS,
          ...(correlationData !== undefined ? { properties: { correlationData } } : {}),
        })
      ).catch((error) => this.#failed(error));
    }

    #failed(error: unknown): void {
      const detail = error instanceof MqttError ? error : new MqttError(
        `the response handler failed: ${error instanceof Error ? error.message : error}`,
        { cause: error },
      );
      this.dispatchEvent(new CustomEvent<MqttError>("error", { detail }));
    }
  };
}
