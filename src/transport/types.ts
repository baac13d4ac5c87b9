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
