/**
 * The limits a session holds its operations to: the server's, announced in CONNACK, and the
 * bounds of the queue of operations waiting to be sent. Each rule is here once, as a function
 * that says why an operation is refused, or `undefined`; the session calls them before it changes
 * anything, so a refused operation leaves no trace.
 *
 * @module
 */

import { LimitError } from "../errors.ts";
import { utf8Length } from "../packet/bytes.ts";
import { MAXIMUM_PACKET_SIZE } from "../packet/constants.ts";
import { packetSize } from "../packet/encode.ts";
import { sentPublishSize } from "../packet/publish.ts";
import type {
  Properties,
  ProtocolVersion,
  PublishPacket,
  SubscribePacket,
  UnsubscribePacket,
} from "../packet/types.ts";

/** The limits a server announced in CONNACK (MQTT 5), or their defaults. */
export interface ServerLimits {
  /** How many QoS 1 and 2 publishes it accepts at once. */
  receiveMaximum: number;
  /** The largest packet it accepts, in bytes. */
  maximumPacketSize: number;
  /** The highest QoS it supports. */
  maximumQoS: 0 | 1 | 2;
  /** Whether it supports retained messages. */
  retainAvailable: boolean;
  /** The highest topic alias it accepts; 0 for none. */
  topicAliasMaximum: number;
}

/** The limits of a server that announced none: what MQTT allows, and no topic aliases. */
export const DEFAULT_LIMITS: Readonly<ServerLimits> = Object.freeze({
  receiveMaximum: 65535,
  maximumPacketSize: MAXIMUM_PACKET_SIZE,
  maximumQoS: 2,
  retainAvailable: true,
  topicAliasMaximum: 0,
});

/**
 * The limits a CONNACK announces: each property it carries, the default for each it leaves out.
 *
 * @example
 * ```ts
 * import { limitsFromConnack } from "./limits.ts";
 *
 * console.log(limitsFromConnack({ maximumQoS: 1 }).maximumQoS); // 1
 * ```
 */
export function limitsFromConnack(properties: Properties | undefined): Readonly<ServerLimits> {
  // A CONNACK without properties (every MQTT 3.x one) announces the defaults: one object for all.
  if (properties === undefined) return DEFAULT_LIMITS;
  return {
    receiveMaximum: properties?.receiveMaximum ?? DEFAULT_LIMITS.receiveMaximum,
    maximumPacketSize: properties?.maximumPacketSize ?? DEFAULT_LIMITS.maximumPacketSize,
    maximumQoS: properties?.maximumQoS ?? DEFAULT_LIMITS.maximumQoS,
    retainAvailable: properties?.retainAvailable ?? DEFAULT_LIMITS.retainAvailable,
    topicAliasMaximum: properties?.topicAliasMaximum ?? DEFAULT_LIMITS.topicAliasMaximum,
  };
}

/**
 * Why the server's limits forbid sending a PUBLISH, if they do.
 *
 * A `fresh` PUBLISH, just published, is also held to the Topic Alias Maximum, must have a topic
 * (an alias that was never given one leaves it empty), and is measured in any case: measuring
 * checks that it can be encoded, so a bad one fails when it is published, not on the wire. One
 * that was queued before a CONNACK passed those checks when it was published; it goes without an
 * alias the new server does not allow, and is measured only when the server accepts less than
 * the largest packet MQTT allows.
 *
 * @throws What encoding throws for a PUBLISH that cannot be encoded.
 *
 * @example
 * ```ts
 * import { DEFAULT_LIMITS, publishRefusal } from "./limits.ts";
 *
 * const packet = {
 *   type: "publish" as const, topic: "a", payload: new Uint8Array(), qos: 2 as const, retain: false, dup: false,
 * };
 * console.log(publishRefusal(packet, { ...DEFAULT_LIMITS, maximumQoS: 1 }, 5, true)?.message);
 * // "the broker supports QoS 1 at most; this publish asks for 2"
 * ```
 */
