/**
 * The options and values of the client API.
 *
 * @module
 */

import type { Clock } from "../_async.ts";
import type { MqttError } from "../errors.ts";
import type {
  AuthPacket,
  ConnackPacket,
  Properties,
  ProtocolVersion,
  QoS,
} from "../packet/types.ts";
import type { Store } from "../store/store.ts";

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
  /**
   * Says that the application has handled the message. For a QoS 1 or 2 message received by a
   * consumer in manual mode (`{ ack: "manual" }`), its PUBACK or PUBREC goes out once every
   * manual consumer that received it has called this, and after the acknowledgements of the
   * messages that arrived before it. Otherwise, and when called again, it does nothing: in the
   * default (automatic) mode a message is acknowledged when the consumer takes it, and QoS 0
   * has no acknowledgement. After a reconnect it does nothing either for a QoS 1 message of
   * the earlier connection: the broker sends that message again.
   */
  ack(): void;
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

export type { Clock } from "../_async.ts";

/** The options of `connect` on a client. */
export interface ClientOptions {
  /** The client identifier. Default: `kite` and 12 random characters from [0-9a-z]. `""` asks the broker for one. */
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
  /**
   * How long a connection attempt may take, from the dial (and TLS or WebSocket handshake) to
   * CONNACK, in milliseconds; default 30,000. 0 or `Infinity`: no limit.
   */
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
  /**
   * Where publishes in flight and incoming QoS 2 ids are kept; default a `MemoryStore`. A store
   * on disk (`FileStore`) makes accepted QoS 1 and 2 publishes survive a restart.
   */
  store?: Store;
  /**
   * Reconnect after an unexpected loss: `true` (the default of `connect(url)`), `false`, or the
   * backoff settings. A client made over a transport you opened cannot reconnect.
   */
  reconnect?: boolean | ReconnectOptions;
  /**
   * With several broker URLs (`connect([url1, url2])`): the order each round tries them in.
   * `"ordered"` (the default): as given, so the first is preferred; `"shuffle"`: a new random
   * order each round (`reconnect.random` is its source of randomness when given), to spread
   * clients over the brokers.
   */
  urlOrder?: "ordered" | "shuffle";
  /**
   * MQTT 5: follow a Server Reference. When CONNACK refuses, or the broker disconnects, with
   * 0x9C (Use another server) or 0x9D (Server moved) and a Server Reference, the client dials
   * the referenced servers next, with the scheme, path and options of the URL it was on (the
   * port, when the reference has none, the scheme's default). 0x9D is permanent: the reference
   * replaces the URL list for later reconnections; 0x9C is for this attempt only. At most 5
   * redirects in a row without an accepted connection; one more fails with `RedirectError`. A
   * DISCONNECT is followed only when the client reconnects. Default `true`; `false` treats
   * those codes as any other refusal or disconnect. Only for clients that dial URLs.
   */
  followServerReference?: boolean;
  /** Bounds of the queue of publishes waiting to be sent (while disconnected, or for the window). */
  queue?: QueueOptions;
  /** Subscribe again after reconnecting to a broker that lost the session; default true. */
  resubscribe?: boolean;
  /**
   * MQTT 5 outgoing topic aliases. `"auto"`: the client gives topics aliases itself, within the
   * broker's Topic Alias Maximum (none if it announces 0, and never on MQTT 3.1 or 3.1.1): the
   * first publish to a topic on a connection sends the topic and a new alias, later ones an
   * empty topic and the alias; when all aliases are taken, the least recently used topic gives
   * its alias to the new one. A new connection starts with no aliases, and a re-sent publish
   * carries its topic. Topics of 3 characters or fewer go as they are. A publish may then not
   * set `properties.topicAlias` (it rejects with `TypeError`). Default `"manual"`: only the
   * aliases publishes set in their properties.
   *
   * @example Long topics, small payloads
   * ```ts ignore
   * import { connect } from "jsr:@kite/mqtt";
   *
   * const client = await connect("mqtt://127.0.0.1:1883", { protocolVersion: 5, topicAliases: "auto" });
   * await client.publish("factory/line-7/station-42/sensors/temperature", "21.5");
   * ```
   */
  topicAliases?: "auto" | "manual";
  /**
   * MQTT 5 enhanced authentication (section 4.12): an Authentication Method and the handler that
   * runs its exchange, such as `scramSha256({ username, password })`. CONNECT carries the method
   * and the initial data; each AUTH 0x18 the broker sends is answered with the next data; the
   * broker's final data (on CONNACK) may be verified before `connect` resolves. It runs again on
   * every reconnection, and `client.reauthenticate()` runs it on a live connection. MQTT 5 only:
   * on 3.1 and 3.1.1 `connect` rejects with `TypeError`.
   */
  auth?: Authenticator;
}

/**
 * An MQTT 5 enhanced authentication method: its name, and a way to start one exchange of it.
 *
 * @example A method with one challenge: the broker sends a number, the client answers its double
 * ```ts
 * import type { Authenticator } from "./types.ts";
 *
 * const doubling: Authenticator = {
 *   method: "DOUBLE",
 *   start: () => ({
 *     data: new Uint8Array([1]),
 *     next: (challenge) => new Uint8Array([challenge![0] * 2]),
 *   }),
 * };
 * console.log(doubling.method); // "DOUBLE"
 * ```
 */
