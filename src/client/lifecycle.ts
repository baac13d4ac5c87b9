/**
 * The transitions of a client's state machine: a connection attempt (store, dial, CONNECT,
 * CONNACK within the timeout), an accepted connection, its failure, reconnecting with backoff,
 * and closing for good with every promise settled. The client handle asks; this decides. The
 * parts it owns and calls: the enhanced authentication exchange (`authentication.ts`), the rounds
 * over the brokers (`rounds.ts`) and the store (`store_writer.ts`).
 *
 * @module
 */

import { type Clock, closeQuietly, Deferred, systemClock } from "../_async.ts";
import {
  AuthenticationError,
  BrokerDisconnect,
  ConnectionClosedError,
  ConnectionRefusedError,
  type MqttError,
  ProtocolError,
  StateError,
  StoreError,
  TimeoutError,
  toMqttError,
} from "../errors.ts";
import { ReasonCode } from "../packet/constants.ts";
import { encode, packetSize } from "../packet/encode.ts";
import type { ConnackPacket, DisconnectPacket, Packet } from "../packet/types.ts";
import { Session } from "../session/mod.ts";
import type { Transport } from "../transport/types.ts";
import { CLOSE_GRACE_MS, Connection, type ConnectionOwner } from "./connection.ts";
import type { ConnectEventDetail, DisconnectEventDetail } from "./events.ts";
import { type ClientSettings, readOptions } from "./options.ts";
import { type Dialer, Redialer, type RedialHost } from "./reconnect.ts";
import type { BrokerDialer, BrokerList } from "./brokers.ts";
import { brokerList, Rounds, type RoundsHost } from "./rounds.ts";
import { type Deadline, Deadlines, settlesWithin } from "./deadlines.ts";
import { StoreWriter } from "./store_writer.ts";
import { EnhancedAuthentication } from "./authentication.ts";
import type { ClientState } from "./state.ts";
import type { ClientOptions, DisconnectOptions } from "./types.ts";

/** A token the session hands back when an operation completes: the promise given to the user. */
export type Token = Deferred<unknown>;

/**
 * What the lifecycle asks of the client handle that owns it. One object serves every client of
 * a class (the client is passed in), so that a client holds no closures for it.
 */
export interface LifecycleHost<C> {
  /** Acts on the session's events; a returned promise holds back reading (back-pressure). */
  pump(client: C): Promise<void> | undefined;
  /** The client closed for good: consumers of messages end. */
  closed(client: C): void;
}

/**
 * The lifecycle of one client: every state change but `idle` → `connecting` happens here. It is
 * the owner of each of its connections and the host of its rounds, by its own methods: an idle
 * connection holds no closures for them.
 */
