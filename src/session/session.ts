/**
 * The MQTT protocol state of one client session, without any I/O.
 *
 * Its methods only change state: they never touch a socket or a timer, and they take the time as
 * an argument. Packets to send collect in an outbox and what the user must hear about collects in
 * an event list, both drained by the caller. That keeps every rule of the protocol testable with
 * plain packets and a number for a clock, and leaves the I/O, the timers and the promises to the
 * client that drives it.
 *
 * Operations carry a caller-chosen `token` (the client uses the promise it returned to the user),
 * handed back unchanged when the operation completes or fails.
 *
 * @module
 */

import {
  ConnectionClosedError,
  LimitError,
  MqttError,
  ProtocolError,
  TimeoutError,
} from "../errors.ts";
import { utf8Length, Writer } from "../packet/bytes.ts";
import { encodeInto } from "../packet/encode.ts";
import { publishSize } from "../packet/publish.ts";
import type { OutgoingState, StoreContents, StoredPublish } from "./store.ts";
import type {
  ConnackPacket,
  ConnectPacket,
  Packet,
  Properties,
  ProtocolVersion,
  PublishAckPacket,
  PublishPacket,
  SubackPacket,
  SubscribePacket,
  Subscription,
  UnsubackPacket,
  UnsubscribePacket,
  Will,
} from "../packet/types.ts";

/** The settings of a session, fixed for its lifetime. */
export interface SessionOptions {
  /** 3 (MQTT 3.1), 4 (3.1.1) or 5. */
  protocolVersion: ProtocolVersion;
  /** The client identifier; the server's Assigned Client Identifier replaces an empty one. */
  clientId: string;
  /** Clean Session (3.x) or Clean Start (5). */
  clean: boolean;
  /** The keepalive in seconds; 0 turns it off. */
  keepalive: number;
  /** The user name. */
  username?: string;
  /** The password. */
  password?: Uint8Array;
  /** The Will Message. */
  will?: Will;
  /** MQTT 5 CONNECT properties. */
  properties?: Properties;
  /**
   * The most QoS 1 and 2 publishes in flight at once; more wait in order. Default 20, the default
   * limit of mosquitto; never more than the server's Receive Maximum.
   */
  inflightWindow?: number;
  /** How long to wait for PINGRESP, in milliseconds. Default: the keepalive period. */
  pingTimeout?: number;
  /** Record every change a store must keep in the journal (see `takeJournal`). */
  journal?: boolean;
  /** Subscribe again after reconnecting to a server that lost the session; default true. */
  resubscribe?: boolean;
  /**
   * The most operations that may wait to be sent: publishes waiting for a connection or for room
   * in the window, and SUBSCRIBE or UNSUBSCRIBE requests made while disconnected. Default 10,000.
   */
  maxQueuedMessages?: number;
  /**
   * The most bytes those operations may hold: the payloads of the publishes, and the payloads of
   * the requests (see {@linkcode requestPayloadSize}). Default 64 MiB.
   */
  maxQueuedBytes?: number;
  /** Refuse QoS 0 publishes while disconnected, instead of queuing them; default false. */
  dropQos0Offline?: boolean;
}

/** Something the user must hear about. */
export type SessionEvent<T> =
  | {
    /** A message arrived; for QoS 1 and 2, call `acknowledge` once it is delivered. */
    type: "message";
    /** The PUBLISH, with a topic alias already resolved. */
    packet: PublishPacket;
  }
  | {
    /** An operation completed: the acknowledgement that completed it. */
    type: "complete";
    /** The token given with the operation. */
    token: T;
    /** PUBACK, PUBCOMP, SUBACK or UNSUBACK. */
    packet: Packet;
  }
  | {
    /** A QoS 0 publish that waited for a connection left the queue: it is in the outbox now. */
    type: "sent";
    /** The token given with the publish. */
    token: T;
  }
  | {
    /** An operation failed: a v5 reason code of 0x80 or more. */
    type: "failed";
    /** The token given with the operation. */
    token: T;
    /** What went wrong. */
    error: MqttError;
  };

/** A publish of ours, waiting to be sent or acknowledged. */
export interface OutgoingPublish<T> {
  /** The PUBLISH; its `packetId` is set once it is sent. */
  packet: PublishPacket;
  /** The caller's token. */
  token: T;
  /** `"publish"` until PUBACK or PUBREC, `"pubrel"` from PUBREC until PUBCOMP. */
  state: "publish" | "pubrel";
  /** Orders publishes as they were accepted; the key in the store (QoS 1 and 2). */
  sequence: number;
}

/**
 * A change the store must make durable before the packets that follow it are written: the
 * journal of a session.
 */
export type StoreOperation =
  | { op: "put"; record: StoredPublish }
  | { op: "update"; sequence: number; state: OutgoingState; packetId?: number }
  | { op: "delete"; sequence: number }
  | { op: "putIncoming"; packetId: number }
  | { op: "deleteIncoming"; packetId: number };

interface Request<T> {
  packet: SubscribePacket | UnsubscribePacket;
  token: T;
}

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

const DEFAULT_LIMITS: ServerLimits = {
  receiveMaximum: 65535,
  maximumPacketSize: 268_435_460,
  maximumQoS: 2,
  retainAvailable: true,
  topicAliasMaximum: 0,
};

