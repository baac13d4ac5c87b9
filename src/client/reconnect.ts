/**
 * Getting a connection (again): opening a transport within a deadline, deciding whether a
 * failure is worth another attempt, and how long to wait before it.
 *
 * @module
 */

import { abortable, type Clock, closeQuietly, MAX_TIMER_MS } from "../_async.ts";
import {
  AuthenticationError,
  BrokerDisconnect,
  BrokersFailedError,
  ConnectionRefusedError,
  type MqttError,
  ProtocolError,
  RedirectError,
  StoreError,
  TimeoutError,
} from "../errors.ts";
import { ConnackReturnCode, ReasonCode } from "../packet/constants.ts";
import type { ProtocolVersion } from "../packet/types.ts";
import type { Transport } from "../transport/types.ts";
import type { ReconnectOptions } from "./types.ts";
import { type Deadline, Deadlines } from "./deadlines.ts";

/**
 * Opens a new connection to the broker: how a client reconnects. `attempt` counts from 0 for
 * the first connection.
 */
export type Dialer = (signal: AbortSignal, attempt: number) => Promise<Transport>;

// CONNACK codes that retrying cannot fix: a refused protocol version, client identifier or
// credentials, and no authorization; in MQTT 5 also a ban, a bad authentication method, and
// a CONNECT the server will not accept as it is.
const FINAL_REFUSALS_3: ReadonlySet<number> = new Set([
  ConnackReturnCode.UnacceptableProtocolVersion,
  ConnackReturnCode.IdentifierRejected,
  ConnackReturnCode.BadUserNameOrPassword,
  ConnackReturnCode.NotAuthorized,
]);
const FINAL_REFUSALS_5: ReadonlySet<number> = new Set([
  ReasonCode.MalformedPacket,
  ReasonCode.ProtocolError,
  ReasonCode.UnsupportedProtocolVersion,
  ReasonCode.ClientIdentifierNotValid,
  ReasonCode.BadUserNameOrPassword,
  ReasonCode.NotAuthorized,
  ReasonCode.Banned,
  ReasonCode.BadAuthenticationMethod,
  ReasonCode.TopicNameInvalid,
  ReasonCode.PacketTooLarge,
  ReasonCode.PayloadFormatInvalid,
  ReasonCode.RetainNotSupported,
  ReasonCode.QoSNotSupported,
]);

/**
 * The default of `ReconnectOptions.shouldRetry`: a refusal that retrying cannot fix, a session
 * taken over by another client, an enhanced authentication the client gave up
 * (`AuthenticationError`), a protocol error and a redirect loop end reconnecting; a round over
 * several brokers is retried when one of its failures would be; anything else is retried.
 *
 * @example
 * ```ts
 * import { ConnectionRefusedError, isRetryable } from "../../mod.ts";
 *
 * console.log(isRetryable(new ConnectionRefusedError(3, 4), 4)); // true: server unavailable
 * console.log(isRetryable(new ConnectionRefusedError(5, 4), 4)); // false: not authorized
 * ```
 */
export function isRetryable(error: MqttError, protocolVersion: ProtocolVersion): boolean {
  if (error instanceof BrokersFailedError) {
    return error.errors.some((each) => isRetryable(each, protocolVersion));
  }
  if (error instanceof RedirectError) return false;
  if (error instanceof ConnectionRefusedError) {
    return !(protocolVersion === 5 ? FINAL_REFUSALS_5 : FINAL_REFUSALS_3).has(error.reasonCode);
  }
  // The client itself gave the authentication up (the broker did not prove itself, or the
  // handler failed): the same exchange would fail the same way.
  if (error instanceof AuthenticationError) return false;
  // Another client took the session over: fighting it back would loop for ever.
  if (error instanceof BrokerDisconnect) {
    return error.packet.reasonCode !== ReasonCode.SessionTakenOver;
  }
  return !(error instanceof ProtocolError);
}

/**
 * How long to wait before reconnection attempt `attempt` (from 1): exponential backoff with
 * full jitter, anywhere between the minimum and a ceiling that doubles with each attempt, so
 * that many clients cut off together do not return together.
 */
export function backoffDelay(attempt: number, options: ReconnectOptions): number {
  // No longer than a timer holds: it would fire at once for more.
  const min = Math.min(options.minDelay ?? 1000, MAX_TIMER_MS);
  const max = Math.min(Math.max(min, options.maxDelay ?? 30_000), MAX_TIMER_MS);
  const ceiling = Math.min(max, min * 2 ** Math.min(attempt, 30));
  return Math.round(min + (options.random ?? Math.random)() * (ceiling - min));
}

/** What bounds one dial. */
export interface DialLimits {
  /** Ends the dial: `disconnect()` aborts it; the timeout and `signal` abort it too. */
  controller: AbortController;
  /** The longest the dial may take, in milliseconds; `Infinity` for no limit. */
  timeout: number;
  /** The user's signal, for the first attempt. */
  signal: AbortSignal | undefined;
  /** Time and timers. */
  clock: Clock;
}

/**
 * Opens a transport with the dialer. The attempt ends with the timeout, with `signal` and with
 * the controller — also when the dialer does not listen to its signal, as a `beforeConnect` or
 * a TLS or WebSocket handshake that never ends may not: the attempt then fails, and a transport
 * that arrives later is closed.
 */
