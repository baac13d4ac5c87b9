/**
 * TCP and TLS through `node:net` and `node:tls`: the transport on Bun and Node, and on Deno for
 * the TLS options `Deno.connectTls` lacks. A socket is adapted to web streams here, with
 * back-pressure both ways.
 *
 * @module
 */

import type * as Net from "node:net";
import type * as Tls from "node:tls";
import { abortable } from "../_async.ts";
import { type BrokerAddress, connectionLost, unreachable } from "./address.ts";
import type { ConnectionClosedError } from "../errors.ts";
import { SocketTransport } from "./socket_transport.ts";
import type { ByteSink, DirectTransport, TransportOptions } from "./types.ts";

/** The `node:net` and `node:tls` modules of the running runtime. */
export interface NodeSockets {
  /** `node:net`. */
  net: typeof Net;
  /** `node:tls`. */
  tls: typeof Tls;
}

/**
 * How many bytes the readable side queues before the socket is paused. Past it, the kernel's
 * buffers fill and TCP flow control slows the broker down.
 */
export { READ_HIGH_WATER_MARK } from "./streams.ts";

/**
 * Finds `node:net` and `node:tls` through `process.getBuiltinModule`, which Bun, Deno and
 * Node >= 20.16 offer. Asking the runtime, rather than importing, keeps this module loadable in
 * browsers and by bundlers.
 *
 * @returns Both modules, or `undefined` where the runtime has none.
 *
 * @example
 * ```ts
 * import { nodeSockets } from "./node.ts";
 *
 * console.log(nodeSockets() === undefined ? "no node:net here" : "node:net is here");
 * ```
 */
export function nodeSockets(): NodeSockets | undefined {
  const process = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } })
    .process;
  if (typeof process?.getBuiltinModule !== "function") return undefined;
  const net = process.getBuiltinModule("node:net") as typeof Net | undefined;
  const tls = process.getBuiltinModule("node:tls") as typeof Tls | undefined;
  if (typeof net?.connect !== "function" || typeof tls?.connect !== "function") return undefined;
  return { net, tls };
}

/**
 * Dials a broker over `node:net` (`mqtt:`, `tcp:`) or `node:tls` (`mqtts:`, `tls:`).
 *
 * A TLS connection resolves only after the handshake (`secureConnect`): Bun drops bytes that are
 * written to a TLS socket before that.
 *
 * @param sockets The runtime's `node:net` and `node:tls`.
 * @param address The broker; its kind must be `tcp` or `tls`.
 * @param options TLS options and the abort signal.
 * @param pauseReads Whether the socket may be paused when the reader falls behind; see
 * {@linkcode NodeSocketTransport}.
 * @returns The open connection.
 * @throws {ConnectionClosedError} When the broker cannot be reached or the handshake fails.
 *
 * @example
 * ```ts
 * import { brokerAddress } from "./address.ts";
 * import { nodeSockets, openNodeTransport } from "./node.ts";
 *
 * const sockets = nodeSockets();
 * if (sockets !== undefined) {
 *   const address = brokerAddress(new URL("mqtt://127.0.0.1:1883"));
 *   await openNodeTransport(sockets, address, {}).then(
 *     (transport) => transport.close(),
 *     (error) => console.log(error.message), // no broker listens there
 *   );
 * }
 * ```
 */
