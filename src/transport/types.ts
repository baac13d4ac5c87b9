/**
 * What the client needs of a connection: a pair of web byte streams.
 *
 * @module
 */

/**
 * A byte connection: what `Deno.connect` returns, what a WebSocket or a Node socket is adapted
 * to, or anything else with a readable and a writable byte stream.
 */
export interface Transport {
  /** Bytes from the broker. */
  readable: ReadableStream<Uint8Array>;
  /** Bytes to the broker. */
  writable: WritableStream<Uint8Array>;
  /**
   * Closes the connection at once, if the transport can (`Deno.Conn` can). A transport whose
   * closing takes a handshake (WebSocket) returns a promise that settles once it is closed.
   */
  close?(): void | Promise<void>;
}

/** How to reach a broker: everything `connect(url, options)` passes to the transport. */
export interface TransportOptions {
  /** Trusted CA certificates, PEM; replaces the system's roots for this connection. */
  ca?: string | string[];
  /** The client certificate for mutual TLS, PEM. */
  cert?: string;
  /** The private key of `cert`, PEM. */
  key?: string;
  /** The name to send in SNI and to verify the certificate against; default: the URL's host. */
  servername?: string;
  /** Whether to verify the broker's certificate. Default `true`; `false` is for tests only. */
  rejectUnauthorized?: boolean;
  /**
   * The local IP address to connect from (TCP and TLS only), such as `127.0.0.2`: to spread many
   * connections over several source addresses. On Deno it is dialled through `node:net`, as
   * `Deno.connect` takes no local address.
   */
  localAddress?: string;
  /** WebSocket subprotocols; default `["mqtt"]`. */
  protocols?: string[];
  /** Gives up the attempt when aborted. */
  signal?: AbortSignal;
}

/**
 * Where a {@linkcode DirectTransport} hands the bytes it reads, in place of a readable stream.
 */
export interface ByteSink {
  /**
   * Bytes from the broker; the chunk is the sink's to keep. A returned promise stops reading
   * until it settles (back-pressure).
   */
  data(chunk: Uint8Array): Promise<void> | undefined;
  /**
   * Reading is over: the broker ended the connection (no error), it broke (the error), or
   * `close()` was called (no error). Called once.
   */
  end(error?: unknown): void;
}

/**
 * A transport that can also be used without web streams, the way Kite's own TCP and TLS
 * transports are used by the client: no stream objects, no chain of promises between the socket
 * and the decoder, and a read buffer that grows only when the bytes need it. Its `readable` and
 * `writable` are then never touched (use one way or the other, not both).
 */
export interface DirectTransport extends Transport {
  /** Starts reading into `sink`. Called at most once. */
  listen(sink: ByteSink): void;
  /**
   * Writes `bytes`; settles once they are handed to the operating system. Rejects with a
   * `ConnectionClosedError` when the connection breaks or is closed.
   */
  write(bytes: Uint8Array): Promise<void>;
  /** Ends the writing side once the writes before it are done (a TCP half-close). */
  end(): Promise<void>;
  /** Closes the connection at once; the sink's `end` is called if it was not. Idempotent. */
  close(): void;
}

/**
 * Whether `transport` offers the {@linkcode DirectTransport} way in.
 *
 * @param transport Any transport.
 * @returns `true` for Kite's own TCP and TLS transports.
 *
 * @example
 * ```ts
 * import { isDirectTransport } from "./types.ts";
 *
 * const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
 * console.log(isDirectTransport({ readable, writable })); // false
 * ```
 */
export function isDirectTransport(transport: Transport): transport is DirectTransport {
  const direct = transport as Partial<DirectTransport>;
  return typeof direct.listen === "function" && typeof direct.write === "function" &&
    typeof direct.end === "function" && typeof direct.close === "function";
}
