/**
 * Broker URLs: which schemes Kite dials, their default ports, and the error for a broker that
 * cannot be reached.
 *
 * @module
 */

import { ConnectionClosedError } from "../errors.ts";

/** The byte stream a scheme runs MQTT over. */
export type TransportKind = "tcp" | "tls" | "websocket";

/** Where and how to reach a broker, resolved from its URL. */
export interface BrokerAddress {
  /** The stream MQTT runs over. */
  kind: TransportKind;
  /** The host name or IP address to dial; an IPv6 address without its brackets. */
  hostname: string;
  /** The port to dial: the URL's, or the scheme's default. */
  port: number;
  /** For `ws:` and `wss:`: the URL to hand to `WebSocket`, without credentials or fragment. */
  webSocketUrl?: URL;
  /** The URL for messages: without user name and password, which must not end up in logs. */
  display: string;
}

/** Each scheme Kite dials, with its stream and its default port. */
const SCHEMES: ReadonlyMap<string, { kind: TransportKind; port: number }> = new Map([
  ["mqtt:", { kind: "tcp", port: 1883 }],
  ["tcp:", { kind: "tcp", port: 1883 }],
  ["mqtts:", { kind: "tls", port: 8883 }],
  ["tls:", { kind: "tls", port: 8883 }],
  ["ws:", { kind: "websocket", port: 80 }],
  ["wss:", { kind: "websocket", port: 443 }],
]);

/** The path MQTT brokers serve websockets on by convention, used when the URL names none. */
export const DEFAULT_WEBSOCKET_PATH = "/mqtt";

/**
 * Resolves a broker URL to the address to dial.
 *
 * @param url A `mqtt:`, `tcp:`, `mqtts:`, `tls:`, `ws:` or `wss:` URL.
 * @returns The kind of stream, host, port and, for websockets, the URL to open.
 * @throws {TypeError} When the scheme is none of those, or the URL has no host.
 *
 * @example
 * ```ts
 * import { brokerAddress } from "./address.ts";
 *
 * const address = brokerAddress(new URL("mqtts://broker.example"));
 * console.log(address.kind, address.port); // "tls" 8883
 * ```
 */
export function brokerAddress(url: URL): BrokerAddress {
  const scheme = SCHEMES.get(url.protocol);
  if (scheme === undefined) {
    throw new TypeError(
      `cannot connect to ${displayUrl(url)}: unsupported scheme "${url.protocol}"; ` +
        `use one of ${[...SCHEMES.keys()].join(", ")}`,
    );
  }
  if (url.hostname === "") {
    throw new TypeError(`cannot connect to ${displayUrl(url)}: the URL has no host`);
  }
  const hostname = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
  const port = url.port === "" ? scheme.port : Number(url.port);
  const address: BrokerAddress = { kind: scheme.kind, hostname, port, display: displayUrl(url) };
  if (scheme.kind === "websocket") {
    const webSocketUrl = new URL(url.href);
    webSocketUrl.username = "";
    webSocketUrl.password = "";
    // The WebSocket constructor throws a SyntaxError on a URL with a fragment.
    webSocketUrl.hash = "";
    // A URL object cannot tell "wss://host" from "wss://host/": both mean the default path.
    if (webSocketUrl.pathname === "/" || webSocketUrl.pathname === "") {
      webSocketUrl.pathname = DEFAULT_WEBSOCKET_PATH;
    }
    address.webSocketUrl = webSocketUrl;
  }
  return address;
}

/**
 * The error for a broker that could not be reached.
 *
 * @param address The broker that was dialled.
 * @param reason Why it failed: the runtime's error, or a sentence.
 * @returns A {@linkcode ConnectionClosedError} that names the URL and the reason, with the
 * runtime's error as its `cause`.
 *
 * @example
 * ```ts
 * import { brokerAddress, unreachable } from "./address.ts";
 *
 * const error = unreachable(brokerAddress(new URL("mqtt://127.0.0.1:1")), "connection refused");
 * console.log(error.message); // "could not connect to mqtt://127.0.0.1:1: connection refused"
 * ```
 */
export function unreachable(address: BrokerAddress, reason: unknown): ConnectionClosedError {
  return new ConnectionClosedError(
    `could not connect to ${address.display}: ${describe(reason)}`,
    reason instanceof Error ? { cause: reason } : undefined,
  );
}

/**
 * The error a stream of an open connection fails with when the connection breaks.
 *
 * @param address The broker the connection goes to, or how it is shown (its `display`).
 * @param reason The runtime's error, or a sentence.
 * @returns A {@linkcode ConnectionClosedError} with the runtime's error as its `cause`.
 *
 * @example
 * ```ts
 * import { brokerAddress, connectionLost } from "./address.ts";
 *
 * const address = brokerAddress(new URL("mqtt://127.0.0.1"));
 * console.log(connectionLost(address, "the transport was closed").message);
 * ```
 */
export function connectionLost(
  address: BrokerAddress | string,
  reason: unknown,
): ConnectionClosedError {
  if (reason instanceof ConnectionClosedError) return reason;
  const display = typeof address === "string" ? address : address.display;
  return new ConnectionClosedError(
    `the connection to ${display} closed: ${describe(reason)}`,
    reason instanceof Error ? { cause: reason } : undefined,
  );
}

/** What went wrong, in words: the runtime's message, with its code when the message lacks it. */
function describe(reason: unknown): string {
  const detail = reason instanceof Error
    ? (reason.message || reason.name)
    : typeof reason === "string"
    ? reason
    : String(reason);
  // Bun says only "Failed to connect"; its code (ECONNREFUSED, ...) says why.
  const code = (reason as { code?: unknown } | undefined)?.code;
  return typeof code === "string" && !detail.includes(code) ? `${detail} (${code})` : detail;
}

/**
 * A URL for messages and events: without its user name and password.
 *
 * @param url The URL.
 * @returns Its `href`, credentials left out.
 *
 * @example
 * ```ts
 * import { displayUrl } from "./address.ts";
 *
 * console.log(displayUrl(new URL("mqtt://user:secret@127.0.0.1:1883"))); // "mqtt://127.0.0.1:1883"
 * ```
 */
export function displayUrl(url: URL): string {
  if (url.username === "" && url.password === "") return url.href;
  const copy = new URL(url.href);
  copy.username = "";
  copy.password = "";
  return copy.href;
}
