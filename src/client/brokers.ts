/**
 * Several brokers: the list of URLs a client dials, one round (a pass over them, in order or
 * shuffled) per connection attempt, and the Server References it follows. No I/O: the rounds
 * (`rounds.ts`) ask it which URL comes next.
 *
 * @module
 */

import type { Transport } from "../transport/types.ts";

/**
 * Several brokers to dial, by URL: what `connect` makes of a list of URLs, for a client made by
 * hand (`new MqttClient(brokers)`). Each connection attempt is a round over the URLs; a Server
 * Reference (MQTT 5) is followed with the same `dial`.
 *
 * @example
 * ```ts ignore
 * import { MqttClient, openTransport } from "jsr:@kite/mqtt";
 *
 * const client = new MqttClient({
 *   urls: ["mqtt://a.example", "mqtt://b.example"],
 *   dial: (url, signal) => openTransport(url, { signal }),
 * });
 * await client.connect({ reconnect: true });
 * ```
 */
export interface BrokerDialer {
  /** The brokers, at least one: `mqtt:`, `mqtts:`, `ws:`, `wss:` (`tcp:`, `tls:`) URLs. */
  urls: readonly (string | URL)[];
  /** Opens a connection to one of them; gives up when `signal` aborts. */
  dial(url: URL, signal: AbortSignal, attempt: number): Promise<Transport>;
}

/** The most Server References followed in a row without a connection accepted. */
export const MAX_REDIRECTS = 5;

/** How a round orders the URLs. */
export type UrlOrder = "ordered" | "shuffle";

/**
 * The URLs and where the client is in them: the current round's URLs still to try, the one
 * being tried, and the redirects followed since the last accepted connection.
 */
export class BrokerList {
  #urls: URL[];
  readonly #order: UrlOrder;
  readonly #random: () => number;
  // Both made on first use, and dropped once connected: a connected client holds neither.
  #round: URL[] | undefined;
  #current: URL | undefined;
  // The URLs redirected to since the last accepted connection, in order.
  #redirects: URL[] | undefined;

  /**
   * A list over `urls`, ordered or shuffled in each round.
   *
   * @throws {TypeError} When `urls` is empty.
   */
  constructor(urls: readonly (string | URL)[], order: UrlOrder, random: () => number) {
    if (urls.length === 0) throw new TypeError("connect needs at least one broker URL");
    this.#urls = urls.map((url) => new URL(url));
    this.#order = order;
    this.#random = random;
  }

  /** The URL being tried (or last tried). */
  get current(): URL {
    return this.#current ?? this.#urls[0];
  }

  /** The URLs of later rounds, in the order given. */
  get urls(): readonly URL[] {
    return this.#urls;
  }

  /** Whether the current round has a URL left. */
  get hasNext(): boolean {
    return this.#round !== undefined && this.#round.length > 0;
  }

  /** The redirects followed since the last accepted connection. */
  get redirects(): readonly URL[] {
    return this.#redirects ?? [];
  }

  /** Starts a round: every URL once, in order or shuffled (Fisher-Yates). */
  startRound(): void {
    const round = [...this.#urls];
    if (this.#order === "shuffle") {
      for (let i = round.length - 1; i > 0; i--) {
        const j = Math.floor(this.#random() * (i + 1));
        [round[i], round[j]] = [round[j], round[i]];
      }
    }
    this.#round = round;
  }

  /** Moves to the next URL of the round (a new round when none is left) and returns it. */
  next(): URL {
    if (!this.hasNext) this.startRound();
    return this.#current = this.#round!.shift()!;
  }

  /** `beforeConnect` gave another URL for the current one: later rounds use it too. */
  replaceCurrent(url: URL): void {
    const current = this.#current;
    this.#urls = this.#urls.map((each) => each === current ? url : each);
    this.#current = url;
  }

  /**
   * Follows a Server Reference: its servers are tried next, then what was left of the round. A
   * permanent one (0x9D Server moved) also replaces the list for later rounds.
   *
   * @returns `false`, changing nothing, when {@linkcode MAX_REDIRECTS} were followed already.
   */
  redirect(urls: URL[], permanent: boolean): boolean {
    const redirects = this.#redirects ??= [];
    if (redirects.length >= MAX_REDIRECTS) return false;
    redirects.push(urls[0]);
    if (permanent) {
      this.#urls = urls;
      this.#round = [...urls];
    } else {
      this.#round = [...urls, ...this.#round ?? []];
    }
    return true;
  }

  /** A connection was accepted: the redirect count starts again. */
  connected(): void {
    this.#redirects = undefined;
    this.#round = undefined;
  }
}

/** A URL for messages: without user name and password. */
export function displayUrl(url: URL): string {
  if (url.username === "" && url.password === "") return url.href;
  const copy = new URL(url.href);
  copy.username = "";
  copy.password = "";
  return copy.href;
}