/**
 * The protocol state of one client session: packet identifiers, QoS 1 and 2 flows in both
 * directions, the in-flight window, exactly-once bookkeeping, keepalive deadlines, and the
 * subscriptions to restore after a lost session.
 *
 * @example Driving a QoS 1 publish by hand
 * ```ts
 * import { Session } from "./session.ts";
 *
 * const session = new Session<string>({ protocolVersion: 4, clientId: "c", clean: true, keepalive: 0 });
 * session.connect(0); // the CONNECT is now in the outbox
 * session.receive({ type: "connack", sessionPresent: false, reasonCode: 0 }, 0);
 * session.publish({ type: "publish", topic: "a", payload: new Uint8Array(), qos: 1, retain: false, dup: false }, "token-1");
 * const [, publish] = session.takeOutbox(0);
 * session.receive({ type: "puback", packetId: (publish as { packetId: number }).packetId }, 0);
 * console.log(session.takeEvents()); // [{ type: "complete", token: "token-1", packet: { type: "puback", ... } }]
 * ```
 */
export class Session<T> {
  /** The settings. */
  readonly options: Readonly<SessionOptions>;
  /** The client identifier in use (the server may have assigned it). */
  clientId: string;
  /** The keepalive in use, in seconds (the server may have changed it). */
  keepalive: number;
  /** The server's limits, from the last CONNACK. */
  limits: ServerLimits = { ...DEFAULT_LIMITS };
  /** Whether a CONNACK accepted the current connection. */
  connected = false;

  #outbox: Packet[] = [];
  #events: SessionEvent<T>[] = [];
  #journal: StoreOperation[] = [];
  #nextSequence = 1;
  /** Whether a store is behind this session; without one nothing is journaled. */
  readonly journaling: boolean;
  // Our QoS 1 and 2 publishes in flight, by packet id; a Map keeps them in the order they were
  // first sent, the order they must be re-sent in [MQTT-4.4.0-1].
  #inflight = new Map<number, OutgoingPublish<T>>();
  // QoS 1 and 2 publishes waiting for room in the window (or for a connection), in order.
  #waiting: OutgoingPublish<T>[] = [];
  #waitingHead = 0;
  // SUBSCRIBE and UNSUBSCRIBE waiting for their acknowledgement, by packet id.
  #requests = new Map<number, Request<T>>();
  // Requests made while disconnected, sent once connected, and the bytes of their payloads.
  #queuedRequests: Request<T>[] = [];
  #queuedRequestBytes = 0;
  #nextPacketId = 1;
  // Incoming QoS 2 packet ids between PUBLISH and PUBREL: false until the message has been
  // delivered, true after (its PUBREC is due). An id stays reserved until PUBREL, also across a
  // resumed session, so this follows the id rather than the connection.
  #incomingQos2 = new Map<number, boolean>();
  // Incoming QoS 1 messages of this connection not yet acknowledged, in arrival order.
  #unacknowledged: PublishPacket[] = [];
  #unacknowledgedHead = 0;
  #receiveMaximum: number;
  #topicAliasMaximum: number;
  #topicAliases = new Map<number, string>();
  // Outgoing topic aliases: what the user declared (alias -> topic, across connections), and
  // what this connection's server has been told, in the order the packets go out.
  #declaredAliases = new Map<number, string>();
  #wireAliases = new Map<number, string>();
  /**
   * Subscriptions the server granted, by filter, with the properties they were made with: what
   * to subscribe to again when the server lost the session.
   */
  readonly subscriptions: Map<string, { subscription: Subscription; properties?: Properties }> =
    new Map();
  /** Whether a CONNACK ever accepted this session: later ones are reconnections. */
  #everConnected = false;
  #lastSent = 0;
  // When the wait for PINGRESP began: when PINGREQ was sent, or when reading last resumed.
  #pingSentAt = -1;
  #readerPaused = false;
  #window: number;
  // Resumed PUBLISHes not yet re-sent, in their order: the server's new Receive Maximum had no
  // room for them yet. They stay in #inflight with their packet ids.
  #heldResends = new Set<OutgoingPublish<T>>();

  /** Creates a session. */
  constructor(options: SessionOptions) {
    this.options = options;
    this.clientId = options.clientId;
    this.keepalive = options.keepalive;
    this.#window = options.inflightWindow ?? 20;
    this.#receiveMaximum = options.properties?.receiveMaximum ?? 65535;
    this.#topicAliasMaximum = options.properties?.topicAliasMaximum ?? 0;
    this.journaling = options.journal ?? false;
    this.#username = options.username;
    this.#password = options.password;
  }

  /**
   * Takes back what a store held: publishes that were sent go back in flight with their packet
   * ids (to be re-sent, or re-queued if the server lost the session); queued ones wait again;
   * incoming QoS 2 ids stay reserved until their PUBREL.
   */
  restore(contents: StoreContents, token: (record: StoredPublish) => T): void {
    for (const record of contents.outgoing) {
      const outgoing: OutgoingPublish<T> = {
        packet: record.packet,
        token: token(record),
        state: record.state === "pubrel" ? "pubrel" : "publish",
        sequence: record.sequence,
      };
      const packetId = record.packet.packetId;
      if (record.state !== "queued" && packetId !== undefined && !this.#inflight.has(packetId)) {
        this.#inflight.set(packetId, outgoing);
      } else {
        delete record.packet.packetId;
        this.#waiting.push(outgoing);
        // Counted like any waiting publish, since #fillWindow takes it off again.
        this.#waitingBytes += record.packet.payload.length;
      }
      this.#nextSequence = Math.max(this.#nextSequence, record.sequence + 1);
    }
    for (const packetId of contents.incoming) this.#incomingQos2.set(packetId, true);
  }

  /** Hands out the changes the store must make durable, in order. */
  takeJournal(): StoreOperation[] {
    const journal = this.#journal;
    if (journal.length > 0) this.#journal = [];
    return journal;
  }

  /** The total payload bytes of the publishes waiting to be sent. */
  get waitingBytes(): number {
    return this.#waitingBytes;
  }

  #waitingBytes = 0;

