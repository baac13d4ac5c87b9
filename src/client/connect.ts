/**
 * `connect(url, options)`: dial a broker by URL and return a connected {@linkcode MqttClient}
 * that reconnects by itself.
 *
 * @module
 */

import { openTransport } from "../transport/mod.ts";
import type { Transport, TransportOptions } from "../transport/types.ts";
import type { BrokerDialer } from "./brokers.ts";
import { MqttClient } from "./clients.ts";
import type { ClientOptions } from "./types.ts";

/** What `beforeConnect` may change before an attempt. */
export interface ConnectionChange {
  /** Another URL to dial. */
  url?: string | URL;
  /** The user name to send. */
  username?: string;
  /** The password to send (a refreshed token, say). */
  password?: string | Uint8Array;
}

/** The options of {@linkcode connect}: the client's, and how to reach the broker. */
export interface ConnectOptions extends ClientOptions, TransportOptions {
  /**
   * Called before every connection attempt, the first included: may return another URL or new
   * credentials (a refreshed token). A user name and password in a returned URL are used unless
   * the options or the change give them; a change stays in force for later attempts. If it
   * throws, the attempt fails like a refused dial. It counts against `connectTimeout`; `signal`
   * aborts when the attempt is given up (timeout, `disconnect()`).
   */
  beforeConnect?: (
    attempt: { attempt: number; url: URL; signal: AbortSignal },
  ) => void | ConnectionChange | Promise<void | ConnectionChange>;
}

/**
 * Dials `url` (`mqtt:`, `mqtts:`, `ws:`, `wss:`, also `tcp:` and `tls:`), sends CONNECT, and
 * resolves once CONNACK accepts. A user name and password in the URL are used unless the options
 * give them. After an unexpected loss the client reconnects with exponential backoff (see
 * `reconnect`), resumes or restores its session, and sends what was queued meanwhile.
 *
 * Given several URLs, each connection attempt is a round over them: in order (or shuffled, see
 * `urlOrder`), the next one at once when one fails, each within `connectTimeout`, the backoff
 * only between rounds; the first connection and every reconnection start from the first URL.
 * The TLS and WebSocket options apply to each URL of their scheme. MQTT 5: a Server Reference is
 * followed (see `followServerReference`).
 *
 * @param url The broker, such as `mqtt://127.0.0.1:1883` or `wss://broker.example/mqtt`, or
 * several of them.
 * @param options The client's options and the transport's (TLS certificates, servername, ...).
 * @returns A connected client.
 * @throws {ConnectionRefusedError} When the broker refuses the connection.
 * @throws {ConnectionClosedError} When the broker cannot be reached.
 * @throws {TimeoutError} When no CONNACK arrives within `connectTimeout`.
 * @throws {BrokersFailedError} When every one of several brokers failed, each URL with its error.
 * @throws {RedirectError} When brokers kept redirecting the client (more than 5 in a row).
 *
 * @example
 * ```ts ignore
 * import { connect } from "jsr:@kite/mqtt";
 *
 * await using client = await connect("mqtt://127.0.0.1:1883", { clientId: "kite-1" });
 * await client.publish("a/b", "hello", { qos: 1 });
 * ```
 *
 * @example Two brokers: the second when the first cannot be reached
 * ```ts ignore
 * import { connect } from "jsr:@kite/mqtt";
 *
 * const client = await connect(["mqtt://a.example", "mqtt://b.example"]);
 * await client.disconnect();
 * ```
 */
export async function connect(
  url: string | URL | readonly (string | URL)[],
  options: ConnectOptions = {},
): Promise<MqttClient> {
  const list = Array.isArray(url) ? url as readonly (string | URL)[] : undefined;
  if (list?.length === 0) throw new TypeError("connect needs at least one broker URL");
  const first = new URL(list === undefined ? url as string | URL : list[0]);
  const dialer = new UrlDialer(
    url as string | URL | readonly (string | URL)[],
    options,
    options.username ?? usernameOf(first),
    options.password ?? passwordOf(first),
  );
  const client = dialer.client = new MqttClient(dialer);
  await client.connect({
    ...options,
    username: dialer.username,
    password: dialer.password,
    reconnect: options.reconnect ?? true,
  });
  return client;
}

/**
 * How `connect`'s client dials each URL, with the credentials in force. An object, not a
 * closure: it lives as long as the client, and a closure over `connect`'s scope would keep more.
 */
class UrlDialer implements BrokerDialer {
  // What connect was given: one URL is kept as it is, not in an array of its own.
  readonly #urls: string | URL | readonly (string | URL)[];
  client: MqttClient | undefined;
  username: string | undefined;
  password: string | Uint8Array | undefined;
  readonly #options: ConnectOptions;
  // URLs that beforeConnect replaced, by the URL they replaced: in force for later attempts.
  #replaced: Map<string, URL> | undefined;

  constructor(
    urls: string | URL | readonly (string | URL)[],
    options: ConnectOptions,
    username: string | undefined,
    password: string | Uint8Array | undefined,
  ) {
    this.#urls = urls;
    this.#options = options;
    this.username = username;
    this.password = password;
  }

  /** The brokers; read once, by the client's configuration. */
  get urls(): readonly (string | URL)[] {
    const urls = this.#urls;
    return Array.isArray(urls) ? urls : [urls as string | URL];
  }

  async dial(listed: URL, signal: AbortSignal, attempt: number): Promise<Transport> {
    const options = this.#options;
    let target = this.#replaced?.get(listed.href) ?? listed;
    let changed = false;
    if (target.username !== "" || target.password !== "") {
      // Each URL's own credentials, unless the options give them.
      this.username = options.username ?? usernameOf(target) ?? this.username;
      this.password = options.password ?? passwordOf(target) ?? this.password;
      changed = true;
    }
    const { beforeConnect } = options;
    if (beforeConnect !== undefined) {
      const change = await beforeConnect({ attempt, url: target, signal });
      signal.throwIfAborted();
      if (change) {
        if (change.url !== undefined) {
          target = new URL(change.url);
          (this.#replaced ??= new Map()).set(listed.href, target);
          this.username = options.username ?? usernameOf(target) ?? this.username;
          this.password = options.password ?? passwordOf(target) ?? this.password;
        }
        if (change.username !== undefined) this.username = change.username;
        if (change.password !== undefined) this.password = change.password;
        changed = true;
      }
    }
    if (changed) this.client!.setCredentials(this.username, this.password);
    return await openTransport(target, { ...options, signal });
  }
}

function usernameOf(url: URL): string | undefined {
  return url.username ? decodeURIComponent(url.username) : undefined;
}

function passwordOf(url: URL): string | undefined {
  return url.password ? decodeURIComponent(url.password) : undefined;
}
