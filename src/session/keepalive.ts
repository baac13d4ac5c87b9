/**
 * The keepalive clock of a session: when a PINGREQ is due, and when a missing PINGRESP means the
 * connection is dead, with the time passed in. It changes the state it shares with the rest of
 * the session and nothing else (see `shared_state.ts`).
 *
 * @module
 */

import { TimeoutError } from "../errors.ts";
import type { SharedState } from "./shared_state.ts";

/** The keepalive clock. */
export class Keepalive<T> {
  #shared: SharedState<T>;
  #pingTimeout: number | undefined;
  #lastSent = 0;
  // When the wait for PINGRESP began: when PINGREQ was sent, or when reading last resumed.
  #pingSentAt = -1;
  #readerPaused = false;

  /**
   * Creates the clock.
   *
   * @param pingTimeout How long to wait for PINGRESP, in milliseconds; default the period.
   */
  constructor(shared: SharedState<T>, pingTimeout: number | undefined) {
    this.#shared = shared;
    this.#pingTimeout = pingTimeout;
  }

  /** Starts over, for a new connection, at `now`. */
  reset(now: number): void {
    this.#pingSentAt = -1;
    this.#readerPaused = false;
    this.#lastSent = now;
  }

  /** Records that packets went out at `now`. */
  sent(now: number): void {
    this.#lastSent = now;
  }

  /** Records a PINGRESP. */
  pingresp(): void {
    this.#pingSentAt = -1;
  }

  /** Forgets the connection. */
  disconnected(): void {
    this.#pingSentAt = -1;
    this.#readerPaused = false;
  }

  /** The reader stopped: a missing PINGRESP proves nothing until it resumes. */
  readerPaused(): void {
    this.#readerPaused = true;
  }

  /** The reader resumed at `now`: the wait for an outstanding PINGRESP counts from then. */
  readerResumed(now: number): void {
    if (!this.#readerPaused) return;
    this.#readerPaused = false;
    if (this.#pingSentAt >= 0) this.#pingSentAt = now;
  }

  /**
   * Advances the clock to `now` for a keepalive of `keepalive` seconds: puts PINGREQ in the
   * outbox when it is due.
   *
   * @returns The time at which to call `tick` next, or `Infinity` when keepalive is off.
   * @throws {TimeoutError} When a PINGREQ has had no answer within the ping timeout.
   */
  tick(now: number, keepalive: number): number {
    const shared = this.#shared;
    if (!shared.connected || keepalive === 0) return Infinity;
    const period = keepalive * 1000;
    const pingTimeout = this.#pingTimeout ?? period;
    if (this.#readerPaused) {
      // The answer to a PINGREQ may be unread, so its absence is no verdict. But the server
      // must still hear from us once per period [MQTT-3.1.2-23] (3.1.1; [MQTT-3.1.2-20] in 5.0)
      // or it closes the connection [MQTT-3.1.2-24]: a PINGREQ then, even with one unanswered.
      if (now - this.#lastSent >= period) {
        const outbox = shared.outbox;
        // One PINGREQ waiting to be written is enough, when a write does not finish.
        if (outbox.length === 0 || outbox[outbox.length - 1].type !== "pingreq") {
          shared.send({ type: "pingreq" });
        }
        if (this.#pingSentAt < 0) this.#pingSentAt = now;
        return now + period;
      }
      return this.#lastSent + period;
    }
    if (this.#pingSentAt >= 0) {
      // A PINGREQ is out: its answer, or its absence, is what matters now.
      const deadline = this.#pingSentAt + pingTimeout;
      if (now >= deadline) {
        throw new TimeoutError(
          `the broker did not answer PINGREQ within ${pingTimeout} ms; the connection is dead`,
        );
      }
      return deadline;
    }
    if (now - this.#lastSent >= period) {
      // Nothing went out for a whole period: also when packets wait behind a write that does
      // not finish, which is exactly a connection that has died without saying so.
      shared.send({ type: "pingreq" });
      this.#pingSentAt = now;
      return now + pingTimeout;
    }
    return this.#lastSent + period;
  }
}
