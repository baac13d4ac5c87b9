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
 * being tried, and the redirects followed since the last accepted connection. The URLs are kept
 * as their `href` strings, parsed again only when one is dialed: a client that connects by a
 * string holds that string, not a `URL` object of its own.
 */
export class BrokerList {
  #urls: readonly string[];
  readonly #order: UrlOrder;
  readonly #random: () => number;
  // Made on first use, and dropped once connected: a connected client holds no round.
  #round: string[] | undefined;
  #current: string | undefined;
  // The URLs redirected to since the last accepted connection, in order.
  #redirects: string[] | undefined;

  /**
   * A list over `urls`, ordered or shuffled in each round.
   *
   * @throws {TypeError} When `urls` is empty or one of them is not a URL.
   */
  constructor(urls: readonly (string | URL)[], order: UrlOrder, random: () => number) {
    if (urls.length === 0) throw new TypeError("connect needs at least one broker URL");
    this.#urls = urls.map(hrefOf);
    this.#order = order;
    this.#random = random;
  }

  /** The URL being tried (or last tried). */
  get current(): URL {
    return new URL(this.#current ?? this.#urls[0]);
  }

  /** Whether the current round has a URL left. */
  get hasNext(): boolean {
    return this.#round !== undefined && this.#round.length > 0;
  }

  /** The redirects followed since the last accepted connection. */
  get redirects(): readonly URL[] {
    return (this.#redirects ?? []).map((url) => new URL(url));
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
    return new URL(this.#current = this.#round!.shift()!);
  }

  /** `beforeConnect` gave another URL for the current one: later rounds use it too. */
  replaceCurrent(url: URL): void {
    const current = this.#current;
    this.#urls = this.#urls.map((each) => each === current ? url.href : each);
    this.#current = url.href;
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
    const hrefs = urls.map(hrefOf);
    redirects.push(hrefs[0]);
    if (permanent) {
      this.#urls = hrefs;
      this.#round = [...hrefs];
    } else {
      this.#round = [...hrefs, ...this.#round ?? []];
    }
    return true;
  }

  /** A connection was accepted: the redirect count starts again. */
  connected(): void {
    this.#redirects = undefined;
    this.#round = undefined;
  }
}

/**
 * The `href` of `url`: the string itself when it is one already (so that a thousand clients
 * given one string share it), a new one when parsing normalizes it.
 *
 * @throws {TypeError} When `url` is not a URL.
 */
function hrefOf(url: string | URL): string {
  const href = new URL(url).href;
  return href === url ? url : href;
}