export function publishRefusal(
  packet: PublishPacket,
  limits: ServerLimits,
  protocolVersion: ProtocolVersion,
  fresh: boolean,
): LimitError | undefined {
  if (packet.qos > limits.maximumQoS) {
    // [MQTT-3.2.2-11]
    return new LimitError(
      `the broker supports QoS ${limits.maximumQoS} at most; this publish asks for ${packet.qos}`,
    );
  }
  if (packet.retain && !limits.retainAvailable) {
    return new LimitError("the broker does not support retained messages"); // [MQTT-3.2.2-14]
  }
  const alias = fresh ? packet.properties?.topicAlias : undefined;
  if (alias !== undefined) {
    if (alias > limits.topicAliasMaximum) {
      // [MQTT-3.3.2-9]
      return new LimitError(
        `topic alias ${alias} exceeds the broker's Topic Alias Maximum of ${limits.topicAliasMaximum}`,
      );
    }
    if (packet.topic === "") {
      // An empty topic needs an alias that has been given a topic (MQTT 5.0, 3.3.2.3.4).
      return new LimitError(
        `topic alias ${alias} has not been given a topic yet; publish with the topic and the alias first`,
      );
    }
  }
  if (fresh || limits.maximumPacketSize < DEFAULT_LIMITS.maximumPacketSize) {
    const size = sentPublishSize(packet, protocolVersion);
    if (size > limits.maximumPacketSize) {
      // [MQTT-3.2.2-15]
      return new LimitError(
        `the PUBLISH is ${size} bytes; the broker accepts at most ${limits.maximumPacketSize}`,
      );
    }
  }
  return undefined;
}

/**
 * Why a SUBSCRIBE or UNSUBSCRIBE cannot be sent, if it cannot: it is larger than the server
 * accepts. Give it a packet id (any valid one): it is measured as it goes on the wire.
 *
 * @throws What encoding throws for a packet that cannot be encoded: a bad one fails when it is
 * made, not on the wire.
 *
 * @example
 * ```ts
 * import { DEFAULT_LIMITS, requestRefusal } from "./limits.ts";
 *
 * const packet = { type: "unsubscribe" as const, packetId: 1, topicFilters: ["a/b"] };
 * console.log(requestRefusal(packet, { ...DEFAULT_LIMITS, maximumPacketSize: 8 }, 4)?.message);
 * // "the UNSUBSCRIBE is 9 bytes; the broker accepts at most 8"
 * ```
 */
export function requestRefusal(
  packet: SubscribePacket | UnsubscribePacket,
  limits: ServerLimits,
  protocolVersion: ProtocolVersion,
): LimitError | undefined {
  const size = packetSize(packet, protocolVersion);
  if (size > limits.maximumPacketSize) {
    // [MQTT-3.2.2-15]
    return new LimitError(
      `the ${packet.type.toUpperCase()} is ${size} bytes; the broker accepts at most ${limits.maximumPacketSize}`,
    );
  }
  return undefined;
}

/** The default of {@linkcode QueueBounds.maxBytes}: 64 MiB. */
export const DEFAULT_QUEUE_BYTES = 64 * 1024 * 1024;

/** The default of {@linkcode QueueBounds.highWaterMark}, unless `maxBytes` is less: 1 MiB. */
export const DEFAULT_QUEUE_HIGH_WATER_MARK = 1024 * 1024;

/** The bounds of the queue of operations waiting to be sent. */
export interface QueueBounds {
  /** The most operations that may wait; `Infinity` for no bound by count. */
  maxMessages: number;
  /** The most bytes they may hold. */
  maxBytes: number;
  /**
   * The bytes waiting from which a producer that asks is told to wait (`ready()`, the
   * `desiredSize` of a writable): back-pressure starts here, well before `maxBytes` refuses.
   */
  highWaterMark: number;
}

// The bounds when no option sets them.
const DEFAULT_QUEUE_BOUNDS: Readonly<QueueBounds> = Object.freeze({
  maxMessages: Infinity,
  maxBytes: DEFAULT_QUEUE_BYTES,
  highWaterMark: DEFAULT_QUEUE_HIGH_WATER_MARK,
});

/**
 * The bounds of the queue from the options as given: no bound by count, 64 MiB, and a high-water
 * mark of 1 MiB but never more than `maxBytes`.
 *
 * @throws {RangeError} For a bound that is not a number above 0 (`maxMessages` and `maxBytes`
 * may be 0, which refuses everything that would wait).
 *
 * @example
 * ```ts
 * import { queueBounds } from "./limits.ts";
 *
 * console.log(queueBounds(undefined, 4096, undefined));
 * // { maxMessages: Infinity, maxBytes: 4096, highWaterMark: 4096 }
 * ```
 */
