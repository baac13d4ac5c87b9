/**
 * What the client's conformance tests share: a client connected to a fake broker on a fake
 * clock, a way to watch a promise without waiting on it, events as promises, and a guard that
 * turns any unhandled rejection into a failing assertion.
 *
 * @module
 */

import assert from "node:assert/strict";
import process from "node:process";
import type { BaseClient } from "../../src/client/base_client.ts";
import { MqttClient } from "../../src/client/clients.ts";
import type { ClientOptions } from "../../src/client/types.ts";
import type { ConnackPacket, ProtocolVersion } from "../../src/packet/types.ts";
import { FakeBroker, type FakeBrokerOptions } from "../helpers/fake_broker.ts";
import { FakeClock, settle } from "../helpers/fake_clock.ts";

export { bytes, FakeBroker, hex, type Sent } from "../helpers/fake_broker.ts";
export { FakeClock, settle } from "../helpers/fake_clock.ts";

/** Every protocol version, as the client's option spells it. */
export const VERSIONS: readonly ProtocolVersion[] = [3, 4, 5];

/** A name for a protocol version in a test name. */
export function versionName(version: ProtocolVersion): string {
  return { 3: "v3.1", 4: "v3.1.1", 5: "v5" }[version];
}

/** A client, its broker and its clock. */
export interface Setup<C extends BaseClient> {
  client: C;
  broker: FakeBroker;
  clock: FakeClock;
}

/** The options of {@linkcode connected}. */
export interface SetupOptions<C extends BaseClient> extends FakeBrokerOptions {
  /** The client class; default `MqttClient`. */
  Client?: new (transport: FakeBroker["transport"]) => C;
  /** The client's options; the clock is added, and `keepalive` defaults to 0. */
  options?: ClientOptions;
  /** The CONNACK to answer with, as a packet or as hex; default: accepted, no session. */
  connack?: ConnackPacket | string;
}

/** A client connected to a fake broker: CONNECT read, CONNACK answered, `connect()` resolved. */
export async function connected<C extends BaseClient = MqttClient>(
  version: ProtocolVersion,
  setup: SetupOptions<C> = {},
): Promise<Setup<C>> {
  const broker = new FakeBroker(version, setup);
  const clock = new FakeClock();
  const Client = setup.Client ?? (MqttClient as unknown as new (
    transport: FakeBroker["transport"],
  ) => C);
  const client = new Client(broker.transport);
  const connecting = client.connect({
    clientId: "kite",
    keepalive: 0,
    ...setup.options,
    protocolVersion: version,
    clock,
  });
  await broker.expect("connect");
  const connack = setup.connack ?? { type: "connack", sessionPresent: false, reasonCode: 0 };
  await (typeof connack === "string" ? broker.send(connack) : broker.sendPacket(connack));
  await connecting;
  return { client, broker, clock };
}

/** A promise watched from the side: whether it settled, and how, without awaiting it. */
export interface Watched<T> {
  readonly settled: boolean;
  readonly fulfilled: boolean;
  readonly rejected: boolean;
  readonly value: T | undefined;
  readonly reason: unknown;
  readonly promise: Promise<T>;
}

/** Watches `promise`; its rejection counts as handled. */
export function watch<T>(promise: Promise<T>): Watched<T> {
  const state = {
    settled: false,
    fulfilled: false,
    rejected: false,
    value: undefined as T | undefined,
    reason: undefined as unknown,
    promise,
  };
  promise.then(
    (value) => {
      state.settled = state.fulfilled = true;
      state.value = value;
    },
    (reason) => {
      state.settled = state.rejected = true;
      state.reason = reason;
    },
  );
  return state;
}

/** The next event of `type` on `target`. */
export function nextEvent<T = unknown>(target: EventTarget, type: string): Promise<CustomEvent<T>> {
  return new Promise((resolve) => {
    target.addEventListener(type, (event) => resolve(event as CustomEvent<T>), { once: true });
  });
}

/** Every event of the given types on `target`, in order, as `[type, detail]`. */
export function recordEvents(target: EventTarget, types: string[]): [string, unknown][] {
  const events: [string, unknown][] = [];
  for (const type of types) {
    target.addEventListener(type, (event) => {
      events.push([type, (event as CustomEvent).detail]);
    });
  }
  return events;
}

/** Asserts that the client has written nothing more, once everything pending has run. */
export async function assertQuiet(broker: FakeBroker): Promise<void> {
  await settle();
  const sent = broker.tryNext();
  assert.equal(sent, undefined, `the client sent ${sent?.packet.type}: ${sent?.hex}`);
}

/**
 * Records unhandled promise rejections from the moment it is called, on both runtimes: Deno
 * reports them as a global `unhandledrejection` event, Bun through `process`.
 */
export class UnhandledGuard {
  readonly reasons: unknown[] = [];
  #onEvent = (event: Event): void => {
    event.preventDefault();
    this.#record((event as PromiseRejectionEvent).reason);
  };
  #onProcess = (reason: unknown): void => this.#record(reason);

  constructor() {
    globalThis.addEventListener?.("unhandledrejection", this.#onEvent);
    process.on("unhandledRejection", this.#onProcess);
  }

  #record(reason: unknown): void {
    if (!this.reasons.includes(reason)) this.reasons.push(reason);
  }

  /** Lets the runtime report what it has, stops recording, and asserts there was nothing. */
  async check(): Promise<void> {
    await settle();
    await settle();
    globalThis.removeEventListener?.("unhandledrejection", this.#onEvent);
    process.off("unhandledRejection", this.#onProcess);
    assert.deepEqual(this.reasons, [], "unhandled rejections");
  }
}

/** `"01 02"` → `[1, 2]`-like readable hex of a UTF-8 string, for byte scripts. */
export function utf8Hex(text: string): string {
  return Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0"))
    .join(" ");
}
