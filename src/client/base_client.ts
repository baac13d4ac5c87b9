/**
 * The client handle: its public methods, what each state allows, and the way from the session's
 * events to the user (promises settled, messages delivered). Connecting, failing, reconnecting
 * and closing are the {@linkcode Lifecycle}'s; the protocol is the sans-I/O `Session`'s.
 *
 * @module
 */

import { abortable, Deferred, noop } from "../_async.ts";
import { ConnectionClosedError, type MqttError, StateError, SubscribeError } from "../errors.ts";
import type {
  ConnackPacket,
  ProtocolVersion,
  PublishPacket,
  SubackPacket,
  SubscribePacket,
  UnsubackPacket,
  UnsubscribePacket,
} from "../packet/types.ts";
import type { Transport } from "../transport/types.ts";
import { Lifecycle, type LifecycleHost, type Token } from "./lifecycle.ts";
import { allows, type ClientState, type Operation } from "./state.ts";
import type { Inbox, MessageData } from "./inbox.ts";
import { toBytes } from "./options.ts";
import type { Dialer } from "./reconnect.ts";
import type { BrokerDialer } from "./brokers.ts";
import type { ClientOptions, DisconnectOptions } from "./types.ts";

/**
 * The connection a client owns. Use one of its composed profiles: `MqttClient`, `MqttPublisher`
 * or `MqttSubscriber`.
 *
 * It is an `EventTarget` with the events, all `CustomEvent`s: `connect` (detail
 * `ConnectEventDetail`) on every accepted CONNACK; `disconnect` (detail
 * `DisconnectEventDetail`) whenever a connection ends; `reconnect` (detail
 * `ReconnectEventDetail`) when a reconnection is scheduled; and `error` (detail: the
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
  // What every client's lifecycle calls back: one object for all, not closures per client.
  static readonly #host: LifecycleHost<BaseClient> = {
    pump: (client) => client.#pump(),
    closed: (client) => client.#closed(),
  };
  readonly #life: Lifecycle<BaseClient>;
  // QoS 0 payload bytes handed to the connection and not yet written, and the batch (one write
  // of the connection) the last of them goes out with.
  #unwrittenBytes = 0;
  #batch: { written: Promise<void>; bytes: number } | undefined;
  // Settles once the outgoing queue has room again (see #hasRoom): what ready() and the
  // writables wait for. One for all waiters; rejected when the client closes.
  #room: Deferred<void> | undefined;

  /**
   * Creates a client over a connection you opened (anything with `readable` and `writable` byte
   * streams, such as a `Deno.Conn`), over a {@linkcode Dialer} that opens one for each
   * connection (which lets the client reconnect), or over a {@linkcode BrokerDialer}: several
   * broker URLs and a way to dial each. Call `connect` next.
   */
  constructor(transport?: Transport | Dialer | BrokerDialer) {
    super();
    this.#life = new Lifecycle(BaseClient.#host, this, transport);
  }

  /** The client closed for good: consumers of messages end, and so do waits for room. */
  #closed(): void {
    this.closeInbox();
    this.#room?.reject(new ConnectionClosedError("the client closed"));
    this.#room = undefined;
  }

  /**
   * Where received messages go until the application has them, in a profile that delivers
   * them (the `Subscriber` mixin, which makes it on first use); without one, as in a pure
   * publisher, each message is acknowledged at once, as the protocol requires.
   */
  protected inbox(): Inbox | undefined {
    return undefined;
  }

  /** The client closed: the inbox, if one was made, ends its consumers. */
  protected closeInbox(): void {}

  /** Where the client is in its life. */
  get state(): ClientState {
    return this.#life.state;
  }

  /** The CONNACK of the current (or last) connection. */
  get connack(): ConnackPacket | undefined {
    return this.#life.connack;
  }

  /** Whether the broker resumed a session on the current (or last) connection. */
  get sessionPresent(): boolean {
    return this.#life.connack?.sessionPresent ?? false;
  }

  /** The protocol version in use. */
  get protocolVersion(): ProtocolVersion {
    return this.#life.settings?.protocolVersion ?? 4;
  }

  /** The client identifier in use: the one given, or the one the broker assigned. */
  get clientId(): string | undefined {
    return this.#life.session?.clientId;
  }

  /** How many QoS 1 and 2 publishes are in flight, and how many wait to be sent. */
  get pending(): { inflight: number; waiting: number } {
    const session = this.#life.session;
    return { inflight: session?.inflightCount ?? 0, waiting: session?.waitingCount ?? 0 };
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
    if (!this.#life.canConnect) {
      throw new StateError("connect without a transport; pass one to the constructor", "idle");
    }
    this.configure(options);
    return await this.#life.connect();
  }

  /** Sets up the session from the options, before the first connection. */
  protected configure(options: ClientOptions): void {
    this.#life.configure(options);
  }

  /** Replaces the user name and password sent with the next CONNECT (a refreshed token). */
  setCredentials(username?: string, password?: string | Uint8Array): void {
    this.#life.session?.setCredentials(
      username,
      password === undefined ? undefined : toBytes(password),
    );
  }

  /**
   * Re-authenticates on the live connection (MQTT 5 enhanced authentication, section 4.12.1):
   * sends AUTH 0x19 with the `auth` option's method and initial data, answers each AUTH 0x18 of
   * the broker, and resolves on its AUTH 0x00 once the handler accepted the broker's final data.
   * Traffic goes on meanwhile, under the previous authentication. One exchange at a time: a call
   * made while one runs starts once it has ended.
   *
   * @throws {StateError} Without the `auth` option, or when not connected.
   * @throws {AuthenticationError} When the broker refuses (its DISCONNECT, whose reason code it
   * carries; the connection closes) or the handler gives up (the connection closes too, with
   * DISCONNECT 0x80), or when the handler cannot start (the connection goes on as it was).
   * @throws {ConnectionClosedError} When the connection ends first.
   *
   * @example
   * ```ts ignore
   * import { connect, scramSha256 } from "jsr:@kite/mqtt";
   *
   * const client = await connect("mqtt://127.0.0.1:1883", {
   *   protocolVersion: 5,
   *   auth: scramSha256({ username: "alice", password: "secret" }),
   * });
   * await client.reauthenticate();
   * ```
   */
  reauthenticate(): Promise<void> {
    return this.#life.reauthenticate();
  }

  /** Throws a {@linkcode StateError} unless the current state allows `operation`. */
  protected requireState(operation: Operation): void {
    const state = this.#life.state;
    if (!allows(state, operation)) throw new StateError(operation, state);
  }

  /**
   * Queues a PUBLISH built by a mixin; the session checks it against the broker's limits and
   * the queue's bounds first.
   *
   * @returns A promise that settles when the flow completes (QoS 1, 2) or the bytes are written.
   */
  protected sendPublish(packet: PublishPacket): Promise<void> {
    this.requireState("publish");
    const session = this.#life.session!;
    if (packet.qos === 0 && session.connected) {
      session.publish(packet, undefined as unknown as Token);
      const connection = this.#life.connection!;
      connection.scheduleFlush();
      const written = connection.written();
      this.#unwritten(written, packet.payload.length);
      return written;
    }
    const token = new Deferred<unknown>();
    session.publish(packet, token);
    this.#pump();
    return token.promise as Promise<void>;
  }

  /**
   * The payload bytes of publishes accepted and not yet written to the connection: QoS 1 and 2
   * ones waiting for the in-flight window or a connection, QoS 0 ones waiting for a connection or
   * for their write.
   */
  protected bufferedBytes(): number {
    return (this.#life.session?.waitingBytes ?? 0) + this.#unwrittenBytes;
  }

  /** The bytes waiting from which `queueRoom` waits: the queue's high-water mark. */
  protected queueHighWaterMark(): number {
    return this.#life.session!.queueBounds.highWaterMark;
  }

  /**
   * Waits until the outgoing queue has room: the bytes waiting (see `bufferedBytes`) are below
   * the queue's high-water mark, and the queue's bounds allow one more publish. With `bytes`,
   * also until a publish of that many payload bytes fits under `queue.maxBytes`, unless nothing
   * waits (then it never will, and publishing it says why).
   *
   * @returns `undefined` when there is room now; otherwise a promise that resolves once there is
   * (on the session's progress, never by polling), and rejects with `ConnectionClosedError` when
   * the client closes first, or with the signal's reason when it aborts.
   * @throws {StateError} When the client's state allows no publish.
   */
  protected queueRoom(bytes?: number, signal?: AbortSignal): Promise<void> | undefined {
    this.requireState("publish");
    if (this.#hasRoom(bytes)) return undefined;
    return abortable(this.#waitForRoom(bytes), signal, noop);
  }

  async #waitForRoom(bytes: number | undefined): Promise<void> {
    do {
      await (this.#room ??= new Deferred<void>()).promise;
    } while (!this.#hasRoom(bytes));
  }

  #hasRoom(bytes: number | undefined): boolean {
    const session = this.#life.session!;
    if (session.waitingBytes + this.#unwrittenBytes >= session.queueBounds.highWaterMark) {
      return false;
    }
    return session.hasQueueRoom(bytes ?? 0) ||
      (bytes !== undefined && session.waitingCount === 0);
  }

  /** Wakes what waits for room, if there is room now. */
  #wake(): void {
    const room = this.#room;
    if (room !== undefined && this.#hasRoom(undefined)) {
      this.#room = undefined;
      room.resolve();
    }
  }

  /** Counts a QoS 0 publish's bytes until the write they go out with settles. */
  #unwritten(written: Promise<void>, bytes: number): void {
    let batch = this.#batch;
    if (batch?.written !== written) {
      const current = this.#batch = batch = { written, bytes: 0 };
      const settled = () => {
        this.#unwrittenBytes -= current.bytes;
        if (this.#batch === current) this.#batch = undefined;
        this.#wake();
      };
      written.then(settled, settled);
    }
    batch.bytes += bytes;
    this.#unwrittenBytes += bytes;
  }

  /** Queues a SUBSCRIBE; settles with the SUBACK. */
  protected sendSubscribe(packet: Omit<SubscribePacket, "packetId">): Promise<SubackPacket> {
    this.requireState("subscribe");
    const token = new Deferred<unknown>();
    this.#life.session!.subscribe(packet, token);
    this.#pump();
    return token.promise as Promise<SubackPacket>;
  }

  /** Queues an UNSUBSCRIBE; settles with the UNSUBACK. */
  protected sendUnsubscribe(
    packet: Omit<UnsubscribePacket, "packetId">,
  ): Promise<UnsubackPacket> {
    this.requireState("unsubscribe");
    const token = new Deferred<unknown>();
    this.#life.session!.unsubscribe(packet, token);
    this.#pump();
    return token.promise as Promise<UnsubackPacket>;
  }

  /**
   * Marks a QoS 1 or 2 message as handled by the user: its PUBACK or PUBREC goes out, after
   * those of the messages that arrived before it on this connection. `message` is the PUBLISH
   * the session reported; one of an earlier connection changes nothing the broker relies on.
   */
  protected acknowledge(message: MessageData): void {
    const session = this.#life.session;
    if (session === undefined || message.qos === 0) return;
    session.acknowledge(message as PublishPacket);
    if (session.hasOutput) this.#life.connection?.scheduleFlush();
  }

  /**
   * Resolves once every change handed to the store so far is durable as the store defines it.
   * With a `FileStore` a publish is in the log (safe from a killed process) as soon as
   * `publish()` returns; this waits for the flush to the disk that its `fsync` policy makes, if
   * any (under `"always"`, after it a power cut loses none of them either).
   */
  async persisted(): Promise<void> {
    if (this.#life.session?.journaling) await this.#life.durable();
  }

  /**
   * Sends DISCONNECT and closes the connection, or stops reconnecting. Idempotent, and always
   * settles: also when the broker is gone, in which case it closes without waiting more than a
   * second. Operations still in flight reject with {@linkcode ConnectionClosedError}.
   */
  disconnect(options: DisconnectOptions = {}): Promise<void> {
    return this.#life.disconnect(options);
  }

  /** Disconnects: `await using client = ...` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.disconnect();
  }

  /** Acts on what the session has to say; returns a promise when delivery needs a pause. */
  #pump(): Promise<void> | undefined {
    const life = this.#life;
    const session = life.session!;
    const events = session.takeEvents();
    // What the events report is in the store before any promise settles: a completed flow's
    // removal, so that a process killed once its promise resolved does not send it again.
    life.applyJournal();
    let pause: Promise<void> | undefined;
    for (let i = 0; i < events.length; i++) {
      const event = events[i];
      switch (event.type) {
        case "message": {
          const inbox = this.inbox();
          let waiting: Promise<void> | undefined;
          if (inbox === undefined) this.acknowledge(event.packet);
          else waiting = inbox.deliver(event.packet);
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
          // A QoS 0 publish that waited leaves with the next write of this connection; its bytes
          // are buffered until then.
          const written = life.connection!.written();
          written.then(event.token.resolve, event.token.reject);
          this.#unwritten(written, event.bytes);
          break;
        }
        case "failed":
          event.token.reject(event.error);
          break;
      }
    }
    // And what handling them changed (a message acknowledged at once).
    life.applyJournal();
    if (session.hasOutput) life.connection?.scheduleFlush();
    if (this.#room !== undefined) this.#wake();
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
}
