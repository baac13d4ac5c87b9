/**
 * TCP on Bun through `Bun.connect`: Bun's own sockets, which cost about half the memory of a
 * `node:net` socket (5.5 KiB against 11 KiB per idle connection on Bun 1.4, measured by
 * `bench/footprint.ts`'s method). TLS on Bun still goes through `node:tls` (see `node.ts`).
 *
 * @module
 */

import { abortable } from "../_async.ts";
import type { ConnectionClosedError } from "../errors.ts";
import { type BrokerAddress, connectionLost, unreachable } from "./address.ts";
import { SocketTransport } from "./socket_transport.ts";
import type { DirectTransport, TransportOptions } from "./types.ts";

/** The part of a `Bun.connect` socket the transport uses. */
export interface BunSocket {
  /** The transport the socket belongs to (Bun's per-socket `data`). */
  data: BunSocketTransport;
  /** Writes what the socket takes now; returns how many bytes that was, -1 once closed. */
  write(bytes: Uint8Array): number;
  /** Closes after what is written. */
  end(): void;
  /** Closes at once. */
  terminate(): void;
  /** Stops reading. */
  pause(): void;
  /** Reads again. */
  resume(): void;
  /** Turns Nagle's algorithm off or on. */
  setNoDelay(noDelay: boolean): boolean;
}

/** The handlers every socket shares; each finds its transport in `socket.data`. */
interface BunSocketHandlers {
  data(socket: BunSocket, chunk: Uint8Array): void;
  drain(socket: BunSocket): void;
  end(socket: BunSocket): void;
  close(socket: BunSocket, error?: Error): void;
  error(socket: BunSocket, error: Error): void;
  /** What `data` receives: `"uint8array"` hands plain `Uint8Array`s, not Buffers. */
  binaryType: "uint8array";
}

interface BunConnect {
  connect(options: {
    hostname: string;
    port: number;
    data: BunSocketTransport;
    socket: BunSocketHandlers;
  }): Promise<BunSocket>;
}

function bun(): BunConnect | undefined {
  const runtime = (globalThis as { Bun?: Partial<BunConnect> }).Bun;
  return typeof runtime?.connect === "function" ? runtime as BunConnect : undefined;
}

/**
 * Whether `Bun.connect` is there to dial with.
 *
 * @returns `true` on Bun.
 *
 * @example
 * ```ts
 * import { hasBunSockets } from "./bun.ts";
 *
 * console.log(hasBunSockets());
 * ```
 */
export function hasBunSockets(): boolean {
  return bun() !== undefined;
}

/**
 * Dials a broker over TCP with `Bun.connect`.
 *
 * @param address The broker; its kind must be `tcp`.
 * @param options The abort signal (the other options are for TLS).
 * @returns The open connection.
 * @throws {ConnectionClosedError} When the broker cannot be reached.
 *
 * @example
 * ```ts
 * import { brokerAddress } from "./address.ts";
 * import { hasBunSockets, openBunTransport } from "./bun.ts";
 *
 * if (hasBunSockets()) {
 *   const address = brokerAddress(new URL("mqtt://127.0.0.1:1883"));
 *   await openBunTransport(address, {}).then(
 *     (transport) => transport.close(),
 *     (error) => console.log(error.message), // no broker listens there
 *   );
 * }
 * ```
 */
export async function openBunTransport(
  address: BrokerAddress,
  options: TransportOptions,
): Promise<BunSocketTransport> {
  const runtime = bun();
  if (runtime === undefined) throw unreachable(address, "this runtime has no Bun.connect");
  const { signal } = options;
  signal?.throwIfAborted();
  const transport = new BunSocketTransport(address);
  const attempt = runtime.connect({
    hostname: address.hostname,
    port: address.port,
    data: transport,
    socket: HANDLERS,
  });
  let socket: BunSocket;
  try {
    socket = await abortable(attempt, signal, (late) => late.terminate());
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    throw unreachable(address, error);
  }
  transport.attach(socket);
  return transport;
}

const HANDLERS: BunSocketHandlers = {
  // Plain Uint8Arrays: a Buffer would have to be re-viewed, and its `.buffer` costs a copy on Bun.
  binaryType: "uint8array",
  data: (socket, chunk) => socket.data.onData(chunk),
  drain: (socket) => socket.data.onDrain(),
  end: (socket) => socket.data.onEnd(),
  close: (socket, error) => socket.data.onClose(error ?? "the socket closed"),
  error: (socket, error) => socket.data.onClose(error),
};

