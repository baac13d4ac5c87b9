/**
 * The broker's protocol logic, without sockets: {@linkcode BrokerCore} holds the sessions, the
 * subscription trie and the retained messages; a {@linkcode ClientHandler} speaks MQTT with one
 * connected client. A handler is fed bytes and told when its connection ends; it answers through
 * a {@linkcode Link} (bytes out, end the connection) and reads time from the injected clock. It
 * never touches a socket, so the same code serves TCP and in-memory connections, and tests drive
 * time by hand.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { PacketDecoder } from "../packet/decoder_stream.ts";
import { encode } from "../packet/encode.ts";
import type {
  ConnectPacket,
  DisconnectPacket,
  Packet,
  Properties,
  ProtocolVersion,
  PublishPacket,
  QoS,
  SubscribePacket,
  UnsubscribePacket,
  Will,
} from "../packet/types.ts";
import { validateTopicFilter } from "../packet/topic.ts";
import { topicMatches, TopicTrie } from "../topic.ts";
import {
  type BrokerMessage,
  type Delivery,
  type Inflight,
  Session,
  type SubscriptionRecord,
} from "./session.ts";
import { systemClock } from "../_async.ts";
import type { BrokerClock, BrokerOptions, RetainedMessage, SessionInfo } from "./types.ts";

/** How a {@linkcode ClientHandler} reaches its connection. */
export interface Link {
  /** Sends bytes, in order. */
  write(bytes: Uint8Array): void;
  /** Ends the connection: `graceful` lets written bytes go out first. */
  end(graceful: boolean): void;
  /**
   * Bytes written and not yet taken by the connection. The link calls
   * {@linkcode ClientHandler.prototype.flushed} as they are taken. Absent: the link holds
   * nothing back (0).
   */
  readonly buffered?: number;
}

const PROTOCOL_MAXIMUM = 268_435_460;

/** v5 reason codes the broker sends. */
const RC = {
  success: 0x00,
  noSubscriptionExisted: 0x11,
  unspecified: 0x80,
  malformed: 0x81,
  protocolError: 0x82,
  implementationSpecific: 0x83,
  unsupportedVersion: 0x84,
  identifierNotValid: 0x85,
  serverUnavailable: 0x88,
  serverShuttingDown: 0x8b,
  badAuthenticationMethod: 0x8c,
  keepAliveTimeout: 0x8d,
  sessionTakenOver: 0x8e,
  topicFilterInvalid: 0x8f,
  packetIdNotFound: 0x92,
  receiveMaximumExceeded: 0x93,
  topicAliasInvalid: 0x94,
  quotaExceeded: 0x97,
  sharedSubscriptionsNotSupported: 0x9e,
} as const;

/** The state every connection of one broker shares, and the routing between them. */
export class BrokerCore {
  /** The clock. */
  readonly clock: BrokerClock;
  /** Options with defaults filled in. */
  readonly maxQueuedMessages: number;
  readonly receiveMaximum: number;
  readonly maximumPacketSize: number | undefined;
  readonly topicAliasMaximum: number;
  readonly connectTimeout: number;
  readonly maxBufferedBytes: number;
  readonly maxOverflowBytes: number;
  readonly closeTimeout: number;
  /** Sessions by client identifier. */
  readonly sessions: Map<string, Session> = new Map();
  /** Subscriptions by topic filter. */
  readonly trie: TopicTrie<SubscriptionRecord> = new TopicTrie();
  /** Retained messages by topic. */
  readonly retained: Map<string, BrokerMessage> = new Map();
  /** Every live handler. */
  readonly handlers: Set<ClientHandler> = new Set();
  /** Test hook: answer CONNECT with "server unavailable". */
  refusing = false;
  /** Test hook: do not send PUBACK, PUBREC or PUBCOMP. */
  withholdingAcks = false;
  #assigned = 0;

  /** Creates the shared state. */
  constructor(options: BrokerOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.maxQueuedMessages = options.maxQueuedMessages ?? 1000;
    this.receiveMaximum = options.receiveMaximum ?? 65_535;
    this.maximumPacketSize = options.maximumPacketSize;
    this.topicAliasMaximum = options.topicAliasMaximum ?? 10;
    this.connectTimeout = options.connectTimeout ?? 10_000;
    this.maxBufferedBytes = options.maxBufferedBytes ?? 1024 * 1024;
    if (!(this.maxBufferedBytes >= 1)) {
      // At 0 every connection would count as congested for good: nothing would ever be sent.
      throw new RangeError(`maxBufferedBytes must be 1 or more, not ${this.maxBufferedBytes}`);
    }
    this.maxOverflowBytes = options.maxOverflowBytes ?? 1024 * 1024;
    this.closeTimeout = options.closeTimeout ?? 10_000;
  }

