/**
 * The options and values of the client API.
 *
 * @module
 */

import type { Properties, ProtocolVersion, QoS } from "../packet/types.ts";

/** A message that arrived from the broker. */
export interface Message {
  /** The topic it was published to. */
  topic: string;
  /** The payload. It may be a view into a larger buffer: copy it to keep it beyond the message. */
  payload: Uint8Array;
  /** The QoS it was delivered with. */
  qos: QoS;
  /** Whether it is a retained message. */
  retain: boolean;
  /** Whether the broker re-sent it. */
  dup: boolean;
  /** The packet identifier (QoS 1 and 2). */
  packetId?: number;
  /** MQTT 5 properties. */
  properties?: Properties;
}

/** A will: the message the broker publishes when the client goes away without DISCONNECT. */
export interface WillOptions {
  /** The topic. */
  topic: string;
  /** The payload; a string is sent as UTF-8. */
  payload: string | Uint8Array;
  /** The QoS; default 0. */
  qos?: QoS;
  /** Whether the broker retains it; default false. */
  retain?: boolean;
  /** MQTT 5 Will Properties, such as `willDelayInterval`. */
  properties?: Properties;
}

/** A source of time and timers; tests pass a fake one. */
export interface Clock {
  /** Milliseconds on a monotonic clock. */
  now(): number;
  /** Calls `callback` after `ms` milliseconds; returns a handle for `clearTimeout`. */
  setTimeout(callback: () => void, ms: number): unknown;
  /** Cancels a timer. */
  clearTimeout(handle: unknown): void;
}

/** The options of `connect` on a client. */
export interface ClientOptions {
  /** The client identifier. Default: `kite-` and 12 random characters. `""` asks the broker for one. */
  clientId?: string;
  /** 3 = MQTT 3.1, 4 = MQTT 3.1.1 (default), 5 = MQTT 5.0. */
  protocolVersion?: ProtocolVersion;
  /** Clean session (3.x) or clean start (5); default true. */
  clean?: boolean;
  /** Keepalive in seconds; default 60; 0 turns it off. */
  keepalive?: number;
  /** The user name. */
  username?: string;
  /** The password; a string is sent as UTF-8. */
  password?: string | Uint8Array;
  /** The will. */
  will?: WillOptions;
  /** MQTT 5 CONNECT properties (`sessionExpiryInterval`, `receiveMaximum`, ...). */
  properties?: Properties;
  /** How long to wait for CONNACK, in milliseconds; default 30,000. */
  connectTimeout?: number;
  /** Aborts the connection attempt. */
  signal?: AbortSignal;
  /** The most QoS 1 and 2 publishes in flight at once; default 20; capped by the broker's Receive Maximum. */
  inflightWindow?: number;
  /** How long to wait for PINGRESP, in milliseconds; default: the keepalive period. */
  pingTimeout?: number;
  /** The largest packet to accept from the broker, in bytes; on MQTT 5 it is also announced. */
  maximumPacketSize?: number;
  /** How many messages to hold until a handler or iterator is attached; default 1,000. */
  maxHeldMessages?: number;
  /** The clock; default: the runtime's. For tests. */
  clock?: Clock;
}

/** The options of a publish. */
export interface PublishOptions {
  /** The QoS; default 0. */
  qos?: QoS;
  /** Whether the broker retains the message; default false. */
  retain?: boolean;
  /** MQTT 5 properties (`contentType`, `messageExpiryInterval`, `userProperties`, ...). */
  properties?: Properties;
}

/** The options of one subscription. */
export interface SubscribeOptions {
  /** The highest QoS wanted; default 0. */
  qos?: QoS;
  /** MQTT 5: do not receive our own publications. */
  noLocal?: boolean;
  /** MQTT 5: keep the RETAIN flag as published. */
  retainAsPublished?: boolean;
  /** MQTT 5: 0 send retained messages, 1 only for a new subscription, 2 never. */
  retainHandling?: 0 | 1 | 2;
  /** MQTT 5 SUBSCRIBE properties (`subscriptionIdentifier`, `userProperties`). */
  properties?: Properties;
}

/** One filter in a list given to `subscribe`. */
export interface SubscriptionRequest extends Omit<SubscribeOptions, "properties"> {
  /** The topic filter. */
  topic: string;
}
