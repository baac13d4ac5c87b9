/**
 * The error classes Kite throws and rejects with. Every one extends {@linkcode MqttError}, so a
 * single `instanceof MqttError` check tells Kite's errors from everything else.
 *
 * {@linkcode MqttError} and {@linkcode ProtocolError} belong to the codec (`./packet/errors.ts`),
 * which stands on its own; they are re-exported here so that one import serves the rest of Kite.
 *
 * @module
 */

import { connackReasonName } from "./packet/constants.ts";
import { MqttError } from "./packet/errors.ts";
import type { DisconnectPacket } from "./packet/types.ts";

export { MqttError, ProtocolError } from "./packet/errors.ts";

/**
 * The broker answered CONNECT with a CONNACK that refuses the connection.
 *
 * @example
 * ```ts
 * import { ConnectionRefusedError } from "./errors.ts";
 *
 * const error = new ConnectionRefusedError(0x86, 5);
 * console.log(error.reasonCode, error.reason); // 134 "Bad User Name or Password"
 * ```
 */
export class ConnectionRefusedError extends MqttError {
  /** The CONNACK return code (MQTT 3.x) or reason code (MQTT 5). */
  readonly reasonCode: number;
  /** The name of the code, as the specification gives it. */
  readonly reason: string;

  /**
   * Creates the error for a refusing CONNACK.
   *
   * @param reasonCode The return code or reason code the broker sent.
   * @param protocolVersion The protocol version the code belongs to.
   * @param reasonString The broker's own explanation (MQTT 5 Reason String), if it sent one.
   */
  constructor(reasonCode: number, protocolVersion: 3 | 4 | 5, reasonString?: string) {
    const reason = connackReasonName(reasonCode, protocolVersion);
    super(
      `the broker refused the connection: ${reason} (0x${
        reasonCode.toString(16).padStart(2, "0")
      })${reasonString ? `: ${reasonString}` : ""}`,
    );
    this.reasonCode = reasonCode;
    this.reason = reason;
  }
}

/**
 * MQTT 5 enhanced authentication failed where no refusing CONNACK says so: a re-authentication
 * the broker refused (its DISCONNECT), or an exchange the client gave up (the handler threw, the
 * server's final data did not prove it, as with a wrong SCRAM server signature). A CONNACK that
 * refuses rejects with {@linkcode ConnectionRefusedError} instead, with its code.
 *
 * @example
 * ```ts
 * import { AuthenticationError } from "./errors.ts";
 *
 * const error = new AuthenticationError("the server signature does not match", 0x87);
 * console.log(error.reasonCode); // 135
 * ```
 */
export class AuthenticationError extends MqttError {
  /**
   * The MQTT 5 reason code of the failure: the broker's when it refused (from its DISCONNECT),
   * else the one the exchange chose (default 0x87, Not authorized).
   */
  readonly reasonCode: number;

  /**
   * Creates the error.
   *
   * @param message What failed.
   * @param reasonCode The reason code; default 0x87 (Not authorized).
   * @param options The cause, if any.
   */
  constructor(message: string, reasonCode = 0x87, options?: ErrorOptions) {
    super(message, options);
    this.reasonCode = reasonCode;
  }
}

/**
 * The broker refused one or more of the filters of a SUBSCRIBE.
 *
 * @example
 * ```ts
 * import { SubscribeError } from "./errors.ts";
 *
 * const error = new SubscribeError(["a/#"], [0x87]);
 * console.log(error.reasonCodes); // [135]
 * ```
 */
export class SubscribeError extends MqttError {
  /** The filters that were asked for, in order. */
  readonly topicFilters: string[];
  /** The SUBACK return code or reason code of each filter, in the same order. */
  readonly reasonCodes: number[];

  /**
   * Creates the error for a SUBACK that refused at least one filter.
   *
   * @param topicFilters The filters of the SUBSCRIBE.
   * @param reasonCodes The codes of the SUBACK.
   * @param reasonString The broker's own explanation (MQTT 5 Reason String), if it sent one.
   */
  constructor(topicFilters: string[], reasonCodes: number[], reasonString?: string) {
    const refused = topicFilters
      .map((filter, i) => [filter, reasonCodes[i]] as const)
      .filter(([, code]) => code >= 0x80)
      .map(([filter, code]) => `"${filter}" (0x${code.toString(16)})`);
    super(
      `the broker refused the subscription to ${refused.join(", ")}${
        reasonString ? `: ${reasonString}` : ""
      }`,
    );
    this.topicFilters = topicFilters;
    this.reasonCodes = reasonCodes;
  }
}

/**
 * The broker did not answer in time: no CONNACK within the connect timeout, or no PINGRESP after
 * a PINGREQ within the keepalive period.
 *
 * @example
 * ```ts
 * import { TimeoutError } from "./errors.ts";
 *
 * console.log(new TimeoutError("no CONNACK within 30000 ms").message);
 * ```
 */
export class TimeoutError extends MqttError {}

/**
 * The connection closed, or was never open, while an operation needed it. Operations in flight
 * when the connection is lost reject with this error.
 *
 * @example
 * ```ts
 * import { ConnectionClosedError } from "./errors.ts";
 *
 * console.log(new ConnectionClosedError("the connection closed before PUBACK arrived").message);
 * ```
 */
export class ConnectionClosedError extends MqttError {}