export class Lifecycle<C extends EventTarget = EventTarget>
  implements ConnectionOwner, RoundsHost, RedialHost {
  state: ClientState = "idle";
  /** The session, once configured. */
  session: Session<Token> | undefined;
  /** The settings, once configured. */
  settings: ClientSettings | undefined;
  /** The CONNACK of the current (or last) connection. */
  connack: ConnackPacket | undefined;
  readonly #host: LifecycleHost<C>;
  // The client handle: where events go (`connect`, `disconnect`, `reconnect`, `error`).
  readonly #client: C;
  // What the constructor was given: a transport (the one connection such a client makes), a
  // dialer, or the broker URLs and a way to dial each. One field, read through the getters
  // below: on Bun, a field each would take the class past 18 fields, a larger size of cell.
  readonly #source: Transport | Dialer | BrokerDialer | undefined;
  // The rounds of attempts and the redialer that counts them: made for the first connect and
  // after a connection is lost, dropped once a CONNACK accepts one (they hold nothing then).
  #rounds: Rounds | undefined;
  // The URLs to dial, with their order and redirects: kept from one connection to the next.
  #brokers: BrokerList | undefined;
  #connection: Connection | undefined;
  #storeWriter: StoreWriter | undefined;
  #redialer: Redialer | undefined;
  // connectTimeout's deadline, in the clock's one timer: a runtime timer per attempt would cost
  // more garbage than the rest of connecting.
  #connectDeadline: Deadline | undefined;
  // The promise of the first connect(); later connections have none.
  #connecting: Deferred<boolean> | undefined;
  // Settles once closing is over (the store closed); made when someone waits for it.
  #closed: Deferred<void> | undefined;
  #closeDone = false;
  #abort: (() => void) | undefined;
  // MQTT 5 enhanced authentication, with the auth option, once configured.
  #authentication: EnhancedAuthentication | undefined;

  /**
   * A lifecycle over a transport opened by hand, a dialer that opens one per attempt, or a list
   * of broker URLs and a way to dial each.
   */
  constructor(
    host: LifecycleHost<C>,
    client: C,
    transport: Transport | Dialer | BrokerDialer | undefined,
  ) {
    this.#host = host;
    this.#client = client;
    this.#source = transport;
  }

  get #dial(): Dialer | undefined {
    const source = this.#source;
    return typeof source === "function" ? source : undefined;
  }

  get #brokerDialer(): BrokerDialer | undefined {
    const source = this.#source;
    return source !== undefined && typeof source !== "function" && "urls" in source
      ? source
      : undefined;
  }

  /** Whether a new connection can be dialed (a dialer or broker URLs), not only one given. */
  get #canDial(): boolean {
    return this.#dial !== undefined || this.#brokerDialer !== undefined;
  }

  get #transport(): Transport | undefined {
    const source = this.#source;
    return source !== undefined && typeof source !== "function" && !("urls" in source)
      ? source
      : undefined;
  }

  /** The time source in use: the clock option's, once configured. */
  get clock(): Clock {
    return this.settings?.clock ?? systemClock;
  }

  /** A packet from the broker (see {@linkcode ConnectionOwner.handle}). */
  handle(packet: Packet): Promise<void> | undefined {
    return this.#handle(packet);
  }

  /** The connection failed (see {@linkcode ConnectionOwner.fail}). */
  fail(reason: unknown): void {
    this.#fail(reason);
  }

  /** Whether keepalive runs now: a CONNACK accepted the connection. */
  isLive(): boolean {
    return this.state === "connected";
  }

  /** Opens a transport with the dialer, or to the broker the round is at (see {@linkcode RedialHost}). */
  openTransport(signal: AbortSignal, attempt: number): Promise<Transport> {
    const dial = this.#dial;
    if (dial !== undefined) return dial(signal, attempt);
    return this.#brokerDialer!.dial(this.#brokers!.current, signal, attempt);
  }

  /** Dials the broker the round is at (see {@linkcode RoundsHost.dial}). */
  dial(attempt: number): void {
    this.#dialNext(attempt);
  }

  /** Tells the user: dispatches `event` on the client. */
  dispatchEvent(event: Event): boolean {
    return this.#client.dispatchEvent(event);
  }

  /** Whether there is a way to connect: a transport or a dialer. */
  get canConnect(): boolean {
    return this.#source !== undefined;
  }

  /** The live connection, if any. */
  get connection(): Connection | undefined {
    return this.#connection;
  }

  /** Sets up the session from the options, before the first connection. */
  configure(options: ClientOptions): void {
    const settings = readOptions(options, this.#canDial);
    this.settings = settings;
    if (settings.store !== undefined) {
      // Made first: once the settings are, the store closes with the client.
      this.#storeWriter = new StoreWriter(
        settings.store,
        () => this.session!.takeJournal(),
        (error) => this.#fail(error),
      );
    }
    const session = new Session<Token>(settings.session);
    // Check the CONNECT now, so a bad option fails here rather than on the wire.
    packetSize(session.connect(0), settings.protocolVersion);
    session.disconnected();
    this.session = session;
    const urls = this.#brokerDialer?.urls;
    if (urls !== undefined) this.#brokers = brokerList(urls, settings);
    if (settings.auth !== undefined) {
      this.#authentication = new EnhancedAuthentication(settings.auth, session, this.clock, {
        state: () => this.state,
        connection: () => this.#connection,
        fail: (error) => this.#fail(error),
      });
    }
  }

  /** The first connection: opens the store, dials, and resolves on CONNACK. */
  async connect(): Promise<boolean> {
    this.state = "connecting";
    const connecting = this.#connecting = new Deferred<boolean>();
    try {
      const writer = this.#storeWriter;
      if (writer !== undefined) {
        // Publishes of an earlier process: nobody waits for them here, they just complete.
        // Restored even when disconnect() came meanwhile: what was published while the store
        // opened goes in after what it holds, with sequences of its own.
        await writer.open((contents) => this.session!.restore(contents, () => new Deferred()));
        // disconnect() while the store opened: it has settled `connecting` already.
        if (this.state !== "connecting") return connecting.promise;
      }
      const transport = this.#transport;
      if (transport === undefined) {
        this.#roundsNow().start();
        return connecting.promise;
      }
      this.#open(transport);
    } catch (error) {
      if (this.state === "connecting") {
        this.state = "disconnecting";
        this.#connecting = undefined;
        this.#finishClose(toMqttError(error));
      }
      throw error;
    }
    return connecting.promise;
  }

  /** Starts a connection over `transport`: sends CONNECT, reads until CONNACK. */
  #open(transport: Transport): void {
    const settings = this.settings!;
    const session = this.session!;
    // The settings are the connection's options too: no object of its own for them.
    const connection = this.#connection = new Connection(transport, session, this, settings);
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
    const now = this.clock.now();
    const authentication = this.#authentication;
    if (authentication === undefined) {
      session.connect(now);
      connection.scheduleFlush();
    } else {
      authentication.start(connection);
    }
    // connectTimeout covers the whole attempt: the dial, then CONNACK.
    const started = this.#redialer?.takeStartedAt() ?? now;
    const timeout = settings.connectTimeout;
    if (timeout === Infinity) return;
    const deadline: Deadline = this.#connectDeadline = {
      at: Infinity,
      slot: -1,
      due: () => {
        if (this.#connectDeadline !== deadline) return;
        this.#connectDeadline = undefined;
        this.#fail(new TimeoutError(`no CONNACK within ${timeout} ms`));
      },
    };
    Deadlines.of(this.clock).schedule(deadline, Math.max(now, started + timeout));
  }

  /** Handles one packet from the broker; returns a promise when delivery needs the loop to wait. */
  #handle(packet: Packet): Promise<void> | undefined {
    const session = this.session!;
    if (!session.connected && packet.type !== "connack" && packet.type !== "auth") {
      throw new ProtocolError(
        `the broker sent ${packet.type.toUpperCase()} before CONNACK`,
        "MQTT-3.2.0-1",
        ReasonCode.ProtocolError,
      );
    }
    if (packet.type === "connack" && packet.reasonCode === 0) {
      const verifying = this.#authentication?.verifyConnack(packet, () => {
        session.receive(packet, this.clock.now());
        this.#onConnack(packet);
        return this.#host.pump(this.#client);
      });
      if (verifying !== undefined) return verifying;
    }
    if (packet.type === "connack") {
      session.receive(packet, this.clock.now());
      this.#onConnack(packet);
    } else {
      // No clock read per message: the session needs the time only for CONNACK.
      session.receive(packet, 0);
    }
    if (packet.type === "disconnect") {
      const error = new BrokerDisconnect(packet);
      this.#authentication?.disconnected(error);
      throw error;
    } else if (packet.type === "auth") {
      // The session lets an AUTH through only to a client with the auth option.
      this.#authentication!.receive(packet);
    }
    return this.#host.pump(this.#client);
  }

  /**
   * Re-authenticates on the live connection (AUTH 0x19), one exchange at a time: a call made
   * while one runs waits for it to end first.
   */
  reauthenticate(): Promise<void> {
    const authentication = this.#authentication;
    if (authentication === undefined) {
      return Promise.reject(
        new StateError(
          "re-authenticate: connect with the auth option (MQTT 5 enhanced authentication) first",
          this.state,
        ),
      );
    }
    return authentication.reauthenticate();
  }

  #onConnack(connack: ConnackPacket): void {
    this.#clearConnectTimer();
    this.#authentication?.connected();
    this.connack = connack;
    if (connack.reasonCode !== 0) {
      throw new ConnectionRefusedError(
        connack.reasonCode,
        this.settings!.protocolVersion,
        connack.properties?.reasonString,
      );
    }
    this.#redialer?.connected();
    this.#rounds?.connected();
    this.#redialer = undefined;
    this.#rounds = undefined;
    this.state = "connected";
    this.#abort?.();
    this.#abort = undefined;
    const connecting = this.#connecting;
    this.#connecting = undefined;
    connecting?.resolve(connack.sessionPresent);
    const connection = this.#connection;
    if (connection !== undefined) {
      connection.releaseSpareBuffer();
      connection.armKeepalive();
    }
    this.#client.dispatchEvent(
      new CustomEvent<ConnectEventDetail>("connect", {
        detail: {
          connack,
          sessionPresent: connack.sessionPresent,
          reconnected: this.session!.reconnected,
        },
      }),
    );
  }

  /** Whether a CONNACK ever accepted the session: only then does a lost connection reconnect. */
  #everConnected(): boolean {
    return this.session?.everConnected ?? false;
  }

  /** Applies what the store must keep now, for changes no packet waits for; a failure fails. */
  applyJournal(): void {
    this.#storeWriter?.apply();
  }

  /**
   * Hands the session's journal to the store and waits until all of it is durable; while the
   * store opens, waits for that first. Rejects when the store fails or cannot be opened.
   */
  durable(): Promise<void> {
    return this.#storeWriter?.durable() ?? Promise.resolve();
  }

  #clearConnectTimer(): void {
    const deadline = this.#connectDeadline;
    if (deadline !== undefined) {
      this.#connectDeadline = undefined;
      Deadlines.of(this.clock).cancel(deadline);
    }
  }

  /**
   * Sends DISCONNECT and closes the connection, or stops reconnecting. Idempotent, and always
   * settles, within about a second when the broker is gone.
   */
  async disconnect(options: DisconnectOptions): Promise<void> {
    switch (this.state) {
      case "idle":
        this.#finishClose(undefined);
        return;
      case "disconnecting":
      case "closed":
        if (this.#closeDone) return;
        return (this.#closed ??= new Deferred<void>()).promise;
    }
    const session = this.session!;
    const connection = this.#connection;
    const version = this.settings!.protocolVersion;
    if (this.state === "connected" && connection?.writable) {
      const packet: DisconnectPacket = { type: "disconnect" };
      if (version === 5) {
        if (options.reasonCode !== undefined) packet.reasonCode = options.reasonCode;
        if (options.properties !== undefined) packet.properties = options.properties;
      }
      // Fails here, before anything changes, when the options are not a valid DISCONNECT.
      const bytes = encode(packet, version);
      this.state = "disconnecting";
      // Nothing goes out before the store has what it depends on. A store that is not done
      // within the grace keeps what is queued (the next client that opens it sends it), and
      // DISCONNECT goes alone, past the write loop that waits for the store.
      const durable = !session.journaling ||
        await settlesWithin(this.durable(), CLOSE_GRACE_MS, this.clock);
      const queued = session.takeOutbox(this.clock.now());
      session.disconnected();
      // What is already queued goes first; DISCONNECT is the last packet.
      await settlesWithin(
        durable ? connection.sendLast(queued, bytes) : connection.writeNow(bytes),
        CLOSE_GRACE_MS,
        this.clock,
      );
    }
    this.state = "disconnecting";
    this.#authentication?.end(new ConnectionClosedError("disconnect() was called"));
    this.#connecting?.reject(new ConnectionClosedError("disconnect() was called while connecting"));
    this.#connecting = undefined;
    await this.#teardown();
    this.#finishClose(undefined);
  }

  /**
   * The connection failed: report why, close it, and either reconnect or settle everything. A
   * connection not yet accepted is an attempt that failed: the next broker of the round is tried.
   * Safe to call more than once and from any state.
   */
  #fail(reason: unknown): void {
    const state = this.state;
    if (state === "closed" || state === "disconnecting" || state === "idle") return;
    if (this.#connection === undefined && state !== "connected") {
      return; // already torn down: waiting for the next attempt, or dialing it
    }
    const error = toMqttError(reason);
    this.#authentication?.end(error);
    const live = state === "connected";
    // A v5 broker that refuses or disconnects with a Server Reference sends the client on.
    const redirect = this.#roundsNow().redirectOf(error, this.connack);
    const retry = live && (redirect !== undefined && this.settings!.reconnect !== undefined ||
      this.#redialerNow().shouldRetry(error, this.#everConnected()));
    if (live) this.state = retry ? "reconnecting" : "disconnecting";
    // Tell a v5 broker why, where the spec gives a reason code, then close.
    const session = this.session!;
    const connection = this.#connection;
    let flushed: Promise<unknown> = Promise.resolve();
    // A client that gives up a re-authentication says so [MQTT-4.12.1-2]; the reason codes of
    // authentication failures are the server's, so with 0x80 (Unspecified error).
    const reasonCode = error instanceof ProtocolError
      ? error.reasonCode
      : error instanceof AuthenticationError
      ? ReasonCode.UnspecifiedError
      : undefined;
    if (
      reasonCode !== undefined && this.settings!.protocolVersion === 5 &&
      connection?.writable && session.connected
    ) {
      try {
        session.disconnected();
        const bytes = encode({ type: "disconnect", reasonCode }, 5);
        flushed = settlesWithin(connection.sendLast([], bytes), CLOSE_GRACE_MS, this.clock);
      } catch {
        // The reason code may not fit DISCONNECT; closing is what matters.
      }
    }
    const packet = error instanceof BrokerDisconnect ? error.packet : undefined;
    if (!live) {
      // Closed first, so that a second failure of the same connection finds nothing to do.
      const closing = this.#connection;
      this.#clearConnectTimer();
      this.#abort?.();
      this.#abort = undefined;
      session.disconnected();
      this.#connection = undefined;
      flushed.then(() => closing?.close()).finally(() => {
        if (this.state === state) this.#attemptFailed(reason, packet);
      });
      return;
    }
    flushed.then(() => this.#teardown()).finally(() => {
      if (retry && this.state === "reconnecting") {
        this.#report(error, packet, true);
        this.#roundsNow().reconnect(error, redirect);
      } else {
        this.#finishClose(error, packet);
      }
    });
  }

  /**
   * An attempt failed (the dial, or the connection before CONNACK accepted it): the next broker
   * of the round is tried at once, or a Server Reference followed; when the round is over, the
   * first connection fails, and a reconnection waits for the backoff of the next round.
   */
  #attemptFailed(reason: unknown, packet?: DisconnectPacket): void {
    const error = toMqttError(reason);
    const first = this.state === "connecting";
    const rounds = this.#roundsNow();
    // An abort (the signal) and a store that fails end it all; so does a redirect loop.
    const signal = this.settings?.signal;
    const aborted = signal?.aborted === true && reason === signal.reason;
    const next = rounds.attemptFailed(error, this.connack, aborted || error instanceof StoreError);
    if (next === "redirect" || next === "next") {
      // The failure is told (error, disconnect) before the next attempt (reconnect), either way.
      if (!first) this.#report(error, packet, true);
      rounds.attemptNext(error, !first);
      return;
    }
    const failed = next.error;
    if (first) {
      // One broker, one failure: the caller gets it as it came (a TypeError stays one).
      this.#connecting?.reject(aborted || next.single ? reason : failed);
      this.#connecting = undefined;
      this.state = "disconnecting";
      this.#finishClose(failed, packet);
    } else if (!next.final && this.#redialerNow().shouldRetry(failed, this.#everConnected())) {
      this.#report(error, packet, true);
      rounds.schedule(failed);
    } else {
      this.#finishClose(failed, packet);
    }
  }

  /** Dials the current broker and opens a connection over it; a failure fails the attempt. */
  async #dialNext(attempt: number): Promise<void> {
    const state = this.state;
    if (state !== "connecting" && state !== "reconnecting") return;
    let transport: Transport;
    try {
      transport = await this.#redialerNow().dial(attempt);
    } catch (error) {
      if (this.state === state) this.#attemptFailed(error);
      return;
    }
    if (this.state !== state) {
      closeQuietly(transport);
      return;
    }
    this.#open(transport);
  }

  #redialerNow(): Redialer {
    return this.#redialer ??= new Redialer(
      this.#canDial ? this : undefined,
      this.settings!,
    );
  }

  #roundsNow(): Rounds {
    return this.#rounds ??= new Rounds(this.#brokers, this.settings!, this.#redialerNow(), this);
  }

  /** Closes the connection and stops the timers and any dial. Never throws, never hangs. */
  async #teardown(): Promise<void> {
    this.#clearConnectTimer();
    const redialer = this.#redialer;
    // The error is made only for a dial to abort: closing thousands of clients makes none.
    redialer?.stop(
      redialer.dialing ? new ConnectionClosedError("the client is closing") : undefined,
    );
    this.#abort?.();
    this.#abort = undefined;
    this.session?.disconnected();
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
      this.#client.dispatchEvent(new CustomEvent<MqttError>("error", { detail: error }));
    }
    this.#client.dispatchEvent(
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
    if (this.state === "closed") return;
    this.state = "closed";
    this.#authentication?.end(error ?? new ConnectionClosedError("the client closed"));
    this.#redialer?.stop();
    // The errors are made only for what they settle: closing thousands of idle clients at once
    // makes none.
    let reason: MqttError | undefined = error;
    let closed: ConnectionClosedError | undefined;
    const closedError = (): ConnectionClosedError => {
      if (closed !== undefined) return closed;
      reason ??= new ConnectionClosedError("the client disconnected");
      return closed = reason instanceof ConnectionClosedError
        ? reason
        : new ConnectionClosedError(`the connection closed: ${reason.message}`, { cause: reason });
    };
    const connecting = this.#connecting;
    if (connecting !== undefined) {
      closedError();
      connecting.reject(reason);
      this.#connecting = undefined;
    }
    // With a store, an unfinished QoS 1 or 2 publish is not lost, and the error says so: it is
    // sent again by the next client that opens the store, so publishing it anew would double it.
    let kept: ConnectionClosedError | undefined;
    const onKept = error instanceof StoreError ? undefined : (token: Token) =>
      token?.reject(
        kept ??= new ConnectionClosedError(
          `${closedError().message}; the message stays in the store and is sent by the next client that opens it`,
          { cause: closedError().cause },
        ),
      );
    const abandoned = this.session?.abandon(onKept) ?? [];
    for (const token of abandoned) token?.reject(closedError());
    this.#connection?.rejectWrites(closedError());
    this.#host.closed(this.#client);
    this.#report(error, packet, false);
    const closing = this.#storeWriter?.close() ?? Promise.resolve();
    closing.catch(() => {}).finally(() => {
      this.#closeDone = true;
      this.#closed?.resolve();
    });
  }
}
