/**
 * Rounds over the brokers a client dials: which broker an attempt goes to, what a failed attempt
 * leads to (the next broker of the round, a Server Reference followed, or the round failed), and
 * the next round after the backoff. It decides and dials; reporting and closing stay with the
 * lifecycle that owns it.
 *
 * @module
 */

import {
  BrokerDisconnect,
  BrokersFailedError,
  ConnectionRefusedError,
  type MqttError,
  RedirectError,
} from "../errors.ts";
import { ReasonCode } from "../packet/constants.ts";
import type { ConnackPacket } from "../packet/types.ts";
import { displayUrl } from "../transport/address.ts";
import { BrokerList } from "./brokers.ts";
import type { ReconnectEventDetail } from "./events.ts";
import type { ClientSettings } from "./options.ts";
import type { Redialer } from "./reconnect.ts";
import { parseServerReference, referenceUrl } from "./server_reference.ts";

/** A Server Reference to follow: the URLs it names, and whether the move is for good (0x9D). */
export interface Redirect {
  /** The URLs to try next, in order. */
  urls: URL[];
  /** Whether the broker said Server moved (0x9D): the URLs replace the list for later rounds. */
  permanent: boolean;
}

/** What follows a failed attempt: a redirect or the next broker, dialed now, or the round's failure. */
export type AfterAttempt =
  | "redirect"
  | "next"
  | {
    /** The round's error: the attempt's own when it was the only one. */
    error: MqttError;
    /** Whether no new round may follow: an abort, a store that failed, a redirect loop. */
    final: boolean;
    /** Whether `error` is the attempt's own, the only one of the round. */
    single: boolean;
  };

/** What {@linkcode Rounds} asks of the lifecycle that owns it. */
export interface RoundsHost {
  /** Dials the broker the round is at, as attempt `attempt`. */
  dial(attempt: number): void;
  /** Tells the user: the `reconnect` event. */
  dispatchEvent(event: Event): boolean;
}

/** The settings rounds follow. */
export type RoundSettings = Pick<
  ClientSettings,
  "urlOrder" | "followServerReference" | "protocolVersion" | "reconnect"
>;

/**
 * The rounds of one client. Without URLs (a client over a dialer or a transport) every attempt is
 * a round of its own, and no Server Reference is followed.
 */
export class Rounds {
  readonly #brokers: BrokerList | undefined;
  readonly #followReferences: boolean;
  readonly #redialer: Redialer;
  readonly #host: RoundsHost;
  // How each attempt of the current round failed, for the error of a round that fails.
  // Made with the first failure: a connected client holds none.
  #failures: { url: string; error: MqttError }[] | undefined;

  /**
   * Rounds over `brokers` (none: the client does not dial URLs), counted by `redialer`. The
   * broker list is the client's: it outlives the rounds, which are made again after a
   * connection is lost (see {@linkcode brokerList}).
   */
  constructor(
    brokers: BrokerList | undefined,
    settings: RoundSettings,
    redialer: Redialer,
    host: RoundsHost,
  ) {
    this.#brokers = brokers;
    this.#followReferences = settings.followServerReference && settings.protocolVersion === 5;
    this.#redialer = redialer;
    this.#host = host;
  }

  /** The URL being tried (or last tried). */
  get current(): URL {
    return this.#brokers!.current;
  }

  /** The first connection: its first round starts, at its first broker. */
  start(): void {
    this.#brokers?.startRound();
    this.#brokers?.next();
    this.#host.dial(0);
  }

  /** A connection was accepted: the next round starts afresh. */
  connected(): void {
    this.#brokers?.connected();
    this.#failures = undefined;
  }