/**
 * An operation is not allowed in the state the client is in, such as publishing on a client that
 * was never connected.
 *
 * @example
 * ```ts
 * import { StateError } from "./errors.ts";
 *
 * console.log(new StateError("publish", "idle").message);
 * ```
 */
export class StateError extends MqttError {
  /**
   * Creates the error.
   *
   * @param operation The operation that was attempted.
   * @param state The state the client was in.
   */
  constructor(operation: string, state: string) {
    super(`cannot ${operation} while the client is ${state}`);
  }
}

/**
 * An operation was rejected before anything was sent because it cannot succeed: a packet larger
 * than the broker accepts, a QoS above the broker's maximum, a full offline queue.
 *
 * @example
 * ```ts
 * import { LimitError } from "./errors.ts";
 *
 * console.log(new LimitError("the PUBLISH is 2000 bytes; the broker accepts at most 1024").message);
 * ```
 */
export class LimitError extends MqttError {}
/**
 * The broker sent DISCONNECT (MQTT 5): the connection ends, with the broker's reason.
 *
 * @example
 * ```ts
 * import { BrokerDisconnect } from "./errors.ts";
 *
 * const error = new BrokerDisconnect({ type: "disconnect", reasonCode: 0x8b });
 * console.log(error.message); // "the broker disconnected (reason 0x8b)"
 * ```
 */
export class BrokerDisconnect extends ConnectionClosedError {
  /** The DISCONNECT packet. */
  readonly packet: DisconnectPacket;

  /** Creates the error from the broker's DISCONNECT. */
  constructor(packet: DisconnectPacket) {
    const code = packet.reasonCode ?? 0;
    const reason = packet.properties?.reasonString;
    super(
      `the broker disconnected (reason 0x${code.toString(16).padStart(2, "0")}${
        reason ? `: ${reason}` : ""
      })`,
    );
    this.packet = packet;
  }
}

/**
 * Every broker of a list failed on the first connection: each URL was tried once (after any
 * Server Reference followed), and each failure is kept, in the order tried, like an
 * `AggregateError`.
 *
 * @example
 * ```ts
 * import { BrokersFailedError, ConnectionClosedError, TimeoutError } from "./errors.ts";
 *
 * const error = new BrokersFailedError([
 *   { url: "mqtt://a.example", error: new ConnectionClosedError("connection refused") },
 *   { url: "mqtt://b.example", error: new TimeoutError("no CONNACK within 30000 ms") },
 * ]);
 * console.log(error.errors.length); // 2
 * ```
 */
export class BrokersFailedError extends MqttError {
  /** Each URL tried and why it failed, in the order tried. */
  readonly failures: { url: string; error: MqttError }[];
  /** The errors alone, in the same order, as `AggregateError` has them. */
  readonly errors: MqttError[];

  /** Creates the error from the failure of each URL. */
  constructor(failures: { url: string; error: MqttError }[]) {
    super(
      `could not connect to any of ${failures.length} brokers: ` +
        failures.map(({ url, error }) => `${url} (${error.message})`).join("; "),
    );
    this.failures = failures;
    this.errors = failures.map(({ error }) => error);
  }
}

/**
 * Brokers kept redirecting the client (MQTT 5 Server Reference, reason 0x9C or 0x9D) past the
 * bound without accepting it: two brokers that point at each other, say.
 *
 * @example
 * ```ts
 * import { RedirectError } from "./errors.ts";
 *
 * const error = new RedirectError(["mqtt://b.example", "mqtt://a.example"]);
 * console.log(error.redirects); // ["mqtt://b.example", "mqtt://a.example"]
 * ```
 */
export class RedirectError extends MqttError {
  /** The URLs redirected to, in order. */
  readonly redirects: string[];

  /** Creates the error from the redirects followed. */
  constructor(redirects: string[]) {
    super(
      `the brokers redirected the client ${redirects.length} times in a row without accepting ` +
        `it (${redirects.join(" -> ")}) and one more time after that; check their Server ` +
        "Reference settings, or turn following off with followServerReference: false",
    );
    this.redirects = redirects;
  }
}

/**
 * The store failed to keep a change: the client stops, since it can no longer promise delivery.
 *
 * @example
 * ```ts
 * import { StoreError } from "./errors.ts";
 *
 * console.log(new StoreError(new Error("disk full")).message); // "the store failed: disk full"
 * ```
 */
export class StoreError extends MqttError {
  /** Creates the error around what the store threw. */
  constructor(cause: unknown) {
    super(
      `the store failed: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
  }
}

/**
 * Turns whatever ended a connection or an attempt into an {@linkcode MqttError}: an
 * `MqttError` stays as it is, an abort becomes "aborted", anything else "the connection
 * failed", with the original as the cause.
 *
 * @example
 * ```ts
 * import { toMqttError } from "./errors.ts";
 *
 * console.log(toMqttError(new Error("ECONNRESET")).message); // "the connection failed: ECONNRESET"
 * ```
 */
export function toMqttError(reason: unknown): MqttError {
  if (reason instanceof MqttError) return reason;
  if (reason instanceof DOMException && reason.name === "AbortError") {
    return new ConnectionClosedError("the connection attempt was aborted", { cause: reason });
  }
  return new ConnectionClosedError(
    `the connection failed: ${reason instanceof Error ? reason.message : String(reason)}`,
    { cause: reason },
  );
}