  /** The number of our QoS 1 and 2 publishes sent and not yet completed. */
  get inflightCount(): number {
    return this.#inflight.size;
  }

  /** The number of our QoS 1 and 2 publishes waiting to be sent. */
  get waitingCount(): number {
    return this.#waiting.length - this.#waitingHead;
  }

  /** The number of SUBSCRIBE and UNSUBSCRIBE requests made while disconnected, waiting to be sent. */
  get queuedRequestCount(): number {
    return this.#queuedRequests.length;
  }

  /** The total payload bytes (see {@linkcode requestPayloadSize}) of the queued requests. */
  get queuedRequestBytes(): number {
    return this.#queuedRequestBytes;
  }

  /** The publishes in flight, in the order they were sent. */
  inflight(): IterableIterator<OutgoingPublish<T>> {
    return this.#inflight.values();
  }

  /**
   * The window in force: the configured one, capped by the server's Receive Maximum, beyond
   * which no unacknowledged QoS 1 or 2 PUBLISH may be sent [MQTT-3.3.4-7].
   */
  get window(): number {
    return Math.min(this.#window, this.limits.receiveMaximum);
  }

  /** Hands out the packets to send, in order, and records the time they go out. */
  takeOutbox(now: number): Packet[] {
    const packets = this.#outbox;
    if (packets.length > 0) {
      this.#outbox = [];
      this.#lastSent = now;
    }
    return packets;
  }

  /** Whether packets wait in the outbox. */
  get hasOutput(): boolean {
    return this.#outbox.length > 0;
  }

  /** Hands out what happened since the last call. */
  takeEvents(): SessionEvent<T>[] {
    const events = this.#events;
    if (events.length > 0) this.#events = [];
    return events;
  }

  #username: string | undefined;
  #password: Uint8Array | undefined;

  /** Replaces the user name and password that the next CONNECT carries. */
  setCredentials(username: string | undefined, password: Uint8Array | undefined): void {
    this.#username = username;
    this.#password = password;
  }

  /** Starts a connection: puts CONNECT in the outbox. */
  connect(now: number): ConnectPacket {
    const o = this.options;
    this.connected = false;
    this.#pingSentAt = -1;
    this.#readerPaused = false;
    this.#lastSent = now;
    // [MQTT-3.3.2-7] aliases do not outlive a connection, in either direction.
    this.#topicAliases.clear();
    this.#wireAliases.clear();
    const packet: ConnectPacket = {
      type: "connect",
      protocolVersion: o.protocolVersion,
      clientId: this.clientId,
      clean: o.clean,
      keepalive: o.keepalive,
    };
    if (this.#username !== undefined) packet.username = this.#username;
    if (this.#password !== undefined) packet.password = this.#password;
    if (o.will !== undefined) packet.will = o.will;
    if (o.properties !== undefined) packet.properties = o.properties;
    this.#outbox.push(packet);
    return packet;
  }

  /**
   * Queues a PUBLISH. QoS 0 goes to the outbox at once when connected and returns `true`; QoS 1
   * and 2 get a packet id and go out when the window has room, in the order they were published.
   * While disconnected, everything waits in order ("sent" events report QoS 0 leaving).
   *
   * A PUBLISH with a topic alias and an empty topic takes the topic the alias was last given, so
   * it can go again on a new connection, where the server knows no alias [MQTT-3.3.2-7], and
   * survive a restart from a store.
   *
   * @throws {LimitError} Before anything changes, when the server's limits forbid the PUBLISH
   * (its QoS, retain, topic alias or size), when its alias has not been given a topic yet, or when
   * it would wait and the queue is full (`maxQueuedMessages`, `maxQueuedBytes`).
   * @throws {ConnectionClosedError} For QoS 0 while disconnected, with `dropQos0Offline`.
   */
  publish(packet: PublishPacket, token: T): boolean {
    const alias = packet.properties?.topicAlias;
    // Measured and checked with its whole topic, as it goes the first time a connection uses
    // the alias; an alias never given a topic leaves it empty, which publishRefusal refuses.
    if (alias !== undefined && packet.topic === "") {
      packet.topic = this.#declaredAliases.get(alias) ?? "";
    }
    const refusal = publishRefusal(packet, this.limits, this.options.protocolVersion, true);
    if (refusal !== undefined) throw refusal;
    if (!this.connected) {
      if (packet.qos === 0 && this.options.dropQos0Offline) {
        throw new ConnectionClosedError(
          'not connected, and QoS 0 publishes are dropped while offline (queue.qos0: "drop")',
        );
      }
      this.#requireQueueRoom(packet.payload.length);
    } else if (packet.qos > 0 && this.waitingCount > 0) {
      this.#requireQueueRoom(packet.payload.length);
    }
    if (alias !== undefined) this.#declaredAliases.set(alias, packet.topic);
    if (packet.qos === 0 && this.connected) {
      this.#pushPublish(packet);
      return true;
    }
    const outgoing: OutgoingPublish<T> = { packet, token, state: "publish", sequence: 0 };
    if (packet.qos > 0) {
      outgoing.sequence = this.#nextSequence++;
      if (this.journaling) {
        this.#journal.push({
          op: "put",
          record: { sequence: outgoing.sequence, packet, state: "queued" },
        });
      }
    }
    if (
      packet.qos > 0 && this.connected && this.waitingCount === 0 &&
      this.#inflight.size < this.window
    ) {
      this.#send(outgoing);
    } else {
      this.#waiting.push(outgoing);
      this.#waitingBytes += packet.payload.length;
    }
    return false;
  }

  /**
   * Queues a SUBSCRIBE: sent at once when connected, after the next CONNACK otherwise.
   *
   * @throws {ProtocolError | TypeError} Before anything changes, when the packet cannot be
   * encoded (what `encode` throws for it).
   * @throws {LimitError} Before anything changes, when it is larger than the server accepts, or
   * when disconnected and the queue is full.
   */
  subscribe(packet: Omit<SubscribePacket, "packetId">, token: T): void {
    // The packet id it is measured with; the real one is given when it is sent.
    this.#checkedRequest({ ...packet, packetId: 1 } as SubscribePacket, token);
  }

  /**
   * Queues an UNSUBSCRIBE: sent at once when connected, after the next CONNACK otherwise.
   *
   * @throws {ProtocolError | TypeError} Before anything changes, when the packet cannot be
   * encoded (what `encode` throws for it).
   * @throws {LimitError} Before anything changes, when it is larger than the server accepts, or
   * when disconnected and the queue is full.
   */
  unsubscribe(packet: Omit<UnsubscribePacket, "packetId">, token: T): void {
    this.#checkedRequest({ ...packet, packetId: 1 } as UnsubscribePacket, token);
  }

  #checkedRequest(packet: SubscribePacket | UnsubscribePacket, token: T): void {
    const refusal = requestRefusal(packet, this.limits, this.options.protocolVersion);
    if (refusal !== undefined) throw refusal;
    if (!this.connected) this.#requireQueueRoom(requestPayloadSize(packet));
    this.#request(packet, token);
  }

