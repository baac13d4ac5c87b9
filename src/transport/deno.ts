/**
 * TCP and TLS on Deno: `Deno.connect`, `Deno.connectTls` and `Deno.startTls`, with `node:tls`
 * for what they cannot do.
 *
 * | options | how Deno dials |
 * |---|---|
 * | `mqtt:`, `tcp:` | `Deno.connect` |
 * | `mqtts:`, `tls:` (with or without `ca`) | `Deno.connect`, then `Deno.startTls` (`caCerts`, `hostname`: the URL's host or `servername`) |
 * | … with `cert` + `key` | `Deno.connectTls` (`caCerts`, `cert`, `key`): `Deno.startTls` takes no client certificate |
 * | … with `servername` and `cert` + `key` | `node:tls` |
 * | … with `rejectUnauthorized: false` | `node:tls`: Deno's own TLS always verifies the chain |
 *
 * Every socket Kite dials has `TCP_NODELAY` on, so that a small write never waits for the broker's
 * delayed acknowledgement, except the one of `Deno.connectTls`: `Deno.TlsConn` has no
 * `setNoDelay`, which is why TLS without a client certificate goes through `Deno.connect` and
 * `Deno.startTls` (`setNoDelay` on the TCP socket first).
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
import { SocketTransport } from "./socket_transport.ts";
import {
  type DirectTransport,
  isDirectTransport,
  type Transport,
  type TransportOptions,
} from "./types.ts";

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
  const route = denoTlsRoute(options);
  if (route === "node:tls") {
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
  if (route === "startTls") {
    const tcp = await dial(address, Deno.connect({ hostname, port, signal }), signal);
    // Here, before TLS: the TLS connection made of it has no setNoDelay.
    tcp.setNoDelay(true);
    conn = await dial(
      address,
      Deno.startTls(tcp, { hostname: options.servername ?? hostname, caCerts }),
      signal,
    );
  } else {
    conn = await dial(
      address,
      Deno.connectTls({ hostname, port, caCerts, cert: options.cert, key: options.key }),
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

/**
 * Which of Deno's ways dials a TLS connection with `options` (see the table of this module):
 * `"node:tls"` for what Deno's own TLS cannot do, `"connectTls"` for a client certificate,
 * else `"startTls"`, over a TCP socket with `TCP_NODELAY` on.
 *
 * @param options The TLS options of the connection.
 * @returns The way to dial.
 *
 * @example
 * ```ts
 * import { denoTlsRoute } from "./deno.ts";
 *
 * console.log(denoTlsRoute({ servername: "broker.example" })); // "startTls"
 * console.log(denoTlsRoute({ rejectUnauthorized: false })); // "node:tls"
 * console.log(denoTlsRoute({ cert: "…", key: "…" })); // "connectTls"
 * ```
 */
