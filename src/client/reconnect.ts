/**
 * Getting a connection (again): opening a transport within a deadline, deciding whether a
 * failure is worth another attempt, and how long to wait before it.
 *
 * @module
 */

import { abortable, type Clock, closeQuietly } from "../_async.ts";
import {
  BrokerDisconnect,
  ConnectionRefusedError,
  type MqttError,
  ProtocolError,
  TimeoutError,
} from "../errors.ts";
import type { ProtocolVersion } from "../packet/types.ts";
import type { Transport } from "../transport/types.ts";
import type { ReconnectOptions } from "./types.ts";

/**
 * Opens a new connection to the broker: how a client reconnects. `attempt` counts from 0 for
 * the first connection.
 */
export type Dialer = (signal: AbortSignal, attempt: number) => Promise<Transport>;

// CONNACK codes that retrying cannot fix: bad protocol version, client id rejected, bad
// credentials, not authorized (3.x), and their MQTT 5 counterparts plus banned, bad
// authentication method and the "will not accept this" family.
const FINAL_REFUSALS_3 = new Set([1, 2, 4, 5]);
const FINAL_REFUSALS_5 = new Set([
  0x81,
  0x82,
  0x84,
  0x85,
  0x86,
  0x87,
  0x8a,
  0x8c,
  0x90,
  0x95,
  0x99,
  0x9a,
  0x9b,
]);

/**
 * The default of `ReconnectOptions.shouldRetry`: a refusal that retrying cannot fix, a session
 * taken over by another client and a protocol error end reconnecting; anything else is retried.
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
  if (error instanceof ConnectionRefusedError) {
    return !(protocolVersion === 5 ? FINAL_REFUSALS_5 : FINAL_REFUSALS_3).has(error.reasonCode);
  }
  // Another client took the session over: fighting it back would loop for ever.
  if (error instanceof BrokerDisconnect) return error.packet.reasonCode !== 0x8e;
  return !(error instanceof ProtocolError);
}

/**
 * How long to wait before reconnection attempt `attempt` (from 1): exponential backoff with
 * full jitter, anywhere between the minimum and a ceiling that doubles with each attempt, so
 * that many clients cut off together do not return together.
 */
export function backoffDelay(attempt: number, options: ReconnectOptions): number {
  const min = options.minDelay ?? 1000;
  const max = Math.max(min, options.maxDelay ?? 30_000);
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
  const timer = timeout === Infinity ? undefined : clock.setTimeout(() => {
    controller.abort(new TimeoutError(`could not connect to the broker within ${timeout} ms`));
  }, timeout);
  try {
    signal?.throwIfAborted();
    return await abortable(dial(controller.signal, attempt), controller.signal, closeQuietly);
  } finally {
    if (timer !== undefined) clock.clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
}
