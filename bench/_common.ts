/**
 * What the end-to-end benchmarks share: their `--name value` options, the name of the runtime
 * they run on, a mosquitto set up for load, MQTT.js, and a publisher and a subscriber of either
 * library.
 *
 * @module
 */

import { spawn } from "node:child_process";
import process from "node:process";
import { connect } from "../mod.ts";
import type { Mosquitto } from "../tests/helpers/mosquitto.ts";

const args = process.argv.slice(2);

/** The value given as `--name value` on the command line, if any. */
export function option(name: string): string | undefined {
  const at = args.indexOf(`--${name}`);
  return at < 0 ? undefined : args[at + 1];
}

/** "Deno 2.9.6" or "Bun 1.4.5". */
export const runtime: string = process.versions.bun !== undefined
  ? `Bun ${process.versions.bun}`
  : `Deno ${(globalThis as unknown as { Deno: { version: { deno: string } } }).Deno.version.deno}`;

/**
 * A mosquitto on a free loopback port, set up for load (the tests' `LOAD_CONFIG`). Its helper is
 * loaded only here, in the process that starts the broker: it imports `node:test`, and on Bun a
 * process that has loaded `node:test` grows its heap's capacity (not the objects in it) by about
 * 1.3 KiB more for each Kite connection it opens (bench/README.md), so the measuring children
 * must not load it. `extra` adds lines to its configuration; `websockets` adds a websockets
 * listener (`wsPort`).
 */
export async function startLoadedMosquitto(
  extra = "",
  options: { websockets?: boolean } = {},
): Promise<Mosquitto> {
  const { LOAD_CONFIG, startMosquitto } = await import("../tests/helpers/mosquitto.ts");
  return startMosquitto({ ...options, extraConfig: `${LOAD_CONFIG}\n${extra}` });
}

/** The median of `values`; NaN when there are none or one of them is NaN (a run that failed). */
export function median(values: number[]): number {
  if (values.length === 0 || values.some(Number.isNaN)) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Runs `script` again in a child process of this runtime with `args` (and, on Deno, `denoFlags`),
 * and resolves with the JSON of the last line it prints; rejects, naming `label`, when there is
 * none. A child still running after `limitMs` (default {@linkcode CHILD_LIMIT_MS}) is killed, so
 * that a run that hangs (a lost message, a client that never settles) ends the benchmark with an
 * error instead of holding it.
 */
export function runJsonChild<T>(
  script: string,
  args: string[],
  label: string,
  denoFlags: string[] = [],
  limitMs: number = CHILD_LIMIT_MS,
): Promise<T> {
  const isBun = process.versions.bun !== undefined;
  const argv = isBun ? ["run", script, ...args] : ["run", "-A", ...denoFlags, script, ...args];
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, argv, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      proc.kill("SIGKILL");
    }, limitMs);
    const decoder = new TextDecoder();
    proc.stdout.on("data", (chunk: Uint8Array) => out += decoder.decode(chunk, { stream: true }));
    proc.on("error", (error: Error) => {
      clearTimeout(timer);
      reject(error);
    });
    proc.on("close", (code: number | null) => {
      clearTimeout(timer);
      if (killed) {
        reject(new Error(`${label} did not finish within ${limitMs / 1000} s: ${out}`));
        return;
      }
      try {
        resolve(JSON.parse(out.trim().split("\n").at(-1) ?? "") as T);
      } catch {
        reject(new Error(`${label} exited with ${code}: ${out}`));
      }
    });
  });
}

/** How long a child of {@linkcode runJsonChild} may run. */
export const CHILD_LIMIT_MS = 300_000;

/** The part of an MQTT.js client the benchmarks use. */
export interface MqttJsClient {
  publishAsync(
    topic: string,
    payload: Uint8Array | string,
    options: { qos: 0 | 1 | 2 },
  ): Promise<unknown>;
  subscribeAsync(topic: string, options: { qos: 0 | 1 | 2 }): Promise<unknown>;
  on(event: "message", listener: (topic: string, payload: Uint8Array) => void): void;
  endAsync(force?: boolean): Promise<void>;
}

/** The part of MQTT.js the benchmarks use. */
export interface MqttJs {
  connectAsync(url: string, options: Record<string, unknown>): Promise<MqttJsClient>;
}

/** MQTT.js, from `bench/node_modules` (`npm ci --prefix bench`). */
export async function loadMqttJs(): Promise<MqttJs> {
  const name = "mqtt"; // computed, so `deno check` does not need bench/node_modules
  const mqtt = (await import(name)) as MqttJs & { default?: MqttJs };
  return mqtt.default ?? mqtt;
}

/** Counts arrivals and resolves a waiter once its number is reached. */
class Counter {
  #got = 0;
  #target = Infinity;
  #done: (() => void) | undefined;
  /** Counts one arrival; a listener for either library. */
  readonly arrived = (): void => {
    if (++this.#got >= this.#target) this.#done?.();
  };
  /** Resolves once `n` more messages have arrived. */
  receive(n: number): Promise<void> {
    this.#target = this.#got + n;
    return new Promise((resolve) => this.#done = resolve);
  }
}

/** A publisher and a subscriber of one library, connected, the subscriber subscribed. */
export interface Pair {
  /** Publishes the payload to the topic. */
  publish(): Promise<unknown>;
  /** Resolves once `n` more messages have arrived. */
  receive(n: number): Promise<void>;
  close(): Promise<unknown>;
}

/** What {@linkcode openPair} connects and publishes with. */
export interface PairOptions {
  topic: string;
  qos: 0 | 1 | 2;
  payload: Uint8Array;
  /** Client ids are `${clientIds}-${library}-sub` and `-pub`. */
  clientIds: string;
  /** Kite's in-flight window; its default when absent. */
  inflightWindow?: number;
}

/**
 * Connects a subscriber of `library` (`"kite"` or `"mqttjs"`, MQTT 3.1.1 for MQTT.js), subscribes
 * it to the topic, then connects a publisher; neither reconnects.
 */
export async function openPair(
  library: "kite" | "mqttjs",
  url: string,
  { topic, qos, payload, clientIds, inflightWindow }: PairOptions,
): Promise<Pair> {
  const counter = new Counter();
  const receive = (n: number) => counter.receive(n);
  if (library === "kite") {
    const options = { reconnect: false, inflightWindow };
    const subscriber = await connect(url, { ...options, clientId: `${clientIds}-kite-sub` });
    await subscriber.subscribe(topic, { qos });
    subscriber.setPublishHandler(counter.arrived);
    const publisher = await connect(url, { ...options, clientId: `${clientIds}-kite-pub` });
    return {
      publish: () => publisher.publish(topic, payload, { qos }),
      receive,
      close: () => Promise.all([publisher.disconnect(), subscriber.disconnect()]),
    };
  }
  const lib = await loadMqttJs();
  const options = { protocolVersion: 4, clean: true, reconnectPeriod: 0 };
  const subscriber = await lib.connectAsync(url, {
    ...options,
    clientId: `${clientIds}-mqttjs-sub`,
  });
  await subscriber.subscribeAsync(topic, { qos });
  subscriber.on("message", counter.arrived);
  const publisher = await lib.connectAsync(url, {
    ...options,
    clientId: `${clientIds}-mqttjs-pub`,
  });
  return {
    publish: () => publisher.publishAsync(topic, payload, { qos }),
    receive,
    close: () => Promise.all([publisher.endAsync(), subscriber.endAsync()]),
  };
}
