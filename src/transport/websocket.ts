/**
 * MQTT over WebSocket (`ws:`, `wss:`), on every runtime that has a `WebSocket`.
 *
 * TLS options for `wss:` reach the runtime where its `WebSocket` takes them:
 *
 * | runtime | `ca`, `cert`, `key` | `servername`, `rejectUnauthorized: false` |
 * |---|---|---|
 * | Bun | the constructor's `tls` option | the same `tls` option |
 * | Deno | a `Deno.createHttpClient` passed as `client` | not possible: run Deno with `--cert` or `DENO_CERT`, and `--unsafely-ignore-certificate-errors` |
 * | Node, browsers | not possible: `NODE_EXTRA_CA_CERTS` on Node, the system's trust store in a browser | not possible |
 *
 * Where an option cannot be applied, a failed connect says so in its message.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { abortable } from "../_async.ts";
import { type BrokerAddress, connectionLost, unreachable } from "./address.ts";
import type { Transport, TransportOptions } from "./types.ts";

/** The subprotocol MQTT over WebSocket uses [MQTT-6.0.0-3]. */
export const DEFAULT_WEBSOCKET_PROTOCOLS: readonly string[] = ["mqtt"];

/**
 * A write settles once at most this many bytes wait in the WebSocket's send buffer, so a broker
 * that does not read cannot make the process buffer without bound.
 */
export const WRITE_HIGH_WATER_MARK = 256 * 1024;

/** How often, at most, a write waiting for the send buffer to drain looks at `bufferedAmount`. */
const DRAIN_POLL_MAX_MS = 16;

/** What `new WebSocket(url, init)` gets, and what to release once the socket has closed. */
interface WebSocketSetup {
  init: string[] | Record<string, unknown>;
  dispose(): void;
  /** The TLS options this runtime's WebSocket cannot apply, for the message of a failure. */
  ignored: string[];
}

/**
 * Opens a WebSocket to the broker with subprotocol `mqtt` (or `options.protocols`) and adapts it
 * to a pair of byte streams.
 *
 * @param address The broker; its kind must be `websocket`.
 * @param options Subprotocols, TLS options for `wss:` (see the module documentation) and the
 * abort signal.
 * @returns The open connection.
 * @throws {ConnectionClosedError} When the WebSocket fails or closes before it opens.
 *
 * @example
 * ```ts
 * import { brokerAddress } from "./address.ts";
 * import { openWebSocketTransport } from "./websocket.ts";
 *
 * const address = brokerAddress(new URL("ws://127.0.0.1:8080"));
 * await openWebSocketTransport(address, {}).then(
 *   (transport) => transport.close(),
 *   (error) => console.log(error.message), // no broker listens there
 * );
 * ```
 */
export function openWebSocketTransport(
  address: BrokerAddress,
  options: TransportOptions,
): Promise<WebSocketTransport> {
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  const url = address.webSocketUrl!;
  const setup = webSocketSetup(url, options);
  let socket: WebSocket;
  try {
    // The runtimes that take an options object as the second argument are typed for strings.
    socket = new WebSocket(url, setup.init as string[]);
  } catch (error) {
    setup.dispose();
    return Promise.reject(unreachable(address, error));
  }
  socket.binaryType = "arraybuffer";
  const transport = new WebSocketTransport(socket, address, setup.dispose);
  const attempt = new Promise<WebSocketTransport>((resolve, reject) => {
    const settle = () => {
      socket.removeEventListener("open", onOpen);
      socket.removeEventListener("error", onError);
      socket.removeEventListener("close", onClose);
    };
    const fail = (reason: string) => {
      settle();
      transport.close();
      const hint = setup.ignored.length === 0
        ? ""
        : ` (this runtime's WebSocket cannot apply ${setup.ignored.join(", ")})`;
      reject(unreachable(address, reason + hint));
    };
    const onOpen = () => {
      settle();
      resolve(transport);
    };
    const onError = (event: Event) => {
      const message = (event as ErrorEvent).message;
      fail(message ? message : "the WebSocket failed before it opened");
    };
    const onClose = (event: Event) => {
      const { code, reason } = event as CloseEvent;
      fail(`the WebSocket closed before it opened (code ${code}${reason ? `: ${reason}` : ""})`);
    };
    socket.addEventListener("open", onOpen);
    socket.addEventListener("error", onError);
    socket.addEventListener("close", onClose);
  });
  return abortable(attempt, signal, (transport) => transport.close(), () => transport.close());
}

