/**
 * One live connection to the broker: the read loop (transport → decoder → the owner), batched
 * writes of the session's outbox (session → encoder → transport), and its keepalive deadline
 * (one timer for all connections, see `deadlines.ts`). It knows packets and bytes, not users: what
 * a packet means and what a failure leads to is the owning client's business.
 *
 * @module
 */

import { type Clock, Deferred, noop } from "../_async.ts";
import { ConnectionClosedError, StoreError } from "../errors.ts";
import { Writer } from "../packet/bytes.ts";
import { type Deadline, Deadlines, settlesWithin } from "./deadlines.ts";
import { PacketDecoder } from "../packet/decoder_stream.ts";
import { encodeInto } from "../packet/encode.ts";
import type { Packet, ProtocolVersion } from "../packet/types.ts";
import type { Session } from "../session/mod.ts";
import { adoptDenoConn } from "../transport/deno.ts";
import {
  type ByteSink,
  type DirectTransport,
  isDirectTransport,
  type Transport,
} from "../transport/types.ts";

const DONE: Promise<void> = Promise.resolve();

/** How long closing waits for writes and the transport's close before it gives up on them. */
export const CLOSE_GRACE_MS = 1000;

/**
 * The packets decoded while the owner holds reading back, the promise that settles once they are
 * all handled (what the transport waits for before reading on), and what ended reading
 * meanwhile, reported once they are.
 */
class Held {
  readonly queue: Packet[] = [];
  draining: Promise<void> = DONE;
  ended: { error: unknown } | undefined;
}

/** A transport read and written through its streams: their reader and writer, and the read loop. */
interface StreamEnds {
  reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  readLoop: Promise<void>;
}

/** What a connection asks of the client that owns it. */
export interface ConnectionOwner {
  /**
   * Handles one packet from the broker. A returned promise holds back reading until it settles
   * (back-pressure); a throw fails the connection.
   */
  handle(packet: Packet): Promise<void> | undefined;
  /** The connection failed: the stream ended or errored, a write failed, keepalive timed out. */
  fail(reason: unknown): void;
  /** Resolves once what the store must keep is durable; rejects with a `StoreError`. */
  durable(): Promise<void>;
  /** Whether keepalive runs now (a CONNACK accepted the connection). */
  isLive(): boolean;
}

/** The settings of a connection. */
export interface ConnectionOptions {
  /** The protocol version of the codec. */
  protocolVersion: ProtocolVersion;
  /** The largest packet accepted from the broker, if limited. */
  maximumIncoming: number | undefined;
  /** Time and timers. */
  clock: Clock;
}

/**
 * One connection over a transport. `start` begins reading; the session's outbox is written in
 * batches whenever `scheduleFlush` is called; `close` ends it all and never throws or hangs.
 *
 * Bytes go straight from the transport to the decoder to the owner: through the transport's
 * `listen` where it has one (Kite's TCP and TLS transports), else through one loop over its
 * readable stream. Packets decoded while the owner holds reading back wait in a queue, in order.
 *
 * It keeps to 18 fields, with what only some connections use in objects of their own: on Bun, an
 * object of 19 to 26 fields takes a cell of 224 bytes, one of 13 to 18 a cell of 160.
 */
export class Connection implements ByteSink, Deadline {
  #transport: Transport;
  readonly #session: Session<unknown>;
  readonly #owner: ConnectionOwner;
  readonly #options: ConnectionOptions;
  // Made by `start`, once the transport can be used: the connection is started from then on.
  #decoder: PacketDecoder | undefined;
  #direct: DirectTransport | undefined;
  #stream: StreamEnds | undefined;
  #closed = false;
  // Reading stopped for good: the connection failed (the owner was told) or the bytes ended.
  #stopped = false;
  // While the owner holds reading back.
  #held: Held | undefined;
  // Packets are encoded into #out while #spare is being written. Both start empty and grow to
  // what the batches need: an idle connection holds a few bytes, not two buffers of 4 KiB.
  #out = new Writer();
  // Made by the first swap, and dropped again by releaseSpareBuffer.
  #spare: Writer | undefined;
  #flushScheduled = false;
  #writing: Promise<void> | undefined;
  // Settles once the bytes now in the outbox are written: what QoS 0 publishes wait for.
  #written: Deferred<void> | undefined;
  // The same for the batch being written now: settled by the write, or by closing if it hangs.
  #inWrite: Deferred<void> | undefined;
  /**
   * The keepalive deadline (see {@linkcode Deadline}): the connection is its own entry in the one
   * timer of every connection on this clock, so that no object is made for it.
   */
  at = Infinity;
  /** Its place in the deadlines' heap; -1 while not scheduled. */
  slot = -1;