export interface Authenticator {
  /** The Authentication Method, as CONNECT and every AUTH name it: `"SCRAM-SHA-256"`, say. */
  readonly method: string;
  /**
   * Starts one exchange: for the CONNECT of each connection, and for each `reauthenticate()`.
   * Throwing (or rejecting) fails it with `AuthenticationError`.
   */
  start(
    context: AuthenticationContext,
  ): AuthenticationExchange | Promise<AuthenticationExchange>;
}

/** What an exchange is started for. */
export interface AuthenticationContext {
  /** `false` for a connection's CONNECT, `true` for `reauthenticate()` (AUTH 0x19). */
  reauthentication: boolean;
  /** The client identifier the CONNECT carries (or the broker assigned, when re-authenticating). */
  clientId: string;
}

/** One exchange of an enhanced authentication method: its initial data and its next steps. */
export interface AuthenticationExchange {
  /** The initial Authentication Data, carried by CONNECT or AUTH 0x19; absent: none. */
  data?: Uint8Array;
  /**
   * Answers the broker's challenge (AUTH 0x18, its Authentication Data) with the next data, sent
   * in AUTH 0x18; called once per round, for as many rounds as the broker asks. Absent: a
   * challenge fails the exchange. Throwing fails it with `AuthenticationError`.
   */
  next?(
    data: Uint8Array | undefined,
    packet: AuthPacket,
  ): Uint8Array | undefined | Promise<Uint8Array | undefined>;
  /**
   * Checks the broker's final data when it accepts (CONNACK 0, or AUTH 0x00 after a
   * re-authentication), before `connect` or `reauthenticate` resolves and before anything else is
   * sent: SCRAM checks the server's signature here. Throwing fails the exchange.
   */
  done?(data: Uint8Array | undefined, packet: ConnackPacket | AuthPacket): void | Promise<void>;
}

/** How to reconnect: exponential backoff with full jitter. */
export interface ReconnectOptions {
  /** The shortest wait before an attempt, in milliseconds; default 1,000. */
  minDelay?: number;
  /** The longest wait, in milliseconds; default 30,000. */
  maxDelay?: number;
  /**
   * How many attempts after a loss before giving up; default `Infinity`. With several broker
   * URLs an attempt is a round: one pass over them.
   */
  attempts?: number;
  /**
   * Decides whether an error is worth another attempt. By default a refusal that retrying
   * cannot fix (bad credentials, not authorized, banned, an unsupported protocol version, a
   * rejected client id) and an MQTT 5 "Session taken over" stop reconnecting; everything else
   * is retried.
   */
  shouldRetry?: (error: MqttError) => boolean;
  /**
   * A source of randomness in [0, 1) for the jitter and for `urlOrder: "shuffle"`; default
   * `Math.random`. For tests.
   */
  random?: () => number;
}

/**
 * Bounds of the queue of publishes that wait to be sent (for a connection, or for room in the
 * in-flight window), shared with the subscribe and unsubscribe requests made while disconnected.
 * The bound is on bytes: a publish that would take the queue past `maxBytes` rejects at once with
 * `LimitError`. A loop of publishes that are not awaited queues them all as long as their payloads
 * fit; to be told when to wait instead, use `client.ready()` or `client.writable()`, which follow
 * `highWaterMark`.
 *
 * @example A bound of 256 MiB, and back-pressure from 4 MiB waiting
 * ```ts ignore
 * import { connect } from "jsr:@kite/mqtt";
 *
 * const client = await connect("mqtt://127.0.0.1:1883", {
 *   queue: { maxBytes: 256 * 1024 * 1024, highWaterMark: 4 * 1024 * 1024 },
 * });
 * ```
 */
export interface QueueOptions {
  /**
   * The most payload bytes that may wait (a request counts its topic filters); default 64 MiB.
   * Past it, a publish rejects with `LimitError` naming this option.
   */
  maxBytes?: number;
  /**
   * The payload bytes waiting from which `ready()` waits and a `writable()` stream reports
   * back-pressure; default 1 MiB, never more than `maxBytes`. Bytes waiting are those of
   * publishes not yet written to the connection: QoS 1 and 2 ones waiting for the in-flight
   * window or a connection, and QoS 0 ones not yet written.
   */
  highWaterMark?: number;
  /**
   * The most publishes and requests that may wait, if they are to be bounded by count too;
   * default: no bound by count.
   */
  maxMessages?: number;
  /** Whether QoS 0 publishes wait while disconnected (`"queue"`, the default) or are refused (`"drop"`). */
  qos0?: "queue" | "drop";
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

/** A message to publish, as a chunk written to `client.writable()`. */
export interface OutgoingMessage {
  /** The topic; no wildcards. */
  topic: string;
  /**
   * The payload; a string is sent as UTF-8, bytes as they are (not copied: do not change them
   * until the stream has closed).
   */
  payload: string | Uint8Array;
  /** Whether the broker retains it; default: the stream's `retain`. */
  retain?: boolean;
  /** MQTT 5 properties; default: the stream's `properties`. */
  properties?: Properties;
}

/** The options of `client.writable()`: how its messages are published, and its buffer. */
export interface WritableOptions extends PublishOptions {
  /**
   * The payload bytes the stream itself holds before its `desiredSize` drops to 0 and its
   * writers are told to wait; default: the client's `queue.highWaterMark`.
   */
  highWaterMark?: number;
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

/** The options of `disconnect`. */
export interface DisconnectOptions {
  /** MQTT 5 reason code; 0x04 asks the broker to publish the will anyway. */
  reasonCode?: number;
  /** MQTT 5 DISCONNECT properties, such as `sessionExpiryInterval`. */
  properties?: Properties;
}