  /**
   * Throws {@linkcode LimitError} when the queue has no room for one more entry of `bytes`
   * bytes. Publishes waiting to be sent and requests made while disconnected share its bounds.
   */
  #requireQueueRoom(bytes: number): void {
    const publishes = this.waitingCount;
    const requests = this.#queuedRequests.length;
    const queuedBytes = this.#waitingBytes + this.#queuedRequestBytes;
    if (
      publishes + requests >= (this.options.maxQueuedMessages ?? 10_000) ||
      queuedBytes + bytes > (this.options.maxQueuedBytes ?? 64 * 1024 * 1024)
    ) {
      throw new LimitError(
        `the queue of operations waiting to be sent is full (${publishes} publishes, ${requests} subscribe or unsubscribe requests, ${queuedBytes} bytes; see the queue option)`,
      );
    }
  }

  #request(packet: SubscribePacket | UnsubscribePacket, token: T): void {
    const request = { packet, token };
    if (!this.connected) {
      this.#queuedRequests.push(request);
      this.#queuedRequestBytes += requestPayloadSize(packet);
      return;
    }
    packet.packetId = this.#allocatePacketId();
    this.#requests.set(packet.packetId, request);
    // [MQTT-3.3.4-8] only PUBLISH waits for the window; requests go out at once.
    this.#outbox.push(packet);
  }

  /**
   * Marks an incoming QoS 1 or 2 message as delivered to the user and puts its acknowledgement
   * in the outbox: PUBACK for QoS 1 (in the order received [MQTT-4.6.0-2]), PUBREC for QoS 2.
   */
  acknowledge(packet: PublishPacket): void {
    const packetId = packet.packetId;
    if (packetId === undefined) return;
    if (packet.qos === 2) {
      if (this.#incomingQos2.get(packetId) !== false) return;
      this.#incomingQos2.set(packetId, true);
      // Durable before PUBREC: after a restart a re-sent copy is known as a duplicate. Recorded
      // on delivery, not on arrival, so that a crash in between re-delivers rather than loses.
      if (this.journaling) this.#journal.push({ op: "putIncoming", packetId });
      // [MQTT-4.3.3-8] PUBREC once we own the message; when disconnected, the server re-sends
      // the PUBLISH after the reconnect and gets its PUBREC then.
      if (this.connected) this.#outbox.push({ type: "pubrec", packetId });
      return;
    }
    // QoS 1: only a message of this connection. After a reconnect the id may stand for another
    // message, and the server re-sends what was not acknowledged.
    const queue = this.#unacknowledged;
    let i = this.#unacknowledgedHead;
    while (i < queue.length && queue[i] !== packet) i++;
    if (i === queue.length) return;
    if (i === this.#unacknowledgedHead) {
      queue[i] = undefined as unknown as PublishPacket;
      this.#unacknowledgedHead++;
      if (this.#unacknowledgedHead === queue.length) {
        queue.length = 0;
        this.#unacknowledgedHead = 0;
      }
    } else {
      queue.splice(i, 1);
    }
    // [MQTT-4.3.2-4] PUBACK once delivered, in the order received [MQTT-4.6.0-2].
    this.#outbox.push({ type: "puback", packetId });
  }

  /**
   * Handles a packet from the server.
   *
   * @throws {ProtocolError} When the server broke the protocol; the connection must be closed.
   */
  receive(packet: Packet, now: number): void {
    switch (packet.type) {
      case "publish":
        return this.#onPublish(packet);
      case "puback":
        return this.#onPuback(packet);
      case "pubrec":
        return this.#onPubrec(packet);
      case "pubrel":
        return this.#onPubrel(packet);
      case "pubcomp":
        return this.#onPubcomp(packet);
      case "suback":
      case "unsuback":
        return this.#onRequestAck(packet);
      case "pingresp":
        this.#pingSentAt = -1;
        return;
      case "connack":
        return this.#onConnack(packet, now);
      case "disconnect":
      case "auth":
        // The client handles these: they end or extend the connection.
        return;
      default:
        throw new ProtocolError(
          `a server does not send ${packet.type.toUpperCase()} to a client`,
          undefined,
          0x82,
        );
    }
  }

  #onConnack(packet: ConnackPacket, now: number): void {
    if (this.connected) {
      throw new ProtocolError("a second CONNACK arrived on one connection", undefined, 0x82);
    }
    if (packet.reasonCode !== 0) return;
    this.connected = true;
    this.#lastSent = now;
    const p = packet.properties;
    this.limits = {
      receiveMaximum: p?.receiveMaximum ?? DEFAULT_LIMITS.receiveMaximum,
      maximumPacketSize: p?.maximumPacketSize ?? DEFAULT_LIMITS.maximumPacketSize,
      maximumQoS: p?.maximumQoS ?? 2,
      retainAvailable: p?.retainAvailable ?? true,
      topicAliasMaximum: p?.topicAliasMaximum ?? 0,
    };
    if (p?.assignedClientIdentifier !== undefined) this.clientId = p.assignedClientIdentifier;
    // [MQTT-3.2.2-21] the Server Keep Alive replaces ours.
    if (p?.serverKeepAlive !== undefined) this.keepalive = p.serverKeepAlive;

    const inflight = [...this.#inflight.values()];
    if (packet.sessionPresent) {
      // [MQTT-4.4.0-1] re-send every unacknowledged PUBLISH (with DUP) and PUBREL with their
      // original packet ids, in the order they were first sent [MQTT-4.6.0-1].
      // [MQTT-3.3.4-7] but no more unacknowledged PUBLISHes than the Receive Maximum this
      // server announced now: the rest wait, in order, for acknowledgements to make room.
      const window = this.window;
      let outstanding = 0;
      for (const outgoing of inflight) {
        if (outgoing.state === "publish") {
          outgoing.packet.dup = true; // [MQTT-3.3.1-1]
          if (outstanding < window && this.#heldResends.size === 0) {
            this.#pushPublish(outgoing.packet);
            outstanding++;
          } else {
            this.#heldResends.add(outgoing);
          }
        } else {
          this.#outbox.push({ type: "pubrel", packetId: outgoing.packet.packetId! });
          outstanding++;
        }
      }
    } else {
      // The server has no session: nothing of ours is in flight there, and nothing of its.
      // What we had in flight goes again, first, as new messages.
      this.#inflight.clear();
      if (this.journaling) {
        for (const packetId of this.#incomingQos2.keys()) {
          this.#journal.push({ op: "deleteIncoming", packetId });
        }
      }
      this.#incomingQos2.clear();
      const resend = inflight.map((outgoing) => {
        outgoing.state = "publish";
        outgoing.packet.dup = false;
        delete outgoing.packet.packetId;
        if (this.journaling) {
          this.#journal.push({ op: "update", sequence: outgoing.sequence, state: "queued" });
        }
        this.#waitingBytes += outgoing.packet.payload.length;
        return outgoing;
      });
      this.#waiting = [...resend, ...this.#waiting.slice(this.#waitingHead)];
      this.#waitingHead = 0;
    }
    // A reconnection to a server that lost the session subscribes again to what it had [on by
    // default; `resubscribe: false` turns it off], first, so no message is missed after it.
    const reconnected = this.#everConnected;
    this.#everConnected = true;
    if (reconnected && !packet.sessionPresent && (this.options.resubscribe ?? true)) {
      const again: Request<T>[] = [];
      for (const { subscription, properties } of this.subscriptions.values()) {
        const resubscribe: SubscribePacket = {
          type: "subscribe",
          packetId: 0,
          subscriptions: [subscription],
        };
        if (properties) resubscribe.properties = properties;
        again.push({ packet: resubscribe, token: undefined as T });
      }
      this.#queuedRequests = [...again, ...this.#queuedRequests];
    }
    // Requests in flight when the connection was lost go again, then the queued ones.
    const requests = [...this.#requests.values(), ...this.#queuedRequests];
    this.#requests.clear();
    this.#queuedRequests = [];
    this.#queuedRequestBytes = 0;
    for (const request of requests) this.#request(request.packet, request.token);
    this.#fillWindow();
  }

  /**
   * Forgets the connection: called when it closed. What is in flight stays, to be re-sent after
   * the next CONNACK, until `abandon` gives it up.
   */
  disconnected(): void {
    this.connected = false;
    this.#pingSentAt = -1;
    this.#readerPaused = false;
    this.#outbox = [];
    this.#unacknowledged = [];
    this.#unacknowledgedHead = 0;
    // Still in flight: the next CONNACK decides again what is re-sent.
    this.#heldResends.clear();
  }

  /**
   * Gives up every operation that has not completed and returns their tokens, oldest first: for
   * a client that will not reconnect.
   *
   * @param onKept With a journal, receives instead the tokens of the QoS 1 and 2 publishes,
   * whose records stay in the store: a client that opens it again completes them.
   */
  abandon(onKept?: (token: T) => void): T[] {
    const tokens: T[] = [];
    const kept = this.journaling ? onKept : undefined;
    for (const outgoing of this.#inflight.values()) {
      if (kept !== undefined) kept(outgoing.token);
      else tokens.push(outgoing.token);
    }
    for (let i = this.#waitingHead; i < this.#waiting.length; i++) {
      const outgoing = this.#waiting[i];
      if (kept !== undefined && outgoing.packet.qos > 0) kept(outgoing.token);
      else tokens.push(outgoing.token);
    }
    this.#waitingBytes = 0;
    for (const request of this.#requests.values()) tokens.push(request.token);
    for (const request of this.#queuedRequests) tokens.push(request.token);
    this.#inflight.clear();
    this.#heldResends.clear();
    this.#waiting = [];
    this.#waitingHead = 0;
    this.#requests.clear();
    this.#queuedRequests = [];
    this.#queuedRequestBytes = 0;
    return tokens;
  }

  /**
   * Says that the caller stopped reading packets from the server, because the user has not yet
   * taken the messages already read (back-pressure). A PINGRESP may then sit unread behind the
   * PUBLISHes ahead of it: until `readerResumed`, a missing PINGRESP proves nothing, and `tick`
   * does not count the ping timeout.
   */
  readerPaused(): void {
    this.#readerPaused = true;
  }

  /**
   * Says that the caller reads packets from the server again: the wait for an outstanding
   * PINGRESP counts from `now`, the full ping timeout, so a broker that has really gone quiet
   * is still found.
   */
  readerResumed(now: number): void {
    if (!this.#readerPaused) return;
    this.#readerPaused = false;
    if (this.#pingSentAt >= 0) this.#pingSentAt = now;
  }

  /**
   * Advances the keepalive clock: puts PINGREQ in the outbox when nothing has been sent for the
   * keepalive period ([MQTT-3.1.2-23] in 3.1.1, [MQTT-3.1.2-20] in 5.0), and throws {@linkcode TimeoutError} when a PINGREQ has had
   * no answer within the ping timeout. Time while the reader is paused (see `readerPaused`)
   * does not count toward the ping timeout.
   *
   * @returns The time at which to call `tick` next, or `Infinity` when keepalive is off.
   */
  tick(now: number): number {
    if (!this.connected || this.keepalive === 0) return Infinity;
    const period = this.keepalive * 1000;
    const pingTimeout = this.options.pingTimeout ?? period;
    if (this.#readerPaused) {
      // The answer to a PINGREQ may be unread, so its absence is no verdict. But the server
      // must still hear from us once per period [MQTT-3.1.2-23] (3.1.1; [MQTT-3.1.2-20] in 5.0)
      // or it closes the connection [MQTT-3.1.2-24]: a PINGREQ then, even with one unanswered.
      if (now - this.#lastSent >= period) {
        const outbox = this.#outbox;
        // One PINGREQ waiting to be written is enough, when a write does not finish.
        if (outbox.length === 0 || outbox[outbox.length - 1].type !== "pingreq") {
          outbox.push({ type: "pingreq" });
        }
        if (this.#pingSentAt < 0) this.#pingSentAt = now;
        return now + period;
      }
      return this.#lastSent + period;
    }
    if (this.#pingSentAt >= 0) {
      // A PINGREQ is out: its answer, or its absence, is what matters now.
      const deadline = this.#pingSentAt + pingTimeout;
      if (now >= deadline) {
        throw new TimeoutError(
          `the broker did not answer PINGREQ within ${pingTimeout} ms; the connection is dead`,
        );
      }
      return deadline;
    }
    if (now - this.#lastSent >= period) {
      // Nothing went out for a whole period: also when packets wait behind a write that does
      // not finish, which is exactly a connection that has died without saying so.
      this.#outbox.push({ type: "pingreq" });
      this.#pingSentAt = now;
      return now + pingTimeout;
    }
    return this.#lastSent + period;
  }

  #allocatePacketId(): number {
    for (let tries = 0; tries < 65535; tries++) {
      const id = this.#nextPacketId;
      this.#nextPacketId = id === 65535 ? 1 : id + 1;
      // [MQTT-2.2.1-3] / [MQTT-2.3.1-2] a new packet gets an identifier not in use.
      if (!this.#inflight.has(id) && !this.#requests.has(id)) return id;
    }
    throw new MqttError("all 65535 packet identifiers are in use");
  }

  #send(outgoing: OutgoingPublish<T>): void {
    const packetId = this.#allocatePacketId();
    outgoing.packet.packetId = packetId;
    this.#inflight.set(packetId, outgoing);
    // The packet id is durable before the PUBLISH is written: after a restart the message is
    // re-sent with the same id, never as a second message.
    if (this.journaling) {
      this.#journal.push({ op: "update", sequence: outgoing.sequence, state: "publish", packetId });
    }
    this.#pushPublish(outgoing.packet);
  }

  /**
   * Puts a PUBLISH in the outbox. With a topic alias, it goes with an empty topic only when this
   * connection's server already maps the alias to its topic; otherwise with the topic, which
   * sets the mapping (MQTT 5.0, 3.3.2.3.4). Resent packets after a reconnection thus carry the topic.
   */
  #pushPublish(packet: PublishPacket): void {
    const alias = packet.properties?.topicAlias;
    if (alias === undefined) {
      this.#outbox.push(packet);
    } else if (alias > this.limits.topicAliasMaximum) {
      // Queued or in flight under another connection's limits: this server allows no such
      // alias [MQTT-3.3.2-9], so the PUBLISH goes with its topic alone.
      const { topicAlias: _, ...properties } = packet.properties!;
      const plain: PublishPacket = { ...packet };
      if (Object.keys(properties).length > 0) plain.properties = properties;
      else delete plain.properties;
      this.#outbox.push(plain);
    } else if (this.#wireAliases.get(alias) === packet.topic) {
      this.#outbox.push({ ...packet, topic: "" });
    } else {
      this.#wireAliases.set(alias, packet.topic);
      this.#outbox.push(packet);
    }
  }

  #fillWindow(): void {
    if (!this.connected) return;
    const window = this.window;
    const waiting = this.#waiting;
    while (this.#waitingHead < waiting.length) {
      const outgoing = waiting[this.#waitingHead];
      // Queued before this CONNACK: hold it against the limits the server just announced.
      const refusal = publishRefusal(outgoing.packet, this.limits, this.options.protocolVersion);
      if (refusal !== undefined) {
        if (this.journaling && outgoing.packet.qos > 0) {
          this.#journal.push({ op: "delete", sequence: outgoing.sequence });
        }
        this.#events.push({ type: "failed", token: outgoing.token, error: refusal });
      } else if (outgoing.packet.qos === 0) {
        this.#pushPublish(outgoing.packet);
        this.#events.push({ type: "sent", token: outgoing.token });
      } else if (this.#inflight.size < window) {
        this.#send(outgoing);
      } else {
        break;
      }
      this.#waitingBytes -= outgoing.packet.payload.length;
      waiting[this.#waitingHead++] = undefined as unknown as OutgoingPublish<T>;
    }
    if (this.#waitingHead === waiting.length) {
      this.#waiting = [];
      this.#waitingHead = 0;
    } else if (this.#waitingHead > 1024 && this.#waitingHead * 2 > waiting.length) {
      this.#waiting = waiting.slice(this.#waitingHead);
      this.#waitingHead = 0;
    }
  }

  #finish(packetId: number, outgoing: OutgoingPublish<T>, ack: Packet, reasonCode: number): void {
    this.#inflight.delete(packetId);
    this.#heldResends.delete(outgoing);
    if (this.journaling) this.#journal.push({ op: "delete", sequence: outgoing.sequence });
    if (reasonCode >= 0x80) {
      this.#events.push({
        type: "failed",
        token: outgoing.token,
        error: new PublishError(ack.type, reasonCode, reasonStringOf(ack)),
      });
    } else {
      this.#events.push({ type: "complete", token: outgoing.token, packet: ack });
    }
    this.#resendHeld();
    this.#fillWindow();
  }

  /** Re-sends held PUBLISHes of a resumed session while the Receive Maximum has room. */
  #resendHeld(): void {
    if (this.#heldResends.size === 0 || !this.connected) return;
    const window = this.window;
    for (const outgoing of this.#heldResends) {
      if (this.#inflight.size - this.#heldResends.size >= window) return;
      this.#heldResends.delete(outgoing);
      this.#pushPublish(outgoing.packet);
    }
  }

  #onPuback(packet: PublishAckPacket<"puback">): void {
    const outgoing = this.#inflight.get(packet.packetId);
    // A PUBACK for nothing of ours (a late duplicate) changes nothing.
    if (outgoing === undefined || outgoing.packet.qos !== 1) return;
    this.#finish(packet.packetId, outgoing, packet, packet.reasonCode ?? 0);
  }

  #onPubrec(packet: PublishAckPacket<"pubrec">): void {
    const packetId = packet.packetId;
    const outgoing = this.#inflight.get(packetId);
    if (outgoing === undefined || outgoing.packet.qos !== 2) {
      // Answer so the server can finish its side [MQTT-4.3.3-4]; v5 says the id is unknown.
      this.#outbox.push(
        this.options.protocolVersion === 5
          ? { type: "pubrel", packetId, reasonCode: 0x92 }
          : { type: "pubrel", packetId },
      );
      return;
    }
    const reasonCode = packet.reasonCode ?? 0;
    if (reasonCode >= 0x80) {
      // v5: a failing PUBREC ends the flow; the id is free again.
      this.#finish(packetId, outgoing, packet, reasonCode);
      return;
    }
    // [MQTT-4.3.3-4] answer PUBREC with PUBREL; from now on the PUBLISH is never re-sent
    // [MQTT-4.3.3-6], and PUBRELs go out in the order the PUBRECs came [MQTT-4.6.0-4].
    outgoing.state = "pubrel";
    this.#heldResends.delete(outgoing);
    // Durable before PUBREL is written: after a restart PUBREL is re-sent, never the PUBLISH.
    if (this.journaling) {
      this.#journal.push({ op: "update", sequence: outgoing.sequence, state: "pubrel", packetId });
    }
    this.#outbox.push({ type: "pubrel", packetId });
  }

  #onPubcomp(packet: PublishAckPacket<"pubcomp">): void {
    const outgoing = this.#inflight.get(packet.packetId);
    if (outgoing === undefined || outgoing.state !== "pubrel") return;
    this.#finish(packet.packetId, outgoing, packet, packet.reasonCode ?? 0);
  }

  #onPubrel(packet: PublishAckPacket<"pubrel">): void {
    const packetId = packet.packetId;
    const known = this.#incomingQos2.get(packetId);
    if (known === false) {
      // PUBREL before we sent PUBREC: the server broke the flow [MQTT-4.3.3-2] (3.1.1).
      throw new ProtocolError(
        `PUBREL for packet ${packetId} arrived before its PUBREC was sent`,
        undefined,
        0x82,
      );
    }
    this.#incomingQos2.delete(packetId);
    // Durable before PUBCOMP: a stale id would make the next message with it look like a copy.
    if (known !== undefined && this.journaling) {
      this.#journal.push({ op: "deleteIncoming", packetId });
    }
    // A PUBREL for an id we do not know still gets its PUBCOMP, so the server can finish
    // [MQTT-4.3.3-11] (5.0; [MQTT-4.3.3-2] in 3.1.1).
    this.#outbox.push(
      known === undefined && this.options.protocolVersion === 5
        ? { type: "pubcomp", packetId, reasonCode: 0x92 }
        : { type: "pubcomp", packetId },
    );
  }

  #onPublish(packet: PublishPacket): void {
    if (this.options.protocolVersion === 5) this.#resolveTopicAlias(packet);
    const packetId = packet.packetId;
    if (packet.qos === 0 || packetId === undefined) {
      this.#events.push({ type: "message", packet });
      return;
    }
    if (packet.qos === 2) {
      const state = this.#incomingQos2.get(packetId);
      if (state !== undefined) {
        // A re-sent PUBLISH before PUBREL is not delivered again; it is answered with PUBREC
        // [MQTT-4.3.3-10] once the first copy has been delivered and acknowledged.
        if (state) this.#outbox.push({ type: "pubrec", packetId });
        return;
      }
      this.#incomingQos2.set(packetId, false);
    }
    // This PUBLISH counts too: a QoS 2 one is in #incomingQos2 already, a QoS 1 one is not yet.
    if (
      this.#unacknowledged.length - this.#unacknowledgedHead + this.#incomingQos2.size +
          (packet.qos === 1 ? 1 : 0) > this.#receiveMaximum
    ) {
      throw new ProtocolError(
        `the server sent more than the Receive Maximum of ${this.#receiveMaximum} unacknowledged publishes`,
        "MQTT-3.3.4-9",
        0x93,
      );
    }
    if (packet.qos === 1) this.#unacknowledged.push(packet);
    this.#events.push({ type: "message", packet });
  }

  #resolveTopicAlias(packet: PublishPacket): void {
    const alias = packet.properties?.topicAlias;
    if (alias === undefined) return;
    if (alias > this.#topicAliasMaximum) {
      throw new ProtocolError(
        `the server used topic alias ${alias}; the maximum is ${this.#topicAliasMaximum}`,
        "MQTT-3.3.2-11",
        0x94,
      );
    }
    if (packet.topic === "") {
      const topic = this.#topicAliases.get(alias);
      if (topic === undefined) {
        throw new ProtocolError(`topic alias ${alias} has no topic yet`, undefined, 0x82);
      }
      packet.topic = topic;
    } else {
      this.#topicAliases.set(alias, packet.topic);
    }
  }

  #onRequestAck(packet: SubackPacket | UnsubackPacket): void {
    const request = this.#requests.get(packet.packetId);
    if (request === undefined) return;
    const expected = request.packet.type === "subscribe" ? "suback" : "unsuback";
    if (packet.type !== expected) {
      throw new ProtocolError(
        `${packet.type.toUpperCase()} answers packet ${packet.packetId}, which was ${request.packet.type.toUpperCase()}`,
        undefined,
        0x82,
      );
    }
    if (request.packet.type === "subscribe") {
      const codes = (packet as SubackPacket).reasonCodes;
      const subscriptions = request.packet.subscriptions;
      // Checked before the request is forgotten: its token must still be there to fail.
      if (codes.length !== subscriptions.length) {
        throw new ProtocolError(
          `SUBACK has ${codes.length} codes for ${subscriptions.length} filters`,
          "MQTT-3.8.4-6",
          0x82,
        );
      }
      const properties = request.packet.properties;
      subscriptions.forEach((subscription, i) => {
        if (codes[i] < 0x80) {
          this.subscriptions.set(
            subscription.topicFilter,
            properties ? { subscription, properties } : { subscription },
          );
        }
      });
    } else {
      for (const filter of request.packet.topicFilters) this.subscriptions.delete(filter);
    }
    this.#requests.delete(packet.packetId);
    this.#events.push({ type: "complete", token: request.token, packet });
  }
}

