/**
 * The options and inspection values of the local broker, and the byte connection its parts
 * write to.
 *
 * @module
 */

import type { Clock } from "../_async.ts";
import type { Properties, ProtocolVersion, QoS } from "../packet/types.ts";
import type { AuthenticateHook, AuthorizeHook } from "./auth.ts";

/** A source of time and timers; tests pass a fake one. The same shape as the client's. */
export type BrokerClock = Clock;

/** A byte connection: what the broker serves and what `connectClient()` hands a client. */
export interface BrokerTransport {
  /** Bytes coming in. */
  readable: ReadableStream<Uint8Array>;
  /** Bytes going out. */
  writable: WritableStream<Uint8Array>;
  /** Closes the connection at once, where the transport can. */
  close?(): void;
}

/** How a connection handler reaches its connection, whatever carries the bytes. */
export interface Link {
  /** Sends bytes, in order. */
  write(bytes: Uint8Array): void;
  /** Ends the connection: `graceful` lets written bytes go out first. */
  end(graceful: boolean): void;
  /**
   * Bytes written and not yet taken by the connection. The link calls the handler's `flushed()`
   * as they are taken. Absent: the link holds nothing back (0).
   */
  readonly buffered?: number;
}

/** The options of {@linkcode Broker}. */
export interface BrokerOptions {
  /** The clock for keepalive, will delay and session expiry; default: the runtime's timers. */
  clock?: BrokerClock;
  /**
   * The most messages queued per session, while its client is away or its Receive Maximum is
   * reached; further messages for that session are dropped. Default 1,000.
   */
  maxQueuedMessages?: number;
  /** MQTT 5 Receive Maximum the broker announces and enforces on incoming QoS 2; default 65,535. */
  receiveMaximum?: number;
  /**
   * The largest packet the broker accepts, in bytes; announced in the MQTT 5 CONNACK. A larger
   * packet closes the connection (v5: DISCONNECT 0x95). Default: the protocol's limit.
   */
  maximumPacketSize?: number;
  /** How long a new connection may take to send CONNECT, in milliseconds; default 10,000. */
  connectTimeout?: number;
  /** MQTT 5 Topic Alias Maximum the broker announces for incoming topic aliases; default 10. */
  topicAliasMaximum?: number;
  /**
   * The most bytes written to one connection and not yet taken by its client (a subscriber that
   * reads slowly or not at all). Above it, deliveries to that client stop: QoS 0 messages for it
   * are dropped and counted in {@linkcode SessionInfo.dropped}, as mosquitto does, and QoS 1 and
   * 2 messages wait in its session queue (within `maxQueuedMessages`) until the client catches
   * up. One message is never split, so a connection may hold up to this plus one message.
   * Other clients are not affected. Over WebSocket the runtime takes every message at once, so
   * this bounds nothing there. At least 1; default 1 MiB (1,048,576).
   */
  maxBufferedBytes?: number;
  /**
   * The most bytes of replies (PUBACK, PUBREC, PUBCOMP, SUBACK, PINGRESP…) the broker writes to
   * a connection while it is over `maxBufferedBytes`: a client that keeps sending but does not
   * read. Past it the client is disconnected (MQTT 5: DISCONNECT 0x97 Quota exceeded) and its
   * will published; a persistent session keeps what was queued or in flight for it. Default
   * 1 MiB (1,048,576).
   */
  maxOverflowBytes?: number;
  /**
   * How long, in milliseconds, a connection the broker ends may take to take what is still
   * written to it (the DISCONNECT last) before it is cut; `close()` waits at most this long for a
   * client that does not read. Default 10,000.
   */
  closeTimeout?: number;
  /**
   * Authentication: decides each CONNECT (user name, password, client id, protocol version) and,
   * on MQTT 5, runs enhanced authentication (the Authentication Method and Data, with as many
   * challenges as it likes) and each re-authentication (AUTH 0x19). It accepts, or refuses with a
   * reason code (on 3.1 and 3.1.1, the nearest CONNACK return code, 4 or 5 for credentials).
   * `scramVerifier({ users })` is one. Default: every CONNECT is accepted, and one that names an
   * Authentication Method is refused with 0x8C (Bad authentication method).
   */
  authenticate?: AuthenticateHook;
  /**
   * Authorization: decides each PUBLISH, each will and each topic filter of a SUBSCRIBE, per
   * client, identity and topic. A refused PUBLISH is not routed: on MQTT 5 its PUBACK or PUBREC
   * carries the code (0x87 for `false`); on 3.1 and 3.1.1 it is acknowledged as usual and dropped
   * ([MQTT-3.3.5-2] allows that or closing the connection). A refused filter gets SUBACK 0x87 (v5)
   * or 0x80 (3.x); a refused will refuses the CONNECT (0x87, 3.x return code 5). Synchronous.
   * Default: everything is allowed.
   */
  authorize?: AuthorizeHook;
}

/** Where and how {@linkcode Broker.prototype.listen} listens. */
export interface ListenOptions {
  /** The TCP port; 0 (the default) picks a free one. */
  port?: number;
  /** The address to bind; default `127.0.0.1`. */
  hostname?: string;
}

/** The address a listener is bound to. */
export interface ListenAddress {
  /** The TCP port, the one picked when 0 was asked for. */
  port: number;
  /** The bound address. */
  hostname: string;
}

/** One subscription of a session, as {@linkcode Broker.prototype.sessions} reports it. */
export interface SubscriptionInfo {
  /** The topic filter. */
  topicFilter: string;
  /** The granted QoS. */
  qos: QoS;
  /** MQTT 5 No Local. */
  noLocal: boolean;
  /** MQTT 5 Retain As Published. */
  retainAsPublished: boolean;
  /** MQTT 5 Retain Handling. */
  retainHandling: 0 | 1 | 2;
  /** MQTT 5 Subscription Identifier, if one was given. */
  subscriptionIdentifier?: number;
}

/** A session, as {@linkcode Broker.prototype.sessions} reports it. */
export interface SessionInfo {
  /** The client identifier. */
  clientId: string;
  /** Whether a client is connected to it now. */
  connected: boolean;
  /** Bytes written to its client's connection and not yet taken by the client (0 when away). */
  buffered: number;
  /** The protocol version of its last connection. */
  protocolVersion: ProtocolVersion;
  /** Seconds the session outlives its connection: 0 for a clean session, `Infinity` for never. */
  sessionExpiryInterval: number;
  /** Its subscriptions, in the order they were made. */
  subscriptions: SubscriptionInfo[];
  /** Messages waiting to be sent to the client. */
  queued: number;
  /** Outgoing QoS 1 and 2 messages sent and not yet fully acknowledged. */
  inflight: number;
  /**
   * Messages dropped for it: QoS 1 and 2 ones because its queue was full, QoS 0 ones because its
   * client was not taking what it was sent (see `maxBufferedBytes`).
   */
  dropped: number;
}

/** A retained message, as {@linkcode Broker.prototype.retained} reports it. */
export interface RetainedMessage {
  /** The topic. */
  topic: string;
  /** The payload (a copy). */
  payload: Uint8Array;
  /** The QoS it was published with. */
  qos: QoS;
  /** MQTT 5 properties it was published with. */
  properties?: Properties;
}