  /** A fresh client identifier for a client that sent an empty one. */
  assignClientId(): string {
    let id: string;
    do {
      id = `kite-broker-${++this.#assigned}-${Math.random().toString(36).slice(2, 8)}`;
    } while (this.sessions.has(id));
    return id;
  }

  /** Routes a message to every matching subscription; stores or clears it when retained. */
  publish(message: BrokerMessage, from: Session | undefined): void {
    if (message.retain) {
      // An empty retained message clears the topic and is not itself stored (3.1.1 [MQTT-3.3.1-10]
      // and [MQTT-3.3.1-11], v5 [MQTT-3.3.1-6] and [MQTT-3.3.1-7]).
      if (message.payload.length === 0) this.retained.delete(message.topic);
      else this.retained.set(message.topic, message);
    }
    const targets = new Map<Session, { qos: number; asPublished: boolean; ids: number[] }>();
    for (const sub of this.trie.match(message.topic)) {
      // v5 [MQTT-3.8.3-3] No Local: not back to the connection that published it.
      if (sub.noLocal && sub.session === from) continue;
      let target = targets.get(sub.session);
      if (target === undefined) {
        targets.set(sub.session, target = { qos: -1, asPublished: false, ids: [] });
      }
      target.qos = Math.max(target.qos, Math.min(sub.qos, message.qos));
      target.asPublished ||= sub.retainAsPublished;
      if (sub.subscriptionIdentifier !== undefined) target.ids.push(sub.subscriptionIdentifier);
    }
    for (const [session, target] of targets) {
      this.deliver(session, {
        message,
        qos: target.qos as QoS,
        // RETAIN is cleared on forwarding (3.1.1 [MQTT-3.3.1-9]) unless Retain As Published
        // (v5 [MQTT-3.3.1-12], [MQTT-3.3.1-13]).
        retain: target.asPublished && message.retain,
        subscriptionIdentifiers: target.ids,
      });
    }
  }

  /** Hands a message to a session: sent now if its client is connected, else queued. */
  deliver(session: Session, delivery: Delivery): void {
    const handler = session.owner as ClientHandler | undefined;
    if (handler !== undefined) {
      // One client's trouble must not reach the client that published.
      try {
        handler.deliver(delivery);
      } catch (error) {
        handler.fail(error);
      }
      return;
    }
    // A client that is away gets its QoS 1 and 2 messages later; QoS 0 ones are not kept.
    if (delivery.qos === 0) return;
    this.enqueue(session, delivery);
  }

  /** Queues a delivery for later, within the bound. */
  enqueue(session: Session, delivery: Delivery): void {
    if (session.queue.length >= this.maxQueuedMessages) {
      session.dropped++;
      return;
    }
    session.queue.push(delivery);
  }

  /** The connected handler that serves a session, if any. */
  handlerOf(session: Session): ClientHandler | undefined {
    return session.owner as ClientHandler | undefined;
  }

  /** Ends a session: its subscriptions go, and a will waiting on a delay is published now. */
  endSession(session: Session): void {
    if (this.sessions.get(session.clientId) === session) this.sessions.delete(session.clientId);
    for (const [filter, sub] of session.subscriptions) this.trie.delete(filter, sub);
    session.subscriptions.clear();
    session.queue.length = 0;
    session.inflight.clear();
    session.incoming.clear();
    this.clearTimer(session, "expiryTimer");
    const will = session.pendingWill;
    this.clearTimer(session, "willTimer");
    session.pendingWill = undefined;
    if (will !== undefined) this.publishWill(will);
  }

  /** Publishes a will as an application message. */
  publishWill(will: Will): void {
    const message: BrokerMessage = {
      topic: will.topic,
      payload: will.payload,
      qos: will.qos,
      retain: will.retain,
    };
    const properties = forwardable(will.properties);
    if (properties) message.properties = properties;
    this.stamp(message);
    this.publish(message, undefined);
  }

  /** Notes when a message with a v5 Message Expiry Interval expires, on the broker's clock. */
  stamp(message: BrokerMessage): void {
    const interval = message.properties?.messageExpiryInterval;
    if (interval !== undefined) message.expiresAt = this.clock.now() + interval * 1000;
  }

  /**
   * The whole seconds a message has left, `undefined` if it never expires, or 0 once it has
   * expired ([MQTT-3.3.2-5] an expired message is not delivered).
   */
  remaining(message: BrokerMessage): number | undefined {
    if (message.expiresAt === undefined) return undefined;
    return Math.max(0, Math.ceil((message.expiresAt - this.clock.now()) / 1000));
  }

  /** Clears one of a session's timers. */
  clearTimer(session: Session, which: "expiryTimer" | "willTimer"): void {
    if (session[which] !== undefined) {
      this.clock.clearTimeout(session[which]);
      session[which] = undefined;
    }
  }