  /** Wraps a transport; nothing is read or written until `start`. */
  constructor(
    transport: Transport,
    session: Session<unknown>,
    owner: ConnectionOwner,
    options: ConnectionOptions,
  ) {
    this.#transport = transport;
    this.#session = session;
    this.#owner = owner;
    this.#options = options;
  }

  /** Starts reading from the transport. Throws when the transport's streams cannot be used. */
  start(): void {
    // A Deno.Conn given by hand is read in small reads too, not through its own readable.
    const transport = this.#transport = adoptDenoConn(this.#transport) ?? this.#transport;
    const decoder = new PacketDecoder({
      protocolVersion: this.#options.protocolVersion,
      maximumPacketSize: this.#options.maximumIncoming,
    });
    if (isDirectTransport(transport)) {
      this.#direct = transport;
      this.#decoder = decoder;
      transport.listen(this);
      return;
    }
    const stream: StreamEnds = this.#stream = {
      writer: transport.writable.getWriter(),
      reader: undefined,
      readLoop: DONE,
    };
    const reader = stream.reader = transport.readable.getReader();
    this.#decoder = decoder;
    stream.readLoop = this.#readLoop(reader);
  }

  /** Whether packets can still be written: started and not closed. */
  get writable(): boolean {
    return this.#decoder !== undefined && !this.#closed;
  }

  /**
   * A promise that settles once everything queued so far is written: what a QoS 0 publish
   * waits for. It rejects when the connection closes first.
   */
  written(): Promise<void> {
    return (this.#written ??= new Deferred<void>()).promise;
  }

  /** A transport's readable stream, read in one loop into {@linkcode data}. */
  async #readLoop(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
    let error: unknown;
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done || this.#closed || this.#stopped) break;
        const pause = this.data(value);
        if (pause !== undefined) await pause;
        if (this.#closed || this.#stopped) return;
      }
    } catch (caught) {
      error = caught;
    }
    this.end(error);
  }

  /**
   * Bytes from the broker: decodes them and hands each packet to the owner. Returns a promise
   * while the owner holds reading back; the transport reads on once it settles.
   */
  data(chunk: Uint8Array): Promise<void> | undefined {
    if (this.#closed || this.#stopped) return undefined;
    // Reading has ended (malformed bytes, or the end) behind packets still queued: nothing more.
    const held = this.#held;
    if (held?.ended !== undefined) return held.draining;
    // The decoder calls one function shared by every connection, which hands the packet to the
    // connection decoding now: no closure per connection. Restored after, should pushing into
    // one connection ever push into another.
    const outer = Connection.#decoding;
    Connection.#decoding = this;
    try {
      this.#decoder!.push(chunk, Connection.#emit);
    } catch (error) {
      // Malformed bytes, or the owner threw (it refuses the packet). Packets decoded before
      // them and still queued are handled first.
      const held = this.#held;
      if (held !== undefined) held.ended ??= { error };
      else this.#stop(error);
    } finally {
      Connection.#decoding = outer;
    }
    return this.#held?.draining;
  }

  /** Reading is over: the connection fails, once every packet decoded before is handled. */
  end(error?: unknown): void {
    if (this.#closed || this.#stopped) return;
    if (error === undefined) {
      error = new ConnectionClosedError(
        this.#decoder?.pending
          ? "the connection closed in the middle of a packet"
          : "the broker closed the connection",
      );
      // A clean end comes after the bytes: the packets still queued are handled first.
      const held = this.#held;
      if (held !== undefined) {
        held.ended ??= { error };
        return;
      }
    }
    this.#stop(error);
  }

  #stop(error: unknown): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#held = undefined;
    if (!this.#closed) this.#owner.fail(error);
  }

  // The connection whose bytes are being decoded, and the function its decoder hands packets to.
  static #decoding: Connection | undefined;
  static readonly #emit = (packet: Packet): void => Connection.#decoding!.#packet(packet);

  /** A packet decoded from this connection's bytes. */
  #packet(packet: Packet): void {
    if (this.#stopped || this.#closed) return;
    const held = this.#held;
    if (held !== undefined) {
      held.queue.push(packet);
      return;
    }
    const pause = this.#owner.handle(packet);
    if (pause !== undefined) {
      const held = this.#held = new Held();
      held.draining = this.#drain(held, pause);
    }
  }

  /** Waits out `pause`, then handles the held packets in order, pausing again as asked. */
  async #drain(held: Held, pause: Promise<void>): Promise<void> {
    const queue = held.queue;
    try {
      while (true) {
        // Unread packets wait while the user catches up, a PINGRESP among them: keepalive
        // must not take that wait for a dead broker.
        this.#session.readerPaused();
        await pause;
        if (this.#closed || this.#stopped) return;
        this.#session.readerResumed(this.#options.clock.now());
        if (this.#owner.isLive()) this.armKeepalive();
        let next: Promise<void> | undefined;
        while (next === undefined && queue.length > 0) {
          next = this.#owner.handle(queue.shift()!);
          if (this.#closed || this.#stopped) return;
        }
        if (next === undefined) break;
        pause = next;
      }
    } catch (error) {
      this.#stop(error);
      return;
    } finally {
      if (this.#held === held) this.#held = undefined;
    }
    const ended = held.ended;
    if (ended !== undefined) {
      held.ended = undefined;
      this.#stop(ended.error);
    }
  }

  /** Writes the outbox soon: once, at the end of this turn, for all packets queued in it. */
  scheduleFlush(): void {
    if (this.#flushScheduled || this.#writing !== undefined) return;
    this.#flushScheduled = true;
    if (flushQueue.push(this) === 1) queueMicrotask(flushAll);
  }

  /** The flush `scheduleFlush` asked for: run by {@linkcode flushAll}. */
  scheduledFlush(): void {
    this.#flushScheduled = false;
    if (this.#writing === undefined) this.#flush();
  }

  /**
   * Encodes `packets` after whatever is queued, then `last` (an encoded DISCONNECT), and writes
   * it all: the end of a connection. Settles once written or when the write fails.
   */
  sendLast(packets: Packet[], last: Uint8Array): Promise<void> {
    for (let i = 0; i < packets.length; i++) {
      encodeInto(this.#out, packets[i], this.#options.protocolVersion);
    }
    this.#out.reserve(last.length);
    this.#out.raw(last);
    return this.#flush();
  }

  /** Writes bytes at once, past the write loop (which may be waiting for the store). */
  writeNow(bytes: Uint8Array): Promise<void> {
    if (this.#direct !== undefined) {
      return this.#closed ? Promise.resolve() : this.#direct.write(bytes);
    }
    return this.#stream?.writer?.write(bytes) ?? Promise.resolve();
  }

  #write(bytes: Uint8Array): Promise<void> {
    return this.#direct !== undefined
      ? this.#direct.write(bytes)
      : this.#stream!.writer!.write(bytes);
  }

  /** Writes everything in the outbox, one write per batch, until nothing is left. */
  #flush(): Promise<void> {
    if (this.#writing !== undefined) return this.#writing;
    if (this.#decoder === undefined || this.#closed) return Promise.resolve();
    return this.#writing = this.#writeLoop().finally(() => {
      this.#writing = undefined;
      // Packets queued while the loop was finishing would otherwise wait for the next one.
      if (!this.#closed && (this.#session.hasOutput || this.#out.pos > 0)) this.scheduleFlush();
    });
  }

  async #writeLoop(): Promise<void> {
    const session = this.#session;
    const version = this.#options.protocolVersion;
    try {
      while (true) {
        // What the store must keep is durable before the packets that depend on it go out.
        if (session.journaling) await this.#owner.durable();
        if (this.#closed) return;
        const now = this.#options.clock.now();
        const packets = session.takeOutbox(now);
        for (let i = 0; i < packets.length; i++) encodeInto(this.#out, packets[i], version);
        if (this.#out.pos === 0) break;
        const bytes = this.#out.bytes();
        const written = this.#inWrite = this.#written;
        this.#written = undefined;
        // Swap buffers: the next batch is encoded while this one is written.
        const next = this.#spare ?? new Writer();
        this.#spare = this.#out;
        this.#out = next;
        next.reset();
        await this.#write(bytes);
        written?.resolve();
        this.#inWrite = undefined;
        // The time the batch was taken will do: a deadline from it is only earlier.
        if (this.#owner.isLive()) this.armKeepalive(now);
      }
    } catch (error) {
      const failure = error instanceof StoreError
        ? error
        : new ConnectionClosedError("writing to the broker failed", { cause: error });
      this.rejectWrites(failure);
      if (!this.#closed) this.#owner.fail(failure);
    }
  }

  /** Rejects what waits for bytes to be written: the connection will not write them. */
  rejectWrites(error: unknown): void {
    this.#inWrite?.reject(error);
    this.#inWrite = undefined;
    this.#written?.reject(error);
    this.#written = undefined;
  }

  /**
   * Lets go of the buffer the last batch was written from, unless a write is under way: for a
   * connection just accepted, the one CONNECT went from, which an idle connection would hold for
   * nothing, and the writer around it. The next batch that needs one makes a new one.
   */
  releaseSpareBuffer(): void {
    if (this.#writing === undefined) this.#spare = undefined;
  }

  /**
   * Lets the session's keepalive clock run, and sets the timer for its next deadline. `now`, when
   * given, is a time read a moment ago.
   */
  armKeepalive(now: number = this.#options.clock.now()): void {
    const session = this.#session;
    let deadline: number;
    try {
      deadline = session.tick(now);
    } catch (error) {
      this.#owner.fail(error);
      return;
    }
    if (session.hasOutput) this.scheduleFlush();
    if (deadline === Infinity) return;
    // An earlier deadline stands: when it comes, the session says what is due then.
    if (this.slot >= 0 && this.at <= deadline) return;
    Deadlines.of(this.#options.clock).schedule(this, deadline);
  }

  /** The keepalive deadline came: the session says what is due now. */
  due(): void {
    if (!this.#closed && this.#owner.isLive()) this.armKeepalive();
  }

  /**
   * Stops reading, writing and the keepalive timer, and closes the transport. Never throws;
   * returns within a few graces even when the transport does not answer.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const clock = this.#options.clock;
    Deadlines.of(clock).cancel(this);
    // QoS 0 bytes of a write that never finished are lost with the connection: say so now, as
    // a reconnection would start new batches and leave them unsettled.
    if (this.#inWrite !== undefined || this.#written !== undefined) {
      this.rejectWrites(
        new ConnectionClosedError("the connection closed before the bytes were written"),
      );
    }
    const stream = this.#stream;
    const reader = stream?.reader;
    const writer = stream?.writer;
    const direct = this.#direct;
    if (stream !== undefined) stream.reader = stream.writer = undefined;
    this.#held = undefined;
    // A write still pending once the grace is over never ends: closing would wait behind it.
    const grace = this.#writing ? 0 : CLOSE_GRACE_MS;
    // The waits go in the clock's one timer (settlesWithin), not a runtime timer each: closing
    // thousands of clients at once would otherwise arm thousands of timers.
    if (direct !== undefined) {
      // A direct transport's half-close would not wait behind a pending write: none then.
      if (!this.#writing) await settlesWithin(direct.end(), grace, clock);
    } else {
      await Promise.allSettled([
        reader?.cancel().catch(noop),
        writer ? settlesWithin(writer.close(), grace, clock) : undefined,
      ]);
    }
    let closing: void | Promise<void> = undefined;
    try {
      closing = this.#transport.close?.();
    } catch {
      // Already closed.
    }
    // A WebSocket closes with a handshake: closing ends once it is done, or after the grace.
    const readLoopDone = stream?.readLoop ?? DONE;
    if (closing === undefined && readLoopDone === DONE) return;
    await settlesWithin(
      closing === undefined ? readLoopDone : Promise.all([closing, readLoopDone]),
      CLOSE_GRACE_MS,
      clock,
    );
  }
}

// The connections to flush at the end of this turn, in the order they asked: one microtask for
// them all, not a closure per connection.
let flushQueue: Connection[] = [];

function flushAll(): void {
  const queue = flushQueue;
  flushQueue = [];
  for (let i = 0; i < queue.length; i++) queue[i].scheduledFlush();
}
