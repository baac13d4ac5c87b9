/**
 * One connected client, without sockets: a {@linkcode ClientHandler} is fed bytes, reads CONNECT
 * and answers CONNACK, handles every packet the client sends after it (what carries messages goes
 * to its {@linkcode Inbox} and {@linkcode Outbox}), enforces the keepalive on the injected clock
 * and hands the will on when the connection ends. It answers through a {@linkcode Link} and never
 * touches a socket, so the same code serves TCP, WebSocket and in-memory connections, and tests
 * drive time by hand. Its parts: the `authenticate` hook's exchange (`authentication.ts`), the
 * `authorize` hook (`authorization.ts`) and the subscriptions (`subscriptions.ts`).
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { PacketDecoder } from "../packet/decoder_stream.ts";
import type { ConnectPacket, DisconnectPacket, Packet, Properties, Will } from "../packet/types.ts";
import type { BrokerSession, ClientConnection, Delivery } from "./broker_session.ts";
import { Inbox } from "./inbox.ts";
import { Outbox } from "./outbox.ts";
import { Subscriptions } from "./subscriptions.ts";
import { badConnectAnswer } from "./bad_connect.ts";
import { ConnackReturnCode, MAXIMUM_PACKET_SIZE, ReasonCode } from "../packet/constants.ts";
import type { BrokerCore } from "./registry.ts";
import type { Link } from "./types.ts";
import type { AuthenticateHook, AuthorizeHook } from "./auth.ts";
import { ConnectionAuthentication } from "./authentication.ts";
import { ConnectionAuthorization } from "./authorization.ts";

/** The hooks of `new Broker({ authenticate, authorize })` a connection consults. */
export interface ConnectionHooks {
  /** Decides each CONNECT and MQTT 5 re-authentication. */
  authenticate?: AuthenticateHook;
  /** Decides each PUBLISH, will and subscription. */
  authorize?: AuthorizeHook;
}

/** The most packets held after CONNECT while the authenticate hook decides. */
const MAX_EARLY_PACKETS = 1000;

/** Why a connection ended, for the will and the reason code. */
type Ending = "disconnect" | "will" | "lost" | "error";

/**
 * Speaks MQTT with one client: fed bytes, it answers through its {@linkcode Link}. It never
 * throws: a malformed or illegal packet closes only this connection.
 */
export class ClientHandler implements ClientConnection {
  /** The session, once CONNECT is accepted. */
  session: BrokerSession | undefined = undefined;
  /** The client identifier, once CONNECT is read. */
  clientId: string | undefined = undefined;
  readonly #core: BrokerCore;
  readonly #link: Link;
  readonly #decoder: PacketDecoder;
  readonly #outbox: Outbox;
  readonly #inbox: Inbox;
  readonly #subscriptions: Subscriptions;
  // "authenticating": CONNECT is read and the authenticate hook has not accepted it yet.
  #state: "connecting" | "authenticating" | "connected" | "closed" = "connecting";
  readonly #authentication: ConnectionAuthentication;
  readonly #authorization: ConnectionAuthorization;
  // The CONNECT being authenticated, and whether its client id was assigned.
  #connectPacket: ConnectPacket | undefined = undefined;
  #assigned = false;
  // Packets a client that named no Authentication Method sent after CONNECT while the hook
  // decided (3.1.1 lets a client send them before CONNACK): handled once it accepts.
  #early: Packet[] = [];
  #will: Will | undefined = undefined;
  #keepalive = 0;
  // The CONNECT deadline until CONNECT is read, then the keepalive deadline.
  #timer: unknown = undefined;
  // The bytes before CONNECT is read, to answer an unsupported protocol level.
  #head: Uint8Array[] = [];

