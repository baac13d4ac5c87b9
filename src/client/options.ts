/**
 * Reading the options of `connect`: defaults, checks, and the settings of the session, the
 * connection and reconnecting that follow from them, before anything is opened.
 *
 * @module
 */

import { type Clock, MAX_TIMER_MS, systemClock } from "../_async.ts";
import type { Properties, ProtocolVersion } from "../packet/types.ts";
import type { SessionOptions } from "../session/mod.ts";
import type { Store } from "../store/store.ts";
import type { Authenticator, ClientOptions, ReconnectOptions } from "./types.ts";

const encoder = new TextEncoder();

// `reconnect: true`: the defaults, one object for every client (nothing changes it).
const DEFAULT_RECONNECT: ReconnectOptions = Object.freeze({});

/**
 * Turns a string into UTF-8 bytes; leaves bytes as they are (no copy).
 *
 * @example
 * ```ts
 * import { toBytes } from "./options.ts";
 *
 * console.log(toBytes("hé").length); // 3
 * ```
 */
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

/** The client's settings, read from its options. */
export interface ClientSettings {
  /** The protocol version. */
  protocolVersion: ProtocolVersion;
  /** Time and timers. */
  clock: Clock;
  /** The store, if any. */
  store: Store | undefined;
  /** The settings of the session. */
  session: SessionOptions;
  /** The largest packet accepted from the broker, if limited. */
  maximumIncoming: number | undefined;
  /** How long an attempt may take, dial to CONNACK; `Infinity` for no limit. */
  connectTimeout: number;
  /** Aborts the first attempt. */
  signal: AbortSignal | undefined;
  /** How to reconnect; absent: the client does not. */
  reconnect: ReconnectOptions | undefined;
  /** The order of the broker URLs in each round. */
  urlOrder: "ordered" | "shuffle";
  /** Whether to follow an MQTT 5 Server Reference. */
  followServerReference: boolean;
  /** MQTT 5 enhanced authentication, if any. */
  auth: Authenticator | undefined;
}

/**
 * Reads the options of `connect`.
 *
 * @param canDial Whether the client has a dialer: only then can it reconnect.
 * @throws {TypeError} For an unknown protocol version.
 * @throws {RangeError} For a negative `connectTimeout`.
 * @throws {TypeError} For a `topicAliases` other than `"auto"` or `"manual"`, a `urlOrder` other
 * than `"ordered"` or `"shuffle"`, an `auth` that is not an authenticator, or Authentication
 * properties set by hand.
 */
export function readOptions(options: ClientOptions, canDial: boolean): ClientSettings {
  const version = options.protocolVersion ?? 4;
  if (version !== 3 && version !== 4 && version !== 5) {
    throw new TypeError(`protocolVersion must be 3, 4 or 5, not ${version}`);
  }
  const properties: Properties | undefined = version === 5
    ? {
      ...options.properties,
      ...(options.maximumPacketSize !== undefined
        ? { maximumPacketSize: options.maximumPacketSize }
        : {}),
    }
    : undefined;
  const connectTimeout = options.connectTimeout ?? 30_000;
  if (!(connectTimeout >= 0)) {
    throw new RangeError(`connectTimeout must be 0 or more milliseconds, not ${connectTimeout}`);
  }
  const reconnect = options.reconnect ?? false;
  const topicAliases = options.topicAliases ?? "manual";
  const urlOrder = options.urlOrder ?? "ordered";
  if (urlOrder !== "ordered" && urlOrder !== "shuffle") {
    throw new TypeError(`urlOrder must be "ordered" or "shuffle", not ${urlOrder}`);
  }
  if (topicAliases !== "auto" && topicAliases !== "manual") {
    throw new TypeError(`topicAliases must be "auto" or "manual", not ${topicAliases}`);
  }
  const auth = options.auth;
  if (auth !== undefined && (typeof auth.method !== "string" || typeof auth.start !== "function")) {
    throw new TypeError("auth must have a method (a string) and a start function");
  }
  if (
    options.properties?.authenticationMethod !== undefined ||
    options.properties?.authenticationData !== undefined
  ) {
    throw new TypeError(
      "set enhanced authentication with the auth option, not properties.authenticationMethod or authenticationData",
    );
  }
  return {
    protocolVersion: version,
    clock: options.clock ?? systemClock,
    store: options.store,
    session: sessionOptions(options, version, properties, topicAliases),
    maximumIncoming: options.maximumPacketSize,
    // 0 and anything a timer cannot hold (over 2^31 - 1 ms, Infinity) mean no limit: a timer
    // would fire at once for those.
    connectTimeout: connectTimeout === 0 || connectTimeout > MAX_TIMER_MS
      ? Infinity
      : connectTimeout,
    signal: options.signal,
    reconnect: reconnect === false || !canDial
      ? undefined
      : reconnect === true
      ? DEFAULT_RECONNECT
      : reconnect,
    urlOrder,
    followServerReference: options.followServerReference ?? true,
    auth,
  };
}

/**
 * The settings of the session, with only the options given: it lives as long as the client, and
 * a key for each option left out would cost every client the room of twenty.
 */
function sessionOptions(
  options: ClientOptions,
  version: ProtocolVersion,
  properties: Properties | undefined,
  topicAliases: "auto" | "manual",
): SessionOptions {
  const session: SessionOptions = {
    protocolVersion: version,
    clientId: options.clientId ?? randomClientId(),
    clean: options.clean ?? true,
    keepalive: options.keepalive ?? 60,
  };
  addGiven(session, options, properties, topicAliases);
  return session;
}

/**
 * Adds to `session` the options that were given. A function of its own: JavaScriptCore sizes an
 * object literal for every property the function that makes it may add later (measured on Bun:
 * 160 bytes a client with these additions beside the literal, 48 without).
 */
function addGiven(
  session: SessionOptions,
  options: ClientOptions,
  properties: Properties | undefined,
  topicAliases: "auto" | "manual",
): void {
  if (options.username !== undefined) session.username = options.username;
  if (options.password !== undefined) session.password = toBytes(options.password);
  const will = options.will;
  if (will) {
    session.will = {
      topic: will.topic,
      payload: toBytes(will.payload),
      qos: will.qos ?? 0,
      retain: will.retain ?? false,
      ...(will.properties ? { properties: will.properties } : {}),
    };
  }
  if (properties && Object.keys(properties).length > 0) session.properties = properties;
  if (options.inflightWindow !== undefined) session.inflightWindow = options.inflightWindow;
  if (options.pingTimeout !== undefined) session.pingTimeout = options.pingTimeout;
  if (options.store !== undefined) session.journal = true;
  if (options.resubscribe !== undefined) session.resubscribe = options.resubscribe;
  const queue = options.queue;
  if (queue !== undefined) {
    if (queue.maxMessages !== undefined) session.maxQueuedMessages = queue.maxMessages;
    if (queue.maxBytes !== undefined) session.maxQueuedBytes = queue.maxBytes;
    if (queue.highWaterMark !== undefined) session.queueHighWaterMark = queue.highWaterMark;
    if (queue.qos0 === "drop") session.dropQos0Offline = true;
  }
  if (topicAliases === "auto") session.topicAliases = "auto";
  if (options.auth !== undefined) session.authenticationMethod = options.auth.method;
}
