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
 * The {@linkcode Session} is the one gate of every rule: an operation the rules refuse throws
 * before anything changes. It owns the connection's state, the outbox, the events and the
 * journal (in one `SharedState`) and hands the work to its parts, which know that state and
 * nothing of each other: `outgoing.ts` (our publishes), `incoming.ts` (the server's),
 * `requests.ts` (SUBSCRIBE and UNSUBSCRIBE), `keepalive.ts` (the clock), and `limits.ts`
 * (what is refused, and why).
 *
 * @module
 */

import { ConnectionClosedError, ProtocolError } from "../errors.ts";
import type {
  ConnackPacket,
  ConnectPacket,
  Packet,
  PublishPacket,
  SubscribePacket,
  UnsubscribePacket,
} from "../packet/types.ts";
import { Authentication, type AuthenticationPhase } from "./authentication.ts";
import { Incoming } from "./incoming.ts";
import { Keepalive } from "./keepalive.ts";
import {
  limitsFromConnack,
  publishRefusal,
  type QueueBounds,
  queueBounds,
  queueHasRoom,
  queueRefusal,
  requestPayloadSize,
  requestRefusal,
  type ServerLimits,
} from "./limits.ts";
import { Outgoing } from "./outgoing.ts";
import { type GrantedSubscription, Requests } from "./requests.ts";
import {
  type OutgoingPublish,
  type SessionEvent,
  type SessionOptions,
  SharedState,
} from "./shared_state.ts";
import type { StoreContents, StoredPublish, StoreOperation } from "../store/store.ts";
import { ReasonCode } from "../packet/constants.ts";

export { PublishError } from "./outgoing.ts";
export { requestPayloadSize, type ServerLimits } from "./limits.ts";
export type { GrantedSubscription } from "./requests.ts";
export type { AuthenticationPhase } from "./authentication.ts";
export type { OutgoingPublish, SessionEvent, SessionOptions } from "./shared_state.ts";

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
  /** Whether a store is behind this session; without one nothing is journaled. */
  readonly journaling: boolean;

  #shared: SharedState<T>;
  // Made on first use (a publish, a received PUBLISH, a store's contents): an idle client
  // holds neither.
  #outgoing: Outgoing<T> | undefined;
  #incoming: Incoming<T> | undefined;
  // Made with the first SUBSCRIBE or UNSUBSCRIBE: a client that never makes one holds none.
  #requests: Requests<T> | undefined;
  #keepalive: Keepalive<T>;
  #authentication: Authentication<T>;
  #queueBounds: Readonly<QueueBounds>;
  #username: string | undefined;
  #password: Uint8Array | undefined;
  #everConnected = false;
  #reconnected = false;

  /** Creates a session. */
  constructor(options: SessionOptions) {
    this.options = options;
    this.clientId = options.clientId;
    this.keepalive = options.keepalive;
    const shared = this.#shared = new SharedState<T>(options);
    this.journaling = shared.journaling;
    this.#username = options.username;
    this.#password = options.password;
    this.#keepalive = new Keepalive(shared, options.pingTimeout);
    // Without a method, the one shared state of no enhanced authentication.
    this.#authentication = options.authenticationMethod === undefined
      ? Authentication.none as Authentication<T>
      : new Authentication(shared, options.authenticationMethod);
    this.#queueBounds = queueBounds(
      options.maxQueuedMessages,
      options.maxQueuedBytes,
      options.queueHighWaterMark,
    );
  }

  #outgoingNow(): Outgoing<T> {
    const options = this.options;
    return this.#outgoing ??= new Outgoing(
      this.#shared,
      options.inflightWindow ?? 20,
      options.topicAliases === "auto",
    );
  }

  #incomingNow(): Incoming<T> {
    const properties = this.options.properties;
    return this.#incoming ??= new Incoming(
      this.#shared,
      properties?.receiveMaximum ?? 65535,
      properties?.topicAliasMaximum ?? 0,
    );
  }

  #requestsNow(): Requests<T> {
    return this.#requests ??= new Requests(this.#shared, this.options.resubscribe ?? true);
  }

  /**
   * Subscriptions the server granted, by filter, with the properties they were made with: what
   * to subscribe to again when the server lost the session.
   */
  get subscriptions(): Map<string, GrantedSubscription> {
    return this.#requestsNow().subscriptions;
  }

  /** The server's limits, from the last CONNACK. */
  get limits(): Readonly<ServerLimits> {
    return this.#shared.limits;
  }

  /** Whether a CONNACK accepted the current connection. */
  get connected(): boolean {
    return this.#shared.connected;
  }

  /**
   * Takes back what a store held: publishes that were sent go back in flight with their packet
   * ids (to be re-sent, or re-queued if the server lost the session); queued ones wait again;
   * incoming QoS 2 ids stay reserved until their PUBREL.
   */
  restore(contents: StoreContents, token: (record: StoredPublish) => T): void {
    this.#outgoingNow().restore(contents.outgoing, token);
    this.#incomingNow().restore(contents.incoming);
  }

  /** Hands out the changes the store must make durable, in order. */
  takeJournal(): StoreOperation[] {
    const shared = this.#shared;
    const journal = shared.journal;
    if (journal.length > 0) shared.journal = [];
    return journal;
  }

  /** The total payload bytes of the publishes waiting to be sent. */
  get waitingBytes(): number {
    return this.#outgoing?.waitingBytes ?? 0;
  }

  /** The bounds of the queue of operations waiting to be sent, and its high-water mark. */
  get queueBounds(): Readonly<QueueBounds> {
    return this.#queueBounds;
  }

  /**
   * Whether one more operation of `bytes` bytes would fit in the queue of operations waiting to
   * be sent, next to the publishes and requests waiting now: what `publish` checks when the
   * publish would wait.
   */
  hasQueueRoom(bytes: number): boolean {
    return queueHasRoom(
      this.#queueBounds,
      (this.#outgoing?.waitingCount ?? 0) + (this.#requests?.queuedCount ?? 0),
      (this.#outgoing?.waitingBytes ?? 0) + (this.#requests?.queuedBytes ?? 0),
      bytes,
    );
  }

  /** The number of our QoS 1 and 2 publishes sent and not yet completed. */
  get inflightCount(): number {
    return this.#shared.inflight.size;
  }

  /** The number of our QoS 1 and 2 publishes waiting to be sent. */
  get waitingCount(): number {
    return this.#outgoing?.waitingCount ?? 0;
  }

  /** The number of SUBSCRIBE and UNSUBSCRIBE requests made while disconnected, waiting to be sent. */
  get queuedRequestCount(): number {
    return this.#requests?.queuedCount ?? 0;
  }

  /** The total payload bytes (see {@linkcode requestPayloadSize}) of the queued requests. */
  get queuedRequestBytes(): number {
    return this.#requests?.queuedBytes ?? 0;
  }

  /** The publishes in flight, in the order they were sent. */
  inflight(): IterableIterator<OutgoingPublish<T>> {
    return this.#shared.inflight.values();
  }

  /**
   * The window in force: the configured one, capped by the server's Receive Maximum, beyond
   * which no unacknowledged QoS 1 or 2 PUBLISH may be sent.
   */
  get window(): number {
    return this.#outgoingNow().window;
  }

  /** Hands out the packets to send, in order, and records the time they go out. */
  takeOutbox(now: number): Packet[] {
    const shared = this.#shared;
    const packets = shared.outbox;
    if (packets.length > 0) {
      shared.outbox = SharedState.empty;
      this.#keepalive.sent(now);
    }
    return packets;
  }

  /** Whether packets wait in the outbox. */
  get hasOutput(): boolean {
    return this.#shared.outbox.length > 0;
  }

  /** Hands out what happened since the last call. */
  takeEvents(): SessionEvent<T>[] {
    const shared = this.#shared;
    const events = shared.events;
    if (events.length > 0) shared.events = SharedState.empty;
    return events;
  }

  /** Whether a CONNACK ever accepted this session: later ones are reconnections. */
  get everConnected(): boolean {
    return this.#everConnected;
  }

  /** Whether the last CONNACK that accepted this session was a reconnection. */
  get reconnected(): boolean {
    return this.#reconnected;
  }

  /** Replaces the user name and password that the next CONNECT carries. */
  setCredentials(username: string | undefined, password: Uint8Array | undefined): void {
    this.#username = username;
    this.#password = password;
  }

  /** The MQTT 5 Authentication Method of enhanced authentication, if the session uses it. */
  get authenticationMethod(): string | undefined {
    return this.#authentication.method;
  }

  /** The enhanced authentication exchange running now: none, the connection's, or a re-authentication. */
  get authenticationExchange(): AuthenticationPhase {
    return this.#authentication.exchange;
  }

  /**
   * Whether the server challenged us (AUTH 0x18) and waits for `answerAuthentication`: after
   * `receive` took an AUTH, this tells a challenge from the success that ends a re-authentication.
   */
  get authenticationChallenged(): boolean {
    return this.#authentication.ourTurn;
  }

  /**
   * Answers the server's AUTH 0x18: AUTH 0x18 with the next Authentication Data goes to the outbox.
   *
   * @throws {StateError} When no challenge waits for an answer.
   * @throws {LimitError} Once connected, when the AUTH is larger than the server accepts.
   */
  answerAuthentication(data: Uint8Array | undefined): void {
    this.#authentication.answer(data);
  }

  /**
   * Starts a re-authentication: AUTH 0x19 with the initial Authentication Data goes to the outbox.
   *
   * @throws {StateError} Without an Authentication Method, while not connected, or while an
   * exchange runs.
   * @throws {LimitError} When the AUTH is larger than the server accepts.
   */
  reauthenticate(data: Uint8Array | undefined): void {
    this.#authentication.reauthenticate(data);
  }

  /**
   * Checks a CONNACK as `receive` would, changing nothing: for a client that verifies the
   * server's final Authentication Data before it takes the CONNACK.
   *
   * @throws {ProtocolError} When `receive` would throw for it.
   */
  checkConnack(packet: ConnackPacket): void {
    this.#requireFirstConnack();
    this.#authentication.checkConnack(packet);
  }

  #requireFirstConnack(): void {
    if (this.#shared.connected) {
      throw new ProtocolError(
        "a second CONNACK arrived on one connection",
        "MQTT-3.2.0-2",
        ReasonCode.ProtocolError,
      );
    }
  }

  /**
   * Starts a connection: puts CONNECT in the outbox. With an Authentication Method it carries the
   * method and `authenticationData`, and starts the connection's authentication exchange.
   */
  connect(now: number, authenticationData?: Uint8Array): ConnectPacket {
    const o = this.options;
    this.#shared.connected = false;
    this.#keepalive.reset(now);
    // [MQTT-3.3.2-7] aliases do not outlive a connection, in either direction.
    this.#incoming?.forgetAliases();
    this.#outgoing?.forgetAliases();
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
    const auth = this.#authentication.connectProperties(authenticationData);
    if (o.properties !== undefined || auth !== undefined) {
      packet.properties = auth === undefined ? o.properties : { ...o.properties, ...auth };
    }
    this.#shared.send(packet);
    return packet;
  }

  /**
   * Queues a PUBLISH. QoS 0 goes to the outbox at once when connected and returns `true`; QoS 1
   * and 2 get a packet id and go out when the window has room, in the order they were published.
   * While disconnected, everything waits in order ("sent" events report QoS 0 leaving).
   *
   * A PUBLISH with a topic alias and an empty topic takes the topic the alias was last given, so
   * it can go again on a new connection, where the server knows no alias yet, and survive a
   * restart from a store.
   *
   * With `topicAliases: "auto"`, aliases are given as PUBLISHes go to the outbox, never to the
   * packet that waits, is in flight or is stored: the outbox gets a copy with them.
   *
   * @throws {LimitError} Before anything changes, when the server's limits forbid the PUBLISH
   * (its QoS, retain, topic alias or size), when its alias has not been given a topic yet, or when
   * it would wait and the queue has no room for it (`maxQueuedMessages`, `maxQueuedBytes`).
   * @throws {ConnectionClosedError} For QoS 0 while disconnected, with `dropQos0Offline`.
   * @throws {TypeError} When it sets `topicAlias` and the session gives aliases itself
   * (`topicAliases: "auto"`): the two would hand out the same numbers for different topics.
   */
  publish(packet: PublishPacket, token: T): boolean {
    const shared = this.#shared;
    const outgoing = this.#outgoingNow();
    if (outgoing.autoAliases && packet.properties?.topicAlias !== undefined) {
      throw new TypeError(
        'properties.topicAlias cannot be set with topicAliases: "auto"; the client assigns aliases itself',
      );
    }
    // Checked and measured with its whole topic, as it goes the first time a connection uses
    // the alias.
    outgoing.resolveTopic(packet);
    const refusal = publishRefusal(packet, shared.limits, shared.protocolVersion, true);
    if (refusal !== undefined) throw refusal;
    if (!shared.connected) {
      if (packet.qos === 0 && this.options.dropQos0Offline) {
        throw new ConnectionClosedError(
          'not connected, and QoS 0 publishes are dropped while offline (queue.qos0: "drop")',
        );
      }
      this.#requireQueueRoom(packet.payload.length);
    } else if (
      packet.qos > 0 &&
      (outgoing.waitingCount > 0 || shared.inflight.size >= outgoing.window)
    ) {
      // It waits, behind those or for the window; QoS 0 goes at once.
      this.#requireQueueRoom(packet.payload.length);
    }
    return outgoing.publish(packet, token);
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
    this.#request({ ...packet, packetId: 1 } as SubscribePacket, token);
  }

  /** Queues an UNSUBSCRIBE, as `subscribe` queues a SUBSCRIBE; it throws as that does. */
  unsubscribe(packet: Omit<UnsubscribePacket, "packetId">, token: T): void {
    this.#request({ ...packet, packetId: 1 } as UnsubscribePacket, token);
  }

  #request(packet: SubscribePacket | UnsubscribePacket, token: T): void {
    const shared = this.#shared;
    const refusal = requestRefusal(packet, shared.limits, shared.protocolVersion);
    if (refusal !== undefined) throw refusal;
    if (!shared.connected) this.#requireQueueRoom(requestPayloadSize(packet));
    this.#requestsNow().request(packet, token);
  }

  /** Throws when the queue has no room for one more operation of `bytes` bytes. */
  #requireQueueRoom(bytes: number): void {
    const refusal = queueRefusal(
      this.#queueBounds,
      this.#outgoing?.waitingCount ?? 0,
      this.#requests?.queuedCount ?? 0,
      (this.#outgoing?.waitingBytes ?? 0) + (this.#requests?.queuedBytes ?? 0),
      bytes,
    );
    if (refusal !== undefined) throw refusal;
  }

  /**
   * Marks an incoming QoS 1 or 2 message as handled by the user: its acknowledgement (PUBACK for
   * QoS 1, PUBREC for QoS 2) goes to the outbox once those of every QoS 1 or 2 PUBLISH that
   * arrived before it on this connection have gone, in arrival order. `packet` is the object of
   * the message event; acknowledging a QoS 1 message of an earlier connection does nothing (the
   * server re-sends it), as does acknowledging twice.
   */
  acknowledge(packet: PublishPacket): void {
    this.#incomingNow().acknowledge(packet);
  }

  /**
   * Handles a packet from the server. `now` is read only for a CONNACK (keepalive counts from
   * there), so a caller need not read the clock for every other packet.
   *
   * @throws {ProtocolError} When the server broke the protocol; the connection must be closed.
   */
  receive(packet: Packet, now: number): void {
    switch (packet.type) {
      case "publish":
        return this.#incomingNow().onPublish(packet);
      case "puback":
        return this.#outgoingNow().onPuback(packet);
      case "pubrec":
        return this.#outgoingNow().onPubrec(packet);
      case "pubrel":
        return this.#incomingNow().onPubrel(packet);
      case "pubcomp":
        return this.#outgoingNow().onPubcomp(packet);
      case "suback":
      case "unsuback":
        return this.#requestsNow().onAck(packet);
      case "pingresp":
        return this.#keepalive.pingresp();
      case "connack":
        return this.#onConnack(packet, now);
      case "auth":
        // What the data says is the client's authentication handler's to judge.
        return this.#authentication.onAuth(packet);
      case "disconnect":
        // The client handles it: it ends the connection.
        return;
      default:
        throw new ProtocolError(
          `a server does not send ${packet.type.toUpperCase()} to a client`,
          undefined,
          ReasonCode.ProtocolError,
        );
    }
  }

  #onConnack(packet: ConnackPacket, now: number): void {
    const shared = this.#shared;
    this.#requireFirstConnack();
    this.#authentication.onConnack(packet);
    if (packet.reasonCode !== 0) return;
    shared.connected = true;
    this.#keepalive.sent(now);
    const p = packet.properties;
    shared.limits = limitsFromConnack(p);
    if (p?.assignedClientIdentifier !== undefined) this.clientId = p.assignedClientIdentifier;
    // [MQTT-3.2.2-21] the Server Keep Alive replaces ours.
    if (p?.serverKeepAlive !== undefined) this.keepalive = p.serverKeepAlive;
    if (packet.sessionPresent) {
      this.#outgoing?.resume();
    } else {
      // The server has no session: nothing of ours is in flight there, and nothing of its.
      this.#incoming?.restart();
      this.#outgoing?.restart();
    }
    // A reconnection to a server that lost the session subscribes again to what it had [on by
    // default; `resubscribe: false` turns it off], first, so no message is missed after it.
    const reconnected = this.#reconnected = this.#everConnected;
    this.#everConnected = true;
    this.#requests?.connected(reconnected && !packet.sessionPresent);
    this.#outgoing?.fillWindow();
  }

  /**
   * Forgets the connection: called when it closed. What is in flight stays, to be re-sent after
   * the next CONNACK, until `abandon` gives it up.
   */
  disconnected(): void {
    const shared = this.#shared;
    shared.connected = false;
    shared.outbox = SharedState.empty;
    this.#authentication.disconnected();
    this.#keepalive.disconnected();
    this.#incoming?.disconnected();
    this.#outgoing?.disconnected();
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
    this.#outgoing?.abandon(tokens, this.journaling ? onKept : undefined);
    this.#requests?.abandon(tokens);
    return tokens;
  }

  /**
   * Says that the caller stopped reading packets from the server, because the user has not yet
   * taken the messages already read (back-pressure). A PINGRESP may then sit unread behind the
   * PUBLISHes ahead of it: until `readerResumed`, a missing PINGRESP proves nothing, and `tick`
   * does not count the ping timeout.
   */
  readerPaused(): void {
    this.#keepalive.readerPaused();
  }

  /**
   * Says that the caller reads packets from the server again: the wait for an outstanding
   * PINGRESP counts from `now`, the full ping timeout, so a broker that has really gone quiet
   * is still found.
   */
  readerResumed(now: number): void {
    this.#keepalive.readerResumed(now);
  }

  /**
   * Advances the keepalive clock: puts PINGREQ in the outbox when nothing has been sent for the
   * keepalive period, and throws `TimeoutError` when a PINGREQ has had no answer
   * within the ping timeout. Time while the reader is paused (see `readerPaused`) does not count
   * toward the ping timeout.
   *
   * @returns The time at which to call `tick` next, or `Infinity` when keepalive is off.
   */
  tick(now: number): number {
    return this.#keepalive.tick(now, this.keepalive);
  }
}
