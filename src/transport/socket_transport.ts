/**
 * What Kite's three socket transports (`Bun.connect`, `node:net` and `node:tls`, `Deno.Conn`)
 * share: the web streams made on first use, the broken and closed state, and the end of reading,
 * handed to the sink once, even when it came before `listen`.
 *
 * @module
 */

import { ConnectionClosedError } from "../errors.ts";
import { type BrokerAddress, connectionLost } from "./address.ts";
import { streamFrom, streamTo } from "./streams.ts";
import type { ByteSink, DirectTransport } from "./types.ts";

/** The web streams over a transport, made on first use: the client uses neither. */
interface Streams {
  readable?: ReadableStream<Uint8Array>;
  writable?: WritableStream<Uint8Array>;
  /** The writable's controller, to error the stream when the connection breaks. */
  controller?: WritableStreamDefaultController;
}

/**
 * A socket as a {@linkcode DirectTransport}, minus what depends on the runtime's socket (how to
 * read, write and close it): a subclass reads into {@linkcode SocketTransport.sink}, and reports
 * the broker's end with {@linkcode SocketTransport.finish} and a broken connection with
 * {@linkcode SocketTransport.fail}. `readable` and `writable` are made on first use, over the
 * same `listen`, `write`, `end` and `close`.
 *
 * Reading ends once: cleanly when the broker ends the connection or it is closed, with a
 * `ConnectionClosedError` when it breaks. Once broken or closed, the writable stream errors and
 * writes should be refused with {@linkcode SocketTransport.brokenError}. A subclass that stops its
 * socket for a pause the sink asked for reads on through {@linkcode SocketTransport.resumeAfter}.
 * An idle connection pays for seven fields here; the error of a closed connection is made only
 * once something needs it.
 *
 * @example A transport over an in-memory "socket" that answers each write with its bytes
 * ```ts
 * import { brokerAddress } from "./address.ts";
 * import { SocketTransport } from "./socket_transport.ts";
 *
 * class Echo extends SocketTransport {
 *   protected override startReading(): void {}
 *   protected override shut(): void {}
 *   protected override resumeReading(): void {}
 *   override write(bytes: Uint8Array): Promise<void> {
 *     const broken = this.brokenError();
 *     if (broken !== undefined) return Promise.reject(broken);
 *     this.sink?.data(bytes.slice());
 *     return Promise.resolve();
 *   }
 *   override end(): Promise<void> {
 *     this.finish();
 *     return Promise.resolve();
 *   }
 * }
 *
 * const echo = new Echo(brokerAddress(new URL("mqtt://127.0.0.1")));
 * const reader = echo.readable.getReader();
 * await echo.write(new Uint8Array([0xc0, 0x00]));
 * console.log((await reader.read()).value); // Uint8Array(2) [ 192, 0 ]
 * echo.close();
 * console.log((await reader.read()).done); // true
 * // "the connection to mqtt://127.0.0.1 closed: the transport was closed"
 * await echo.write(new Uint8Array(1)).catch((error) => console.log(error.message));
 * ```
 */
export abstract class SocketTransport implements DirectTransport {
  // Where it is connected, for error messages (the address itself is not kept).
  readonly #display: string;
  #sink: ByteSink | undefined;
  #streams: Streams | undefined;
  // Whether reading is over: `true` once the sink's `end` was called; the end itself while it
  // waits for `listen`, when it came before.
  #ended: boolean | { error: unknown } = false;
  #closed = false;
  // What ended the connection; replaced by the error made of it once something needs one.
  #brokenBy: Error | string | undefined;
  // Reads on once a pause the sink asked for is over; made at the first pause.
  #onResume: (() => void) | undefined;

  /**
   * A transport for a connection to `address`.
   *
   * @param address The broker it is connected to, for error messages.
   */
  constructor(address: BrokerAddress) {
    this.#display = address.display;
  }