export function openNodeTransport(
  sockets: NodeSockets,
  address: BrokerAddress,
  options: TransportOptions,
  pauseReads = true,
): Promise<NodeSocketTransport> {
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  const secure = address.kind === "tls";
  // tls.connect passes socket options such as localAddress on to net.connect; its type omits them.
  const tlsOptions: Tls.ConnectionOptions & { localAddress?: string } = {
    host: address.hostname,
    port: address.port,
    ca: options.ca,
    cert: options.cert,
    key: options.key,
    // Node's own default (the host, or no SNI for an IP address) applies when none is given.
    ...(options.servername === undefined ? {} : { servername: options.servername }),
    rejectUnauthorized: options.rejectUnauthorized ?? true,
    localAddress: options.localAddress,
  };
  const socket: Net.Socket = secure ? sockets.tls.connect(tlsOptions) : sockets.net.connect({
    host: address.hostname,
    port: address.port,
    localAddress: options.localAddress,
  });
  socket.setNoDelay(true);
  const readyEvent = secure ? "secureConnect" : "connect";
  const attempt = new Promise<NodeSocketTransport>((resolve, reject) => {
    const settle = () => {
      socket.off(readyEvent, onReady);
      socket.off("error", onError);
      socket.off("close", onClose);
    };
    const onReady = () => {
      settle();
      resolve(new NodeSocketTransport(socket, address, pauseReads));
    };
    const onError = (error: Error) => {
      settle();
      socket.on("error", () => {});
      socket.destroy();
      reject(unreachable(address, error));
    };
    const onClose = () => {
      settle();
      reject(
        unreachable(
          address,
          secure ? "the connection closed during the TLS handshake" : "the connection closed",
        ),
      );
    };
    socket.once(readyEvent, onReady);
    socket.once("error", onError);
    socket.once("close", onClose);
  });
  return abortable(attempt, signal, (transport) => transport.close(), () => {
    socket.on("error", () => {});
    socket.destroy();
  });
}

// Where a socket's listeners find its transport.
const TRANSPORT = Symbol("NodeSocketTransport");
type OwnedSocket = Net.Socket & { [TRANSPORT]: NodeSocketTransport };

/**
 * A `node:net` or `node:tls` socket adapted to a pair of web byte streams, made on first use, or
 * used directly, as the client does (see {@linkcode DirectTransport}): each chunk the socket reads
 * is handed on as it is, and the socket is paused while the client asks it to wait.
 *
 * The readable side pauses the socket once {@linkcode READ_HIGH_WATER_MARK} bytes wait unread, and
 * resumes it when the reader catches up. A write settles once the socket has handed the chunk to
 * the kernel and, if the socket's own buffer was full, once it drained. When the connection
 * breaks, both streams error with a {@linkcode ConnectionClosedError} whose `cause` is the
 * socket's error; when the broker ends it, the readable side closes.
 *
 * @example
 * ```ts
 * import * as net from "node:net";
 * import { brokerAddress } from "./address.ts";
 * import { NodeSocketTransport } from "./node.ts";
 *
 * const address = brokerAddress(new URL("mqtt://127.0.0.1:1883"));
 * const socket = net.connect({ host: address.hostname, port: address.port });
 * socket.once("connect", () => new NodeSocketTransport(socket, address).close());
 * socket.once("error", (error) => console.log(error.message)); // no broker listens there
 * ```
 */
export class NodeSocketTransport extends SocketTransport implements DirectTransport {
  readonly #socket: Net.Socket;
  readonly #pauseReads: boolean;
  /** The write or end waiting on the socket, to be failed if the socket closes first. */
  #pending: { onDrain(): void; fail(error: Error): void } | undefined;
  // The chunks read before `listen`, when the socket never pauses.
  #early: Uint8Array[] | undefined;

