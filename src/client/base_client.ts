/**
 * The client's life: its state machine and public methods, its events, and what happens when a
 * connection ends (reconnect, or settle everything). The protocol is the sans-I/O
 * {@linkcode Session}'s, the bytes are the {@linkcode Connection}'s; this class joins them to
 * the user.
 *
 * @module
 */

import { type Clock, closeQuietly, Deferred, systemClock, within } from "../_async.ts";
import {
  BrokerDisconnect,
  ConnectionClosedError,
  ConnectionRefusedError,
  LimitError,
  MqttError,
  ProtocolError,
  StateError,
  StoreError,
  SubscribeError,
  TimeoutError,
} from "../errors.ts";
import { Writer } from "../packet/bytes.ts";
import { encode, encodeInto } from "../packet/encode.ts";
import { publishSize } from "../packet/publish.ts";
import type {
  ConnackPacket,
  DisconnectPacket,
  Packet,
  Properties,
  ProtocolVersion,
  PublishPacket,
  SubackPacket,
  SubscribePacket,
  UnsubackPacket,
  UnsubscribePacket,
} from "../packet/types.ts";
import { requestPayloadSize, Session } from "../session/session.ts";
import type { Transport } from "../transport/types.ts";
import { CLOSE_GRACE_MS, Connection, type ConnectionOwner } from "./connection.ts";
import type { ConnectEventDetail, DisconnectEventDetail, ReconnectEventDetail } from "./events.ts";
import { type ClientSettings, readOptions, toBytes } from "./options.ts";
import { backoffDelay, type Dialer, dialWithin, isRetryable } from "./reconnect.ts";
import { StoreWriter } from "./store_writer.ts";
import type { ClientOptions, Message } from "./types.ts";

/**
 * Where a client is in its life. `idle` until `connect`; `connecting` until the first CONNACK;
 * `connected`; `reconnecting` from an unexpected loss until the next CONNACK (waiting out the
 * backoff, dialing, or waiting for CONNACK); `disconnecting` while it closes; `closed` for good.
 */
export type ClientState =
  | "idle"
  | "connecting"
  | "connected"
  | "reconnecting"
  | "disconnecting"
  | "closed";

/** What can be asked of a client; each state allows some of them. */
export type Operation = "connect" | "publish" | "subscribe" | "unsubscribe" | "disconnect";

const WORK: Operation[] = ["publish", "subscribe", "unsubscribe", "disconnect"];

// The state machine, as a table: what each state allows. Anything else fails with a StateError.
// While connecting or reconnecting, work is queued and sent once CONNACK accepts.
const ALLOWED: Record<ClientState, ReadonlySet<Operation>> = {
  idle: new Set<Operation>(["connect", "disconnect"]),
  connecting: new Set<Operation>(WORK),
  connected: new Set<Operation>(WORK),
  reconnecting: new Set<Operation>(WORK),
  disconnecting: new Set<Operation>(["disconnect"]),
  closed: new Set<Operation>(["disconnect"]),
};

/** The options of `disconnect`. */
export interface DisconnectOptions {
  /** MQTT 5 reason code; 0x04 asks the broker to publish the will anyway. */
  reasonCode?: number;
  /** MQTT 5 DISCONNECT properties, such as `sessionExpiryInterval`. */
  properties?: Properties;
}

/** A token the session hands back when an operation completes. */
export type Token = Deferred<unknown>;

/**
 * The connection a client owns. Use one of its composed profiles: `MqttClient`, `MqttPublisher`
 * or `MqttSubscriber`.
 *
 * It is an `EventTarget` with the events, all `CustomEvent`s: `connect` (detail
 * {@linkcode ConnectEventDetail}) on every accepted CONNACK; `disconnect` (detail
 * {@linkcode DisconnectEventDetail}) whenever a connection ends; `reconnect` (detail
 * {@linkcode ReconnectEventDetail}) when a reconnection is scheduled; and `error` (detail: the
 * {@linkcode MqttError}).
 *
 * @example Over a connection opened by hand
 * ```ts ignore
 * import { MqttPublisher } from "../../mod.ts";
 *
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 1883 });
 * const publisher = new MqttPublisher(conn);
 * await publisher.connect({ clientId: "kite-pub", keepalive: 0 });
 * await publisher.publish("greetings", "hello", { qos: 1 });
 * await publisher.disconnect();
 * ```
 */