export function queueBounds(
  maxMessages: number | undefined,
  maxBytes: number | undefined,
  highWaterMark: number | undefined,
): Readonly<QueueBounds> {
  if (maxMessages !== undefined && !(maxMessages >= 0)) {
    throw new RangeError(`queue.maxMessages must be 0 or more, not ${maxMessages}`);
  }
  if (maxBytes !== undefined && !(maxBytes >= 0)) {
    throw new RangeError(`queue.maxBytes must be 0 or more, not ${maxBytes}`);
  }
  if (highWaterMark !== undefined && !(highWaterMark > 0)) {
    throw new RangeError(`queue.highWaterMark must be more than 0 bytes, not ${highWaterMark}`);
  }
  // The defaults, one object for every session (nothing changes it).
  if (maxMessages === undefined && maxBytes === undefined && highWaterMark === undefined) {
    return DEFAULT_QUEUE_BOUNDS;
  }
  const bytes = maxBytes ?? DEFAULT_QUEUE_BYTES;
  return {
    maxMessages: maxMessages ?? Infinity,
    maxBytes: bytes,
    // At least 1: a mark of 0 would never let a producer go.
    highWaterMark: Math.max(1, Math.min(highWaterMark ?? DEFAULT_QUEUE_HIGH_WATER_MARK, bytes)),
  };
}

/**
 * Whether the queue of operations waiting to be sent has room for one more of `bytes` bytes:
 * what {@linkcode queueRefusal} checks, without making the error.
 *
 * @param operations The publishes and requests waiting.
 * @param queuedBytes The bytes they hold.
 *
 * @example
 * ```ts
 * import { queueHasRoom } from "./limits.ts";
 *
 * const bounds = { maxMessages: Infinity, maxBytes: 100, highWaterMark: 50 };
 * console.log(queueHasRoom(bounds, 20_000, 90, 10)); // true
 * console.log(queueHasRoom(bounds, 20_000, 90, 11)); // false
 * ```
 */
export function queueHasRoom(
  bounds: QueueBounds,
  operations: number,
  queuedBytes: number,
  bytes: number,
): boolean {
  return operations < bounds.maxMessages && queuedBytes + bytes <= bounds.maxBytes;
}

/**
 * Why the queue of operations waiting to be sent has no room for one more of `bytes` bytes, if it
 * has none. Publishes waiting to be sent and SUBSCRIBE or UNSUBSCRIBE requests made while
 * disconnected share its bounds; a publish counts its payload, a request its
 * {@linkcode requestPayloadSize}. The error names the option to raise.
 *
 * @param publishes The publishes waiting.
 * @param requests The requests waiting.
 * @param queuedBytes The bytes of both.
 *
 * @example
 * ```ts
 * import { queueRefusal } from "./limits.ts";
 *
 * const bounds = { maxMessages: Infinity, maxBytes: 100, highWaterMark: 50 };
 * console.log(queueRefusal(bounds, 1, 0, 90, 10)); // undefined
 * console.log(queueRefusal(bounds, 1, 0, 90, 11)?.message);
 * // "the queue of operations waiting to be sent would hold 101 bytes, more than queue.maxBytes (100); raise queue.maxBytes, or wait for room with client.ready() or client.writable()"
 * ```
 */
export function queueRefusal(
  bounds: QueueBounds,
  publishes: number,
  requests: number,
  queuedBytes: number,
  bytes: number,
): LimitError | undefined {
  if (publishes + requests >= bounds.maxMessages) {
    return new LimitError(
      `the queue of operations waiting to be sent is full (${publishes} publishes, ${requests} subscribe or unsubscribe requests, ${queuedBytes} bytes; see the queue option)`,
    );
  }
  if (queuedBytes + bytes > bounds.maxBytes) {
    return new LimitError(
      `the queue of operations waiting to be sent would hold ${
        queuedBytes + bytes
      } bytes, more than queue.maxBytes (${bounds.maxBytes}); raise queue.maxBytes, or wait for room with client.ready() or client.writable()`,
    );
  }
  return undefined;
}

/**
 * The size of the payload of a SUBSCRIBE or UNSUBSCRIBE: each topic filter as a UTF-8 string
 * with its 2-byte length, and for SUBSCRIBE its options byte. What a request counts against the
 * byte bound of the offline queue, as a PUBLISH counts its payload.
 *
 * @example
 * ```ts
 * import { requestPayloadSize } from "./limits.ts";
 *
 * console.log(requestPayloadSize({ type: "unsubscribe", topicFilters: ["a/b"] })); // 5
 * ```
 */
export function requestPayloadSize(
  packet: Omit<SubscribePacket, "packetId"> | Omit<UnsubscribePacket, "packetId">,
): number {
  let size = 0;
  if (packet.type === "subscribe") {
    for (const subscription of packet.subscriptions) {
      size += 3 + utf8Length(subscription.topicFilter, "a topic filter");
    }
  } else {
    for (const filter of packet.topicFilters) size += 2 + utf8Length(filter, "a topic filter");
  }
  return size;
}
