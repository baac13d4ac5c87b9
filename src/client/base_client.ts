/**
 * The connection a client owns: its state machine, the read loop, batched writes, keepalive,
 * reconnecting, the store, and closing. The protocol itself lives in the sans-I/O
 * {@linkcode Session}; this class does the I/O around it.
 *
 * @module
 */

import {
  ConnectionClosedError,
  ConnectionRefusedError,
  MqttError,
  ProtocolError,
  StateError,
  SubscribeError,
  TimeoutError,
} from "../errors.ts";
import { Writer } from "../packet/bytes.ts";
import { MqttDecoderStream } from "../packet/decoder_stream.ts";
import { encodeInto } from "../packet/encode.ts";
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
import { Session, type StoreOperation } from "../session/session.ts";
import type { Store } from "../session/store.ts";
import type { Transport } from "../transport/types.ts";
import { closeQuietly, Deferred, systemClock, within } from "../_async.ts";
import type { ClientOptions, Clock, Message, ReconnectOptions } from "./types.ts";

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

/**
 * Opens a new connection to the broker: how a client reconnects. `attempt` counts from 0 for
 * the first connection.
 */
export type Dialer = (signal: AbortSignal, attempt: number) => Promise<Transport>;

/** The options of `disconnect`. */
export interface DisconnectOptions {
  /** MQTT 5 reason code; 0x04 asks the broker to publish the will anyway. */
  reasonCode?: number;
  /** MQTT 5 DISCONNECT properties, such as `sessionExpiryInterval`. */
  properties?: Properties;
}

/** The `detail` of the `connect` event. */
export interface ConnectEventDetail {
  /** The CONNACK that accepted the connection. */
  connack: ConnackPacket;
  /** Whether the broker resumed a session. */
  sessionPresent: boolean;
  /** Whether this is a reconnection. */
  reconnected: boolean;
}

/** The `detail` of the `disconnect` event. */
export interface DisconnectEventDetail {
  /** Why the connection ended; absent when `disconnect()` ended it. */
  error?: MqttError;
  /** The DISCONNECT the broker sent, if it sent one (MQTT 5). */
  packet?: DisconnectPacket;
  /** Whether the client will try to reconnect. */
  reconnecting: boolean;
}

/** The `detail` of the `reconnect` event: an attempt is scheduled. */
export interface ReconnectEventDetail {
  /** The attempt, from 1. */
  attempt: number;
  /** How long the client waits before it, in milliseconds. */
  delay: number;
  /** What ended the previous connection or attempt. */
  error: MqttError;
}

/** A token the session hands back when an operation completes. */
export type Token = Deferred<unknown>;

const encoder = new TextEncoder();

/** Turns a string into UTF-8 bytes; leaves bytes as they are (no copy). */
export function toBytes(value: string | Uint8Array): Uint8Array {
  return typeof value === "string" ? encoder.encode(value) : value;
}

/**
 * A random client identifier of 16 characters from [0-9a-z]: within MQTT 3.1's limit of 23 and
 * what every 3.1.1 server must accept [MQTT-3.1.3-5].
 */
function randomClientId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  let id = "kite";
  for (const byte of bytes) id += "0123456789abcdefghijklmnopqrstuvwxyz"[byte % 36];
  return id;
}

/** How long closing waits for DISCONNECT to be written before it closes anyway. */
const CLOSE_GRACE_MS = 1000;
/** The longest delay a timer holds: setTimeout fires at once for more (2^31 - 1 ms, 24.8 days). */
const MAX_TIMER_MS = 2_147_483_647;

// CONNACK codes that retrying cannot fix: bad protocol version, client id rejected, bad
// credentials, not authorized (3.x), and their MQTT 5 counterparts plus banned, bad
// authentication method and the "will not accept this" family.
const FINAL_REFUSALS_3 = new Set([1, 2, 4, 5]);
const FINAL_REFUSALS_5 = new Set([
  0x81,
  0x82,
  0x84,
  0x85,
  0x86,
  0x87,
  0x8a,
  0x8c,
  0x90,
  0x95,
  0x99,
  0x9a,
  0x9b,
]);

