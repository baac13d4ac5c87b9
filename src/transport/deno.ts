/**
 * TCP and TLS on Deno: `Deno.connect`, `Deno.connectTls` and `Deno.startTls`, with `node:tls`
 * for what they cannot do.
 *
 * | options | how Deno dials |
 * |---|---|
 * | `mqtt:`, `tcp:` | `Deno.connect` |
 * | `mqtts:`, `tls:` with `ca`, `cert` + `key` | `Deno.connectTls` (`caCerts`, `cert`, `key`) |
 * | … with `servername` | `Deno.connect`, then `Deno.startTls` with `hostname: servername` |
 * | … with `servername` and `cert` + `key` | `node:tls`: `Deno.startTls` takes no client certificate |
 * | … with `rejectUnauthorized: false` | `node:tls`: Deno's own TLS always verifies the chain |
 *
 * Deno's `caCerts` are trusted in addition to the built-in roots (so its documentation says),
 * where `node:tls`'s `ca` replaces them.
 *
 * Limits of Deno 2.9, observed:
 * - An abort during a handshake of `Deno.connectTls` or `Deno.startTls` rejects at once, but
 *   `TlsConn.close()` leaves the socket open until the broker answers or drops it.
 * - A `node:tls` socket that was paused once never reports the broker's end, so in the `node:tls`
 *   cases the socket is never paused: a reader that stops makes bytes queue in the readable side.
 *
 * @module
 */

import { abortable, closeQuietly } from "../_async.ts";
import { type BrokerAddress, connectionLost, unreachable } from "./address.ts";
import { nodeSockets, openNodeTransport } from "./node.ts";
import type { Transport, TransportOptions } from "./types.ts";

/** The size of each read buffer; a chunk smaller than {@linkcode COPY_BELOW} is copied out of it. */
const READ_BUFFER_SIZE = 64 * 1024;
/** Small reads are copied so that a 4-byte PUBACK does not pin a 64 KiB buffer. */
const COPY_BELOW = 16 * 1024;
/** How many bytes the readable side reads ahead of its reader. */
const READ_HIGH_WATER_MARK = 64 * 1024;

/**
 * Whether `Deno.connect` is there to dial with.
 *
 * @returns `true` on Deno.
 *
 * @example
 * ```ts
 * import { hasDenoSockets } from "./deno.ts";
 *
 * console.log(hasDenoSockets());
 * ```
 */
export function hasDenoSockets(): boolean {
  const deno = (globalThis as { Deno?: { connect?: unknown } }).Deno;
  return typeof deno?.connect === "function";
}

/**
 * Dials a broker over TCP or TLS on Deno; see the module documentation for which API serves
 * which options.
 *
 * @param address The broker; its kind must be `tcp` or `tls`.
 * @param options TLS options and the abort signal.
 * @returns The open connection; for TLS, after the handshake.
 * @throws {ConnectionClosedError} When the broker cannot be reached or the handshake fails.
 *
 * @example
 * ```ts
 * import { brokerAddress } from "./address.ts";
 * import { openDenoTransport } from "./deno.ts";
 *
 * const address = brokerAddress(new URL("mqtt://127.0.0.1:1883"));
 * await openDenoTransport(address, { signal: AbortSignal.timeout(5_000) }).then(
 *   (transport) => transport.close?.(),
 *   (error) => console.log(error.message), // no broker listens there
 * );
 * ```
 */
export async function openDenoTransport(
  address: BrokerAddress,
  options: TransportOptions,
): Promise<Transport> {
  const { signal } = options;
  signal?.throwIfAborted();
  const { hostname, port } = address;
  if (options.localAddress !== undefined) {
    // Deno.connect and Deno.connectTls take no local address; node:net and node:tls do.
    const sockets = nodeSockets();
    if (sockets === undefined) {
      throw unreachable(address, "this Deno offers no node:net, which localAddress needs");
    }
    return await openNodeTransport(sockets, address, options, address.kind === "tcp");
  }
  if (address.kind === "tcp") {
    const conn = await dial(address, Deno.connect({ hostname, port, signal }), signal);
    conn.setNoDelay(true);
    return new DenoConnTransport(conn, address);
  }
  const clientCertificate = options.cert !== undefined && options.key !== undefined
    ? { cert: options.cert, key: options.key }
    : undefined;
  if (
    options.rejectUnauthorized === false ||
    (options.servername !== undefined && clientCertificate !== undefined)
  ) {
    const sockets = nodeSockets();
    if (sockets === undefined) {
      throw unreachable(
        address,
        "this Deno offers no node:tls, which rejectUnauthorized: false and servername with a " +
          "client certificate need",
      );
    }
    // Deno's node:tls loses the end of the stream once a socket was paused: no back-pressure on
    // reads in this case, or a broker's disconnect would go unnoticed.
    return await openNodeTransport(sockets, address, options, false);
  }
  const caCerts = options.ca === undefined ? undefined : [options.ca].flat();
  let conn: Deno.TlsConn;
  if (options.servername !== undefined) {
    const tcp = await dial(address, Deno.connect({ hostname, port, signal }), signal);
    tcp.setNoDelay(true);
    conn = await dial(
      address,
      Deno.startTls(tcp, { hostname: options.servername, caCerts }),
      signal,
    );
  } else {
    conn = await dial(
      address,
      Deno.connectTls({ hostname, port, caCerts, ...clientCertificate }),
      signal,
    );
  }
  // The handshake is lazy: run it now, so a bad certificate fails the connect, not a read.
  try {
    await dial(address, conn.handshake().then(() => conn), signal, () => closeQuietly(conn));
  } catch (error) {
    // A refused certificate leaves the connection open unless it is closed here: with
    // reconnecting on, every failed attempt would leak a socket.
    closeQuietly(conn);
    throw error;
  }
  return new DenoConnTransport(conn, address);
}