/** A write that the socket took only part of: the rest goes out on `drain`. */
interface PendingWrite {
  bytes: Uint8Array;
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * A `Bun.connect` socket as a transport: used directly by the client (see
 * {@linkcode DirectTransport}), or as a pair of web byte streams made on first use.
 *
 * A write settles once the socket has taken all of its bytes (the rest of a partial write goes
 * out as the socket drains), so a broker that does not read stops the writes. The socket is
 * paused until something reads, and while the reader asks it to wait. When the connection breaks,
 * reading ends and writes fail with a `ConnectionClosedError`; when the broker ends it, reading
 * ends cleanly.
 *
 * @example
 * ```ts
 * import { brokerAddress } from "./address.ts";
 * import { hasBunSockets, openBunTransport } from "./bun.ts";
 *
 * if (hasBunSockets()) {
 *   const transport = await openBunTransport(brokerAddress(new URL("mqtt://127.0.0.1:1883")), {})
 *     .catch(() => undefined); // no broker listens there
 *   transport?.close();
 * }
 * ```
 */
export class BunSocketTransport extends SocketTransport implements DirectTransport {
  #socket: BunSocket | undefined;
  #writes: PendingWrite[] | undefined;
  #ending: PendingWrite | undefined;

  /** A transport for a socket that `attach` hands it once connected. */
  constructor(address: BrokerAddress) {
    super(address);
  }

  /** Takes the connected socket; paused until something reads. */
  attach(socket: BunSocket): void {
    this.#socket = socket;
    socket.setNoDelay(true);
    if (this.sink === undefined) socket.pause();
  }

  /** Resumes the socket, paused since `attach`. */
  protected override startReading(): void {
    this.resumeReading();
  }

  /** Resumes the socket, paused for the sink. */
  protected override resumeReading(): void {
    this.#socket?.resume();
  }

  /** Closes the socket at once. */
  protected override shut(): void {
    this.#socket?.terminate();
  }

  /** Writes `bytes`; settles once the socket has taken all of them. */
  override write(bytes: Uint8Array): Promise<void> {
    const socket = this.#socket;
    const broken = this.brokenError();
    if (broken !== undefined || socket === undefined) return refuse(this.display, broken);
    if (this.#writes === undefined) {
      const written = socket.write(bytes);
      if (written === bytes.byteLength) return Promise.resolve();
      if (written < 0) {
        return Promise.reject(connectionLost(this.display, "the socket is closed"));
      }
      bytes = bytes.subarray(written);
    }
    return new Promise<void>((resolve, reject) => {
      (this.#writes ??= []).push({ bytes, resolve, reject });
    });
  }

  /** Ends the connection once the writes before it are out. */
  override end(): Promise<void> {
    const socket = this.#socket;
    const broken = this.brokenError();
    if (broken !== undefined || socket === undefined) return refuse(this.display, broken);
    if (this.#writes === undefined) {
      socket.end();
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      this.#ending = { bytes: new Uint8Array(0), resolve, reject };
    });
  }

  /** @internal The socket read `chunk`. */
  onData(chunk: Uint8Array): void {
    const sink = this.sink;
    if (sink === undefined || this.ended) return;
    const pause = sink.data(chunk);
    if (pause !== undefined) {
      this.#socket!.pause();
      this.resumeAfter(pause);
    }
  }

  /** @internal The socket can take more: the rest of the pending writes. */
  onDrain(): void {
    const socket = this.#socket!;
    const writes = this.#writes;
    while (writes !== undefined && writes.length > 0) {
      const pending = writes[0];
      const written = socket.write(pending.bytes);
      if (written < pending.bytes.byteLength) {
        if (written > 0) pending.bytes = pending.bytes.subarray(written);
        return;
      }
      writes.shift();
      pending.resolve();
    }
    this.#writes = undefined;
    const ending = this.#ending;
    if (ending !== undefined) {
      this.#ending = undefined;
      socket.end();
      ending.resolve();
    }
  }

  /** @internal The broker ended the connection. */
  onEnd(): void {
    this.finish();
  }

  /** @internal The connection is over: the socket closed or failed. */
  onClose(reason: Error | string): void {
    this.fail(reason);
  }

  protected override hasPendingWrites(): boolean {
    return this.#writes !== undefined || this.#ending !== undefined;
  }

  protected override failWrites(error: ConnectionClosedError): void {
    const writes = this.#writes ?? [];
    this.#writes = undefined;
    if (this.#ending !== undefined) writes.push(this.#ending);
    this.#ending = undefined;
    for (const pending of writes) pending.reject(error);
  }
}

/** A write or end after the connection is over (`broken`), or before it is made. */
function refuse(display: string, broken: ConnectionClosedError | undefined): Promise<never> {
  return Promise.reject(broken ?? connectionLost(display, "not connected"));
}