/** The default of `ReconnectOptions.shouldRetry`. */
export function isRetryable(error: MqttError, protocolVersion: ProtocolVersion): boolean {
  if (error instanceof ConnectionRefusedError) {
    return !(protocolVersion === 5 ? FINAL_REFUSALS_5 : FINAL_REFUSALS_3).has(error.reasonCode);
  }
  // Another client took the session over: fighting it back would loop for ever.
  if (error instanceof BrokerDisconnect) return error.packet.reasonCode !== 0x8e;
  return !(error instanceof ProtocolError);
}

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
  #transport: Transport | undefined;
  #dial: Dialer | undefined;
  #clock: Clock = systemClock;
  #session: Session<Token> | undefined;
  #version: ProtocolVersion = 4;
  #connack: ConnackPacket | undefined;
  #writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  #reader: ReadableStreamDefaultReader<Packet> | undefined;
  #readLoopDone: Promise<void> = Promise.resolve();
  // Two buffers: packets are encoded into #out while #spare is being written.
  #out = new Writer(new Uint8Array(4096));
  #spare = new Writer(new Uint8Array(4096));
  #flushScheduled = false;
  #writing: Promise<void> | undefined;
  // Settles once the bytes now in the outbox are written: what QoS 0 publishes wait for.
  #written: Deferred<void> | undefined;
  // The same for the batch being written now: settled by the write, or by closing if it hangs.
  #inWrite: Deferred<void> | undefined;
  #keepaliveTimer: unknown;
  #keepaliveAt = Infinity;
  #connectTimer: unknown;
  #connectTimeout = 30_000;
  // When the dial of the current attempt began: connectTimeout counts from there.
  #attemptStartedAt: number | undefined;
  #maximumIncoming: number | undefined;
  // The promise of the first connect(); later connections have none.
  #connecting: Deferred<boolean> | undefined;
  #closed = new Deferred<void>();
  #abort: (() => void) | undefined;
  #signal: AbortSignal | undefined;
  #store: Store | undefined;
  // The last store write not yet durable; writes are ordered, so it stands for all before it.
  #storeBusy: Promise<void> | undefined;
  #reconnect: ReconnectOptions | undefined;
  #attempt = 0;
  #backoffTimer: unknown;
  #dialing: AbortController | undefined;
  #everConnected = false;

  /**
   * Creates a client over a connection you opened (anything with `readable` and `writable` byte
   * streams, such as a `Deno.Conn`), or over a {@linkcode Dialer} that opens one for each
   * connection (which lets the client reconnect). Call `connect` next.
   */
  constructor(transport?: Transport | Dialer) {
    super();
    if (typeof transport === "function") this.#dial = transport;
    else this.#transport = transport;
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
      if (this.#store !== undefined) {
        const contents = await this.#store.open();
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
    const version = options.protocolVersion ?? 4;
    if (version !== 3 && version !== 4 && version !== 5) {
      throw new TypeError(`protocolVersion must be 3, 4 or 5, not ${version}`);
    }
    this.#version = version;
    this.#clock = options.clock ?? systemClock;
    const properties: Properties | undefined = version === 5
      ? {
        ...options.properties,
        ...(options.maximumPacketSize !== undefined
          ? { maximumPacketSize: options.maximumPacketSize }
          : {}),
      }
      : undefined;
    const will = options.will;
    this.#store = options.store;
    const session = new Session<Token>({
      protocolVersion: version,
      clientId: options.clientId ?? randomClientId(),
      clean: options.clean ?? true,
      keepalive: options.keepalive ?? 60,
      username: options.username,
      password: options.password === undefined ? undefined : toBytes(options.password),
      will: will && {
        topic: will.topic,
        payload: toBytes(will.payload),
        qos: will.qos ?? 0,
        retain: will.retain ?? false,
        ...(will.properties ? { properties: will.properties } : {}),
      },
      properties: properties && Object.keys(properties).length > 0 ? properties : undefined,
      inflightWindow: options.inflightWindow,
      pingTimeout: options.pingTimeout,
      journal: this.#store !== undefined,
      resubscribe: options.resubscribe,
      maxQueuedMessages: options.queue?.maxMessages,
      maxQueuedBytes: options.queue?.maxBytes,
      dropQos0Offline: options.queue?.qos0 === "drop",
    });
    // Check the CONNECT now, so a bad option fails here rather than on the wire.
    encodeInto(new Writer(), session.connect(0), version);
    session.disconnected();
    this.#session = session;
    this.#maximumIncoming = options.maximumPacketSize;
    const connectTimeout = options.connectTimeout ?? 30_000;
    if (!(connectTimeout >= 0)) {
      throw new RangeError(`connectTimeout must be 0 or more milliseconds, not ${connectTimeout}`);
    }
    // 0 and anything a timer cannot hold (over 2^31 - 1 ms, Infinity) mean no limit: a timer
    // would fire at once for those.
    this.#connectTimeout = connectTimeout === 0 || connectTimeout > MAX_TIMER_MS
      ? Infinity
      : connectTimeout;
    this.#signal = options.signal;
    const reconnect = options.reconnect ?? false;
    this.#reconnect = reconnect === false || this.#dial === undefined
      ? undefined
      : reconnect === true
      ? {}
      : reconnect;
  }

  /** Replaces the user name and password sent with the next CONNECT (a refreshed token). */
  setCredentials(username?: string, password?: string | Uint8Array): void {
    this.#session?.setCredentials(
      username,
      password === undefined ? undefined : toBytes(password),
    );
  }

  /**
   * Opens a transport with the dialer. The attempt ends with `connectTimeout`, with the signal
   * given to `connect` (the first attempt) and with `disconnect()` — also when the dialer does
   * not listen to its signal, as a `beforeConnect` or a TLS or WebSocket handshake that never
   * ends may not: the attempt then fails, and a transport that arrives later is closed.
   */
  async #dialTransport(attempt: number): Promise<Transport> {
    const controller = this.#dialing = new AbortController();
    const dialSignal = controller.signal;
    const signal = attempt === 0 ? this.#signal : undefined;
    const onAbort = () => controller.abort(signal!.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    this.#attemptStartedAt = this.#clock.now();
    const timer = this.#connectTimeout === Infinity ? undefined : this.#clock.setTimeout(() => {
      controller.abort(
        new TimeoutError(`could not connect to the broker within ${this.#connectTimeout} ms`),
      );
    }, this.#connectTimeout);
    let onStop: (() => void) | undefined;
    const stopped = new Promise<never>((_, reject) => {
      onStop = () => reject(dialSignal.reason);
      dialSignal.addEventListener("abort", onStop, { once: true });
    });
    try {
      signal?.throwIfAborted();
      const dialing = this.#dial!(dialSignal, attempt);
      dialing.then((transport) => {
        if (dialSignal.aborted) closeQuietly(transport);
      }, () => {});
      return await Promise.race([dialing, stopped]);
    } finally {
      if (timer !== undefined) this.#clock.clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      dialSignal.removeEventListener("abort", onStop!);
      if (this.#dialing === controller) this.#dialing = undefined;
    }
  }

  /** Starts a connection over `transport`: sends CONNECT, reads until CONNACK. */
  #open(transport: Transport): void {
    const session = this.#session!;
    this.#transport = transport;
    const signal = this.#signal;
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
      this.#writer = transport.writable.getWriter();
      const decoder = new MqttDecoderStream({
        protocolVersion: this.#version,
        maximumPacketSize: this.#maximumIncoming,
      });
      const reader = this.#reader = transport.readable.pipeThrough(decoder).getReader();
      this.#readLoopDone = this.#readLoop(reader, decoder);
    } catch (error) {
      this.#fail(new ConnectionClosedError("the transport cannot be used", { cause: error }));
      return;
    }
    const now = this.#clock.now();
    session.connect(now);
    this.#scheduleFlush();
    // connectTimeout covers the whole attempt: the dial, then CONNACK.
    const started = this.#attemptStartedAt ?? now;
    this.#attemptStartedAt = undefined;
    if (this.#connectTimeout === Infinity) return;
    this.#connectTimer = this.#clock.setTimeout(() => {
      this.#connectTimer = undefined;
      this.#fail(new TimeoutError(`no CONNACK within ${this.#connectTimeout} ms`));
    }, Math.max(0, started + this.#connectTimeout - now));
  }

  /** Throws a {@linkcode StateError} unless the current state allows `operation`. */
  protected requireState(operation: Operation): void {
    if (!ALLOWED[this.#state].has(operation)) throw new StateError(operation, this.#state);
  }

  /**
   * Queues a PUBLISH built by a mixin; the session checks it against the broker's limits and the
   * queue's bounds.
   *
   * @returns A promise that settles when the flow completes (QoS 1, 2) or the bytes are written.
   */
  protected sendPublish(packet: PublishPacket): Promise<void> {
    this.requireState("publish");
    const session = this.#session!;
    if (packet.qos === 0 && session.connected) {
      session.publish(packet, undefined as unknown as Token);
      this.#scheduleFlush();
      return (this.#written ??= new Deferred<void>()).promise;
    }
    const token = new Deferred<unknown>();
    session.publish(packet, token);
    this.#pump();
    return token.promise as Promise<void>;
  }

  /** Queues a SUBSCRIBE; settles with the SUBACK. */
  protected sendSubscribe(packet: Omit<SubscribePacket, "packetId">): Promise<SubackPacket> {
    this.requireState("subscribe");
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
    if (session.hasOutput) this.#scheduleFlush();
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
    const wasConnected = this.#state === "connected";
    if (wasConnected && this.#writer) {
      const packet: DisconnectPacket = { type: "disconnect" };
      if (this.#version === 5) {
        if (options.reasonCode !== undefined) packet.reasonCode = options.reasonCode;
        if (options.properties !== undefined) packet.properties = options.properties;
      }
      // Fails here, before anything changes, when the options are not a valid DISCONNECT.
      const alone = new Writer();
      encodeInto(alone, packet, this.#version);
      this.#state = "disconnecting";
      // Nothing goes out before the store has what it depends on. A store that is not done
      // within the grace keeps what is queued (the next client that opens it sends it), and
      // DISCONNECT goes alone, past the write loop that waits for the store.
      const durable = !session.journaling ||
        await within(this.#durable(), CLOSE_GRACE_MS, this.#clock);
      const queued = session.takeOutbox(this.#clock.now());
      session.disconnected();
      if (durable) {
        // What is already queued goes first; DISCONNECT is the last packet.
        for (const queuedPacket of queued) encodeInto(this.#out, queuedPacket, this.#version);
        encodeInto(this.#out, packet, this.#version);
        await within(this.#flush(), CLOSE_GRACE_MS, this.#clock);
      } else if (this.#writer !== undefined) {
        await within(this.#writer.write(alone.bytes()), CLOSE_GRACE_MS, this.#clock);
      }
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

  async #readLoop(
    reader: ReadableStreamDefaultReader<Packet>,
    decoder: MqttDecoderStream,
  ): Promise<void> {
    let error: unknown;
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        const pause = this.#handle(value);
        if (pause !== undefined) {
          // Unread packets wait while the user catches up, a PINGRESP among them: keepalive
          // must not take that wait for a dead broker.
          this.#session!.readerPaused();
          await pause;
          if (this.#reader !== reader) return;
          this.#session!.readerResumed(this.#clock.now());
          if (this.#state === "connected") this.#armKeepalive();
        }
        if (this.#reader !== reader) return;
      }
      error = new ConnectionClosedError(
        decoder.truncated
          ? "the connection closed in the middle of a packet"
          : "the broker closed the connection",
      );
    } catch (caught) {
      error = caught;
    }
    if (this.#reader === reader) this.#fail(error);
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
    this.#armKeepalive();
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
        case "sent":
          (this.#written ??= new Deferred<void>()).promise.then(
            () => event.token.resolve(undefined),
            (error) => event.token.reject(error),
          );
          break;
        case "failed":
          event.token.reject(event.error);
          break;
      }
    }
    // Changes that no packet waits for (a completed flow's delete) reach the store now too.
    if (session.journaling) {
      try {
        this.#applyJournal();
      } catch (error) {
        this.#fail(error);
      }
    }
    if (session.hasOutput) this.#scheduleFlush();
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

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#writing !== undefined) return;
    this.#flushScheduled = true;
    queueMicrotask(this.#flushTask);
  }

  #flushTask = (): void => {
    this.#flushScheduled = false;
    if (this.#writing === undefined) this.#flush();
  };

  /** Writes everything in the outbox, one write per batch, until nothing is left. */
  #flush(): Promise<void> {
    if (this.#writing !== undefined) return this.#writing;
    const writer = this.#writer;
    if (writer === undefined) return Promise.resolve();
    return this.#writing = this.#writeLoop(writer).finally(() => {
      this.#writing = undefined;
      // Packets queued while the loop was finishing would otherwise wait for the next one.
      if (this.#writer === writer && (this.#session!.hasOutput || this.#out.pos > 0)) {
        this.#scheduleFlush();
      }
    });
  }

  async #writeLoop(writer: WritableStreamDefaultWriter<Uint8Array>): Promise<void> {
    const session = this.#session!;
    try {
      while (true) {
        // What the store must keep is durable before the packets that depend on it go out.
        if (session.journaling) await this.#durable();
        if (this.#writer !== writer) return;
        const packets = session.takeOutbox(this.#clock.now());
        for (let i = 0; i < packets.length; i++) encodeInto(this.#out, packets[i], this.#version);
        if (this.#out.pos === 0) break;
        const bytes = this.#out.bytes();
        const written = this.#inWrite = this.#written;
        this.#written = undefined;
        // Swap buffers: the next batch is encoded while this one is written.
        const next = this.#spare;
        this.#spare = this.#out;
        this.#out = next;
        next.reset();
        await writer.write(bytes);
        written?.resolve();
        this.#inWrite = undefined;
        if (this.#state === "connected") this.#armKeepalive();
      }
    } catch (error) {
      if (error instanceof StoreError) {
        this.#written?.reject(error);
        this.#written = undefined;
        this.#inWrite?.reject(error);
        this.#inWrite = undefined;
        this.#fail(error);
        return;
      }
      const closed = new ConnectionClosedError("writing to the broker failed", { cause: error });
      this.#written?.reject(closed);
      this.#written = undefined;
      this.#inWrite?.reject(closed);
      this.#inWrite = undefined;
      if (this.#writer === writer) this.#fail(closed);
    }
  }

  /** Hands the session's journal to the store and waits until all of it is durable. */
  async #durable(): Promise<void> {
    this.#applyJournal();
    while (this.#storeBusy !== undefined) {
      const busy = this.#storeBusy;
      await busy;
      if (this.#storeBusy === busy) this.#storeBusy = undefined;
      this.#applyJournal();
    }
  }

  #applyJournal(): void {
    const store = this.#store;
    if (store === undefined) return;
    const operations = this.#session!.takeJournal();
    for (let i = 0; i < operations.length; i++) {
      let result: void | Promise<void>;
      try {
        result = applyOperation(store, operations[i]);
      } catch (error) {
        throw new StoreError(error);
      }
      if (result !== undefined) {
        const busy = result.catch((error) => {
          throw new StoreError(error);
        });
        // Whether or not a write waits for it, a failing store ends the client.
        busy.catch((error) => this.#fail(error));
        this.#storeBusy = busy;
      }
    }
  }

  #armKeepalive(): void {
    const session = this.#session!;
    let deadline: number;
    try {
      deadline = session.tick(this.#clock.now());
    } catch (error) {
      this.#fail(error);
      return;
    }
    if (session.hasOutput) this.#scheduleFlush();
    if (
      deadline === Infinity ||
      (this.#keepaliveTimer !== undefined && this.#keepaliveAt <= deadline)
    ) {
      return;
    }
    if (this.#keepaliveTimer !== undefined) this.#clock.clearTimeout(this.#keepaliveTimer);
    this.#keepaliveAt = deadline;
    this.#keepaliveTimer = this.#clock.setTimeout(
      this.#onKeepaliveTimer,
      Math.max(0, deadline - this.#clock.now()),
    );
  }

  #onKeepaliveTimer = (): void => {
    this.#keepaliveTimer = undefined;
    this.#keepaliveAt = Infinity;
    if (this.#state === "connected") this.#armKeepalive();
  };

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
    if (this.#writer === undefined && this.#reader === undefined && state === "reconnecting") {
      return; // already torn down, waiting for the next attempt
    }
    const error = toMqttError(reason);
    const retry = this.#shouldRetry(error);
    // An aborted attempt rejects with the signal's reason, as fetch does.
    this.#connecting?.reject(reason === this.#signal?.reason ? reason : error);
    this.#connecting = undefined;
    this.#state = retry ? "reconnecting" : "disconnecting";
    // Tell a v5 broker why, where the spec gives a reason code, then close.
    const session = this.#session!;
    let flushed: Promise<unknown> = Promise.resolve();
    if (
      error instanceof ProtocolError && this.#version === 5 && this.#writer && session.connected
    ) {
      try {
        session.disconnected();
        encodeInto(this.#out, { type: "disconnect", reasonCode: error.reasonCode }, 5);
        flushed = within(this.#flush(), CLOSE_GRACE_MS, this.#clock);
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
    const reconnect = this.#reconnect;
    if (reconnect === undefined || !this.#everConnected || error instanceof StoreError) {
      return false;
    }
    if (this.#attempt >= (reconnect.attempts ?? Infinity)) return false;
    return reconnect.shouldRetry?.(error) ?? isRetryable(error, this.#version);
  }

  #scheduleReconnect(error: MqttError): void {
    const reconnect = this.#reconnect!;
    const attempt = ++this.#attempt;
    const min = reconnect.minDelay ?? 1000;
    const max = Math.max(min, reconnect.maxDelay ?? 30_000);
    // Exponential backoff with full jitter: anywhere between the minimum and a ceiling that
    // doubles with each attempt, so that many clients cut off together do not return together.
    const ceiling = Math.min(max, min * 2 ** Math.min(attempt, 30));
    const delay = Math.round(min + (reconnect.random ?? Math.random)() * (ceiling - min));
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

  /** Closes the transport and stops the read loop and the timers. Never throws, never hangs. */
  async #teardown(): Promise<void> {
    this.#clearConnectTimer();
    if (this.#keepaliveTimer !== undefined) {
      this.#clock.clearTimeout(this.#keepaliveTimer);
      this.#keepaliveTimer = undefined;
      this.#keepaliveAt = Infinity;
    }
    if (this.#backoffTimer !== undefined) {
      this.#clock.clearTimeout(this.#backoffTimer);
      this.#backoffTimer = undefined;
    }
    this.#dialing?.abort(new ConnectionClosedError("the client is closing"));
    this.#dialing = undefined;
    this.#abort?.();
    this.#abort = undefined;
    this.#session?.disconnected();
    // QoS 0 bytes of a write that never finished are lost with the connection: say so now, as
    // a reconnection would start new batches and leave them unsettled.
    const lost = new ConnectionClosedError("the connection closed before the bytes were written");
    this.#inWrite?.reject(lost);
    this.#inWrite = undefined;
    this.#written?.reject(lost);
    this.#written = undefined;
    const reader = this.#reader;
    const writer = this.#writer;
    this.#reader = undefined;
    this.#writer = undefined;
    const transport = this.#transport;
    if (this.#dial !== undefined) this.#transport = undefined;
    await Promise.allSettled([
      reader?.cancel().catch(() => {}),
      // A write still pending once the grace is over never ends: closing would wait behind it.
      writer ? within(writer.close(), this.#writing ? 0 : CLOSE_GRACE_MS, this.#clock) : undefined,
    ]);
    let closing: void | Promise<void> = undefined;
    try {
      closing = transport?.close?.();
    } catch {
      // Already closed.
    }
    // A WebSocket closes with a handshake: disconnect() returns once it is done, or the grace.
    await within(Promise.all([closing, this.#readLoopDone]), CLOSE_GRACE_MS, this.#clock);
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
    this.#written?.reject(closed);
    this.#written = undefined;
    this.#inWrite?.reject(closed);
    this.#inWrite = undefined;
    this.onClose();
    this.#report(error, packet, false);
    const store = this.#store;
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

/** The broker sent DISCONNECT (MQTT 5): the connection ends, with the broker's reason. */
export class BrokerDisconnect extends ConnectionClosedError {
  /** The DISCONNECT packet. */
  readonly packet: DisconnectPacket;

  /** Creates the error from the broker's DISCONNECT. */
  constructor(packet: DisconnectPacket) {
    const code = packet.reasonCode ?? 0;
    const reason = packet.properties?.reasonString;
    super(
      `the broker disconnected (reason 0x${code.toString(16).padStart(2, "0")}${
        reason ? `: ${reason}` : ""
      })`,
    );
    this.packet = packet;
  }
}

/** The store failed to keep a change: the client stops, since it can no longer promise delivery. */
export class StoreError extends MqttError {
  /** Creates the error around what the store threw. */
  constructor(cause: unknown) {
    super(
      `the store failed: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
  }
}

function applyOperation(store: Store, operation: StoreOperation): void | Promise<void> {
  switch (operation.op) {
    case "put":
      return store.put(operation.record);
    case "update":
      return store.update(operation.sequence, operation.state, operation.packetId);
    case "delete":
      return store.delete(operation.sequence);
    case "putIncoming":
      return store.putIncoming(operation.packetId);
    case "deleteIncoming":
      return store.deleteIncoming(operation.packetId);
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
