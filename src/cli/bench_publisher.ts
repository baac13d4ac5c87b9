/**
 * One publisher of `kite bench pub`: a message every `-I` ms (or flat out), up to `--limit`, each
 * payload stamped with the time it was sent.
 *
 * @module
 */

import type { MqttClient } from "../client/clients.ts";
import type { BenchSettings } from "./settings.ts";

/** A publisher with this many payload bytes waiting stops until the client has room again. */
const BACKLOG_BYTES = 1024 * 1024;
/** Messages a publisher sends in one go before it lets the connection have a turn. */
const MAX_BURST = 1000;
/** A publisher that fell further behind its schedule than this starts afresh from now. */
const MAX_LAG_MS = 1000;

/** The wall clock in milliseconds with sub-millisecond precision: what payloads carry. */
export function wallClock(): number {
  return performance.timeOrigin + performance.now();
}

/** What a publisher tells the run it belongs to. */
export interface PublisherRun {
  readonly settings: BenchSettings;
  /** Whether the run is ending (a failure then is not counted). */
  readonly stopping: boolean;
  /** Publishes issued by every publisher. */
  issued: number;
  /** A publish completed. */
  sent(): void;
  /** A publish failed. */
  sendFailed(error: unknown): void;
  /** An error to count. */
  countError(error: unknown): void;
  /** This publisher has nothing more to send. */
  publisherDone(): void;
}

/** One publisher: a message every `-I` ms (or flat out), up to `--limit`. */
export class BenchPublisher {
  readonly #run: PublisherRun;
  readonly #client: MqttClient;
  readonly #topic: string;
  readonly #options: { qos: 0 | 1 | 2; retain: boolean };
  readonly #interval: number;
  readonly #limit: number;
  readonly #size: number;
  readonly #stamp = new DataView(new ArrayBuffer(8));
  readonly #stampBytes = new Uint8Array(this.#stamp.buffer);
  #issued = 0;
  #settled = 0;
  #nextAt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  #done = false;

  constructor(run: PublisherRun, client: MqttClient, topic: string) {
    const { settings } = run;
    this.#run = run;
    this.#client = client;
    this.#topic = topic;
    this.#options = { qos: settings.qos, retain: settings.retain };
    this.#interval = settings.publishInterval;
    this.#limit = settings.limit ?? Infinity;
    this.#size = settings.size;
  }

  start(): void {
    this.#nextAt = performance.now();
    this.#tick();
  }

  /** Stops publishing; a stopped publisher counts as done. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#finish();
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#run.publisherDone();
  }

  /** Publishes what is due, then waits for the next one or for room in the client's queue. */
  readonly #tick = (): void => {
    this.#timer = undefined;
    const client = this.#client;
    const now = performance.now();
    // Fallen behind (a slow broker): start the schedule afresh instead of a burst to catch up.
    if (now - this.#nextAt > MAX_LAG_MS) this.#nextAt = now;
    let burst = 0;
    while (!this.#stopped && this.#issued < this.#limit && this.#nextAt <= now) {
      if (client.bufferedAmount >= BACKLOG_BYTES) {
        client.ready().then(this.#tick, this.#fail);
        return;
      }
      this.#publish();
      this.#nextAt += this.#interval;
      // Flat out (or far behind): give the connection a turn now and then.
      if (++burst === MAX_BURST) break;
    }
    if (this.#stopped || this.#issued >= this.#limit) return;
    this.#timer = setTimeout(this.#tick, Math.max(0, this.#nextAt - performance.now()));
  };

  #publish(): void {
    // A payload of its own each time: the client keeps the bytes it is given (no copy) until
    // they are written, or acknowledged at QoS 1 and 2, so a reused one would change under it.
    const payload = new Uint8Array(this.#size);
    if (payload.length >= 8) {
      this.#stamp.setFloat64(0, wallClock());
      payload.set(this.#stampBytes);
    }
    this.#issued++;
    this.#run.issued++;
    let published: Promise<void>;
    try {
      published = this.#client.publish(this.#topic, payload, this.#options);
    } catch (error) {
      this.#failed(error);
      return;
    }
    published.then(this.#sent, this.#failed);
  }

  readonly #sent = (): void => {
    this.#run.sent();
    this.#settle();
  };

  readonly #failed = (error: unknown): void => {
    this.#run.sendFailed(error);
    this.#settle();
  };

  readonly #fail = (error: unknown): void => {
    // The client closed while waiting for room: this publisher is done.
    if (!this.#run.stopping) this.#run.countError(error);
    this.stop();
  };

  #settle(): void {
    if (++this.#settled === this.#limit) this.#finish();
  }
}