/** Chooses how to hand the subprotocols and TLS options to this runtime's `WebSocket`. */
function webSocketSetup(url: URL, options: TransportOptions): WebSocketSetup {
  const protocols = [...(options.protocols ?? DEFAULT_WEBSOCKET_PROTOCOLS)];
  const setup: WebSocketSetup = { init: protocols, dispose: () => {}, ignored: [] };
  if (url.protocol !== "wss:") return setup;
  const given: string[] = (["ca", "cert", "key", "servername"] as const)
    .filter((name) => options[name] !== undefined);
  if (options.rejectUnauthorized === false) given.push("rejectUnauthorized: false");
  if (given.length === 0) return setup;

  const bun = (globalThis as { Bun?: unknown }).Bun;
  if (typeof bun === "object" && bun !== null) {
    // Bun's WebSocket takes the TLS options of its fetch: https://bun.com/reference/bun/WebSocketOptionsTLS
    setup.init = {
      protocols,
      tls: {
        ca: options.ca,
        cert: options.cert,
        key: options.key,
        servername: options.servername,
        rejectUnauthorized: options.rejectUnauthorized ?? true,
      },
    };
    return setup;
  }

  const deno = (globalThis as { Deno?: { createHttpClient?: unknown } }).Deno;
  if (typeof deno?.createHttpClient === "function") {
    const client = Deno.createHttpClient({
      caCerts: options.ca === undefined ? undefined : [options.ca].flat(),
      ...(options.cert !== undefined && options.key !== undefined
        ? { cert: options.cert, key: options.key }
        : {}),
    });
    setup.init = { protocols, client };
    setup.dispose = () => client.close();
    setup.ignored = given.filter((name) =>
      name === "servername" || name.startsWith("rejectUnauthorized")
    );
    return setup;
  }

  setup.ignored = given;
  return setup;
}

/**
 * A `WebSocket` adapted to a pair of byte streams: each binary message becomes one chunk of the
 * readable side, each chunk written becomes one binary message.
 *
 * Writes wait while more than {@linkcode WRITE_HIGH_WATER_MARK} bytes sit in the send buffer. A
 * WebSocket cannot be told to stop receiving, so a reader that stops reading makes messages queue
 * in the readable side. When the WebSocket closes without a clean closing handshake, both streams
 * error with a {@linkcode ConnectionClosedError}; after a clean close, the readable side closes.
 * A text message breaks [MQTT-6.0.0-1] and errors the readable side with a
 * {@linkcode ProtocolError}.
 *
 * @example
 * ```ts
 * import { brokerAddress } from "./address.ts";
 * import { WebSocketTransport } from "./websocket.ts";
 *
 * const socket = new WebSocket("ws://127.0.0.1:8080/mqtt", ["mqtt"]);
 * socket.binaryType = "arraybuffer";
 * const transport = new WebSocketTransport(socket, brokerAddress(new URL(socket.url)), () => {});
 * transport.close();
 * ```
 */
export class WebSocketTransport implements Transport {
  /** Bytes from the broker. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Bytes to the broker. */
  readonly writable: WritableStream<Uint8Array>;
  readonly #socket: WebSocket;
  readonly #address: BrokerAddress;
  readonly #dispose: () => void;
  #readableController!: ReadableStreamDefaultController<Uint8Array>;
  #writableController!: WritableStreamDefaultController;
  #readableDone = false;
  #closed = false;
  /** Wakes a write that waits for the send buffer to drain, to fail it: the socket closed. */
  #wake: (() => void) | undefined;

