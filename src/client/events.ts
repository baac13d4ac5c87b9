/**
 * The events a client dispatches, and what each carries: `connect`, `disconnect`, `reconnect`
 * and `error`, all `CustomEvent`s.
 *
 * @module
 */

import type { MqttError } from "../errors.ts";
import type { ConnackPacket, DisconnectPacket } from "../packet/types.ts";

/** The `detail` of the `connect` event. */
export interface ConnectEventDetail {
  /** The CONNACK that accepted the connection. */
  connack: ConnackPacket;
  /** Whether the broker resumed a session. */
  sessionPresent: boolean;
  /** Whether this is a reconnection. */
  reconnected: boolean;
}

/** The `detail` of the `disconnect` event. */
export interface DisconnectEventDetail {
  /** Why the connection ended; absent when `disconnect()` ended it. */
  error?: MqttError;
  /** The DISCONNECT the broker sent, if it sent one (MQTT 5). */
  packet?: DisconnectPacket;
  /** Whether the client will try to reconnect. */
  reconnecting: boolean;
}

/**
 * The `detail` of the `reconnect` event: an attempt is scheduled. With several broker URLs
 * there is one event per URL tried: the first of a round waits the backoff `delay`, the others
 * of the round, and a Server Reference followed, go at once (`delay` 0).
 */
export interface ReconnectEventDetail {
  /** The attempt, from 1; with several broker URLs, the round (a pass over them). */
  attempt: number;
  /** How long the client waits before it, in milliseconds. */
  delay: number;
  /** The URL it dials (without user name and password), for a client that dials URLs. */
  url?: string;
  /** What ended the previous connection or attempt. */
  error: MqttError;
}