  /** Clears every session timer (the broker is closing). */
  clearAllTimers(): void {
    for (const session of this.sessions.values()) {
      this.clearTimer(session, "expiryTimer");
      this.clearTimer(session, "willTimer");
      session.pendingWill = undefined;
    }
  }

  /** What {@linkcode Broker.prototype.sessions} reports. */
  sessionInfo(): SessionInfo[] {
    return [...this.sessions.values()].map((session) => ({
      clientId: session.clientId,
      connected: this.handlerOf(session) !== undefined,
      buffered: this.handlerOf(session)?.buffered ?? 0,
      protocolVersion: session.protocolVersion,
      sessionExpiryInterval: session.expiryInterval,
      subscriptions: [...session.subscriptions.values()].map((sub) => {
        const { session: _session, ...info } = sub;
        return info;
      }),
      queued: session.queue.length,
      inflight: session.inflight.size,
      dropped: session.dropped,
    }));
  }

  /** What {@linkcode Broker.prototype.retained} reports. */
  retainedInfo(): RetainedMessage[] {
    return [...this.retained.values()].filter((message) => this.remaining(message) !== 0).map(
      (message) => {
        const info: RetainedMessage = {
          topic: message.topic,
          payload: message.payload.slice(),
          qos: message.qos,
        };
        if (message.properties) info.properties = message.properties;
        return info;
      },
    );
  }
}

/** Message properties that travel with a message: everything but the per-hop ones. */
function forwardable(properties: Properties | undefined): Properties | undefined {
  if (properties === undefined) return undefined;
  const {
    topicAlias: _alias,
    subscriptionIdentifier: _id,
    subscriptionIdentifiers: _ids,
    willDelayInterval: _delay,
    ...rest
  } = properties;
  return Object.keys(rest).length > 0 ? rest : undefined;
}

/** Why a connection ended, for the will and the reason code. */
type Ending = "disconnect" | "will" | "lost" | "error";

/**
 * Speaks MQTT with one client: fed bytes, it answers through its {@linkcode Link}. It never
 * throws: a malformed or illegal packet closes only this connection.
 */
export class ClientHandler {
  /** The session, once CONNECT is accepted. */
  session: Session | undefined = undefined;
  /** The client identifier, once CONNECT is read. */
  clientId: string | undefined = undefined;
  readonly #core: BrokerCore;
  readonly #link: Link;
  readonly #decoder: PacketDecoder;
  #version: ProtocolVersion = 4;
  #state: "connecting" | "connected" | "closed" = "connecting";
  #will: Will | undefined = undefined;
  #keepalive = 0;
  #keepaliveTimer: unknown = undefined;
  #clientReceiveMaximum = 65_535;
  #clientMaximumPacketSize = Infinity;
  #aliases = new Map<number, string>();
  // Bytes written while the connection was over maxBufferedBytes, since it last fell below.
  #overflow = 0;
  // What was in flight when the session was resumed, to resend from #resendAt on.
  #resend: Inflight[] = [];
  #resendAt = 0;
  // The bytes before CONNECT is read, to answer an unsupported protocol level.
  #head: Uint8Array[] = [];