  /** Bytes from the broker, as a stream; made on first use. */
  get readable(): ReadableStream<Uint8Array> {
    return (this.#streams ??= {}).readable ??= streamFrom(this);
  }

  /** Bytes to the broker, as a stream; made on first use. */
  get writable(): WritableStream<Uint8Array> {
    const streams = this.#streams ??= {};
    return streams.writable ??= streamTo(this, (controller) => {
      streams.controller = controller;
      const broken = this.brokenError();
      if (broken !== undefined) controller.error(broken);
    });
  }

  /** Starts handing every chunk the socket reads to `sink`. */
  listen(sink: ByteSink): void {
    if (this.#sink !== undefined) throw new TypeError("the transport is read already");
    this.#sink = sink;
    const early = this.#ended;
    if (typeof early !== "object") {
      this.startReading();
      return;
    }
    this.#ended = true;
    sink.end(early.error);
  }

  /** Closes the connection at once; reading ends, further writes reject. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.shut();
    this.fail("the transport was closed");
  }

  /** Writes `bytes`; settles once the socket has taken all of them. */
  abstract write(bytes: Uint8Array): Promise<void>;

  /** Ends the writing side once the writes before it are done. */
  abstract end(): Promise<void>;

  /** Starts reading into {@linkcode SocketTransport.sink}: `listen` calls it, unless reading is over. */
  protected abstract startReading(): void;

  /** Closes the socket at once: `close` calls it, then {@linkcode SocketTransport.fail}. */
  protected abstract shut(): void;

  /** Reads on after a pause: {@linkcode SocketTransport.resumeAfter} calls it, unless reading is over. */
  protected abstract resumeReading(): void;

  /**
   * Reads on once `pause`, what the sink's `data` returned, settles (resolved or rejected: see
   * {@linkcode ByteSink.data}), unless reading ends meanwhile. The subclass has stopped reading
   * until then.
   */
  protected resumeAfter(pause: Promise<void>): void {
    const resume = this.#onResume ??= () => {
      if (this.#ended === false) this.resumeReading();
    };
    pause.then(resume, resume);
  }

  /** Whether writes wait on the socket, to be failed when the connection breaks. */
  protected hasPendingWrites(): boolean {
    return false;
  }

  /**
   * Fails the writes that wait on the socket: the connection broke, or was closed.
   *
   * @param _error What they fail with.
   */
  protected failWrites(_error: ConnectionClosedError): void {}

  /** Where the bytes read go: `undefined` until `listen`. */
  protected get sink(): ByteSink | undefined {
    return this.#sink;
  }

  /** Whether reading is over (the sink's `end` was called, or is due at `listen`). */
  protected get ended(): boolean {
    return this.#ended !== false;
  }

  /** Whether `close` was called. */
  protected get closed(): boolean {
    return this.#closed;
  }

  /** How the broker is shown in error messages. */
  protected get display(): string {
    return this.#display;
  }

  /**
   * The error the connection ended with, made on first need.
   *
   * @returns The error, or `undefined` while the connection is open.
   */
  protected brokenError(): ConnectionClosedError | undefined {
    const by = this.#brokenBy;
    if (by === undefined || by instanceof ConnectionClosedError) return by;
    return this.#brokenBy = connectionLost(this.#display, by);
  }

  /** Reading is over cleanly: the broker ended the connection. */
  protected finish(): void {
    this.#finish(undefined);
  }

  /**
   * The connection is over: ends reading, errors the writable stream, fails the writes waiting.
   *
   * @param reason What ended it: the runtime's error, or a sentence.
   */
  protected fail(reason: Error | string): void {
    this.#brokenBy ??= reason;
    const controller = this.#streams?.controller;
    // Closed or ended with nobody waiting: no error to make (the common end of a connection,
    // thousands at once when many clients close).
    if (
      controller === undefined && !this.hasPendingWrites() &&
      (this.#closed || this.#ended !== false)
    ) {
      this.#finish(undefined);
      return;
    }
    const error = connectionLost(this.#display, reason);
    if (this.#brokenBy === reason) this.#brokenBy = error;
    this.#finish(this.#closed ? undefined : error);
    controller?.error(error);
    this.failWrites(error);
  }

  #finish(error: unknown): void {
    if (this.#ended !== false) return;
    const sink = this.#sink;
    if (sink === undefined) {
      this.#ended = { error };
      return;
    }
    this.#ended = true;
    sink.end(error);
  }
}
