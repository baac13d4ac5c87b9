/**
 * The state every connection of one broker shares: sessions by client identifier (opened,
 * taken over, expired), subscriptions in a topic trie, retained messages and wills, and the
 * routing of each message to the sessions whose subscriptions match. A shared subscription
 * `$share/{ShareName}/{filter}` is one entry of the trie, a {@linkcode SharedGroup}, that hands
 * each message to one member in turn. No I/O: a session's
 * connection, a {@linkcode ClientConnection}, does the sending.
 *
 * @module
 */

import { systemClock } from "../_async.ts";
import type { Properties, ProtocolVersion, QoS, Will } from "../packet/types.ts";
import { isShared } from "../packet/topic.ts";
import { topicMatches, TopicTrie } from "../topic.ts";
import {
  type BrokerMessage,
  BrokerSession,
  type ClientConnection,
  type Delivery,
  SharedGroup,
  type SubscriptionRecord,
} from "./broker_session.ts";
import type { BrokerClock, BrokerOptions, RetainedMessage, SessionInfo } from "./types.ts";

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
  readonly sessions: Map<string, BrokerSession> = new Map();
  /** Subscriptions by topic filter; a shared subscription as one group. */
  readonly trie: TopicTrie<SubscriptionRecord | SharedGroup> = new TopicTrie();
  /** Shared subscriptions by their whole filter, `$share/{ShareName}/{filter}`. */
  readonly groups: Map<string, SharedGroup> = new Map();
  /** Retained messages by topic. */
  readonly retained: Map<string, BrokerMessage> = new Map();
  /** Every live connection, with or without a session yet. */
  readonly handlers: Set<ClientConnection> = new Set();
  /** Test hook: answer CONNECT with "server unavailable". */
  refusing = false;
  /** Test hook: send MQTT 5 clients elsewhere (CONNACK 0x9C or 0x9D with a Server Reference). */
  redirecting: { serverReference: string; permanent: boolean } | undefined = undefined;
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

  /**
   * Gives a connection the session of its client identifier: the one kept from before unless
   * `clean`, else a new one. A connection still serving that session ends first (session
   * takeover, 3.1.1 [MQTT-3.1.4-2], v5 [MQTT-3.1.4-3]).
   */
  openSession(
    owner: ClientConnection,
    clientId: string,
    clean: boolean,
    protocolVersion: ProtocolVersion,
    expiryInterval: number,
  ): { session: BrokerSession; sessionPresent: boolean } {
    let existing = this.sessions.get(clientId);
    if (existing?.owner !== undefined) {
      existing.owner.takeOver();
      // Ending the old connection may have ended a session that does not outlive it.
      existing = this.sessions.get(clientId);
    }
    let session: BrokerSession;
    let sessionPresent = false;
    if (existing !== undefined && !clean) {
      session = existing;
      sessionPresent = true;
      // v5 [MQTT-3.1.3-9] a new connection before the will delay passes cancels the will.
      this.#stopTimers(session);
      session.protocolVersion = protocolVersion;
      session.expiryInterval = expiryInterval;
    } else {
      if (existing !== undefined) this.endSession(existing);
      session = new BrokerSession(clientId, protocolVersion, expiryInterval);
      this.sessions.set(clientId, session);
    }
    session.owner = owner;
    return { session, sessionPresent };
  }

  /**
   * The connection that served a session ended: its will, if any, is published now or once its
   * delay has passed, and the session ends now or once its expiry interval has passed.
   */
  releaseSession(session: BrokerSession, owner: ClientConnection, will: Will | undefined): void {
    if (session.owner === owner) session.owner = undefined;
    this.#handOver(session, true);
    const expiry = session.expiryInterval;
    if (will !== undefined) {
      // v5 section 3.1.3.2.2: the will waits for its delay, or until the session ends.
      const delay = Math.min(will.properties?.willDelayInterval ?? 0, expiry);
      if (delay === 0) {
        this.publishWill(will);
      } else {
        session.pendingWill = will;
        session.willTimer = this.clock.setTimeout(() => {
          session.willTimer = undefined;
          const pending = session.pendingWill;
          session.pendingWill = undefined;
          if (pending !== undefined) this.publishWill(pending);
        }, delay * 1000);
      }
    }
    if (this.sessions.get(session.clientId) !== session) return;
    if (expiry === 0) {
      this.endSession(session);
    } else if (Number.isFinite(expiry)) {
      session.expiryTimer = this.clock.setTimeout(() => {
        session.expiryTimer = undefined;
        this.endSession(session);
      }, expiry * 1000);
    }
  }

  /**
   * Ends a session: its subscriptions go, what came to it through a shared subscription and is
   * not under way as QoS 2 goes to another member, and a will waiting on a delay is published now.
   */
  endSession(session: BrokerSession): void {
    if (this.sessions.get(session.clientId) === session) this.sessions.delete(session.clientId);
    for (const sub of session.subscriptions.values()) this.#remove(sub);
    session.subscriptions.clear();
    this.#handOver(session, false);
    session.queue.length = 0;
    session.inflight.clear();
    session.incoming.clear();
    const will = this.#stopTimers(session);
    if (will !== undefined) this.publishWill(will);
  }

  /**
   * Adds a subscription to its session and the trie; one with the same filter is replaced
   * ([MQTT-3.8.4-3]).
   *
   * @returns Whether it replaced one.
   */
  subscribe(record: SubscriptionRecord): boolean {
    const { session, topicFilter } = record;
    const existing = session.subscriptions.get(topicFilter);
    if (existing !== undefined) this.#remove(existing);
    session.subscriptions.delete(topicFilter);
    session.subscriptions.set(topicFilter, record);
    if (isShared(topicFilter)) {
      let group = this.groups.get(topicFilter);
      if (group === undefined) {
        this.groups.set(topicFilter, group = new SharedGroup(topicFilter));
        this.trie.add(topicFilter, group);
      }
      group.members.push(record);
    } else {
      this.trie.add(topicFilter, record);
    }
    return existing !== undefined;
  }

  /** Takes a subscription out of the trie, or out of its shared group (the group with the last). */
  #remove(record: SubscriptionRecord): void {
    const filter = record.topicFilter;
    const group = this.groups.get(filter);
    if (group === undefined) {
      this.trie.delete(filter, record);
      return;
    }
    const index = group.members.indexOf(record);
    if (index >= 0) group.members.splice(index, 1);
    if (group.members.length === 0) {
      this.groups.delete(filter);
      this.trie.delete(filter, group);
    }
  }

  /**
   * A member of shared subscriptions lost its connection (`connectedOnly`: its session stays) or
   * its session: what came to it through them goes to another member, in turn. That is its
   * queued messages, and its QoS 1 messages sent and not acknowledged (v5 section 4.8.2: the
   * Server MAY send them to another client as soon as the connection is lost, and SHOULD when the
   * session ends). A QoS 2 message already sent stays: its delivery is completed to that client
   * when it reconnects [MQTT-4.8.2-4], and never goes to another client [MQTT-4.8.2-5]. What no
   * other member can take stays with the session.
   */
  #handOver(session: BrokerSession, connectedOnly: boolean): void {
    if (this.groups.size === 0) return;
    for (const [packetId, inflight] of session.inflight) {
      const delivery = inflight.delivery;
      if (delivery === undefined || inflight.packet.qos !== 1) continue;
      if (this.#reroute(session, delivery, connectedOnly)) session.inflight.delete(packetId);
    }
    const queue = session.queue;
    let kept = 0;
    for (let i = 0; i < queue.length; i++) {
      const delivery = queue[i];
      if (delivery.group !== undefined && this.#reroute(session, delivery, connectedOnly)) continue;
      queue[kept++] = delivery;
    }
    queue.length = kept;
  }

  /** Hands a delivery of a shared subscription to another member; false if there is none. */
  #reroute(from: BrokerSession, delivery: Delivery, connectedOnly: boolean): boolean {
    const group = delivery.group!;
    const member = group.pick(from, connectedOnly);
    if (member === undefined) return false;
    this.deliver(member.session, sharedDelivery(delivery.message, member, group));
    return true;
  }

  /**
   * Removes a session's subscription.
   *
   * @returns Whether the session had one with that filter.
   */
  unsubscribe(session: BrokerSession, topicFilter: string): boolean {
    const record = session.subscriptions.get(topicFilter);
    if (record === undefined) return false;
    session.subscriptions.delete(topicFilter);
    this.#remove(record);
    return true;
  }

  /** Hands a new subscription the retained messages it matches; expired ones are dropped. */
  deliverRetained(record: SubscriptionRecord): void {
    for (const message of [...this.retained.values()]) {
      if (!topicMatches(record.topicFilter, message.topic)) continue;
      if (this.remaining(message) === 0) {
        this.retained.delete(message.topic);
        continue;
      }
      this.deliver(record.session, {
        message,
        qos: Math.min(message.qos, record.qos) as QoS,
        retain: true,
        subscriptionIdentifiers: record.subscriptionIdentifier === undefined
          ? []
          : [record.subscriptionIdentifier],
      });
    }
  }

  /**
   * An application message as the broker keeps it: the per-hop properties dropped, its expiry
   * noted on the broker's clock. The payload is taken as it is.
   */
  message(
    topic: string,
    payload: Uint8Array,
    qos: QoS,
    retain: boolean,
    properties: Properties | undefined,
  ): BrokerMessage {
    const message: BrokerMessage = { topic, payload, qos, retain };
    const forwarded = forwardable(properties);
    if (forwarded) message.properties = forwarded;
    const interval = message.properties?.messageExpiryInterval;
    if (interval !== undefined) message.expiresAt = this.clock.now() + interval * 1000;
    return message;
  }

  /** Routes a message to every matching subscription; stores or clears it when retained. */
  publish(message: BrokerMessage, from: BrokerSession | undefined): void {
    if (message.retain) {
      // An empty retained message clears the topic and is not itself stored (3.1.1 [MQTT-3.3.1-10]
      // and [MQTT-3.3.1-11], v5 [MQTT-3.3.1-6] and [MQTT-3.3.1-7]).
      if (message.payload.length === 0) this.retained.delete(message.topic);
      else this.retained.set(message.topic, message);
    }
    const targets = new Map<BrokerSession, { qos: number; asPublished: boolean; ids: number[] }>();
    let shared: SharedGroup[] | undefined;
    for (const sub of this.trie.match(message.topic)) {
      if (sub instanceof SharedGroup) {
        (shared ??= []).push(sub);
        continue;
      }
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
    if (shared === undefined) return;
    // A shared subscription is a subscription of its own: one member gets the message, in turn,
    // even a member that also has a subscription of its own that matches.
    for (const group of shared) {
      const member = group.pick(undefined, false);
      if (member !== undefined) {
        this.deliver(member.session, sharedDelivery(message, member, group));
      }
    }
  }

  /** Hands a message to a session: sent now if its client is connected, else queued. */
  deliver(session: BrokerSession, delivery: Delivery): void {
    const owner = session.owner;
    if (owner !== undefined) {
      // One client's trouble must not reach the client that published.
      try {
        owner.deliver(delivery);
      } catch (error) {
        owner.fail(error);
      }
      return;
    }
    // A client that is away gets its QoS 1 and 2 messages later; QoS 0 ones are not kept.
    if (delivery.qos === 0) return;
    this.enqueue(session, delivery);
  }

  /** Queues a delivery for later, within the bound. */
  enqueue(session: BrokerSession, delivery: Delivery): void {
    if (session.queue.length >= this.maxQueuedMessages) {
      session.dropped++;
      return;
    }
    session.queue.push(delivery);
  }

  /** Publishes a will as an application message. */
  publishWill(will: Will): void {
    const { topic, payload, qos, retain, properties } = will;
    this.publish(this.message(topic, payload, qos, retain, properties), undefined);
  }

  /**
   * The whole seconds a message has left, `undefined` if it never expires, or 0 once it has
   * expired ([MQTT-3.3.2-5] an expired message is not delivered).
   */
  remaining(message: BrokerMessage): number | undefined {
    if (message.expiresAt === undefined) return undefined;
    return Math.max(0, Math.ceil((message.expiresAt - this.clock.now()) / 1000));
  }

  /** Clears every session timer (the broker is closing). */
  clearAllTimers(): void {
    for (const session of this.sessions.values()) this.#stopTimers(session);
  }

  /** What {@linkcode Broker.prototype.sessions} reports. */
  sessionInfo(): SessionInfo[] {
    return [...this.sessions.values()].map((session) => ({
      clientId: session.clientId,
      connected: session.owner !== undefined,
      buffered: session.owner?.buffered ?? 0,
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

  /** Stops a session's expiry and will-delay timers; returns the will that was waiting, if any. */
  #stopTimers(session: BrokerSession): Will | undefined {
    if (session.expiryTimer !== undefined) {
      this.clock.clearTimeout(session.expiryTimer);
      session.expiryTimer = undefined;
    }
    if (session.willTimer !== undefined) {
      this.clock.clearTimeout(session.willTimer);
      session.willTimer = undefined;
    }
    const will = session.pendingWill;
    session.pendingWill = undefined;
    return will;
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

/**
 * A message on its way to a member of a shared subscription: with the QoS that member was
 * granted [MQTT-4.8.2-3], and its Subscription Identifier.
 */
function sharedDelivery(
  message: BrokerMessage,
  member: SubscriptionRecord,
  group: SharedGroup,
): Delivery {
  return {
    message,
    qos: Math.min(member.qos, message.qos) as QoS,
    retain: member.retainAsPublished && message.retain,
    subscriptionIdentifiers: member.subscriptionIdentifier === undefined
      ? []
      : [member.subscriptionIdentifier],
    group,
  };
}