  /** Creates a handler for a new connection. */
  constructor(core: BrokerCore, link: Link) {
    this.#core = core;
    this.#link = link;
    this.#decoder = new PacketDecoder({
      maximumPacketSize: core.maximumPacketSize ?? PROTOCOL_MAXIMUM,
    });
    core.handlers.add(this);
    this.#keepaliveTimer = core.clock.setTimeout(() => {
      this.#keepaliveTimer = undefined;
      if (this.#state === "connecting") this.#end("error", undefined);
    }, core.connectTimeout);
  }

  /** Whether CONNECT was accepted and the connection is open. */
  get connected(): boolean {
    return this.#state === "connected";
  }

  /** Whether the connection has ended. */
  get closed(): boolean {
    return this.#state === "closed";
  }

  /** Bytes written to the connection and not yet taken by the client. */
  get buffered(): number {
    return this.#link.buffered ?? 0;
  }

  /** The link says the client took bytes: deliveries held back for it may go on. */
  flushed(): void {
    if (this.#state !== "connected" || this.#congested()) return;
    this.#overflow = 0;
    if (this.#resendAt < this.#resend.length || this.session!.queue.length > 0) this.#drain();
  }

  /** Feeds bytes from the client. Never throws. */
  receive(chunk: Uint8Array): void {
    if (this.#state === "closed") return;
    if (this.#state === "connecting") {
      // [MQTT-3.1.0-1] the first packet must be CONNECT: no need to wait for the rest of it.
      if (this.#head.length === 0 && chunk.length > 0 && chunk[0] !== 0x10) {
        this.#end("error", undefined);
        return;
      }
      if (this.#head.length < 16) this.#head.push(chunk);
    }
    try {
      this.#decoder.push(chunk, (packet) => {
        if (this.#state !== "closed") this.#handle(packet);
      });
    } catch (error) {
      this.#fail(error);
    }
  }

  /** The connection ended from the client's side (or broke). */
  lost(): void {
    this.#end("lost", undefined);
  }

  /** Test hook: cut the connection as if the network failed; the will is published. */
  drop(): void {
    this.#end("lost", undefined);
  }

  /** The broker is closing: v5 clients get DISCONNECT 0x8B; no will is published. */
  shutdown(): void {
    this.#will = undefined;
    this.#end("disconnect", this.#version === 5 ? RC.serverShuttingDown : undefined);
  }

  /**
   * Sends a message to this client now, or queues it behind the client's Receive Maximum. While
   * the client does not take what it is sent (more than `maxBufferedBytes` buffered), QoS 0
   * messages for it are dropped and counted, as mosquitto does, and QoS 1 and 2 ones wait in its
   * session until it catches up.
   */
  deliver(delivery: Delivery): void {
    const session = this.session!;
    if (delivery.qos === 0) {
      if (this.#congested()) session.dropped++;
      else this.#sendDelivery(delivery);
      return;
    }
    // Behind the client's Receive Maximum, behind messages already waiting, or while it is not
    // reading: queued, to keep the order.
    if (
      session.inflight.size >= this.#clientReceiveMaximum || session.queue.length > 0 ||
      this.#resendAt < this.#resend.length || this.#congested()
    ) {
      this.#core.enqueue(session, delivery);
      this.#drain();
      return;
    }
    this.#sendDelivery(delivery);
  }

  /** Closes this connection over an error (v5: DISCONNECT with the error's reason code). */
  fail(error: unknown): void {
    this.#fail(error);
  }

  #sendDelivery(delivery: Delivery): void {
    const session = this.session!;
    const { message, qos } = delivery;
    const remaining = this.#core.remaining(message);
    if (remaining === 0) return;
    const packet: PublishPacket = {
      type: "publish",
      topic: message.topic,
      payload: message.payload,
      qos,
      retain: delivery.retain,
      dup: false,
    };
    if (this.#version === 5) {
      const properties: Properties = { ...message.properties };
      // [MQTT-3.3.2-6] the interval sent is what is left of it.
      if (remaining !== undefined) properties.messageExpiryInterval = remaining;
      if (delivery.subscriptionIdentifiers.length > 0) {
        properties.subscriptionIdentifiers = delivery.subscriptionIdentifiers;
      }
      if (Object.keys(properties).length > 0) packet.properties = properties;
    }
    if (qos > 0) {
      const packetId = session.nextPacketId();
      if (packetId === undefined) {
        this.#core.enqueue(session, delivery);
        return;
      }
      packet.packetId = packetId;
    }
    const bytes = this.#encode(packet);
    if (bytes === undefined) return;
    // v5 [MQTT-3.1.2-24], [MQTT-3.1.2-25]: a packet larger than the client's Maximum Packet
    // Size is discarded, as if it had been delivered.
    if (bytes.length > this.#clientMaximumPacketSize) return;
    if (qos > 0) session.inflight.set(packet.packetId!, { packet, released: false });
    // Deliveries are held back while the client is congested, so this never overflows.
    this.#link.write(bytes);
  }

  /** Whether more than `maxBufferedBytes` written to the client are still buffered. */
  #congested(): boolean {
    return (this.#link.buffered ?? 0) >= this.#core.maxBufferedBytes;
  }

  /**
   * Sends what waits: first what was in flight when the session resumed (3.1.1 [MQTT-4.4.0-1],
   * v5 [MQTT-4.4.0-1]: PUBLISH again with DUP, or PUBREL), then the queue, within the client's
   * Receive Maximum. Stops while the client is not taking what it is sent; `flushed` resumes it.
   */
  #drain(): void {
    const session = this.session;
    if (session === undefined || !this.connected) return;
    while (this.#resendAt < this.#resend.length) {
      if (this.#congested()) return;
      const inflight = this.#resend[this.#resendAt++];
      const packetId = inflight.packet.packetId!;
      // Acknowledged since the session resumed: the client had it.
      if (session.inflight.get(packetId) !== inflight) continue;
      if (inflight.released) {
        this.#send({ type: "pubrel", packetId });
      } else {
        inflight.packet.dup = true;
        if (this.#version !== 5) delete inflight.packet.properties;
        this.#send(inflight.packet);
      }
    }
    this.#resend = [];
    this.#resendAt = 0;
    while (session.queue.length > 0 && session.inflight.size < this.#clientReceiveMaximum) {
      if (this.#congested()) return;
      this.#sendDelivery(session.queue.shift()!);
    }
  }

  #handle(packet: Packet): void {
    if (this.#state === "connecting") {
      if (packet.type !== "connect") {
        // [MQTT-3.1.0-1] the first packet must be CONNECT.
        throw new ProtocolError(`the first packet is ${packet.type}, not connect`, "MQTT-3.1.0-1");
      }
      this.#connect(packet);
      return;
    }
    this.#touch();
    switch (packet.type) {
      case "publish":
        return this.#publish(packet);
      case "puback":
        return this.#acked(packet.packetId, 1);
      case "pubrec":
        return this.#pubrec(packet.packetId, packet.reasonCode ?? 0);
      case "pubrel":
        return this.#pubrel(packet.packetId);
      case "pubcomp":
        return this.#acked(packet.packetId, 2);
      case "subscribe":
        return this.#subscribe(packet);
      case "unsubscribe":
        return this.#unsubscribe(packet);
      case "pingreq":
        this.#send({ type: "pingresp" });
        return;
      case "disconnect":
        return this.#disconnect(packet);
      case "connect":
        throw new ProtocolError("a second CONNECT", "MQTT-3.1.0-2", RC.protocolError);
      case "auth":
        throw new ProtocolError(
          "AUTH without an authentication method",
          "MQTT-4.12.0-7",
          RC.protocolError,
        );
      default:
        throw new ProtocolError(
          `a client does not send ${packet.type}`,
          undefined,
          RC.protocolError,
        );
    }
  }

  #connect(packet: ConnectPacket): void {
    const core = this.#core;
    const version = packet.protocolVersion;
    this.#version = version;
    this.#decoder.protocolVersion = version;
    this.#head = [];
    if (this.#keepaliveTimer !== undefined) {
      core.clock.clearTimeout(this.#keepaliveTimer);
      this.#keepaliveTimer = undefined;
    }
    const v5 = version === 5;
    if (core.refusing) {
      return this.#refuse(v5 ? RC.serverUnavailable : 0x03);
    }
    if (v5 && packet.properties?.authenticationMethod !== undefined) {
      return this.#refuse(RC.badAuthenticationMethod);
    }
    let clientId = packet.clientId;
    let assigned = false;
    if (clientId === "") {
      // 3.1.1 [MQTT-3.1.3-8]: an empty id needs a clean session; 3.1 has no empty ids.
      if (version === 3 || (version === 4 && !packet.clean)) {
        return this.#refuse(v5 ? RC.identifierNotValid : 0x02);
      }
      clientId = core.assignClientId();
      assigned = true;
    }
    this.clientId = clientId;
    const expiry = v5
      ? (packet.properties?.sessionExpiryInterval ?? 0)
      : packet.clean
      ? 0
      : Infinity;

    // Session takeover (3.1.1 [MQTT-3.1.4-2], v5 [MQTT-3.1.4-3]): the existing connection ends.
    let existing = core.sessions.get(clientId);
    if (existing !== undefined) {
      const previous = existing.owner as ClientHandler | undefined;
      if (previous !== undefined) {
        previous.#end("lost", previous.#version === 5 ? RC.sessionTakenOver : undefined);
      }
      existing = core.sessions.get(clientId);
    }
    let sessionPresent = false;
    let session: Session;
    if (existing !== undefined && !packet.clean) {
      session = existing;
      sessionPresent = true;
      core.clearTimer(session, "expiryTimer");
      // v5 [MQTT-3.1.3-9] a new connection before the will delay passes cancels the will.
      core.clearTimer(session, "willTimer");
      session.pendingWill = undefined;
      session.protocolVersion = version;
      session.expiryInterval = expiry;
    } else {
      if (existing !== undefined) core.endSession(existing);
      session = new Session(clientId, version, expiry);
      core.sessions.set(clientId, session);
    }
    this.session = session;
    session.owner = this;
    if (packet.will) {
      this.#will = { ...packet.will, payload: packet.will.payload.slice() };
    }
    const properties = packet.properties;
    this.#clientReceiveMaximum = properties?.receiveMaximum ?? 65_535;
    this.#clientMaximumPacketSize = properties?.maximumPacketSize ?? Infinity;
    this.#keepalive = packet.keepalive;
    this.#state = "connected";

    const connack: Packet = {
      type: "connack",
      sessionPresent: version !== 3 && sessionPresent,
      reasonCode: 0,
    };
    if (v5) {
      const props: Properties = {
        topicAliasMaximum: core.topicAliasMaximum,
        retainAvailable: true,
        wildcardSubscriptionAvailable: true,
        subscriptionIdentifierAvailable: true,
        sharedSubscriptionAvailable: false,
      };
      if (core.receiveMaximum !== 65_535) props.receiveMaximum = core.receiveMaximum;
      if (core.maximumPacketSize !== undefined) props.maximumPacketSize = core.maximumPacketSize;
      if (assigned) props.assignedClientIdentifier = clientId;
      connack.properties = props;
    }
    this.#send(connack);
    this.#touch();
    // [MQTT-4.4.0-1] resend what was in flight, PUBLISH with DUP, then what was queued.
    this.#resend = [...session.inflight.values()];
    this.#resendAt = 0;
    this.#drain();
  }

  #refuse(reasonCode: number): void {
    this.#send({ type: "connack", sessionPresent: false, reasonCode });
    this.#will = undefined;
    this.#end("disconnect", undefined, true);
  }

  #publish(packet: PublishPacket): void {
    const session = this.session!;
    let topic = packet.topic;
    const properties = packet.properties;
    // v5 [MQTT-3.3.4-6]: a client's PUBLISH carries no Subscription Identifier.
    if (
      properties?.subscriptionIdentifiers !== undefined ||
      properties?.subscriptionIdentifier !== undefined
    ) {
      throw new ProtocolError(
        "a client's PUBLISH carries a Subscription Identifier",
        "MQTT-3.3.4-6",
        RC.protocolError,
      );
    }
    const alias = properties?.topicAlias;
    if (alias !== undefined) {
      // Topic Alias 0 never gets here: the codec refuses it with 0x94 already [MQTT-3.3.2-8].
      if (alias > this.#core.topicAliasMaximum) {
        throw new ProtocolError(
          `topic alias ${alias} is above the Topic Alias Maximum ${this.#core.topicAliasMaximum}`,
          "MQTT-3.3.2-9",
          RC.topicAliasInvalid,
        );
      }
      if (topic === "") {
        const known = this.#aliases.get(alias);
        if (known === undefined) {
          throw new ProtocolError(`topic alias ${alias} is not set`, undefined, RC.protocolError);
        }
        topic = known;
      } else {
        this.#aliases.set(alias, topic);
      }
    }
    const message: BrokerMessage = {
      topic,
      payload: packet.payload.slice(),
      qos: packet.qos,
      retain: packet.retain,
    };
    const forwarded = forwardable(properties);
    if (forwarded) message.properties = forwarded;
    this.#core.stamp(message);
    const withhold = this.#core.withholdingAcks;
    if (packet.qos === 0) {
      this.#core.publish(message, session);
    } else if (packet.qos === 1) {
      this.#core.publish(message, session);
      if (!withhold) this.#send({ type: "puback", packetId: packet.packetId! });
    } else {
      const packetId = packet.packetId!;
      // 3.1.1 [MQTT-4.3.3-2], v5 [MQTT-4.3.3-10]: until PUBREL, a packet id already seen is a
      // re-delivery: acknowledged again, not routed again.
      if (!session.incoming.has(packetId)) {
        if (session.incoming.size >= this.#core.receiveMaximum) {
          throw new ProtocolError(
            `more than ${this.#core.receiveMaximum} QoS 2 messages unacknowledged`,
            "MQTT-3.3.4-7",
            RC.receiveMaximumExceeded,
          );
        }
        session.incoming.add(packetId);
        this.#core.publish(message, session);
      }
      if (!withhold) this.#send({ type: "pubrec", packetId });
    }
  }

  #pubrel(packetId: number): void {
    const session = this.session!;
    const known = session.incoming.delete(packetId);
    if (this.#core.withholdingAcks) return;
    const pubcomp: Packet = { type: "pubcomp", packetId };
    if (!known && this.#version === 5) pubcomp.reasonCode = RC.packetIdNotFound;
    this.#send(pubcomp);
  }

  #pubrec(packetId: number, reasonCode: number): void {
    const session = this.session!;
    const inflight = session.inflight.get(packetId);
    if (inflight === undefined || inflight.packet.qos !== 2) {
      if (this.#version === 5) {
        this.#send({ type: "pubrel", packetId, reasonCode: RC.packetIdNotFound });
      }
      return;
    }
    if (reasonCode >= 0x80) {
      // A v5 PUBREC with an error ends the flow there.
      session.inflight.delete(packetId);
      this.#drain();
      return;
    }
    inflight.released = true;
    this.#send({ type: "pubrel", packetId });
  }

  #acked(packetId: number, qos: 1 | 2): void {
    const session = this.session!;
    const inflight = session.inflight.get(packetId);
    if (inflight !== undefined && inflight.packet.qos === qos) {
      session.inflight.delete(packetId);
      this.#drain();
    }
  }

  #subscribe(packet: SubscribePacket): void {
    const core = this.#core;
    const session = this.session!;
    const v5 = this.#version === 5;
    const identifier = v5 ? packet.properties?.subscriptionIdentifier : undefined;
    const reasonCodes: number[] = [];
    const retainedToSend: SubscriptionRecord[] = [];
    for (const request of packet.subscriptions) {
      const filter = request.topicFilter;
      try {
        validateTopicFilter(filter);
      } catch {
        reasonCodes.push(v5 ? RC.topicFilterInvalid : 0x80);
        continue;
      }
      if (filter.startsWith("$share/")) {
        reasonCodes.push(v5 ? RC.sharedSubscriptionsNotSupported : 0x80);
        continue;
      }
      const existing = session.subscriptions.get(filter);
      if (existing !== undefined) core.trie.delete(filter, existing);
      const record: SubscriptionRecord = {
        session,
        topicFilter: filter,
        qos: request.qos,
        noLocal: v5 && (request.noLocal ?? false),
        retainAsPublished: v5 && (request.retainAsPublished ?? false),
        retainHandling: v5 ? request.retainHandling ?? 0 : 0,
      };
      if (identifier !== undefined) record.subscriptionIdentifier = identifier;
      // [MQTT-3.8.4-3] a subscription with the same filter replaces the old one.
      session.subscriptions.delete(filter);
      session.subscriptions.set(filter, record);
      core.trie.add(filter, record);
      reasonCodes.push(request.qos);
      // [MQTT-3.3.1-9] retained messages go out on subscribe, unless Retain Handling says not.
      if (
        record.retainHandling === 0 || (record.retainHandling === 1 && existing === undefined)
      ) {
        retainedToSend.push(record);
      }
    }
    this.#send({ type: "suback", packetId: packet.packetId, reasonCodes });
    for (const record of retainedToSend) {
      for (const message of [...core.retained.values()]) {
        if (!topicMatches(record.topicFilter, message.topic)) continue;
        if (core.remaining(message) === 0) {
          core.retained.delete(message.topic);
          continue;
        }
        core.deliver(session, {
          message,
          qos: Math.min(message.qos, record.qos) as QoS,
          retain: true,
          subscriptionIdentifiers: record.subscriptionIdentifier === undefined
            ? []
            : [record.subscriptionIdentifier],
        });
      }
    }
  }

  #unsubscribe(packet: UnsubscribePacket): void {
    const session = this.session!;
    const reasonCodes: number[] = [];
    for (const filter of packet.topicFilters) {
      const record = session.subscriptions.get(filter);
      if (record !== undefined) {
        session.subscriptions.delete(filter);
        this.#core.trie.delete(filter, record);
      }
      reasonCodes.push(record !== undefined ? RC.success : RC.noSubscriptionExisted);
    }
    const unsuback: Packet = { type: "unsuback", packetId: packet.packetId };
    if (this.#version === 5) unsuback.reasonCodes = reasonCodes;
    this.#send(unsuback);
  }

  #disconnect(packet: DisconnectPacket): void {
    const session = this.session!;
    const expiry = packet.properties?.sessionExpiryInterval;
    if (expiry !== undefined) {
      if (session.expiryInterval === 0 && expiry !== 0) {
        throw new ProtocolError(
          "DISCONNECT sets a Session Expiry Interval after CONNECT set 0 (section 3.14.2.2.2)",
          undefined,
          RC.protocolError,
        );
      }
      session.expiryInterval = expiry;
    }
    // v5 [MQTT-3.14.4-3]: only a DISCONNECT with reason 0x00 discards the will.
    this.#end((packet.reasonCode ?? 0) === 0 ? "disconnect" : "will", undefined);
  }

  /**
   * Restarts the keepalive deadline: 1.5 times the keepalive (3.1.1 [MQTT-3.1.2-24], v5
   * [MQTT-3.1.2-22]).
   */
  #touch(): void {
    if (this.#keepalive === 0 || this.#state !== "connected") return;
    const clock = this.#core.clock;
    if (this.#keepaliveTimer !== undefined) clock.clearTimeout(this.#keepaliveTimer);
    this.#keepaliveTimer = clock.setTimeout(() => {
      this.#keepaliveTimer = undefined;
      this.#end("lost", this.#version === 5 ? RC.keepAliveTimeout : undefined);
    }, this.#keepalive * 1500);
  }

  #fail(error: unknown): void {
    if (this.#state === "connecting") {
      // An unsupported protocol level is answered with CONNACK before closing ([MQTT-3.1.2-2]);
      // so is any other bad CONNECT that says it is MQTT 5 (v5 section 3.2.2.2).
      const level = error instanceof ProtocolError ? this.#requestedLevel() : undefined;
      if (level !== undefined) {
        const unsupported = error instanceof ProtocolError &&
          error.reasonCode === RC.unsupportedVersion;
        const v5 = level >= 5;
        if (unsupported || level === 5) {
          const reasonCode = unsupported
            ? (v5 ? RC.unsupportedVersion : 0x01)
            : (error as ProtocolError).reasonCode;
          this.#link.write(
            encode({ type: "connack", sessionPresent: false, reasonCode }, v5 ? 5 : 4),
          );
          this.#end("error", undefined, true);
          return;
        }
      }
      this.#end("error", undefined);
      return;
    }
    const reasonCode = error instanceof ProtocolError ? error.reasonCode : RC.unspecified;
    this.#end("error", this.#version === 5 ? reasonCode : undefined);
  }

  /** The protocol level byte of the CONNECT read so far, if its name is MQTT or MQIsdp. */
  #requestedLevel(): number | undefined {
    let size = 0;
    for (const part of this.#head) size += part.length;
    const bytes = new Uint8Array(size);
    let offset = 0;
    for (const part of this.#head) {
      bytes.set(part, offset);
      offset += part.length;
    }
    let pos = 1;
    while (pos < bytes.length && bytes[pos] & 0x80) pos++;
    pos++;
    if (pos + 2 > bytes.length) return undefined;
    const nameLength = (bytes[pos] << 8) | bytes[pos + 1];
    const name = new TextDecoder().decode(bytes.subarray(pos + 2, pos + 2 + nameLength));
    const levelAt = pos + 2 + nameLength;
    if ((name !== "MQTT" && name !== "MQIsdp") || levelAt >= bytes.length) return undefined;
    return bytes[levelAt];
  }

  #encode(packet: Packet): Uint8Array | undefined {
    try {
      return encode(packet, this.#version);
    } catch {
      return undefined;
    }
  }

  #send(packet: Packet): void {
    if (this.#state === "closed") return;
    const bytes = this.#encode(packet);
    if (bytes === undefined) return;
    if (bytes.length > this.#clientMaximumPacketSize) return;
    if (this.#congested()) {
      // A reply to a client that keeps sending but does not read what it is sent. Past
      // maxOverflowBytes the client is cut off: v5 DISCONNECT 0x97 Quota exceeded ("an
      // implementation or administrative imposed limit has been exceeded", section 3.14.2.1).
      this.#overflow += bytes.length;
      if (this.#overflow > this.#core.maxOverflowBytes) {
        this.#end("error", this.#version === 5 ? RC.quotaExceeded : undefined);
        return;
      }
    }
    this.#link.write(bytes);
  }

  /**
   * Ends the connection once. `reasonCode` sends a v5 DISCONNECT first. A will is published
   * unless the client ended with a normal DISCONNECT or the broker is closing.
   */
  #end(how: Ending, reasonCode: number | undefined, graceful = reasonCode !== undefined): void {
    if (this.#state === "closed") return;
    const wasConnected = this.#state === "connected";
    if (reasonCode !== undefined && wasConnected) {
      // Written past any limit: it is the last packet of the connection.
      const bytes = this.#encode({ type: "disconnect", reasonCode });
      if (bytes !== undefined && bytes.length <= this.#clientMaximumPacketSize) {
        this.#link.write(bytes);
      }
    }
    this.#state = "closed";
    const core = this.#core;
    core.handlers.delete(this);
    if (this.#keepaliveTimer !== undefined) {
      core.clock.clearTimeout(this.#keepaliveTimer);
      this.#keepaliveTimer = undefined;
    }
    this.#link.end(graceful || how === "disconnect" || how === "will");
    const session = this.session;
    if (!wasConnected || session === undefined) return;
    if (session.owner === this) session.owner = undefined;
    const will = how === "disconnect" ? undefined : this.#will;
    this.#will = undefined;
    const expiry = session.expiryInterval;
    if (will !== undefined) {
      // v5 section 3.1.3.2.2: the will waits for its delay, or until the session ends.
      const delay = Math.min(will.properties?.willDelayInterval ?? 0, expiry);
      if (delay === 0) {
        core.publishWill(will);
      } else {
        session.pendingWill = will;
        session.willTimer = core.clock.setTimeout(() => {
          session.willTimer = undefined;
          const pending = session.pendingWill;
          session.pendingWill = undefined;
          if (pending !== undefined) core.publishWill(pending);
        }, delay * 1000);
      }
    }
    if (core.sessions.get(session.clientId) !== session) return;
    if (expiry === 0) {
      core.endSession(session);
    } else if (Number.isFinite(expiry)) {
      session.expiryTimer = core.clock.setTimeout(() => {
        session.expiryTimer = undefined;
        core.endSession(session);
      }, expiry * 1000);
    }
  }
}