export async function dialWithin(
  dial: Dialer,
  attempt: number,
  limits: DialLimits,
): Promise<Transport> {
  const { controller, signal, clock, timeout } = limits;
  const onAbort = () => controller.abort(signal!.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  // In the clock's one timer, not a runtime timer per attempt (see `deadlines.ts`).
  const deadline: Deadline | undefined = timeout === Infinity ? undefined : {
    at: Infinity,
    slot: -1,
    due: () => {
      controller.abort(new TimeoutError(`could not connect to the broker within ${timeout} ms`));
    },
  };
  if (deadline !== undefined) Deadlines.of(clock).schedule(deadline, clock.now() + timeout);
  try {
    signal?.throwIfAborted();
    return await abortable(dial(controller.signal, attempt), controller.signal, closeQuietly);
  } finally {
    if (deadline !== undefined) Deadlines.of(clock).cancel(deadline);
    signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * The dialing side of one client: each attempt within `connectTimeout`, the count of attempts
 * since the last accepted connection, the backoff timer between them, and whether a failure is
 * worth another one.
 */
export class Redialer {
  readonly #host: RedialHost | undefined;
  readonly #settings: RedialSettings;
  #attempt = 0;
  #backoffTimer: unknown;
  #dialing: AbortController | undefined;
  // When the dial of the current attempt began: connectTimeout counts from there.
  #startedAt: number | undefined;

  /** Dials through `host` (none: the client has one transport and cannot reconnect). */
  constructor(host: RedialHost | undefined, settings: RedialSettings) {
    this.#host = host;
    this.#settings = settings;
  }

  /** Opens a transport for `attempt` (0 for the first connection) within `connectTimeout`. */
  async dial(attempt: number): Promise<Transport> {
    const settings = this.#settings;
    const controller = this.#dialing = new AbortController();
    this.#startedAt = settings.clock.now();
    try {
      const host = this.#host!;
      return await dialWithin((signal, n) => host.openTransport(signal, n), attempt, {
        controller,
        timeout: settings.connectTimeout,
        signal: attempt === 0 ? settings.signal : undefined,
        clock: settings.clock,
      });
    } finally {
      if (this.#dialing === controller) this.#dialing = undefined;
    }
  }

  /** When the dial of the current attempt began, once; later calls return `undefined`. */
  takeStartedAt(): number | undefined {
    const startedAt = this.#startedAt;
    this.#startedAt = undefined;
    return startedAt;
  }

  /** The attempt under way or scheduled: 0 before the first loss. */
  get attempt(): number {
    return this.#attempt;
  }

  /** Counts an attempt that goes at once, with no backoff (a Server Reference followed). */
  advance(): void {
    this.#attempt++;
  }

  /** A connection was accepted: the next loss starts counting attempts from 1 again. */
  connected(): void {
    this.#attempt = 0;
  }

  /** Whether to try again after `error`, given the options and the attempts made. */
  shouldRetry(error: MqttError, everConnected: boolean): boolean {
    const reconnect = this.#settings.reconnect;
    if (reconnect === undefined || !everConnected || error instanceof StoreError) return false;
    if (this.#attempt >= (reconnect.attempts ?? Infinity)) return false;
    return reconnect.shouldRetry?.(error) ?? isRetryable(error, this.#settings.protocolVersion);
  }

  /** Counts the next attempt and calls `due` with it after the backoff delay. */
  schedule(due: (attempt: number) => void): { attempt: number; delay: number } {
    const attempt = ++this.#attempt;
    const delay = backoffDelay(attempt, this.#settings.reconnect!);
    this.#backoffTimer = this.#settings.clock.setTimeout(() => {
      this.#backoffTimer = undefined;
      due(attempt);
    }, delay);
    return { attempt, delay };
  }

  /** Whether a dial is under way (one that `stop` with a reason would abort). */
  get dialing(): boolean {
    return this.#dialing !== undefined;
  }

  /** Stops a backoff wait; with `reason`, also aborts a dial under way. */
  stop(reason?: unknown): void {
    if (this.#backoffTimer !== undefined) {
      this.#settings.clock.clearTimeout(this.#backoffTimer);
      this.#backoffTimer = undefined;
    }
    if (reason === undefined) return;
    this.#dialing?.abort(reason);
    this.#dialing = undefined;
  }
}

/** What a {@linkcode Redialer} dials through: the client's dialer, or its brokers. */
export interface RedialHost {
  /** Opens a transport for `attempt`; gives up when `signal` aborts. */
  openTransport(signal: AbortSignal, attempt: number): Promise<Transport>;
}

/** What a {@linkcode Redialer} needs of the client's settings. */
export interface RedialSettings {
  /** The protocol version, for the default retry policy. */
  protocolVersion: ProtocolVersion;
  /** How long an attempt may take; `Infinity` for no limit. */
  connectTimeout: number;
  /** Aborts the first attempt. */
  signal: AbortSignal | undefined;
  /** How to reconnect; absent: never. */
  reconnect: ReconnectOptions | undefined;
  /** Time and timers. */
  clock: Clock;
}
