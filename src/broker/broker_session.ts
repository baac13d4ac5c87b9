/**
 * The state a broker keeps per client identifier. Plain data and bookkeeping, no I/O: the
 * connection that serves the session does the sending.
 *
 * @module
 */

import type { Properties, ProtocolVersion, PublishPacket, QoS, Will } from "../packet/types.ts";
import type { SubscriptionInfo } from "./types.ts";

/** An application message as the broker stores and routes it. */
export interface BrokerMessage {
  /** The topic name. */
  topic: string;
  /** The payload, owned by the broker (copied from the wire). */
  payload: Uint8Array;
  /** The QoS it was published with. */
  qos: QoS;
  /** The RETAIN flag it was published with. */
  retain: boolean;
  /** MQTT 5 properties to forward (never a topic alias or subscription identifiers). */
  properties?: Properties;
  /** When it expires on the broker's clock (from its Message Expiry Interval), if it does. */
  expiresAt?: number;
}

/** A message on its way to one session: the QoS, RETAIN flag and identifiers it goes with. */
export interface Delivery {
  /** The message. */
  message: BrokerMessage;
  /** The QoS it is delivered with: the minimum of the published and granted QoS. */
  qos: QoS;
  /** The RETAIN flag to send. */
  retain: boolean;
  /** MQTT 5 Subscription Identifiers of the matching subscriptions. */
  subscriptionIdentifiers: number[];
  /** The shared subscription it came through, if any: another member may take it over. */
  group?: SharedGroup;
}

/** One subscription, as stored in the broker's topic trie. */
export interface SubscriptionRecord extends SubscriptionInfo {
  /** The session it belongs to. */
  session: BrokerSession;
}

/** An outgoing QoS 1 or 2 message sent and waiting for its acknowledgement. */
export interface Inflight {
  /** The PUBLISH as sent (resent with DUP on reconnect). */
  packet: PublishPacket;
  /** Whether PUBREC has arrived and PUBREL was sent (QoS 2). */
  released: boolean;
  /** The delivery, kept for one that came through a shared subscription (to hand it over). */
  delivery?: Delivery;
}

/**
 * A shared subscription `$share/{ShareName}/{filter}` (MQTT 5 section 4.8.2): the subscriptions
 * of its member sessions, each message going to one of them in turn.
 */
export class SharedGroup {
  /** The whole filter, `$share/{ShareName}/{filter}`. */
  readonly topicFilter: string;
  /** The members' subscriptions, in the order they joined. */
  readonly members: SubscriptionRecord[] = [];
  #next = 0;

  /** An empty group for `topicFilter`. */
  constructor(topicFilter: string) {
    this.topicFilter = topicFilter;
  }

  /**
   * The member whose turn it is (round robin), skipping `exclude`: a connected one first; if
   * none is, and `connectedOnly` is false, the next one that is away (its session queues it).
   */
  pick(exclude: BrokerSession | undefined, connectedOnly: boolean): SubscriptionRecord | undefined {
    const members = this.members;
    const count = members.length;
    let away = -1;
    for (let i = 0; i < count; i++) {
      const index = (this.#next + i) % count;
      const session = members[index].session;
      if (session === exclude) continue;
      if (session.owner !== undefined) {
        this.#next = index + 1;
        return members[index];
      }
      if (away < 0) away = index;
    }
    if (away < 0 || connectedOnly) return undefined;
    this.#next = away + 1;
    return members[away];
  }
}

/**
 * A client's connection as the registry sees it: what it needs to hand the connection messages,
 * to close it over an error and to take its session over. `ClientHandler` implements it.
 */
export interface ClientConnection {
  /** Bytes written to the connection and not yet taken by its client. */
  readonly buffered: number;
  /** Sends a message to the client now, or queues it in the session. */
  deliver(delivery: Delivery): void;
  /** Closes the connection over an error (v5: DISCONNECT with the error's reason code). */
  fail(error: unknown): void;
  /** Ends the connection because a new one takes its session over. */
  takeOver(): void;
}

/** What a broker knows about one client identifier, across connections. */
export class BrokerSession {
  /** The client identifier. */
  readonly clientId: string;
  /** The protocol version of the last connection. */
  protocolVersion: ProtocolVersion;
  /** Seconds the session outlives its connection: 0 ends it with the connection. */
  expiryInterval: number;
  /** Subscriptions by topic filter, in the order they were made. */
  readonly subscriptions: Map<string, SubscriptionRecord> = new Map();
  /** Messages waiting to be sent. */
  readonly queue: Delivery[] = [];
  /** Outgoing QoS 1 and 2 messages by packet id. */
  readonly inflight: Map<number, Inflight> = new Map();
  /**
   * Incoming QoS 2 packet ids whose PUBREL has not come yet, for exactly once (3.1.1
   * [MQTT-4.3.3-2], v5 [MQTT-4.3.3-10]).
   */
  readonly incoming: Set<number> = new Set();
  /** Messages dropped: QoS 1 and 2 when the queue was full, QoS 0 while the client was slow. */
  dropped = 0;
  /** The connection that serves the session now, if any. */
  owner: ClientConnection | undefined = undefined;
  /** The expiry timer, while the session outlives a connection. */
  expiryTimer: unknown = undefined;
  /** A will waiting for its delay to pass. */
  pendingWill: Will | undefined = undefined;
  /** The will-delay timer. */
  willTimer: unknown = undefined;
  #nextPacketId = 1;

  /** Creates an empty session. */
  constructor(clientId: string, protocolVersion: ProtocolVersion, expiryInterval: number) {
    this.clientId = clientId;
    this.protocolVersion = protocolVersion;
    this.expiryInterval = expiryInterval;
  }

  /** A packet id that no outgoing message in flight uses; undefined when all 65,535 are used. */
  nextPacketId(): number | undefined {
    if (this.inflight.size >= 65_535) return undefined;
    while (true) {
      const id = this.#nextPacketId;
      this.#nextPacketId = id === 65_535 ? 1 : id + 1;
      if (!this.inflight.has(id)) return id;
    }
  }
}