export function denoTlsRoute(
  options: Pick<TransportOptions, "cert" | "key" | "servername" | "rejectUnauthorized">,
): "startTls" | "connectTls" | "node:tls" {
  const clientCertificate = options.cert !== undefined && options.key !== undefined;
  if (options.rejectUnauthorized === false) return "node:tls";
  if (clientCertificate) return options.servername === undefined ? "connectTls" : "node:tls";
  return "startTls";
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
 * The client uses it as a {@linkcode DirectTransport}: one loop of `conn.read(buffer)` hands
 * each chunk to the client, with no streams between. The read buffer starts at
 * {@linkcode MIN_READ_SIZE} bytes and is sized after each read to twice what that read returned,
 * up to {@linkcode MAX_READ_SIZE}: an idle connection's pending read holds 128 bytes, where
 * `conn.readable` holds 64 KiB. `readable` and `writable` are made on first use, over the same
 * loop.
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
export class DenoConnTransport extends SocketTransport implements DirectTransport {
  readonly #conn: Deno.Conn;
  // The read loop: the buffer of the pending read, and the one handler of each read's outcome,
  // bound once.
  #buffer: Uint8Array | undefined;
  #onRead: ((outcome: unknown) => void) | undefined;

  /**
   * Adapts an open connection. The connection belongs to the transport from now on.
   *
   * @param conn A connection nobody else reads from or writes to.
   * @param address The broker it is connected to, for error messages.
   */
  constructor(conn: Deno.Conn, address: BrokerAddress) {
    super(address);
    this.#conn = conn;
  }

  /** Starts the read loop, which hands every chunk to the sink. */
  protected override startReading(): void {
    this.#buffer = new Uint8Array(MIN_READ_SIZE);
    this.#onRead = this.#settled.bind(this);
    this.#step(undefined);
  }

  /** Closes the connection at once. */
  protected override shut(): void {
    closeQuietly(this.#conn);
  }

  /** Reads on after a pause: the next step is a new read. */
  protected override resumeReading(): void {
    this.#step(undefined);
  }

  /** A read settled: with a count or `null` (the end), or with Deno's error. */
  #settled(outcome: unknown): void {
    if (typeof outcome === "number" || outcome === null) this.#step(outcome);
    else this.#fail(outcome);
  }

  /**
   * One step of the read loop, the handler of each pending read: `count` is what `conn.read`
   * returned (`null` at the end of the stream), or `undefined` once a pause asked for by the
   * sink is over. There is no `async` frame: a suspended one would cost each idle connection its
   * registers and keep the last chunk read alive.
   */
  #step(count: number | null | undefined): void {
    if (this.ended) return;
    if (count === null) {
      this.finish();
      return;
    }
    if (count !== undefined) {
      let buffer = this.#buffer!;
      // The next buffer: twice what this read returned, so that it grows while reads fill it
      // and shrinks back once they do not.
      const next = nextReadSize(count);
      let chunk: Uint8Array;
      if (count > buffer.length >>> 1) {
        // Mostly full: handed over as it is (the decoder may keep views into it).
        chunk = buffer.subarray(0, count);
        buffer = new Uint8Array(next);
      } else {
        // Small: copied, so that a 4-byte PUBACK does not pin the whole buffer.
        chunk = buffer.slice(0, count);
        if (next !== buffer.length) buffer = new Uint8Array(next);
      }
      this.#buffer = buffer;
      let pause: Promise<void> | undefined;
      try {
        pause = this.sink!.data(chunk);
      } catch (error) {
        this.#fail(error);
        return;
      }
      if (pause !== undefined) {
        this.resumeAfter(pause);
        return;
      }
      if (this.ended) return;
    }
    try {
      this.#conn.read(this.#buffer!).then(this.#onRead!, this.#onRead!);
    } catch (error) {
      this.#fail(error);
    }
  }

  /** Writes all of `bytes`. */
  override async write(bytes: Uint8Array): Promise<void> {
    const broken = this.brokenError();
    if (broken !== undefined) throw broken;
    try {
      for (let offset = 0; offset < bytes.byteLength;) {
        offset += await this.#conn.write(bytes.subarray(offset));
      }
    } catch (error) {
      this.#fail(error);
      throw connectionLost(this.display, this.closed ? "the transport was closed" : error);
    }
  }

  /** Half-closes the connection: the broker reads the end of the stream. */
  override async end(): Promise<void> {
    const broken = this.brokenError();
    if (broken !== undefined) throw broken;
    try {
      await this.#conn.closeWrite();
    } catch (error) {
      this.#fail(error);
      throw connectionLost(this.display, error);
    }
  }

  /**
   * The connection broke: end reading with Deno's error, whatever it is, and fail writes. After
   * `close` nothing is made of it (thousands of clients closing make no errors).
   */
  #fail(reason: unknown): void {
    if (!this.closed) this.fail(connectionLost(this.display, reason));
  }
}

/**
 * The smallest read buffer: what an idle connection's pending read holds. What an idle
 * connection reads (PINGRESP, PUBACK) is a few bytes; a read that fills it doubles the next one.
 */
export const MIN_READ_SIZE = 128;
/** The largest read buffer. */
export const MAX_READ_SIZE = 64 * 1024;

/** The size of the read after one that returned `count` bytes: 2 × count, a power of two. */
function nextReadSize(count: number): number {
  if (count >= MAX_READ_SIZE >>> 1) return MAX_READ_SIZE;
  let size = MIN_READ_SIZE;
  while (size < count * 2) size *= 2;
  return size;
}

/**
 * The transport the client reads a `Deno.Conn` given by hand through (`new MqttClient(conn)`):
 * a {@linkcode DenoConnTransport} over it, so that the connection is read with `conn.read` into
 * a small buffer rather than through `conn.readable`, which holds a 64 KiB buffer per pending
 * read. Anything else is left as it is.
 *
 * @param transport What the client was given.
 * @returns The `DenoConnTransport` over it when it is a `Deno.Conn`; else `undefined`.
 *
 * @example
 * ```ts
 * import { adoptDenoConn } from "./deno.ts";
 *
 * const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
 * console.log(adoptDenoConn({ readable, writable })); // undefined
 * ```
 */
export function adoptDenoConn(transport: Transport): DirectTransport | undefined {
  const conn = transport as Partial<Deno.Conn>;
  if (
    typeof conn.read !== "function" || typeof conn.write !== "function" ||
    typeof conn.closeWrite !== "function" || typeof conn.close !== "function" ||
    conn.remoteAddr === undefined || isDirectTransport(transport)
  ) {
    return undefined;
  }
  const remote = conn.remoteAddr as Partial<Deno.NetAddr>;
  const hostname = remote.hostname ?? "localhost";
  const port = remote.port ?? 0;
  const address: BrokerAddress = {
    kind: "tcp",
    hostname,
    port,
    display: remote.hostname === undefined ? "the connection" : `tcp://${hostname}:${port}`,
  };
  return new DenoConnTransport(transport as Deno.Conn, address);
}
