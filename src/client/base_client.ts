/**
 * The connection a client owns: its state machine, the read loop, batched writes, keepalive and
 * closing. The protocol itself lives in the sans-I/O {@linkcode Session}; this class does the I/O
 * around it.
 *
 * @module
 */

import {
  ConnectionClosedError,
  ConnectionRefusedError,
  LimitError,
  MqttError,
  ProtocolError,
  StateError,
  TimeoutError,
} from "../errors.ts";
import { Writer } from "../packet/bytes.ts";
import { MqttDecoderStream } from "../packet/decoder_stream.ts";
import { encodeInto } from "../packet/encode.ts";
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
import { Session } from "../session/session.ts";
import type { Transport } from "../transport/types.ts";
import { Deferred } from "./deferred.ts";
import type { ClientOptions, Clock, Message } from "./types.ts";

/**
 * Where a client is in its life. `idle` until `connect`; `connecting` until CONNACK; `connected`;
 * `disconnecting` while `disconnect` closes; `closed` for good.
 */
export type ClientState = "idle" | "connecting" | "connected" | "disconnecting" | "closed";

/** What can be asked of a client; each state allows some of them. */
export type Operation = "connect" | "publish" | "subscribe" | "unsubscribe" | "disconnect";

// The state machine, as a table: what each state allows. Anything else fails with a StateError.
const ALLOWED: Record<ClientState, ReadonlySet<Operation>> = {
  idle: new Set<Operation>(["connect", "disconnect"]),
  connecting: new Set<Operation>(["publish", "subscribe", "unsubscribe", "disconnect"]),
  connected: new Set<Operation>(["publish", "subscribe", "unsubscribe", "disconnect"]),
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

/** The `detail` of the `connect` event. */
export interface ConnectEventDetail {
  /** The CONNACK that accepted the connection. */
  connack: ConnackPacket;
  /** Whether the broker resumed a session. */
  sessionPresent: boolean;
}

/** The `detail` of the `disconnect` event. */
export interface DisconnectEventDetail {
  /** Why the connection ended; absent when `disconnect()` ended it. */
  error?: MqttError;
  /** The DISCONNECT the broker sent, if it sent one (MQTT 5). */
  packet?: DisconnectPacket;
}

/** A token the session hands back when an operation completes. */
export type Token = Deferred<unknown>;

const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as number),
};

const encoder = new TextEncoder();

/** Turns a string into UTF-8 bytes; leaves bytes as they are (no copy). */
export function toBytes(value: string | Uint8Array): Uint8Array {
  return typeof value === "string" ? encoder.encode(value) : value;
}

/** A random client identifier of 17 characters, within MQTT 3.1's limit of 23. */
function randomClientId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  let id = "kite-";
  for (const byte of bytes) id += "0123456789abcdefghijklmnopqrstuvwxyz"[byte % 36];
  return id;
}

/** How long `disconnect` waits for DISCONNECT to be written before it closes anyway. */
const CLOSE_GRACE_MS = 1000;

