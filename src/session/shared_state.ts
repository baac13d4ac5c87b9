/**
 * The settings of a session, and what its parts share, in one object handed to each: the
 * connection's state and the server's limits, the packet identifiers in use, and the three lists
 * the caller drains (the outbox, the events and the journal). The parts know this object and
 * nothing of each other; the `Session` that owns them calls each in turn.
 *
 * @module
 */

import { MqttError } from "../errors.ts";
import type {
  ConnectPacket,
  Packet,
  ProtocolVersion,
  PublishPacket,
  SubscribePacket,
  UnsubscribePacket,
} from "../packet/types.ts";
import { DEFAULT_LIMITS, type ServerLimits } from "./limits.ts";
import type { StoreOperation } from "../store/store.ts";

/**
 * The settings of a session, fixed for its lifetime: what its CONNECT carries (the server's
 * Assigned Client Identifier replaces an empty client id), and how the session behaves.
 */
export interface SessionOptions extends
  Pick<
    ConnectPacket,
    | "protocolVersion"
    | "clientId"
    | "clean"
    | "keepalive"
    | "username"
    | "password"
    | "will"
    | "properties"
  > {
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
   * in the window, and SUBSCRIBE or UNSUBSCRIBE requests made while disconnected. Default: no
   * bound by count; `maxQueuedBytes` bounds them.
   */
  maxQueuedMessages?: number;
  /**
   * The most bytes those operations may hold: the payloads of the publishes, and the payloads of
   * the requests (see `requestPayloadSize` in `limits.ts`). Default 64 MiB.
   */
  maxQueuedBytes?: number;
  /**
   * The bytes waiting from which a producer that asks is told to wait (see `queueBounds`):
   * default 1 MiB, never more than `maxQueuedBytes`.
   */
  queueHighWaterMark?: number;
  /** Refuse QoS 0 publishes while disconnected, instead of queuing them; default false. */
  dropQos0Offline?: boolean;
  /**
   * MQTT 5: `"auto"` gives topics aliases as PUBLISHes go out, within each server's Topic Alias
   * Maximum, least recently used first to give way; a publish may then not set `topicAlias`
   * itself. Default `"manual"`: only the aliases publishes set.
   */
  topicAliases?: "auto" | "manual";
  /**
   * MQTT 5 enhanced authentication: the Authentication Method CONNECT names. The session then
   * lets the server's AUTH through where section 4.12 allows it, and sends ours when told to
   * (`answerAuthentication`, `reauthenticate`). Refused on MQTT 3.1 and 3.1.1 (`TypeError`).
   */
  authenticationMethod?: string;
}

/** Something the user must hear about. */
export type SessionEvent<T> =
  | {
    /** A message arrived; for QoS 1 and 2, call `acknowledge` once the application has it. */
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
    /** Its payload bytes, waiting in the outbox for the next write. */
    bytes: number;
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

/** A SUBSCRIBE or UNSUBSCRIBE of ours, with the caller's token. */
export interface Request<T> {
  /** The packet; its `packetId` is set when it is sent. */
  packet: SubscribePacket | UnsubscribePacket;
  /** The caller's token; `undefined` for a subscription made again after a lost session. */
  token: T;
}

// What the maps of a session read as before their first entry: empty, and never changed (its
// type has no way to change it).
const NOTHING: ReadonlyMap<unknown, unknown> = new Map();

// The empty outbox, list of events and (without a store) journal every idle session shares:
// frozen, so that a packet or an event put there other than through `send` and `tell`, or a
// stray journal record, fails loudly.
const NONE: never[] = Object.freeze([]) as unknown as never[];

/** The state the parts of a session share. */
export class SharedState<T> {
  /** 3 (MQTT 3.1), 4 (3.1.1) or 5. */
  readonly protocolVersion: ProtocolVersion;
  /** Whether a store is behind the session; without one nothing is journaled. */
  readonly journaling: boolean;
  /** Whether a CONNACK accepted the current connection. */
  connected = false;
  /** The server's limits, from the last CONNACK. */
  limits: Readonly<ServerLimits> = DEFAULT_LIMITS;
  /**
   * The packets to send, in order; added through {@linkcode SharedState.send}. One shared empty
   * list while there is none: set it to {@linkcode SharedState.empty} to take them.
   */
  outbox: Packet[] = NONE;
  /** What the user must hear about, in order; added through {@linkcode SharedState.tell}. */
  events: SessionEvent<T>[] = NONE;
  /** The changes the store must make durable, in order. */
  journal: StoreOperation[];
  // The two maps below are made on first use: an idle connection that never published QoS 1
  // or 2 nor subscribed holds neither. Read through the getters, changed through the methods.
  #inflight: Map<number, OutgoingPublish<T>> | undefined;
  #requests: Map<number, Request<T>> | undefined;
  #nextPacketId = 1;

  /**
   * Our QoS 1 and 2 publishes in flight, by packet id; a Map keeps them in the order they were
   * first sent, the order they must be re-sent in [MQTT-4.4.0-1]. The outgoing flows change it
   * through {@linkcode SharedState.changeInflight}.
   */
  get inflight(): ReadonlyMap<number, OutgoingPublish<T>> {
    return this.#inflight ?? (NOTHING as ReadonlyMap<number, OutgoingPublish<T>>);
  }

  /** The map of publishes in flight, to change; made on first use. */
  changeInflight(): Map<number, OutgoingPublish<T>> {
    return this.#inflight ??= new Map();
  }

  /** SUBSCRIBE and UNSUBSCRIBE waiting for their acknowledgement, by packet id. */
  get requests(): ReadonlyMap<number, Request<T>> {
    return this.#requests ?? (NOTHING as ReadonlyMap<number, Request<T>>);
  }

  /** The map of requests waiting for their acknowledgement, to change; made on first use. */
  changeRequests(): Map<number, Request<T>> {
    return this.#requests ??= new Map();
  }

  /** The shared empty list the outbox and the events are reset to once taken. */
  static readonly empty: never[] = NONE;

  /** Puts a packet in the outbox. */
  send(packet: Packet): void {
    if (this.outbox === NONE) this.outbox = [];
    this.outbox.push(packet);
  }

  /** Adds an event for the user. */
  tell(event: SessionEvent<T>): void {
    if (this.events === NONE) this.events = [];
    this.events.push(event);
  }

  /** Creates the shared state of a session with these settings. */
  constructor(options: SessionOptions) {
    this.protocolVersion = options.protocolVersion;
    this.journaling = options.journal ?? false;
    // Without a store nothing is journaled (every change is recorded under `if (journaling)`):
    // one frozen empty list for all such sessions, which a stray record would fail on loudly.
    this.journal = this.journaling ? [] : NONE;
  }

  /**
   * Hands out the next packet identifier not in use by a publish in flight or a request.
   *
   * @throws {MqttError} When all 65535 are in use.
   */
  allocatePacketId(): number {
    for (let tries = 0; tries < 65535; tries++) {
      const id = this.#nextPacketId;
      this.#nextPacketId = id === 65535 ? 1 : id + 1;
      // [MQTT-2.2.1-3] / [MQTT-2.3.1-2] a new packet gets an identifier not in use.
      if (!this.inflight.has(id) && !this.requests.has(id)) return id;
    }
    throw new MqttError("all 65535 packet identifiers are in use");
  }
}