  /**
   * The Server Reference to follow after `error`: a v5 CONNACK (`connack`) or DISCONNECT with
   * 0x9C (Use another server) or 0x9D (Server moved) that names one, unless following is off or
   * the client does not dial URLs.
   */
  redirectOf(error: MqttError, connack: ConnackPacket | undefined): Redirect | undefined {
    const brokers = this.#brokers;
    if (brokers === undefined || !this.#followReferences) return undefined;
    let code: number | undefined;
    let reference: string | undefined;
    if (error instanceof ConnectionRefusedError) {
      code = error.reasonCode;
      reference = connack?.properties?.serverReference;
    } else if (error instanceof BrokerDisconnect) {
      code = error.packet.reasonCode;
      reference = error.packet.properties?.serverReference;
    }
    if (code !== ReasonCode.UseAnotherServer && code !== ReasonCode.ServerMoved) return undefined;
    if (reference === undefined) return undefined;
    const current = brokers.current;
    const urls = parseServerReference(reference).map((server) => referenceUrl(current, server));
    if (urls.length === 0) return undefined;
    return { urls, permanent: code === ReasonCode.ServerMoved };
  }

  /**
   * An attempt failed (the dial, or the connection before CONNACK accepted it) with `error`, and
   * `connack` if one refused it: a Server Reference is followed (`"redirect"`), or the round goes
   * on with its next broker (`"next"`); either is for {@linkcode Rounds.prototype.attemptNext}.
   * Otherwise the round is over, and failed as returned; `final` ends it for good.
   */
  attemptFailed(
    error: MqttError,
    connack: ConnackPacket | undefined,
    final: boolean,
  ): AfterAttempt {
    const brokers = this.#brokers;
    (this.#failures ??= []).push({ url: brokers ? displayUrl(brokers.current) : "", error });
    let ended: MqttError | undefined = final ? error : undefined;
    if (ended === undefined && brokers !== undefined) {
      const redirect = this.redirectOf(error, connack);
      if (redirect !== undefined) {
        if (brokers.redirect(redirect.urls, redirect.permanent)) return "redirect";
        ended = new RedirectError(brokers.redirects.map(displayUrl));
      } else if (brokers.hasNext) {
        return "next";
      }
    }
    const failures = this.#failures!;
    this.#failures = undefined;
    const single = ended === undefined && failures.length === 1;
    return {
      error: ended ?? (single ? error : new BrokersFailedError(failures)),
      final: ended !== undefined,
      single,
    };
  }

  /** Tries the next broker of the round at once; `reconnecting` tells the user first. */
  attemptNext(error: MqttError, reconnecting: boolean): void {
    const url = this.#brokers!.next();
    const attempt = this.#redialer.attempt;
    if (reconnecting) {
      this.#host.dispatchEvent(
        new CustomEvent<ReconnectEventDetail>("reconnect", {
          detail: { attempt, delay: 0, error, url: displayUrl(url) },
        }),
      );
    }
    this.#host.dial(attempt);
  }

  /**
   * The live connection was lost with `error` and the client reconnects: at once to the servers
   * of `redirect`, or else in a new round after the backoff.
   */
  reconnect(error: MqttError, redirect: Redirect | undefined): void {
    if (redirect === undefined) return this.schedule(error);
    this.#failures = undefined;
    this.#brokers!.startRound();
    this.#redialer.advance();
    if (this.#brokers!.redirect(redirect.urls, redirect.permanent)) this.attemptNext(error, true);
  }

  /** Starts a round of reconnection: its first broker after the backoff delay. */
  schedule(error: MqttError): void {
    this.#failures = undefined;
    const brokers = this.#brokers;
    brokers?.startRound();
    const url = brokers?.next();
    const { attempt, delay } = this.#redialer.schedule((due) => this.#host.dial(due));
    const detail: ReconnectEventDetail = { attempt, delay, error };
    if (url !== undefined) detail.url = displayUrl(url);
    this.#host.dispatchEvent(new CustomEvent<ReconnectEventDetail>("reconnect", { detail }));
  }
}

/**
 * The broker list of a client that dials `urls`, in the order of `settings`.
 *
 * @throws {TypeError} When `urls` is empty.
 */
export function brokerList(
  urls: readonly (string | URL)[],
  settings: Pick<RoundSettings, "urlOrder" | "reconnect">,
): BrokerList {
  return new BrokerList(urls, settings.urlOrder, settings.reconnect?.random ?? Math.random);
}