/**
 * The connection a client owns. Use one of its composed profiles: `MqttClient`, `MqttPublisher`
 * or `MqttSubscriber`.
 *
 * It is an `EventTarget` with the events `connect` (detail {@linkcode ConnectEventDetail}),
 * `disconnect` (detail {@linkcode DisconnectEventDetail}) and `error` (detail: the
 * {@linkcode MqttError}), all `CustomEvent`s.
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
  #scratch = new Writer();
  #flushScheduled = false;
  #writing: Promise<void> | undefined;
  // Settles once the bytes now in the outbox are written: what QoS 0 publishes wait for.
  #written: Deferred<void> | undefined;
  #keepaliveTimer: unknown;
  #keepaliveAt = Infinity;
  #connectTimer: unknown;
  #connecting: Deferred<boolean> | undefined;
  #closed = new Deferred<void>();
  #abort: (() => void) | undefined;
  #signal: AbortSignal | undefined;

  /**
   * Creates a client over a connection you opened: anything with `readable` and `writable` byte
   * streams, such as a `Deno.Conn`. Call `connect` next.
   */
  constructor(transport?: Transport) {
    super();
    this.#transport = transport;
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

  /**
   * Sends CONNECT over the transport given to the constructor and waits for CONNACK.
   *
   * @returns Whether the broker resumed a session (the session present flag).
   * @throws {ConnectionRefusedError} When CONNACK refuses, with its code.
   * @throws {TimeoutError} When no CONNACK arrives within `connectTimeout`.
   * @throws {ConnectionClosedError} When the connection closes first.
   */
  connect(options: ClientOptions = {}): Promise<boolean> {
    this.requireState("connect");
    const transport = this.#transport;
    if (transport === undefined) {
      return Promise.reject(
        new StateError("connect without a transport; pass one to the constructor", "idle"),
      );
    }
    this.configure(options);
    return this.open(transport, options);
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
    this.#session = new Session<Token>({
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
    });
    // Check the CONNECT now, so a bad option fails here rather than on the wire.
    encodeInto(new Writer(), this.#session.connect(0), version);
    this.#session.disconnected();
    this.#maximumIncoming = options.maximumPacketSize;
    this.#connectTimeout = options.connectTimeout ?? 30_000;
    this.#signal = options.signal;
  }

  #maximumIncoming: number | undefined;
  #connectTimeout = 30_000;

  /**
   * Starts a connection over `transport`: sends CONNECT, reads until CONNACK.
   *
   * @returns Whether the broker resumed a session.
   */
  protected open(transport: Transport, _options: ClientOptions): Promise<boolean> {
    const session = this.#session!;
    const signal = this.#signal;
    this.#state = "connecting";
    this.#transport = transport;
    const connecting = this.#connecting = new Deferred<boolean>();
    if (signal?.aborted) {
      this.#fail(signal.reason ?? new DOMException("aborted", "AbortError"));
      return connecting.promise;
    }
    if (signal) {
      const onAbort = () => this.#fail(signal.reason ?? new DOMException("aborted", "AbortError"));
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
      this.#readLoopDone = this.#readLoop(reader);
    } catch (error) {
      this.#fail(new ConnectionClosedError("the transport cannot be used", { cause: error }));
      return connecting.promise;
    }
    session.connect(this.#clock.now());
    this.#scheduleFlush();
    this.#connectTimer = this.#clock.setTimeout(() => {
      this.#connectTimer = undefined;
      this.#fail(new TimeoutError(`no CONNACK within ${this.#connectTimeout} ms`));
    }, this.#connectTimeout);
    return connecting.promise;
  }

  /** Throws a {@linkcode StateError} unless the current state allows `operation`. */
  protected requireState(operation: Operation): void {
    if (!ALLOWED[this.#state].has(operation)) throw new StateError(operation, this.#state);
  }

  /**
   * Queues a PUBLISH built by a mixin, after checking it against the broker's limits.
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
    encodeInto(this.#scratch, { ...packet, packetId: 1 } as SubscribePacket, this.#version);
    this.#scratch.reset();
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
    encodeInto(this.#scratch, { ...packet, packetId: 1 } as UnsubscribePacket, this.#version);
    this.#scratch.reset();
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
   * Sends DISCONNECT and closes the connection. Idempotent, and always settles: also when the
   * broker is gone, in which case it closes without waiting more than a second.
   * Operations still in flight reject with {@linkcode ConnectionClosedError}.
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
    const wasConnected = this.#state === "connected";
    this.#state = "disconnecting";
    const session = this.#session!;
    if (this.#connecting) {
      this.#connecting.reject(
        new ConnectionClosedError("disconnect() was called while connecting"),
      );
      this.#connecting = undefined;
    }
    if (wasConnected && this.#writer) {
      const packet: DisconnectPacket = { type: "disconnect" };
      if (this.#version === 5) {
        if (options.reasonCode !== undefined) packet.reasonCode = options.reasonCode;
        if (options.properties !== undefined) packet.properties = options.properties;
      }
      try {
        encodeInto(new Writer(), packet, this.#version);
      } catch (error) {
        this.#state = "connected";
        throw error;
      }
      // What is already queued goes first; DISCONNECT is the last packet.
      for (const queued of session.takeOutbox(this.#clock.now())) {
        encodeInto(this.#out, queued, this.#version);
      }
      encodeInto(this.#out, packet, this.#version);
      session.disconnected();
      await this.#within(this.#flush(), CLOSE_GRACE_MS);
    }
    await this.#teardown();
    this.#finishClose(undefined);
  }

  /** Disconnects: `await using client = ...` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.disconnect();
  }

  /** Waits for `promise`, but no longer than `ms`; never rejects. */
  async #within(promise: Promise<unknown>, ms: number): Promise<void> {
    let timer: unknown;
    const timeout = new Promise<void>((resolve) => {
      timer = this.#clock.setTimeout(resolve, ms);
    });
    try {
      await Promise.race([promise.catch(() => {}), timeout]);
    } finally {
      this.#clock.clearTimeout(timer);
    }
  }

  async #readLoop(reader: ReadableStreamDefaultReader<Packet>): Promise<void> {
    let error: unknown;
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        const pause = this.#handle(value);
        if (pause !== undefined) await pause;
        if (this.#reader !== reader) return;
      }
      error = new ConnectionClosedError("the broker closed the connection");
    } catch (caught) {
      error = caught;
    }
    if (this.#reader === reader) this.#fail(error);
  }

  /** Handles one packet from the broker; returns a promise when delivery needs the loop to wait. */
  #handle(packet: Packet): Promise<void> | undefined {
    const session = this.#session!;
    if (this.#state === "connecting" && packet.type !== "connack") {
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
    const connecting = this.#connecting;
    this.#connecting = undefined;
    if (connack.reasonCode !== 0) {
      const error = new ConnectionRefusedError(
        connack.reasonCode,
        this.#version,
        connack.properties?.reasonString,
      );
      connecting?.reject(error);
      throw error;
    }
    this.#state = "connected";
    this.#abort?.();
    this.#abort = undefined;
    connecting?.resolve(connack.sessionPresent);
    this.#armKeepalive();
    this.dispatchEvent(
      new CustomEvent<ConnectEventDetail>("connect", {
        detail: { connack, sessionPresent: connack.sessionPresent },
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
          const type = event.packet.type;
          event.token.resolve(type === "suback" || type === "unsuback" ? event.packet : undefined);
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
    if (session.hasOutput) this.#scheduleFlush();
    return pause;
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
    });
  }

  async #writeLoop(writer: WritableStreamDefaultWriter<Uint8Array>): Promise<void> {
    const session = this.#session!;
    try {
      while (true) {
        const packets = session.takeOutbox(this.#clock.now());
        for (let i = 0; i < packets.length; i++) encodeInto(this.#out, packets[i], this.#version);
        if (this.#out.pos === 0) break;
        const bytes = this.#out.bytes();
        const written = this.#written;
        this.#written = undefined;
        // Swap buffers: the next batch is encoded while this one is written.
        const next = this.#spare;
        this.#spare = this.#out;
        this.#out = next;
        next.reset();
        await writer.write(bytes);
        written?.resolve();
        if (this.#state === "connected") this.#armKeepalive();
      }
    } catch (error) {
      const closed = new ConnectionClosedError("writing to the broker failed", { cause: error });
      this.#written?.reject(closed);
      this.#written = undefined;
      if (this.#writer === writer) this.#fail(closed);
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
      deadline === Infinity || (this.#keepaliveTimer !== undefined && this.#keepaliveAt <= deadline)
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
   * The connection failed: report why, close it, and settle everything. Safe to call more than
   * once and from any state.
   */
  #fail(reason: unknown): void {
    if (this.#state === "closed" || this.#state === "disconnecting" || this.#state === "idle") {
      return;
    }
    const error = toMqttError(reason);
    this.#state = "disconnecting";
    // An aborted attempt rejects with the signal's reason, as fetch does.
    this.#connecting?.reject(reason === this.#signal?.reason ? reason : error);
    this.#connecting = undefined;
    // Tell a v5 broker why, where the spec gives a reason code, then close.
    if (
      error instanceof ProtocolError && this.#version === 5 && this.#writer &&
      this.#session?.connected
    ) {
      try {
        this.#session.disconnected();
        encodeInto(this.#out, { type: "disconnect", reasonCode: error.reasonCode }, 5);
      } catch {
        // The reason code may not fit DISCONNECT; closing is what matters.
      }
    }
    const flushed = this.#session?.connected === false && this.#out.pos > 0
      ? this.#within(this.#flush(), CLOSE_GRACE_MS)
      : Promise.resolve();
    flushed.then(() => this.#teardown()).finally(() => {
      if (error instanceof BrokerDisconnect) {
        this.#finishClose(error, error.packet);
      } else {
        this.#finishClose(error);
      }
    });
  }

  /** Closes the transport and stops the read loop and the timers. Never throws, never hangs. */
  async #teardown(): Promise<void> {
    this.#clearConnectTimer();
    if (this.#keepaliveTimer !== undefined) {
      this.#clock.clearTimeout(this.#keepaliveTimer);
      this.#keepaliveTimer = undefined;
      this.#keepaliveAt = Infinity;
    }
    this.#abort?.();
    this.#abort = undefined;
    this.#session?.disconnected();
    const reader = this.#reader;
    const writer = this.#writer;
    this.#reader = undefined;
    this.#writer = undefined;
    const transport = this.#transport;
    await Promise.allSettled([
      reader?.cancel().catch(() => {}),
      writer ? this.#within(writer.close(), CLOSE_GRACE_MS) : undefined,
    ]);
    try {
      transport?.close?.();
    } catch {
      // Already closed.
    }
    await this.#within(this.#readLoopDone, CLOSE_GRACE_MS);
  }

  #finishClose(error: MqttError | undefined, packet?: DisconnectPacket): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    const reason = error ?? new ConnectionClosedError("the client disconnected");
    const closed = reason instanceof ConnectionClosedError
      ? reason
      : new ConnectionClosedError(`the connection closed: ${reason.message}`, { cause: reason });
    for (const token of this.#session?.abandon() ?? []) token.reject(closed);
    this.#written?.reject(closed);
    this.#written = undefined;
    this.onClose();
    if (error !== undefined && !(error instanceof BrokerDisconnect && packet?.reasonCode === 0)) {
      this.dispatchEvent(new CustomEvent<MqttError>("error", { detail: error }));
    }
    this.dispatchEvent(
      new CustomEvent<DisconnectEventDetail>("disconnect", {
        detail: { ...(error ? { error } : {}), ...(packet ? { packet } : {}) },
      }),
    );
    this.#closed.resolve();
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