export class BaseClient extends EventTarget implements AsyncDisposable {
  #state: ClientState = "idle";
  // The transport given to the constructor, for the one connection such a client makes.
  #transport: Transport | undefined;
  readonly #dial: Dialer | undefined;
  #settings: ClientSettings | undefined;
  #clock: Clock = systemClock;
  #version: ProtocolVersion = 4;
  #session: Session<Token> | undefined;
  #storeWriter: StoreWriter | undefined;
  #connection: Connection | undefined;
  readonly #owner: ConnectionOwner;
  #connack: ConnackPacket | undefined;
  #connectTimer: unknown;
  // When the dial of the current attempt began: connectTimeout counts from there.
  #attemptStartedAt: number | undefined;
  // The promise of the first connect(); later connections have none.
  #connecting: Deferred<boolean> | undefined;
  #closed = new Deferred<void>();
  #abort: (() => void) | undefined;
  #attempt = 0;
  #backoffTimer: unknown;
  #dialing: AbortController | undefined;
  #everConnected = false;
  #maxQueued = 10_000;
  #maxQueuedBytes = 64 * 1024 * 1024;
  #dropQos0Offline = false;

  /**
   * Creates a client over a connection you opened (anything with `readable` and `writable` byte
   * streams, such as a `Deno.Conn`), or over a {@linkcode Dialer} that opens one for each
   * connection (which lets the client reconnect). Call `connect` next.
   */
  constructor(transport?: Transport | Dialer) {
    super();
    if (typeof transport === "function") this.#dial = transport;
    else this.#transport = transport;
    this.#owner = {
      handle: (packet) => this.#handle(packet),
      fail: (reason) => this.#fail(reason),
      durable: () => this.#durable(),
      isLive: () => this.#state === "connected",
    };
  }

  /** Where the client is in its life. */
  get state(): ClientState {
    return this.#state;
  }

  /** The CONNACK of the current (or last) connection. */
  get connack(): ConnackPacket | undefined {
    return this.#connack;
  }

  /** Whether the broker resumed a session on the current (or last) connection. */
  get sessionPresent(): boolean {
    return this.#connack?.sessionPresent ?? false;
  }

  /** The protocol version in use. */
  get protocolVersion(): ProtocolVersion {
    return this.#version;
  }

  /** The client identifier in use: the one given, or the one the broker assigned. */
  get clientId(): string | undefined {
    return this.#session?.clientId;
  }

  /** How many QoS 1 and 2 publishes are in flight, and how many wait to be sent. */
  get pending(): { inflight: number; waiting: number } {
    return {
      inflight: this.#session?.inflightCount ?? 0,
      waiting: this.#session?.waitingCount ?? 0,
    };
  }

  /**
   * Sends CONNECT and waits for CONNACK: over the transport given to the constructor, or over
   * one its dialer opens.
   *
   * @returns Whether the broker resumed a session (the session present flag).
   * @throws {ConnectionRefusedError} When CONNACK refuses, with its code.
   * @throws {TimeoutError} When no CONNACK arrives within `connectTimeout`.
   * @throws {ConnectionClosedError} When the connection closes first, or cannot be opened.
   */
  async connect(options: ClientOptions = {}): Promise<boolean> {
    this.requireState("connect");
    if (this.#transport === undefined && this.#dial === undefined) {
      throw new StateError("connect without a transport; pass one to the constructor", "idle");
    }
    this.configure(options);
    this.#state = "connecting";
    const connecting = this.#connecting = new Deferred<boolean>();
    try {
      const store = this.#settings!.store;
      if (store !== undefined) {
        const contents = await store.open();
        // disconnect() while the store opened: it has settled `connecting` already.
        if (this.#state !== "connecting") return connecting.promise;
        // Publishes of an earlier process: nobody waits for them here, they just complete.
        this.#session!.restore(contents, () => new Deferred<unknown>());
      }
      let transport = this.#transport;
      if (transport === undefined) {
        transport = await this.#dialTransport(0);
        if (this.#state !== "connecting") {
          closeQuietly(transport);
          return connecting.promise;
        }
      }
      this.#open(transport);
    } catch (error) {
      if (this.#state === "connecting") {
        this.#state = "disconnecting";
        this.#connecting = undefined;
        this.#finishClose(toMqttError(error));
      }
      throw error;
    }
    return connecting.promise;
  }

  /** Sets up the session from the options, before the first connection. */
  protected configure(options: ClientOptions): void {
    const settings = readOptions(options, this.#dial !== undefined);
    this.#settings = settings;
    this.#version = settings.protocolVersion;
    this.#clock = settings.clock;
    const session = new Session<Token>(settings.session);
    // Check the CONNECT now, so a bad option fails here rather than on the wire.
    encodeInto(new Writer(), session.connect(0), settings.protocolVersion);
    session.disconnected();
    this.#session = session;
    const store = settings.store;
    if (store !== undefined) {
      this.#storeWriter = new StoreWriter(
        store,
        () => session.takeJournal(),
        (error) => this.#fail(error),
      );
    }
    this.#maxQueued = options.queue?.maxMessages ?? 10_000;
    this.#maxQueuedBytes = options.queue?.maxBytes ?? 64 * 1024 * 1024;
    this.#dropQos0Offline = options.queue?.qos0 === "drop";
  }

  /** Replaces the user name and password sent with the next CONNECT (a refreshed token). */
  setCredentials(username?: string, password?: string | Uint8Array): void {
    this.#session?.setCredentials(
      username,
      password === undefined ? undefined : toBytes(password),
    );
  }

  /** Opens a transport with the dialer, within `connectTimeout`; `disconnect()` ends it. */
  async #dialTransport(attempt: number): Promise<Transport> {
    const settings = this.#settings!;
    const controller = this.#dialing = new AbortController();
    this.#attemptStartedAt = this.#clock.now();
    try {
      return await dialWithin(this.#dial!, attempt, {
        controller,
        timeout: settings.connectTimeout,
        signal: attempt === 0 ? settings.signal : undefined,
        clock: this.#clock,
      });
    } finally {
      if (this.#dialing === controller) this.#dialing = undefined;
    }
  }

  /** Starts a connection over `transport`: sends CONNECT, reads until CONNACK. */
  #open(transport: Transport): void {
    const settings = this.#settings!;
    const session = this.#session!;
    const connection = this.#connection = new Connection(transport, session, this.#owner, {
      protocolVersion: this.#version,
      maximumPacketSize: settings.maximumIncoming,
      clock: this.#clock,
    });
    const signal = settings.signal;
    if (signal !== undefined && this.#connecting !== undefined) {
      if (signal.aborted) {
        this.#fail(signal.reason);
        return;
      }
      const onAbort = () => this.#fail(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      this.#abort = () => signal.removeEventListener("abort", onAbort);
    }
    try {
      connection.start();
    } catch (error) {
      this.#fail(new ConnectionClosedError("the transport cannot be used", { cause: error }));
      return;
    }
    const now = this.#clock.now();
    session.connect(now);
    connection.scheduleFlush();
    // connectTimeout covers the whole attempt: the dial, then CONNACK.
    const started = this.#attemptStartedAt ?? now;
    this.#attemptStartedAt = undefined;
    const timeout = settings.connectTimeout;
    if (timeout === Infinity) return;
    this.#connectTimer = this.#clock.setTimeout(() => {
      this.#connectTimer = undefined;
      this.#fail(new TimeoutError(`no CONNACK within ${timeout} ms`));
    }, Math.max(0, started + timeout - now));
  }

  /** Throws a {@linkcode StateError} unless the current state allows `operation`. */
  protected requireState(operation: Operation): void {
    if (!ALLOWED[this.#state].has(operation)) throw new StateError(operation, this.#state);
  }

  /**
   * Queues a PUBLISH built by a mixin, after checking it against the broker's limits and the
   * queue's bounds.
   *
   * @returns A promise that settles when the flow completes (QoS 1, 2) or the bytes are written.
   */
  protected sendPublish(packet: PublishPacket): Promise<void> {
    this.requireState("publish");
    const session = this.#session!;
    const limits = session.limits;
    if (packet.qos > limits.maximumQoS) {
      // [MQTT-3.2.2-11]
      throw new LimitError(
        `the broker supports QoS ${limits.maximumQoS} at most; this publish asks for ${packet.qos}`,
      );
    }
    if (packet.retain && !limits.retainAvailable) {
      // [MQTT-3.2.2-14]
      throw new LimitError("the broker does not support retained messages");
    }
    const alias = packet.properties?.topicAlias;
    if (alias !== undefined && alias > limits.topicAliasMaximum) {
      // [MQTT-3.3.2-9]
      throw new LimitError(
        `topic alias ${alias} exceeds the broker's Topic Alias Maximum of ${limits.topicAliasMaximum}`,
      );
    }
    // With its whole topic, as it goes the first time this connection uses the alias.
    if (alias !== undefined) session.resolveTopicAlias(packet);
    // Measure now, without writing: a bad packet fails here, and none larger than the broker
    // accepts is ever sent [MQTT-3.2.2-15].
    const size = publishSize(packet, this.#version);
    if (size > limits.maximumPacketSize) {
      throw new LimitError(
        `the PUBLISH is ${size} bytes; the broker accepts at most ${limits.maximumPacketSize}`,
      );
    }
    if (packet.qos === 0 && session.connected) {
      session.publish(packet, undefined as unknown as Token);
      const connection = this.#connection!;
      connection.scheduleFlush();
      return connection.written();
    }
    if (packet.qos === 0 && this.#dropQos0Offline) {
      throw new ConnectionClosedError(
        'not connected, and QoS 0 publishes are dropped while offline (queue.qos0: "drop")',
      );
    }
    if (session.waitingCount > 0 || !session.connected) {
      this.#requireQueueRoom(packet.payload.length);
    }
    const token = new Deferred<unknown>();
    session.publish(packet, token);
    this.#pump();
    return token.promise as Promise<void>;
  }

  /**
   * Throws {@linkcode LimitError} when the offline queue has no room for one more entry of
   * `bytes` bytes. Publishes waiting to be sent and SUBSCRIBE or UNSUBSCRIBE requests made while
   * disconnected share its bounds (`queue.maxMessages`, `queue.maxBytes`).
   */
  #requireQueueRoom(bytes: number): void {
    const session = this.#session!;
    const publishes = session.waitingCount;
    const requests = session.queuedRequestCount;
    const queuedBytes = session.waitingBytes + session.queuedRequestBytes;
    if (publishes + requests >= this.#maxQueued || queuedBytes + bytes > this.#maxQueuedBytes) {
      throw new LimitError(
        `the queue of operations waiting to be sent is full (${publishes} publishes, ${requests} subscribe or unsubscribe requests, ${queuedBytes} bytes; see the queue option)`,
      );
    }
  }

  /**
   * Encodes a SUBSCRIBE or UNSUBSCRIBE to check it: a bad one fails here rather than on the wire,
   * and none larger than the broker accepts is ever sent [MQTT-3.2.2-15].
   */
  #checkSize(packet: SubscribePacket | UnsubscribePacket): void {
    const writer = new Writer();
    encodeInto(writer, packet, this.#version);
    const maximum = this.#session!.limits.maximumPacketSize;
    if (writer.pos > maximum) {
      throw new LimitError(
        `the ${packet.type.toUpperCase()} is ${writer.pos} bytes; the broker accepts at most ${maximum}`,
      );
    }
  }

  /** Queues a SUBSCRIBE; settles with the SUBACK. */
  protected sendSubscribe(packet: Omit<SubscribePacket, "packetId">): Promise<SubackPacket> {
    this.requireState("subscribe");
    this.#checkSize({ ...packet, packetId: 1 } as SubscribePacket);
    if (!this.#session!.connected) this.#requireQueueRoom(requestPayloadSize(packet));
    const token = new Deferred<unknown>();
    this.#session!.subscribe(packet, token);
    this.#pump();
    return token.promise as Promise<SubackPacket>;
  }

  /** Queues an UNSUBSCRIBE; settles with the UNSUBACK. */
  protected sendUnsubscribe(
    packet: Omit<UnsubscribePacket, "packetId">,
  ): Promise<UnsubackPacket> {
    this.requireState("unsubscribe");
    this.#checkSize({ ...packet, packetId: 1 } as UnsubscribePacket);
    if (!this.#session!.connected) this.#requireQueueRoom(requestPayloadSize(packet));
    const token = new Deferred<unknown>();
    this.#session!.unsubscribe(packet, token);
    this.#pump();
    return token.promise as Promise<UnsubackPacket>;
  }

  /**
   * Hands a message to the user. Returns a promise when the user cannot take more yet: the read
   * loop then waits for it (back-pressure). A profile that delivers overrides this; the default,
   * for a pure publisher, acknowledges at once as the protocol requires.
   */
  protected deliver(message: Message): Promise<void> | void {
    this.acknowledge(message);
  }

  /** Marks a delivered QoS 1 or 2 message as owned by the user: its PUBACK or PUBREC goes out. */
  protected acknowledge(message: Message): void {
    const session = this.#session;
    if (session === undefined || message.qos === 0) return;
    session.acknowledge(message as PublishPacket);
    if (session.hasOutput) this.#connection?.scheduleFlush();
  }

  /** Called once when the client closes for good; subscribers end their iterators here. */
  protected onClose(): void {}

  /**
   * Resolves once every publish accepted so far is in the store: after it, a crash of the
   * process loses none of them (with a store on disk).
   */
  async persisted(): Promise<void> {
    if (this.#session?.journaling) await this.#durable();
  }

  /**
   * Sends DISCONNECT and closes the connection, or stops reconnecting. Idempotent, and always
   * settles: also when the broker is gone, in which case it closes without waiting more than a
   * second. Operations still in flight reject with {@linkcode ConnectionClosedError}.
   */
  async disconnect(options: DisconnectOptions = {}): Promise<void> {
    switch (this.#state) {
      case "idle":
        this.#finishClose(undefined);
        return;
      case "disconnecting":
      case "closed":
        return this.#closed.promise;
    }
    const session = this.#session!;
    const connection = this.#connection;
    if (this.#state === "connected" && connection?.writable) {
      const packet: DisconnectPacket = { type: "disconnect" };
      if (this.#version === 5) {
        if (options.reasonCode !== undefined) packet.reasonCode = options.reasonCode;
        if (options.properties !== undefined) packet.properties = options.properties;
      }
      // Fails here, before anything changes, when the options are not a valid DISCONNECT.
      const bytes = encode(packet, this.#version);
      this.#state = "disconnecting";
      // Nothing goes out before the store has what it depends on. A store that is not done
      // within the grace keeps what is queued (the next client that opens it sends it), and
      // DISCONNECT goes alone, past the write loop that waits for the store.
      const durable = !session.journaling ||
        await within(this.#durable(), CLOSE_GRACE_MS, this.#clock);
      const queued = session.takeOutbox(this.#clock.now());
      session.disconnected();
      // What is already queued goes first; DISCONNECT is the last packet.
      await within(
        durable ? connection.sendLast(queued, bytes) : connection.writeNow(bytes),
        CLOSE_GRACE_MS,
        this.#clock,
      );
    }
    this.#state = "disconnecting";
    this.#connecting?.reject(new ConnectionClosedError("disconnect() was called while connecting"));
    this.#connecting = undefined;
    await this.#teardown();
    this.#finishClose(undefined);
  }

  /** Disconnects: `await using client = ...` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.disconnect();
  }

  /** Handles one packet from the broker; returns a promise when delivery needs the loop to wait. */
  #handle(packet: Packet): Promise<void> | undefined {
    const session = this.#session!;
    if (!session.connected && packet.type !== "connack") {
      throw new ProtocolError(
        `the broker sent ${packet.type.toUpperCase()} before CONNACK`,
        "MQTT-3.2.0-1",
        0x82,
      );
    }
    session.receive(packet, this.#clock.now());
    if (packet.type === "connack") this.#onConnack(packet);
    else if (packet.type === "disconnect") throw new BrokerDisconnect(packet);
    else if (packet.type === "auth") {
      throw new ProtocolError(
        "the broker sent AUTH, but no authentication method was set",
        undefined,
        0x82,
      );
    }
    return this.#pump();
  }

  #onConnack(connack: ConnackPacket): void {
    this.#clearConnectTimer();
    this.#connack = connack;
    if (connack.reasonCode !== 0) {
      throw new ConnectionRefusedError(
        connack.reasonCode,
        this.#version,
        connack.properties?.reasonString,
      );
    }
    const reconnected = this.#everConnected;
    this.#everConnected = true;
    this.#attempt = 0;
    this.#state = "connected";
    this.#abort?.();
    this.#abort = undefined;
    const connecting = this.#connecting;
    this.#connecting = undefined;
    connecting?.resolve(connack.sessionPresent);
    this.#connection?.armKeepalive();
    this.dispatchEvent(
      new CustomEvent<ConnectEventDetail>("connect", {
        detail: { connack, sessionPresent: connack.sessionPresent, reconnected },
      }),
    );
  }

  /** Acts on what the session has to say; returns a promise when delivery needs a pause. */
  #pump(): Promise<void> | undefined {
    const session = this.#session!;
    const events = session.takeEvents();
    let pause: Promise<void> | undefined;
    for (let i = 0; i < events.length; i++) {
      const event = events[i];
      switch (event.type) {
        case "message": {
          const waiting = this.deliver(event.packet);
          if (waiting !== undefined) {
            pause = pause === undefined ? waiting : pause.then(() => waiting);
          }
          break;
        }
        case "complete": {
          const packet = event.packet;
          if (event.token === undefined) {
            this.#resubscribed(packet as SubackPacket);
          } else {
            const type = packet.type;
            event.token.resolve(type === "suback" || type === "unsuback" ? packet : undefined);
          }
          break;
        }
        case "sent": {
          // A QoS 0 publish that waited leaves with the next write of this connection.
          const token = event.token;
          this.#connection!.written().then(() => token.resolve(undefined), token.reject);
          break;
        }
        case "failed":
          event.token.reject(event.error);
          break;
      }
    }
    // Changes that no packet waits for (a completed flow's delete) reach the store now too.
    if (this.#storeWriter !== undefined) {
      try {
        this.#storeWriter.apply();
      } catch (error) {
        this.#fail(error);
      }
    }
    if (session.hasOutput) this.#connection?.scheduleFlush();
    return pause;
  }

  /** Reports a subscription the broker refused when the client subscribed again after a loss. */
  #resubscribed(suback: SubackPacket): void {
    if (!suback.reasonCodes.some((code) => code >= 0x80)) return;
    this.dispatchEvent(
      new CustomEvent<MqttError>("error", {
        detail: new SubscribeError(
          ["(resubscription after reconnect)"],
          suback.reasonCodes,
          suback.properties?.reasonString,
        ),
      }),
    );
  }

  /** Hands the session's journal to the store and waits until all of it is durable. */
  #durable(): Promise<void> {
    return this.#storeWriter?.durable() ?? Promise.resolve();
  }

  #clearConnectTimer(): void {
    if (this.#connectTimer !== undefined) {
      this.#clock.clearTimeout(this.#connectTimer);
      this.#connectTimer = undefined;
    }
  }

  /**
   * The connection failed: report why, close it, and either reconnect or settle everything.
   * Safe to call more than once and from any state.
   */
  #fail(reason: unknown): void {
    const state = this.#state;
    if (state === "closed" || state === "disconnecting" || state === "idle") return;
    if (this.#connection === undefined && state === "reconnecting") {
      return; // already torn down, waiting for the next attempt
    }
    const error = toMqttError(reason);
    const retry = this.#shouldRetry(error);
    // An aborted attempt rejects with the signal's reason, as fetch does.
    this.#connecting?.reject(reason === this.#settings?.signal?.reason ? reason : error);
    this.#connecting = undefined;
    this.#state = retry ? "reconnecting" : "disconnecting";
    // Tell a v5 broker why, where the spec gives a reason code, then close.
    const session = this.#session!;
    const connection = this.#connection;
    let flushed: Promise<unknown> = Promise.resolve();
    if (
      error instanceof ProtocolError && this.#version === 5 && connection?.writable &&
      session.connected
    ) {
      try {
        session.disconnected();
        const bytes = encode({ type: "disconnect", reasonCode: error.reasonCode }, 5);
        flushed = within(connection.sendLast([], bytes), CLOSE_GRACE_MS, this.#clock);
      } catch {
        // The reason code may not fit DISCONNECT; closing is what matters.
      }
    }
    const packet = error instanceof BrokerDisconnect ? error.packet : undefined;
    flushed.then(() => this.#teardown()).finally(() => {
      if (retry && this.#state === "reconnecting") {
        this.#report(error, packet, true);
        this.#scheduleReconnect(error);
      } else {
        this.#finishClose(error, packet);
      }
    });
  }

  #shouldRetry(error: MqttError): boolean {
    const reconnect = this.#settings?.reconnect;
    if (reconnect === undefined || !this.#everConnected || error instanceof StoreError) {
      return false;
    }
    if (this.#attempt >= (reconnect.attempts ?? Infinity)) return false;
    return reconnect.shouldRetry?.(error) ?? isRetryable(error, this.#version);
  }

  #scheduleReconnect(error: MqttError): void {
    const attempt = ++this.#attempt;
    const delay = backoffDelay(attempt, this.#settings!.reconnect!);
    this.dispatchEvent(
      new CustomEvent<ReconnectEventDetail>("reconnect", { detail: { attempt, delay, error } }),
    );
    this.#backoffTimer = this.#clock.setTimeout(() => {
      this.#backoffTimer = undefined;
      this.#redial(attempt);
    }, delay);
  }

  async #redial(attempt: number): Promise<void> {
    if (this.#state !== "reconnecting") return;
    let transport: Transport;
    try {
      transport = await this.#dialTransport(attempt);
    } catch (error) {
      if (this.#state !== "reconnecting") return;
      const failure = toMqttError(error);
      if (this.#shouldRetry(failure)) this.#scheduleReconnect(failure);
      else this.#finishClose(failure);
      return;
    }
    if (this.#state !== "reconnecting") {
      closeQuietly(transport);
      return;
    }
    this.#open(transport);
  }

  /** Closes the connection and stops the timers and any dial. Never throws, never hangs. */
  async #teardown(): Promise<void> {
    this.#clearConnectTimer();
    if (this.#backoffTimer !== undefined) {
      this.#clock.clearTimeout(this.#backoffTimer);
      this.#backoffTimer = undefined;
    }
    this.#dialing?.abort(new ConnectionClosedError("the client is closing"));
    this.#dialing = undefined;
    this.#abort?.();
    this.#abort = undefined;
    this.#session?.disconnected();
    const connection = this.#connection;
    this.#connection = undefined;
    await connection?.close();
  }

  /** Dispatches `error` (unless it was a normal end) and `disconnect`. */
  #report(
    error: MqttError | undefined,
    packet: DisconnectPacket | undefined,
    again: boolean,
  ): void {
    if (
      error !== undefined && !(error instanceof BrokerDisconnect && (packet?.reasonCode ?? 0) === 0)
    ) {
      this.dispatchEvent(new CustomEvent<MqttError>("error", { detail: error }));
    }
    this.dispatchEvent(
      new CustomEvent<DisconnectEventDetail>("disconnect", {
        detail: {
          ...(error ? { error } : {}),
          ...(packet ? { packet } : {}),
          reconnecting: again,
        },
      }),
    );
  }

  #finishClose(error: MqttError | undefined, packet?: DisconnectPacket): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    if (this.#backoffTimer !== undefined) {
      this.#clock.clearTimeout(this.#backoffTimer);
      this.#backoffTimer = undefined;
    }
    const reason = error ?? new ConnectionClosedError("the client disconnected");
    const closed = reason instanceof ConnectionClosedError
      ? reason
      : new ConnectionClosedError(`the connection closed: ${reason.message}`, { cause: reason });
    this.#connecting?.reject(reason);
    this.#connecting = undefined;
    // With a store, an unfinished QoS 1 or 2 publish is not lost, and the error says so: it is
    // sent again by the next client that opens the store, so publishing it anew would double it.
    const kept = new ConnectionClosedError(
      `${closed.message}; the message stays in the store and is sent by the next client that opens it`,
      { cause: closed.cause },
    );
    const onKept = reason instanceof StoreError ? undefined : (token: Token) => token?.reject(kept);
    const abandoned = this.#session?.abandon(onKept) ?? [];
    for (const token of abandoned) token?.reject(closed);
    this.#connection?.rejectWrites(closed);
    this.onClose();
    this.#report(error, packet, false);
    const store = this.#settings?.store;
    const closing = store === undefined ? undefined : (async () => {
      try {
        await this.#durable();
      } catch {
        // Reported already.
      }
      await store.close();
    })();
    (closing ?? Promise.resolve()).catch(() => {}).finally(() => this.#closed.resolve());
  }
}

function toMqttError(reason: unknown): MqttError {
  if (reason instanceof MqttError) return reason;
  if (reason instanceof DOMException && reason.name === "AbortError") {
    return new ConnectionClosedError("the connection attempt was aborted", { cause: reason });
  }
  return new ConnectionClosedError(
    `the connection failed: ${reason instanceof Error ? reason.message : String(reason)}`,
    { cause: reason },
  );
}
