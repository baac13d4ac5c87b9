/**
 * What the broker's tests share: Kite clients connected to a broker in memory, a raw packet-level
 * client for the bytes Kite's client would never send, and waiting for a condition.
 *
 * @module
 */

import { MqttClient } from "../../src/client/clients.ts";
import type { ClientOptions, Message } from "../../src/client/types.ts";
import { PacketDecoder } from "../../src/packet/decoder_stream.ts";
import { encode } from "../../src/packet/encode.ts";
import type { Packet, ProtocolVersion } from "../../src/packet/types.ts";
import type { Broker, BrokerTransport } from "../../src/broker/mod.ts";

export { FakeClock, settle } from "../helpers/fake_clock.ts";

/** Every protocol version. */
export const VERSIONS: readonly ProtocolVersion[] = [3, 4, 5];

/** A name for a protocol version in a test name. */
export function versionName(version: ProtocolVersion): string {
  return { 3: "v3.1", 4: "v3.1.1", 5: "v5" }[version];
}

/** Text to bytes. */
export function text(value: string): Uint8Array {
  return new TextEncoder().encode(value);
}

/** Bytes to text. */
export function str(value: Uint8Array): string {
  return new TextDecoder().decode(value);
}

/** Waits (real time, in 2 ms steps) until `condition` holds; throws after `ms`. */
export async function waitFor(
  condition: () => boolean,
  what = "a condition",
  ms = 3000,
): Promise<void> {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Lets in-flight in-memory traffic settle, in real time. */
export function pause(ms = 20): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A Kite client and the messages it received. */
export interface Connected {
  client: MqttClient;
  messages: Message[];
}

/** A Kite client connected to `broker` in memory, collecting every message it receives. */
export async function connectKite(
  broker: Broker,
  options: ClientOptions = {},
  transport: BrokerTransport = broker.connectClient(),
): Promise<Connected> {
  const client = new MqttClient(transport);
  const messages: Message[] = [];
  client.setPublishHandler((message) => {
    messages.push({ ...message, payload: message.payload.slice() });
  });
  client.addEventListener("error", () => {});
  await client.connect({ keepalive: 0, reconnect: false, ...options });
  return { client, messages };
}

/**
 * A client that speaks packets, not API: sends what a test says and hands back what the broker
 * sent, so that tests can send bytes Kite's client never would.
 */
export class RawClient {
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #decoder: PacketDecoder;
  readonly #received: Packet[] = [];
  #closed = false;
  #version: ProtocolVersion;
  #startReading!: () => void;

  /**
   * Connects to `broker` in memory (no CONNECT sent yet). A `paused` client reads nothing the
   * broker sends until {@linkcode RawClient.prototype.startReading}: a subscriber that is slow or
   * stuck.
   */
  constructor(broker: Broker, version: ProtocolVersion = 4, { paused = false } = {}) {
    const transport = broker.connectClient();
    const reading = new Promise<void>((resolve) => this.#startReading = resolve);
    if (!paused) this.#startReading();
    this.#version = version;
    const decoder = new PacketDecoder({ protocolVersion: version });
    this.#decoder = decoder;
    this.#writer = transport.writable.getWriter();
    this.#writer.closed.catch(() => {});
    const received = this.#received;
    (async () => {
      await reading;
      const reader = transport.readable.getReader();
      try {
        while (true) {
          const { done, value } = await reader.read();
          if (done) break;
          decoder.push(value, (packet) => received.push(packet));
        }
      } catch {
        // An aborted connection is a closed one.
      }
      this.#closed = true;
    })();
  }

  /** Starts reading what the broker sent, for a client created `paused`. */
  startReading(): void {
    this.#startReading();
  }

  /** Whether the broker closed the connection. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Every packet received and not yet taken. */
  get received(): Packet[] {
    return this.#received;
  }

  /** Sends a packet. */
  async send(packet: Packet): Promise<void> {
    await this.#writer.write(encode(packet, this.#version)).catch(() => {});
  }

  /** Sends raw bytes. */
  async sendBytes(bytes: Uint8Array | number[]): Promise<void> {
    await this.#writer.write(new Uint8Array(bytes)).catch(() => {});
  }

  /** Sends CONNECT and waits for CONNACK. */
  async connect(clientId: string, extra: Partial<Packet & { type: "connect" }> = {}): Promise<
    Packet & { type: "connack" }
  > {
    await this.send({
      type: "connect",
      protocolVersion: this.#version,
      clientId,
      clean: true,
      keepalive: 0,
      ...extra,
    });
    return await this.expect("connack");
  }

  /** Takes the next packet, waiting for it; fails if it is not of type `type`. */
  async expect<T extends Packet["type"]>(type: T): Promise<Extract<Packet, { type: T }>> {
    await waitFor(() => this.#received.length > 0 || this.#closed, `a ${type} packet`);
    const packet = this.#received.shift();
    if (packet?.type !== type) {
      throw new Error(`expected ${type}, got ${packet ? JSON.stringify(packet) : "a close"}`);
    }
    return packet as Extract<Packet, { type: T }>;
  }

  /** Waits for the broker to close the connection; returns what came before. */
  async waitClosed(): Promise<Packet[]> {
    await waitFor(() => this.#closed, "the broker to close the connection");
    return this.#received.splice(0);
  }

  /** Closes the connection from the client's side. */
  async close(): Promise<void> {
    await this.#writer.close().catch(() => {});
  }
}