  /**
   * Adapts a connected socket. The socket belongs to the transport from now on.
   *
   * @param socket A socket that has connected (or, for TLS, finished its handshake).
   * @param address The broker it is connected to, for error messages.
   * @param pauseReads Whether to pause the socket while the reader is behind. `false` for
   * `node:tls` on Deno 2.9, whose socket, once paused, never reports the broker's end.
   */
  constructor(socket: Net.Socket, address: BrokerAddress, pauseReads = true) {
    super(address);
    this.#socket = socket;
    this.#pauseReads = pauseReads;
    // The listeners are shared by every socket, each finds its transport on the socket: no
    // closures per connection.
    (socket as OwnedSocket)[TRANSPORT] = this;
    // A socket that must never pause flows from the start, as one that was never read would
    // not report its end either: what comes before `listen` waits here.
    if (!pauseReads) socket.on("data", NodeSocketTransport.#onData);
    socket.on("drain", NodeSocketTransport.#onDrain);
    socket.on("end", NodeSocketTransport.#onEnd);
    socket.on("error", NodeSocketTransport.#onError);
    socket.on("close", NodeSocketTransport.#onClose);
  }

  static #onData(this: Net.Socket, chunk: Uint8Array): void {
    (this as OwnedSocket)[TRANSPORT].#received(chunk);
  }

  static #onDrain(this: Net.Socket): void {
    (this as OwnedSocket)[TRANSPORT].#pending?.onDrain();
  }

  static #onEnd(this: Net.Socket): void {
    (this as OwnedSocket)[TRANSPORT].finish();
  }

  static #onError(this: Net.Socket, error: Error): void {
    (this as OwnedSocket)[TRANSPORT].fail(error);
  }

  static #onClose(this: Net.Socket): void {
    (this as OwnedSocket)[TRANSPORT].fail("the socket closed");
  }

  /** Starts handing every chunk the socket reads to `sink`, first those it read before. */
  override listen(sink: ByteSink): void {
    const early = this.#early;
    this.#early = undefined;
    for (const chunk of early ?? []) sink.data(chunk);
    super.listen(sink);
  }

  /** Reads from the socket, unless it flows already. */
  protected override startReading(): void {
    if (this.#pauseReads) this.#socket.on("data", NodeSocketTransport.#onData);
  }

  /** Destroys the socket at once. */
  protected override shut(): void {
    this.#socket.destroy();
  }

  /** Resumes the socket, paused for the sink. */
  protected override resumeReading(): void {
    this.#socket.resume();
  }

  /** A chunk the socket read. */
  #received(chunk: Uint8Array): void {
    if (this.ended) return;
    // A plain Uint8Array over the Buffer's memory: Buffer's slice() would not copy.
    const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const sink = this.sink;
    if (sink === undefined) {
      (this.#early ??= []).push(bytes);
      return;
    }
    const pause = sink.data(bytes);
    if (pause !== undefined && this.#pauseReads) {
      this.#socket.pause();
      this.resumeAfter(pause);
    }
  }

  protected override hasPendingWrites(): boolean {
    return this.#pending !== undefined;
  }

  protected override failWrites(error: ConnectionClosedError): void {
    const pending = this.#pending;
    this.#pending = undefined;
    pending?.fail(error);
  }

  /** Writes `bytes`; settles once the socket has them and, if its buffer was full, drained. */
  override write(bytes: Uint8Array): Promise<void> {
    const socket = this.#socket;
    if (this.closed || socket.destroyed) {
      return Promise.reject(connectionLost(this.display, "the socket is closed"));
    }
    return new Promise<void>((resolve, reject) => {
      let flushed = false;
      let drained = true;
      const pending = {
        onDrain: () => {
          drained = true;
          if (flushed) settle();
        },
        fail: reject,
      };
      const settle = (error?: Error | null) => {
        if (this.#pending !== pending) return;
        this.#pending = undefined;
        if (error) {
          reject(connectionLost(this.display, this.closed ? "the transport was closed" : error));
        } else resolve();
      };
      this.#pending = pending;
      const accepted = socket.write(bytes, (error) => {
        flushed = true;
        if (error || drained) settle(error);
      });
      if (!accepted && !flushed) drained = false;
    });
  }

  /** Ends the writing side once the writes before it are done. */
  override end(): Promise<void> {
    if (this.closed || this.#socket.destroyed) {
      return Promise.reject(connectionLost(this.display, "the socket is closed"));
    }
    return new Promise<void>((resolve, reject) => {
      const pending = { onDrain: () => {}, fail: reject };
      this.#pending = pending;
      this.#socket.end(() => {
        if (this.#pending !== pending) return;
        this.#pending = undefined;
        resolve();
      });
    });
  }
}