  /**
   * Adapts a WebSocket, open or still connecting, whose `binaryType` is `"arraybuffer"`. The
   * socket belongs to the transport from now on.
   *
   * @param socket The WebSocket.
   * @param address The broker it connects to, for error messages.
   * @param dispose Called once the socket has closed, to release what was made for it.
   */
  constructor(socket: WebSocket, address: BrokerAddress, dispose: () => void) {
    this.#socket = socket;
    this.#address = address;
    this.#dispose = dispose;
    this.readable = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#readableController = controller;
      },
      cancel: () => {
        this.#readableDone = true;
        this.close();
      },
    });
    this.writable = new WritableStream<Uint8Array>({
      start: (controller) => {
        this.#writableController = controller;
      },
      write: (chunk) => this.#write(chunk),
      // A WebSocket cannot half-close: the readable side ends with the closing handshake.
      close: () => {
        if (socket.readyState <= WebSocket.OPEN) socket.close(1000);
      },
      abort: () => this.close(),
    });
    socket.addEventListener("message", (event) => this.#onMessage(event));
    socket.addEventListener("close", (event) => this.#onClose(event));
  }

  /**
   * Closes the WebSocket (code 1000); the readable side closes, further writes reject. Resolves
   * once the socket has closed and everything it held is released. Idempotent.
   */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      if (this.#socket.readyState <= WebSocket.OPEN) this.#socket.close(1000);
      this.#end(connectionLost(this.#address, "the transport was closed"));
    }
    if (this.#socket.readyState === WebSocket.CLOSED) this.#released();
    return this.#gone;
  }

  // Settles once the socket's close event has come and what it held is released.
  #released!: () => void;
  #gone: Promise<void> = new Promise((resolve) => this.#released = resolve);

  #onMessage(event: MessageEvent): void {
    if (this.#readableDone) return;
    if (event.data instanceof ArrayBuffer) {
      this.#readableController.enqueue(new Uint8Array(event.data));
      return;
    }
    this.#readableDone = true;
    this.#readableController.error(
      new ProtocolError("the broker sent a WebSocket text message", "MQTT-6.0.0-1"),
    );
    this.close();
  }

  #onClose(event: CloseEvent): void {
    const { code, reason, wasClean } = event;
    const detail = `the WebSocket closed (code ${code}${reason ? `: ${reason}` : ""})`;
    this.#end(connectionLost(this.#address, detail), wasClean);
    this.#dispose();
    this.#released();
  }

  /** Ends both streams: the readable side closes if the end was orderly, else it errors. */
  #end(error: Error, clean = false): void {
    if (!this.#readableDone) {
      this.#readableDone = true;
      if (this.#closed || clean) this.#readableController.close();
      else this.#readableController.error(error);
    }
    this.#writableController.error(error);
    this.#wake?.();
  }

  async #write(chunk: Uint8Array): Promise<void> {
    const socket = this.#socket;
    if (this.#closed || socket.readyState !== WebSocket.OPEN) {
      throw connectionLost(this.#address, "the WebSocket is not open");
    }
    // A chunk is never backed by a SharedArrayBuffer: the browser's `send` types want that said.
    socket.send(chunk as Uint8Array<ArrayBuffer>);
    // The WebSocket API has no event for a draining send buffer: look again, less often the
    // longer it takes, until it drains or the socket closes.
    for (let wait = 1; socket.bufferedAmount > WRITE_HIGH_WATER_MARK;) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
      if (this.#closed || socket.readyState !== WebSocket.OPEN) {
        throw connectionLost(this.#address, "the WebSocket closed while a write waited");
      }
      wait = Math.min(wait * 2, DRAIN_POLL_MAX_MS);
    }
  }
}
