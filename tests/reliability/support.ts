/**
 * Shared pieces of the reliability suite: bounded waits on events and promises, payloads that
 * name their message, a tally of arrivals, and how to run a child script on this runtime.
 *
 * @module
 */

import process from "node:process";
import type { MqttClient } from "../../src/client/clients.ts";
import { within } from "../helpers/wait.ts";

export { within };

/** A seed: `KITE_SEED` when given (to replay a failure), random otherwise. */
export function seedFor(name: string): number {
  const given = process.env.KITE_SEED;
  const seed = given !== undefined ? Number(given) >>> 0 : Math.floor(Math.random() * 2 ** 32);
  console.log(
    `[reliability] ${name}: seed ${seed} (replay with KITE_SEED=${seed})`,
  );
  return seed;
}

/** The next `type` event on `target` that `accept` accepts, within `ms`. */
export function nextEvent<T = unknown>(
  target: EventTarget,
  type: string,
  ms: number,
  accept: (detail: T) => boolean = () => true,
): Promise<T> {
  let listener: ((event: Event) => void) | undefined;
  const event = new Promise<T>((resolve) => {
    listener = (event: Event) => {
      const detail = (event as CustomEvent<T>).detail;
      if (accept(detail)) resolve(detail);
    };
    target.addEventListener(type, listener);
  });
  return within(event, ms, `a ${type} event`).finally(() => {
    target.removeEventListener(type, listener!);
  });
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The payload of message `index`: its decimal number. */
export function payloadOf(index: number): Uint8Array {
  return encoder.encode(String(index));
}

/** The index a payload made by {@linkcode payloadOf} names. */
export function indexOf(payload: Uint8Array): number {
  return Number(decoder.decode(payload));
}

/**
 * Counts the arrivals of messages 0 … total-1 and resolves `complete` once each of messages
 * 0 … wanted-1 (all of them unless told) has arrived at least once.
 */
export class Tally {
  readonly counts: Uint8Array;
  distinct = 0;
  duplicates = 0;
  strays = 0;
  /** Called after each arrival, if set. */
  onArrival: (() => void) | undefined;
  readonly #complete = Promise.withResolvers<void>();
  #wanted: number;
  #wantedSeen = 0;

  constructor(total: number, wanted = total) {
    this.counts = new Uint8Array(total);
    this.#wanted = wanted;
    if (wanted === 0) this.#complete.resolve();
  }

  /** Records one arrival of `index`. */
  add(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.counts.length) {
      this.strays++;
      this.onArrival?.();
      return;
    }
    const count = this.counts[index];
    if (count < 255) this.counts[index] = count + 1;
    if (count === 0) {
      this.distinct++;
      if (index < this.#wanted && ++this.#wantedSeen === this.#wanted) {
        this.#complete.resolve();
      }
    } else {
      this.duplicates++;
    }
    this.onArrival?.();
  }

  /** Changes which messages `complete` waits for: 0 … wanted-1. */
  want(wanted: number): void {
    this.#wanted = wanted;
    this.#wantedSeen = 0;
    for (let i = 0; i < wanted; i++) if (this.counts[i] > 0) this.#wantedSeen++;
    if (this.#wantedSeen === wanted) this.#complete.resolve();
  }

  /** Settles once every wanted message arrived. */
  get complete(): Promise<void> {
    return this.#complete.promise;
  }

  /** Wanted indexes that never arrived, at most `limit` of them. */
  missing(limit = 20): number[] {
    const missing: number[] = [];
    for (let i = 0; i < this.#wanted && missing.length < limit; i++) {
      if (this.counts[i] === 0) missing.push(i);
    }
    return missing;
  }

  /** Indexes that arrived more than once, at most `limit` of them. */
  repeated(limit = 20): number[] {
    const repeated: number[] = [];
    for (let i = 0; i < this.counts.length && repeated.length < limit; i++) {
      if (this.counts[i] > 1) repeated.push(i);
    }
    return repeated;
  }
}

/** Counts the connections a client lost (the cuts it saw) and its reconnections. */
export function countLosses(
  client: MqttClient,
): { lost: number; connects: number } {
  const counts = { lost: 0, connects: 0 };
  client.addEventListener("disconnect", () => counts.lost++);
  client.addEventListener("connect", () => counts.connects++);
  return counts;
}

/** The command that runs `script` on the runtime running this process. */
export function runtimeCommand(
  script: string,
  args: string[],
): [string, string[]] {
  const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
  if (deno !== undefined) {
    return [deno.execPath(), ["run", "-A", script, ...args]];
  }
  return [process.execPath, ["run", script, ...args]];
}
