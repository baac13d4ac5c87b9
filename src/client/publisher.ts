/**
 * The `Publisher` mixin: what a client needs to publish, one message at a time (`publish`) or
 * as a stream with back-pressure (`writable`, `ready`).
 *
 * @module
 */

import { Deferred } from "../_async.ts";
import type { Properties, PublishPacket, QoS } from "../packet/types.ts";
import type { BaseClient } from "./base_client.ts";
import { toBytes } from "./options.ts";
import type { OutgoingMessage, PublishOptions, WritableOptions } from "./types.ts";

/** A constructor of `T`: what a mixin extends. */
// deno-lint-ignore no-explicit-any
export type Constructor<T> = new (...args: any[]) => T;

/** The methods the `Publisher` mixin adds. */
export interface PublisherMethods {
  /**
   * Publishes a message.
   *
   * @param topic The topic; no wildcards.
   * @param payload The payload; a string is sent as UTF-8, bytes are sent as they are (not
   * copied: do not change them until the promise settles).
   * @param options QoS (default 0), retain, MQTT 5 properties.
   * @returns A promise that settles on PUBACK (QoS 1), on PUBCOMP (QoS 2), or once the bytes
   * are written (QoS 0). It rejects with `ConnectionClosedError` if the connection ends first,
   * with `PublishError` if an MQTT 5 broker refuses the message, and at once with `LimitError`
   * if the message would take the queue of publishes waiting to be sent past `queue.maxBytes`.
   */
  publish(topic: string, payload: string | Uint8Array, options?: PublishOptions): Promise<void>;

  /**
   * Resolves when the outgoing queue has room: the payload bytes waiting to be sent
   * ({@linkcode PublisherMethods.bufferedAmount}) are below `queue.highWaterMark`. For a producer
   * that calls `publish` without awaiting each one: `await client.ready()` before each publish
   * keeps what waits under the mark, however fast the producer and however slow the broker.
   *
   * It resolves at once when there is room; otherwise when acknowledgements and writes make
   * room (no polling). It waits through a reconnection, and rejects with
   * `ConnectionClosedError` when the client closes first.
   *
   * @throws {StateError} (rejects) When the client's state allows no publish (before `connect`,
   * after `disconnect`).
   *
   * @example Back-pressure for a loop of publishes
   * ```ts ignore
   * for (const reading of readings) {
   *   await client.ready();
   *   client.publish("sensors/1", reading, { qos: 1 });
   * }
   * ```
   */
  ready(): Promise<void>;

  /**
   * A `WritableStream` of messages, each published with the stream's QoS, retain flag and
   * properties (a message's own `retain` and `properties` win). Its `desiredSize` and its
   * writers' `ready` follow the bytes waiting to be sent: while they are at or above
   * `queue.highWaterMark` the stream takes no more messages, and fills up to its own
   * `highWaterMark` (payload bytes; default the same mark), so
   * `source.pipeTo(client.writable())` reads from the source only as fast as the broker takes
   * the messages, and never holds much more than twice the mark.
   *
   * A publish that fails (refused by an MQTT 5 broker, `LimitError`, the connection closed for
   * good) errors the stream with its error. `close()` resolves once every message written has
   * completed: acknowledged (QoS 1, 2) or written (QoS 0). `abort()` stops taking messages;
   * those already published still complete.
   *
   * @param options The QoS (default 0), retain flag and MQTT 5 properties of the messages, and
   * the stream's `highWaterMark`.
   * @throws {StateError} When the client's state allows no publish.
   *
   * @example Piping a `ReadableStream` into the client
   * ```ts ignore
   * import { connect } from "jsr:@kite/mqtt";
   *
   * await using client = await connect("mqtt://127.0.0.1:1883");
   * const readings = ReadableStream.from(
   *   Array.from({ length: 100_000 }, (_, i) => ({ topic: "sensors/1", payload: `${i}` })),
   * );
   * await readings.pipeTo(client.writable({ qos: 1 })); // every message acknowledged
   * ```
   */
  writable(options?: WritableOptions): WritableStream<OutgoingMessage>;

  /**
   * The payload bytes of the publishes accepted and not yet written to the connection: QoS 1
   * and 2 ones waiting for the in-flight window or a connection, QoS 0 ones waiting for a
   * connection or for their write. What `ready()` and `writable()` hold under
   * `queue.highWaterMark`; like `WebSocket.bufferedAmount`.
   */
  readonly bufferedAmount: number;
}

/** What a {@linkcode PublishSink} asks of the client it publishes through. */
interface SinkHost {
  /** Publishes one message; rejects as `publish` does. */
  publish(
    topic: string,
    payload: Uint8Array,
    qos: QoS,
    retain: boolean,
    properties: Properties | undefined,
  ): Promise<void>;
  /** Waits for room for `bytes` more bytes; `undefined` when there is room now. */
  room(bytes: number, signal: AbortSignal | undefined): Promise<void> | undefined;
}

