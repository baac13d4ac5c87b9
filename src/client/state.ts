/**
 * The client's state machine as data: the states a client goes through, and which operations
 * each state allows. `lifecycle.ts` makes the transitions; the client handle asks this table
 * before it does anything.
 *
 * @module
 */

/**
 * Where a client is in its life. `idle` until `connect`; `connecting` until the first CONNACK;
 * `connected`; `reconnecting` from an unexpected loss until the next CONNACK (waiting out the
 * backoff, dialing, or waiting for CONNACK); `disconnecting` while it closes; `closed` for good.
 */
export type ClientState =
  | "idle"
  | "connecting"
  | "connected"
  | "reconnecting"
  | "disconnecting"
  | "closed";

/** What can be asked of a client; each state allows some of them. */
export type Operation = "connect" | "publish" | "subscribe" | "unsubscribe" | "disconnect";

const WORK: Operation[] = ["publish", "subscribe", "unsubscribe", "disconnect"];

// The state machine, as a table: what each state allows. Anything else fails with a StateError.
// While connecting or reconnecting, work is queued and sent once CONNACK accepts.
const ALLOWED: Record<ClientState, ReadonlySet<Operation>> = {
  idle: new Set<Operation>(["connect", "disconnect"]),
  connecting: new Set<Operation>(WORK),
  connected: new Set<Operation>(WORK),
  reconnecting: new Set<Operation>(WORK),
  disconnecting: new Set<Operation>(["disconnect"]),
  closed: new Set<Operation>(["disconnect"]),
};

/**
 * Whether a client in `state` may do `operation`.
 *
 * @example
 * ```ts
 * import { allows } from "./state.ts";
 *
 * console.log(allows("idle", "publish")); // false
 * console.log(allows("reconnecting", "publish")); // true: queued until CONNACK
 * ```
 */
export function allows(state: ClientState, operation: Operation): boolean {
  return ALLOWED[state].has(operation);
}