/** Awaits a step of the connect, turning its failure into the error that names the URL. */
async function dial<T extends Deno.Conn>(
  address: BrokerAddress,
  attempt: Promise<T>,
  signal: AbortSignal | undefined,
  onAbort?: () => void,
): Promise<T> {
  try {
    return await abortable(attempt, signal, closeQuietly, onAbort);
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    throw unreachable(address, error);
  }
}

/**
 * A `Deno.Conn` as a transport whose `close()` ends both streams: `Deno.Conn`'s own readable
 * errors with `Interrupted` when the connection is closed, and its `close()` throws when called
 * twice.
 *
 * When the connection breaks, both streams error with a {@linkcode ConnectionClosedError} whose
 * `cause` is Deno's error; when the broker ends it, the readable side closes. Reads are pulled by
 * the reader, so a reader that stops leaves the bytes in the kernel, and TCP slows the broker.
 *
 * @example
 * ```ts
 * import { brokerAddress } from "./address.ts";
 * import { DenoConnTransport } from "./deno.ts";
 *
 * const address = brokerAddress(new URL("mqtt://127.0.0.1:1883"));
 * await Deno.connect({ hostname: address.hostname, port: address.port }).then(
 *   (conn) => new DenoConnTransport(conn, address).close(),
 *   (error) => console.log(error.message), // no broker listens there
 * );
 * ```
 */
export class DenoConnTransport implements Transport {
  /** Bytes from the broker. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Bytes to the broker. */
  readonly writable: WritableStream<Uint8Array>;
  readonly #conn: Deno.Conn;
  readonly #address: BrokerAddress;
  #readableController!: ReadableStreamDefaultController<Uint8Array>;
  #writableController!: WritableStreamDefaultController;
  #buffer = new Uint8Array(READ_BUFFER_SIZE);
  #readableDone = false;
  #closed = false;

  /**
   * Adapts an open connection. The connection belongs to the transport from now on.
   *
   * @param conn A connection nobody else reads from or writes to.
   * @param address The broker it is connected to, for error messages.
   */
  constructor(conn: Deno.Conn, address: BrokerAddress) {
    this.#conn = conn;
    this.#address = address;
    this.readable = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#readableController = controller;
      },
      pull: () => this.#pull(),
      cancel: () => {
        this.#readableDone = true;
        this.close();
      },
    }, { highWaterMark: READ_HIGH_WATER_MARK, size: (chunk) => chunk.byteLength });
    this.writable = new WritableStream<Uint8Array>({
      start: (controller) => {
        this.#writableController = controller;
      },
      write: (chunk) => this.#write(chunk),
      close: () => this.#closeWrite(),
      abort: () => this.close(),
    });
  }

  /** Closes the connection at once; the readable side closes, further writes reject. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.#conn);
    if (!this.#readableDone) {
      this.#readableDone = true;
      this.#readableController.close();
    }
    this.#writableController.error(connectionLost(this.#address, "the transport was closed"));
  }

  async #pull(): Promise<void> {
    let count: number | null;
    try {
      count = await this.#conn.read(this.#buffer);
    } catch (error) {
      this.#fail(error);
      return;
    }
    if (this.#readableDone) return;
    if (count === null) {
      this.#readableDone = true;
      this.#readableController.close();
      return;
    }
    let chunk: Uint8Array;
    if (count < COPY_BELOW) {
      chunk = this.#buffer.slice(0, count);
    } else {
      chunk = this.#buffer.subarray(0, count);
      this.#buffer = new Uint8Array(READ_BUFFER_SIZE);
    }
    this.#readableController.enqueue(chunk);
  }

  async #write(chunk: Uint8Array): Promise<void> {
    try {
      for (let offset = 0; offset < chunk.byteLength;) {
        offset += await this.#conn.write(chunk.subarray(offset));
      }
    } catch (error) {
      this.#fail(error);
      throw connectionLost(this.#address, this.#closed ? "the transport was closed" : error);
    }
  }

  async #closeWrite(): Promise<void> {
    try {
      await this.#conn.closeWrite();
    } catch (error) {
      this.#fail(error);
      throw connectionLost(this.#address, error);
    }
  }

  /** The connection broke: error both streams, unless `close()` ended them already. */
  #fail(reason: unknown): void {
    if (this.#closed) return;
    const error = connectionLost(this.#address, reason);
    if (!this.#readableDone) {
      this.#readableDone = true;
      this.#readableController.error(error);
    }
    this.#writableController.error(error);
  }
}