/**
 * Adds publishing to a client class.
 *
 * @example A publisher profile of one's own
 * ```ts
 * import { BaseClient } from "./base_client.ts";
 * import { Publisher } from "./publisher.ts";
 *
 * class TelemetryPublisher extends Publisher(BaseClient) {}
 * console.log(typeof new TelemetryPublisher().publish); // "function"
 * ```
 */
export function Publisher<T extends Constructor<BaseClient>>(
  Base: T,
): T & Constructor<PublisherMethods> {
  return class Publisher extends Base implements PublisherMethods {
    publish(
      topic: string,
      payload: string | Uint8Array,
      options?: PublishOptions,
    ): Promise<void> {
      return this.#publish(
        topic,
        payload,
        options?.qos ?? 0,
        options?.retain ?? false,
        options?.properties,
      );
    }

    ready(): Promise<void> {
      try {
        return this.queueRoom() ?? Promise.resolve();
      } catch (error) {
        return Promise.reject(error);
      }
    }

    writable(options: WritableOptions = {}): WritableStream<OutgoingMessage> {
      // Fails now, not on the first write, when no publish is allowed.
      this.requireState("publish");
      const sink = new PublishSink({
        publish: (topic, payload, qos, retain, properties) =>
          this.#publish(topic, payload, qos, retain, properties),
        room: (bytes, signal) => this.queueRoom(bytes, signal),
      }, options);
      return new WritableStream<OutgoingMessage>(sink, {
        highWaterMark: options.highWaterMark ?? this.queueHighWaterMark(),
        size: messageSize,
      });
    }

    get bufferedAmount(): number {
      return this.bufferedBytes();
    }

    #publish(
      topic: string,
      payload: string | Uint8Array,
      qos: QoS,
      retain: boolean,
      properties: Properties | undefined,
    ): Promise<void> {
      try {
        const packet: PublishPacket = {
          type: "publish",
          topic,
          payload: toBytes(payload),
          qos,
          retain,
          dup: false,
        };
        if (properties !== undefined) packet.properties = properties;
        return this.sendPublish(packet);
      } catch (error) {
        return Promise.reject(error);
      }
    }
  };
}

/**
 * The sink of `client.writable()`: publishes each message once the client's outgoing queue has
 * room, counts the publishes not yet complete, and errors the stream on the first that fails.
 */
class PublishSink implements UnderlyingSink<OutgoingMessage> {
  readonly #host: SinkHost;
  readonly #qos: QoS;
  readonly #retain: boolean;
  readonly #properties: Properties | undefined;
  #controller: WritableStreamDefaultController | undefined;
  // Publishes made and not yet complete; #drained settles when they are all done.
  #pending = 0;
  #drained: Deferred<void> | undefined;
  #failed = false;
  #error: unknown;

  constructor(host: SinkHost, options: PublishOptions) {
    this.#host = host;
    this.#qos = options.qos ?? 0;
    this.#retain = options.retain ?? false;
    this.#properties = options.properties;
  }

  start(controller: WritableStreamDefaultController): void {
    this.#controller = controller;
  }

  write(
    message: OutgoingMessage,
    controller: WritableStreamDefaultController,
  ): Promise<void> | void {
    if (this.#failed) throw this.#error;
    const payload = toBytes(message.payload);
    // Not every runtime gives the controller a signal; without one, abort waits for room.
    const room = this.#host.room(payload.length, controller.signal);
    if (room === undefined) {
      this.#send(message, payload);
      return;
    }
    return room.then(() => this.#send(message, payload));
  }

  close(): Promise<void> | void {
    if (this.#failed) throw this.#error;
    if (this.#pending === 0) return;
    return (this.#drained ??= new Deferred<void>()).promise;
  }

  abort(): void {
    // Nothing more is written; what was published completes on its own.
  }

  #send(message: OutgoingMessage, payload: Uint8Array): void {
    const published = this.#host.publish(
      message.topic,
      payload,
      this.#qos,
      message.retain ?? this.#retain,
      message.properties ?? this.#properties,
    );
    this.#pending++;
    published.then(this.#completed, this.#rejected);
  }

  #completed = (): void => {
    if (--this.#pending === 0 && this.#drained !== undefined) {
      this.#drained.resolve();
    }
  };

  #rejected = (error: unknown): void => {
    this.#pending--;
    if (this.#failed) return;
    this.#failed = true;
    this.#error = error;
    this.#controller!.error(error);
    this.#drained?.reject(error);
  };
}

/** The payload bytes of a message, as the stream's queuing strategy counts them. */
function messageSize(message: OutgoingMessage): number {
  const payload = message.payload;
  return typeof payload === "string" ? utf8ByteLength(payload) : payload.byteLength;
}

/** The length of `text` in UTF-8, without encoding it; a lone surrogate counts as U+FFFD. */
function utf8ByteLength(text: string): number {
  const n = text.length;
  let bytes = n;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      bytes += 1;
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 2; // four bytes for two code units
        i++;
      } else {
        bytes += 2;
      }
    } else {
      bytes += 2;
    }
  }
  return bytes;
}