/** A publish the server refused: a PUBACK or PUBREC with an MQTT 5 reason code of 0x80 or more. */
export class PublishError extends MqttError {
  /** The reason code. */
  readonly reasonCode: number;

  /**
   * Creates the error.
   *
   * @param packetType The acknowledgement that carried the code.
   * @param reasonCode The code.
   * @param reasonString The server's explanation, if it sent one.
   */
  constructor(packetType: string, reasonCode: number, reasonString?: string) {
    super(
      `the broker refused the publish: ${packetType.toUpperCase()} reason 0x${
        reasonCode.toString(16)
      }${reasonString ? `: ${reasonString}` : ""}`,
    );
    this.reasonCode = reasonCode;
  }
}

/**
 * The size of the payload of a SUBSCRIBE or UNSUBSCRIBE: each topic filter as a UTF-8 string
 * with its 2-byte length, and for SUBSCRIBE its options byte. What a request counts against the
 * byte bound of the offline queue, as a PUBLISH counts its payload.
 *
 * @example
 * ```ts
 * import { requestPayloadSize } from "./session.ts";
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

function reasonStringOf(packet: Packet): string | undefined {
  return (packet as { properties?: Properties }).properties?.reasonString;
}

/**
 * Why the server's limits forbid sending a PUBLISH, if they do. A `fresh` one, just published,
 * is also held to the Topic Alias Maximum and measured in any case (measuring checks that it can
 * be encoded); one queued before a CONNACK was checked when published, goes without an alias
 * the new server does not allow, and is measured only against a lower Maximum Packet Size.
 */
function publishRefusal(
  packet: PublishPacket,
  limits: ServerLimits,
  protocolVersion: ProtocolVersion,
  fresh = false,
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
    const size = publishSize(packet, protocolVersion);
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
 * Why a SUBSCRIBE or UNSUBSCRIBE cannot be sent: larger than the server accepts
 * [MQTT-3.2.2-15]. Throws what encoding throws for a packet that cannot be encoded.
 */
function requestRefusal(
  packet: SubscribePacket | UnsubscribePacket,
  limits: ServerLimits,
  protocolVersion: ProtocolVersion,
): LimitError | undefined {
  const size = encodedSize(packet, protocolVersion);
  if (size > limits.maximumPacketSize) {
    return new LimitError(
      `the ${packet.type.toUpperCase()} is ${size} bytes; the broker accepts at most ${limits.maximumPacketSize}`,
    );
  }
  return undefined;
}

// Becomes the codec's packetSize(packet, protocolVersion), which validates as encode does
// without allocating the bytes.
function encodedSize(packet: Packet, protocolVersion: ProtocolVersion): number {
  const writer = new Writer();
  encodeInto(writer, packet, protocolVersion);
  return writer.pos;
}