  /** Creates a handler for a new connection, with the broker's hooks if it has any. */
  constructor(core: BrokerCore, link: Link, hooks: ConnectionHooks = {}) {
    this.#core = core;
    this.#link = link;
    const authentication = this.#authentication = new ConnectionAuthentication(
      hooks.authenticate,
      {
        closed: () => this.#state === "closed",
        send: (packet) => this.#outbox.send(packet),
        refuse: (reasonCode, properties) => this.#refuse(reasonCode, properties),
        end: (reasonCode) => this.#end("error", reasonCode),
        accepted: (data) => this.#accepted(data),
        fail: (error) => this.#fail(error),
      },
    );
    const authorization = this.#authorization = new ConnectionAuthorization(
      hooks.authorize,
      authentication,
    );
    this.#decoder = new PacketDecoder({
      maximumPacketSize: core.maximumPacketSize ?? MAXIMUM_PACKET_SIZE,
    });
    this.#outbox = new Outbox(core, link, () => {
      this.#end("error", this.#v5 ? ReasonCode.QuotaExceeded : undefined);
    });
    const inbox = this.#inbox = new Inbox(core, this.#outbox);
    this.#subscriptions = new Subscriptions(core, this.#outbox, authorization);
    if (hooks.authorize !== undefined) {
      inbox.authorize = (topic, qos) => authorization.publish(topic, qos);
    }
    core.handlers.add(this);
    this.#timer = core.clock.setTimeout(() => {
      this.#timer = undefined;
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
    return this.#outbox.buffered;
  }

  /** The link says the client took bytes: deliveries held back for it may go on. */
  flushed(): void {
    this.#outbox.flushed();
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
    this.#end("disconnect", this.#v5 ? ReasonCode.ServerShuttingDown : undefined);
  }

  /** A new connection takes the session over: v5 clients get DISCONNECT 0x8E. */
  takeOver(): void {
    this.#end("lost", this.#v5 ? ReasonCode.SessionTakenOver : undefined);
  }

  /**
   * Sends the client elsewhere: v5 clients get DISCONNECT 0x9C (Use another server) or 0x9D
   * (Server moved) with the Server Reference; 3.x clients are cut.
   */
  redirect(serverReference: string, permanent: boolean): void {
    if (this.#state !== "connected") return;
    if (this.#v5) {
      this.#outbox.sendLast({
        type: "disconnect",
        reasonCode: permanent ? ReasonCode.ServerMoved : ReasonCode.UseAnotherServer,
        properties: { serverReference },
      });
    }
    this.#end("lost", undefined, true);
  }

  /** Sends a message to this client now, or queues it (see {@linkcode Outbox.prototype.deliver}). */
  deliver(delivery: Delivery): void {
    this.#outbox.deliver(delivery);
  }

  /** Closes this connection over an error (v5: DISCONNECT with the error's reason code). */
  fail(error: unknown): void {
    this.#fail(error);
  }

  get #v5(): boolean {
    return this.#outbox.version === 5;
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
    if (this.#state === "authenticating") return this.#whileAuthenticating(packet);
    this.#touch();
    switch (packet.type) {
      case "publish":
        return this.#inbox.publish(this.session!, packet);
      case "puback":
        return this.#outbox.acked(packet.packetId, 1);
      case "pubrec":
        return this.#outbox.pubrec(packet.packetId, packet.reasonCode ?? 0);
      case "pubrel":
        return this.#inbox.pubrel(this.session!, packet.packetId);
      case "pubcomp":
        return this.#outbox.acked(packet.packetId, 2);
      case "subscribe":
        return this.#subscriptions.subscribe(this.session!, packet);
      case "unsubscribe":
        return this.#subscriptions.unsubscribe(this.session!, packet);
      case "pingreq":
        this.#outbox.send({ type: "pingresp" });
        return;
      case "disconnect":
        return this.#disconnect(packet);
      case "connect":
        throw new ProtocolError("a second CONNECT", "MQTT-3.1.0-2", ReasonCode.ProtocolError);
      case "auth":
        return this.#authentication.reauthenticate(packet);
      default:
        throw new ProtocolError(
          `a client does not send ${packet.type}`,
          undefined,
          ReasonCode.ProtocolError,
        );
    }
  }

  #connect(packet: ConnectPacket): void {
    const core = this.#core;
    const version = packet.protocolVersion;
    this.#outbox.version = version;
    this.#decoder.protocolVersion = version;
    this.#head = [];
    this.#stopTimer();
    const v5 = version === 5;
    if (core.refusing) {
      return this.#refuse(v5 ? ReasonCode.ServerUnavailable : ConnackReturnCode.ServerUnavailable);
    }
    const redirect = core.redirecting;
    if (redirect !== undefined) {
      // MQTT 5 section 4.11: only v5 has a way to name another server.
      if (!v5) return this.#refuse(ConnackReturnCode.ServerUnavailable);
      return this.#refuse(
        redirect.permanent ? ReasonCode.ServerMoved : ReasonCode.UseAnotherServer,
        { serverReference: redirect.serverReference },
      );
    }
    const authentication = this.#authentication;
    const refused = authentication.refusal(packet);
    if (refused !== undefined) return this.#refuse(refused);
    let clientId = packet.clientId;
    let assigned = false;
    if (clientId === "") {
      // 3.1.1 [MQTT-3.1.3-8]: an empty id needs a clean session; 3.1 has no empty ids.
      if (version === 3 || (version === 4 && !packet.clean)) {
        return this.#refuse(
          v5 ? ReasonCode.ClientIdentifierNotValid : ConnackReturnCode.IdentifierRejected,
        );
      }
      clientId = core.assignClientId();
      assigned = true;
    }
    this.clientId = clientId;
    if (!authentication.connect(packet, clientId)) return this.#accept(packet, assigned, undefined);
    this.#state = "authenticating";
    this.#connectPacket = packet;
    this.#assigned = assigned;
    // The exchange must end within the connect timeout too.
    this.#timer = core.clock.setTimeout(() => {
      this.#timer = undefined;
      if (this.#state === "authenticating") this.#end("error", undefined);
    }, core.connectTimeout);
    authentication.start(packet);
  }

  /** The authenticate hook accepted the CONNECT: the connection opens, then what waited is handled. */
  #accepted(data: Uint8Array | undefined): void {
    this.#stopTimer();
    const packet = this.#connectPacket!;
    this.#connectPacket = undefined;
    this.#accept(packet, this.#assigned, data);
    const early = this.#early;
    this.#early = [];
    for (const waiting of early) {
      if (this.#state !== "connected") return;
      this.#handle(waiting);
    }
  }

  /** A packet while the authenticate hook decides on CONNECT. */
  #whileAuthenticating(packet: Packet): void {
    if (packet.type === "disconnect") return this.#end("disconnect", undefined);
    if (this.#authentication.authenticating(packet)) return;
    // A client that floods a hook that takes its time is cut off, not buffered without bound.
    if (this.#early.length >= MAX_EARLY_PACKETS) return this.#end("error", undefined);
    this.#early.push(packet);
  }

  /** Opens the session of an accepted CONNECT and answers CONNACK. */
  #accept(
    packet: ConnectPacket,
    assigned: boolean,
    authenticationData: Uint8Array | undefined,
  ): void {
    const core = this.#core;
    const version = packet.protocolVersion;
    const v5 = version === 5;
    const clientId = this.clientId!;
    if (packet.will !== undefined) {
      const refused = this.#authorization.will(packet.will, version);
      if (refused !== undefined) return this.#refuse(refused);
    }
    const expiry = v5
      ? (packet.properties?.sessionExpiryInterval ?? 0)
      : packet.clean
      ? 0
      : Infinity;
    const { session, sessionPresent } = core.openSession(
      this,
      clientId,
      packet.clean,
      version,
      expiry,
    );
    this.session = session;
    if (packet.will) {
      this.#will = { ...packet.will, payload: packet.will.payload.slice() };
    }
    const properties = packet.properties;
    this.#outbox.open(
      session,
      properties?.receiveMaximum ?? 65_535,
      properties?.maximumPacketSize ?? Infinity,
    );
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
        sharedSubscriptionAvailable: true,
      };
      if (core.receiveMaximum !== 65_535) props.receiveMaximum = core.receiveMaximum;
      if (core.maximumPacketSize !== undefined) props.maximumPacketSize = core.maximumPacketSize;
      if (assigned) props.assignedClientIdentifier = clientId;
      this.#authentication.accepting(props, authenticationData);
      connack.properties = props;
    }
    this.#outbox.send(connack);
    this.#touch();
    this.#outbox.resume();
  }

  #refuse(reasonCode: number, properties?: Properties): void {
    const connack: Packet = { type: "connack", sessionPresent: false, reasonCode };
    if (properties !== undefined && this.#v5) connack.properties = properties;
    this.#outbox.send(connack);
    this.#will = undefined;
    this.#end("disconnect", undefined, true);
  }

  #disconnect(packet: DisconnectPacket): void {
    const session = this.session!;
    const expiry = packet.properties?.sessionExpiryInterval;
    if (expiry !== undefined) {
      if (session.expiryInterval === 0 && expiry !== 0) {
        throw new ProtocolError(
          "DISCONNECT sets a Session Expiry Interval after CONNECT set 0 (section 3.14.2.2.2)",
          undefined,
          ReasonCode.ProtocolError,
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
    this.#stopTimer();
    this.#timer = this.#core.clock.setTimeout(() => {
      this.#timer = undefined;
      this.#end("lost", this.#v5 ? ReasonCode.KeepAliveTimeout : undefined);
    }, this.#keepalive * 1500);
  }

  #stopTimer(): void {
    if (this.#timer !== undefined) {
      this.#core.clock.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  #fail(error: unknown): void {
    if (this.#state === "authenticating") return this.#authentication.failed(error);
    if (this.#state === "connecting") {
      const connack = error instanceof ProtocolError
        ? badConnectAnswer(this.#head, error)
        : undefined;
      if (connack !== undefined) {
        this.#link.write(connack);
        this.#end("error", undefined, true);
        return;
      }
      this.#end("error", undefined);
      return;
    }
    const reasonCode = error instanceof ProtocolError
      ? error.reasonCode
      : ReasonCode.UnspecifiedError;
    this.#end("error", this.#v5 ? reasonCode : undefined);
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
      this.#outbox.sendLast({ type: "disconnect", reasonCode });
    }
    this.#state = "closed";
    this.#outbox.close();
    this.#core.handlers.delete(this);
    this.#stopTimer();
    this.#link.end(graceful || how === "disconnect" || how === "will");
    const session = this.session;
    if (!wasConnected || session === undefined) return;
    const will = how === "disconnect" ? undefined : this.#will;
    this.#will = undefined;
    this.#core.releaseSession(session, this, will);
  }
}
