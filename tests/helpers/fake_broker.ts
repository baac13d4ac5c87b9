/**
 * A byte-scripted fake broker: it reads exactly what the client wrote, packet by packet, and
 * writes exactly the bytes a test gives it. It runs in memory, over a pair of streams, so a
 * test controls every byte and every moment.
 *
 * @module
 */

import { decode, encode, type Packet, type ProtocolVersion } from "../../src/packet/mod.ts";
import type { Transport } from "../../src/transport/types.ts";

/** Hex for bytes: `"10 0c 00 04"`. */
export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

/** Bytes for hex: spaces and newlines are ignored. */
export function bytes(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, "");
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** A packet the client sent: its bytes and what they decode to. */
export interface Sent {
  bytes: Uint8Array;
  hex: string;
  packet: Packet;
}

/** How the fake broker takes what the client writes. */
export interface FakeBrokerOptions {
  /**
   * When true, each write of the client completes only once the broker has read all of it with
   * `next()` (as over a socket with no buffer): a broker that never reads blocks the client's
   * writer for good. Default false: every write completes at once and the bytes wait for `next()`.
   */
  blockWrites?: boolean;
}

/** The broker's side of an in-memory connection. */
export class FakeBroker {
  /** What to hand the client. */
  readonly transport: Transport & { closed: boolean };
  /** The protocol version used to decode what the client sends. */
  version: ProtocolVersion;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  // What the client wrote and `next()` has not taken yet.
  #buffer = new Uint8Array(0);
  // Whether the client closed or aborted its writable side.
  #ended = false;
  // Woken whenever bytes arrive or the client's side ends.
  #waiters: (() => void)[] = [];
  // The client's write waiting for the broker to read it (with `blockWrites`).
  #blockedWrite: (() => void) | undefined;
  /** Every packet the client sent, in order. */
  readonly received: Sent[] = [];

  /** Creates a broker for a client of `version`. */
  constructor(version: ProtocolVersion = 4, options: FakeBrokerOptions = {}) {
    this.version = version;
    const toClient = new TransformStream<Uint8Array, Uint8Array>();
    this.#writer = toClient.writable.getWriter();
    const blockWrites = options.blockWrites ?? false;
    const toBroker = new WritableStream<Uint8Array>({
      write: (chunk) => {
        // Copied at once: the client may reuse its buffer once the write completes.
        const joined = new Uint8Array(this.#buffer.length + chunk.length);
        joined.set(this.#buffer);
        joined.set(chunk, this.#buffer.length);
        this.#buffer = joined;
        this.#notify();
        if (!blockWrites) return;
        return new Promise<void>((resolve) => {
          this.#blockedWrite = resolve;
        });
      },
      close: () => this.#end(),
      abort: () => this.#end(),
    });
    const transport = {
      readable: toClient.readable,
      writable: toBroker,
      closed: false,
      close: () => {
        transport.closed = true;
      },
    };
    this.transport = transport;
  }

  #notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  #end(): void {
    this.#ended = true;
    this.#notify();
  }

  /** Whether the client has closed its writable side (end of stream). */
  get clientClosed(): boolean {
    return this.#ended;
  }

  /** The next packet the client sends; rejects if the client closes first. */
  async next(): Promise<Sent> {
    while (true) {
      const sent = this.tryNext();
      if (sent !== undefined) return sent;
      if (this.#ended) throw new Error("the client closed the connection");
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /**
   * The next packet the client has already written, or `undefined` when there is none: after
   * `settle()`, proof that the client sent nothing.
   */
  tryNext(): Sent | undefined {
    const frame = this.#frame();
    if (frame === undefined) return undefined;
    if (this.#buffer.length === 0) {
      const release = this.#blockedWrite;
      this.#blockedWrite = undefined;
      release?.();
    }
    const sent = { bytes: frame, hex: hex(frame), packet: decode(frame, this.version) };
    this.received.push(sent);
    return sent;
  }

  /** Waits for the next packet and checks its type; returns it. */
  async expect<T extends Packet["type"]>(type: T): Promise<Extract<Packet, { type: T }>> {
    const sent = await this.next();
    if (sent.packet.type !== type) {
      throw new Error(`expected ${type}, the client sent ${sent.packet.type}: ${sent.hex}`);
    }
    return sent.packet as Extract<Packet, { type: T }>;
  }

  /** Resolves once the client has closed its side (end of stream), with what came before. */
  async closed(): Promise<Sent[]> {
    const rest: Sent[] = [];
    try {
      while (true) rest.push(await this.next());
    } catch {
      return rest;
    }
  }

  #frame(): Uint8Array | undefined {
    const buf = this.#buffer;
    if (buf.length < 2) return undefined;
    let length = 0;
    let multiplier = 1;
    let i = 1;
    for (;; i++) {
      if (i >= buf.length) return undefined;
      length += (buf[i] & 0x7f) * multiplier;
      multiplier *= 128;
      if (buf[i] < 0x80) break;
    }
    const size = i + 1 + length;
    if (buf.length < size) return undefined;
    this.#buffer = buf.slice(size);
    return buf.slice(0, size);
  }

  /** Writes raw bytes (a hex string or bytes) to the client; settles once the client took them. */
  async send(data: string | Uint8Array): Promise<void> {
    await this.#writer.write(typeof data === "string" ? bytes(data) : data);
  }

  /**
   * Writes raw bytes to the client without waiting for it to take them: for a client that may
   * have stopped reading. The promise never rejects: it tells whether the client took them.
   */
  push(data: string | Uint8Array): Promise<boolean> {
    return this.send(data).then(() => true, () => false);
  }

  /** Encodes and writes a packet to the client. */
  async sendPacket(packet: Packet): Promise<void> {
    await this.#writer.write(encode(packet, this.version));
  }

  /** Accepts the CONNECT the client sends: reads it and answers CONNACK. */
  async accept(sessionPresent = false, properties?: Packet & { type: "connack" }): Promise<Packet> {
    const connect = await this.expect("connect");
    await this.sendPacket(
      properties ?? { type: "connack", sessionPresent, reasonCode: 0 },
    );
    return connect;
  }

  /** Ends the stream to the client, as a broker closing the connection does. */
  async hangUp(): Promise<void> {
    await this.#writer.close().catch(() => {});
  }

  /** Errors the stream to the client, as a reset connection does. */
  async reset(): Promise<void> {
    await this.#writer.abort(new Error("connection reset")).catch(() => {});
  }
}
