/**
 * The hostile-broker fuzzer: feeds seeded hostile frames (see {@linkcode FrameGenerator}) to the
 * decoder and to connected clients over an in-memory transport, and checks what must hold
 * whatever a broker sends:
 *
 * - the decoder yields packets or fails with a `ProtocolError`, the same however the bytes are
 *   chunked (`PacketDecoder` in one chunk and `MqttDecoderStream` in random chunks, at every
 *   protocol version, and `decode`);
 * - a client stays connected, or closes with a `ProtocolError` (or a `ConnectionClosedError` when
 *   the broker hangs up or sends DISCONNECT); every promise it gave (connect, publishes at QoS 0,
 *   1 and 2, a subscribe, an unsubscribe, disconnect) settles, each rejection an `MqttError`;
 * - no uncaught exception and no unhandled rejection, on Deno or Bun;
 * - nothing hangs: every wait is bounded in event-loop turns, then in fake-clock time, and each
 *   frame in wall-clock time.
 *
 * A failure names the seed, the frame number and the frames' bytes, so it can be replayed.
 *
 * @module
 */

import process from "node:process";
import { setImmediate } from "node:timers";
import { MqttClient, MqttPublisher, MqttSubscriber } from "../../src/client/clients.ts";
import type { DisconnectEventDetail } from "../../src/client/events.ts";
import {
  BrokerDisconnect,
  ConnectionClosedError,
  ConnectionRefusedError,
  MqttError,
  ProtocolError,
  TimeoutError,
} from "../../src/errors.ts";
import {
  decode,
  encode,
  MqttDecoderStream,
  type Packet,
  PacketDecoder,
  type ProtocolVersion,
} from "../../src/packet/mod.ts";
import { FakeBroker, type Sent } from "../helpers/fake_broker.ts";
import { FakeClock } from "../helpers/fake_clock.ts";
import { chunks, type Random, randomPacket } from "../packet/generate.ts";
import { FIRST_IDS, type Frame, FrameGenerator, type InFlight } from "./frames.ts";

const VERSIONS: readonly ProtocolVersion[] = [3, 4, 5];

/** How the fuzzer runs. */
export interface FuzzOptions {
  /** The seed; the same seed gives the same frames and the same run. */
  seed: number;
  /** How many frames to make and feed. */
  frames: number;
  /** The longest a frame may take, in wall-clock milliseconds, before the run fails. Default 2000. */
  frameDeadlineMs?: number;
  /** Stop after this many failures. Default 10. */
  maxFailures?: number;
  /** Called every `progressEvery` frames with the report so far. */
  onProgress?: (report: FuzzReport) => void;
  /** Default 10,000. */
  progressEvery?: number;
}

/** One thing that must not happen, and the frames that made it happen. */
export interface Failure {
  /** The number of the (last) frame that made it happen, from 0. */
  frame: number;
  /** What happened. */
  what: string;
  /** The frames involved, oldest first: version, kind and hex. */
  frames: string[];
}

/** What a run did. */
export interface FuzzReport {
  seed: number;
  /** Frames fed so far. */
  frames: number;
  /** Wall-clock milliseconds so far. */
  ms: number;
  /** Packets the one-chunk decoders returned, over all versions. */
  packets: number;
  /** Decodes that ended in a ProtocolError, over all versions and decoders. */
  decoderErrors: number;
  /** Client connections made. */
  clients: number;
  /** Client connections that ended in a ProtocolError. */
  clientProtocolErrors: number;
  /** Reconnections: CONNACKs a client got on a connection it dialed again. */
  reconnects: number;
  /** Client connections still up after their frames (then closed by the test). */
  clientsSurvived: number;
  /** ProtocolErrors by statement id (or `-` for those without one). */
  statementIds: Map<string, number>;
  /** ProtocolErrors by message, numbers and quoted text taken out. */
  messages: Map<string, number>;
  /**
   * Packets the decoder accepted and the encoder refused to write back, by error: what a
   * broker may send but Kite will not write (an empty topic without an alias, say).
   */
  reencodeRefused: Map<string, number>;
  /** How the promises the clients gave settled when they were rejected, by call and error. */
  rejections: Map<string, number>;
  /** Frames made, by kind. */
  kinds: Map<string, number>;
  /** What must not happen and did. */
  failures: Failure[];
}

/** Runs the fuzzer. Never throws for what it finds: failures are in the report. */
export async function fuzz(options: FuzzOptions): Promise<FuzzReport> {
  const fuzzer = new Fuzzer(options);
  try {
    await fuzzer.run();
  } finally {
    fuzzer.stop();
  }
  return fuzzer.report;
}

/** One macrotask turn: every microtask queued before it has run. */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Waits until `condition` holds, for at most `turns` event-loop turns; returns whether it does. */
async function until(condition: () => boolean, turns = 20): Promise<boolean> {
  for (let i = 0;; i++) {
    if (condition()) return true; // called once per turn: it may take what it looks at
    if (i === turns) return false;
    await turn();
  }
}

/** Whether `promise` settles within `turns` event-loop turns (after a few microtask rounds). */
async function settlesWithin(promise: Promise<unknown>, turns: number): Promise<boolean> {
  let done = false;
  promise.then(() => done = true, () => done = true);
  for (let i = 0; i < 8 && !done; i++) await Promise.resolve();
  for (let i = 0; i < turns && !done; i++) await turn();
  return done;
}

/** A promise watched from the side, its rejection handled. */
interface Watched {
  name: string;
  settled: boolean;
  reason?: unknown;
  rejected: boolean;
}

function watch(name: string, start: () => Promise<unknown>): Watched {
  const state: Watched = { name, settled: false, rejected: false };
  let promise: Promise<unknown>;
  try {
    promise = start();
  } catch (error) {
    // Refused at once (a limit, a state): that is settled too.
    state.settled = state.rejected = true;
    state.reason = error;
    return state;
  }
  promise.then(
    () => state.settled = true,
    (reason) => {
      state.settled = state.rejected = true;
      state.reason = reason;
    },
  );
  return state;
}

/** A message with its statement id, numbers and quoted text taken out, to count alike ones. */
function normalize(message: string): string {
  return message
    .replace(/ \[MQTT-[^\]]+\]$/, "")
    .replace(/"[^"]*"/g, '"…"')
    .replace(/0x[0-9a-f]+/gi, "0x…")
    .replace(/(?<!UTF-)\d+/g, "N");
}

function hexOf(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/**
 * Whether an error carries, at any depth of `cause`, something that is not an MqttError: an
 * exception that escaped from the code. The error a reset transport fails with is no such thing.
 */
function foreignCause(error: unknown, reset: boolean): unknown {
  for (let e = error, depth = 0; e !== undefined && depth < 8; depth++) {
    if (!(e instanceof MqttError)) {
      return reset && e instanceof Error && e.message === "connection reset" ? undefined : e;
    }
    e = e.cause;
  }
  return undefined;
}

/** A client connected to a fake broker, and everything it was asked to do. */
class ClientRun {
  readonly version: ProtocolVersion;
  /** The broker of the current connection; a reconnecting client dials a new one each time. */
  broker: FakeBroker;
  /** Whether the client reconnects (over a dialer) rather than closing when the broker goes. */
  readonly reconnecting: boolean;
  // `advance` lets what each timer starts run for a turn of the event loop rather than a
  // `setTimeout`, which may take a millisecond; bounded, for a timer that never stops.
  readonly clock = new FakeClock({ settle: turn, maxFired: 1000 });
  /**
   * The client. A pure publisher or subscriber is typed as the whole client too; `profile` says
   * which methods it has, and only those are called.
   */
  readonly client: MqttClient;
  readonly profile: "client" | "publisher" | "subscriber";
  readonly errors: unknown[] = [];
  readonly disconnects: DisconnectEventDetail[] = [];
  /** Whether the client closed by itself, before the test ended the connection. */
  closedByItself = false;
  readonly watched: Watched[] = [];
  readonly frames: Frame[] = [];
  ids: InFlight = FIRST_IDS;
  /** Whether the broker's side ended the connection: closing is then no error. */
  hungUp = false;
  /** Whether the fake clock moved: keepalive may then time out. */
  clockMoved = false;

  constructor(
    version: ProtocolVersion,
    reconnecting: boolean,
    profile: "client" | "publisher" | "subscriber",
  ) {
    this.version = version;
    this.reconnecting = reconnecting;
    this.profile = profile;
    const first = this.broker = new FakeBroker(version);
    const Client = { client: MqttClient, publisher: MqttPublisher, subscriber: MqttSubscriber }[
      profile
    ] as typeof MqttClient;
    this.client = new Client(
      reconnecting
        ? (_signal, attempt) => {
          if (attempt > 0) this.broker = new FakeBroker(version);
          return Promise.resolve((attempt > 0 ? this.broker : first).transport);
        }
        : first.transport,
    );
    this.client.addEventListener("error", (event) => {
      this.errors.push((event as CustomEvent).detail);
    });
    this.client.addEventListener("disconnect", (event) => {
      this.disconnects.push((event as CustomEvent<DisconnectEventDetail>).detail);
    });
  }

  get closed(): boolean {
    return this.client.state === "closed";
  }
}

class Fuzzer {
  readonly report: FuzzReport;
  readonly #options: FuzzOptions;
  readonly #frames: FrameGenerator;
  readonly #random: Random;
  readonly #deadline: number;
  readonly #maxFailures: number;
  // Unhandled rejections and uncaught exceptions since the last check.
  #escaped: unknown[] = [];
  #onRejectionEvent = (event: Event): void => {
    event.preventDefault();
    this.#escaped.push((event as PromiseRejectionEvent).reason);
  };
  #onErrorEvent = (event: Event): void => {
    event.preventDefault();
    this.#escaped.push((event as ErrorEvent).error);
  };
  #onProcess = (reason: unknown): void => {
    this.#escaped.push(reason);
  };

  constructor(options: FuzzOptions) {
    this.#options = options;
    this.#frames = new FrameGenerator(options.seed);
    this.#random = this.#frames.random;
    this.#deadline = options.frameDeadlineMs ?? 2000;
    this.#maxFailures = options.maxFailures ?? 10;
    this.report = {
      seed: options.seed,
      frames: 0,
      ms: 0,
      packets: 0,
      decoderErrors: 0,
      clients: 0,
      clientProtocolErrors: 0,
      clientsSurvived: 0,
      reconnects: 0,
      statementIds: new Map(),
      messages: new Map(),
      reencodeRefused: new Map(),
      rejections: new Map(),
      kinds: new Map(),
      failures: [],
    };
    globalThis.addEventListener?.("unhandledrejection", this.#onRejectionEvent);
    globalThis.addEventListener?.("error", this.#onErrorEvent);
    process.on("unhandledRejection", this.#onProcess);
    process.on("uncaughtException", this.#onProcess);
  }

  stop(): void {
    globalThis.removeEventListener?.("unhandledrejection", this.#onRejectionEvent);
    globalThis.removeEventListener?.("error", this.#onErrorEvent);
    process.off("unhandledRejection", this.#onProcess);
    process.off("uncaughtException", this.#onProcess);
  }

  #fail(frame: number, what: string, frames: Frame[]): void {
    if (this.report.failures.length >= this.#maxFailures) return;
    this.report.failures.push({
      frame,
      what,
      frames: frames.map((f) => `v${f.version} ${f.kind}: ${hexOf(f.bytes)}`),
    });
  }

  get #stopped(): boolean {
    return this.report.failures.length >= this.#maxFailures;
  }

  #count(error: ProtocolError): void {
    const report = this.report;
    const id = error.statementId ?? "-";
    report.statementIds.set(id, (report.statementIds.get(id) ?? 0) + 1);
    const message = normalize(error.message);
    report.messages.set(message, (report.messages.get(message) ?? 0) + 1);
  }

  async run(): Promise<void> {
    const { frames, onProgress } = this.#options;
    const every = this.#options.progressEvery ?? 10_000;
    const started = performance.now();
    const report = this.report;
    let run: ClientRun | undefined;
    let index = 0;
    while (index < frames && !this.#stopped) {
      if (run === undefined) {
        const version = VERSIONS[report.clients % 3];
        report.clients++;
        // Now and then the first frame comes before CONNACK: anything but a CONNACK is wrong.
        const early = this.#random.chance(0.05);
        const frame = early ? this.#frames.early(version) : undefined;
        if (frame !== undefined) index = await this.#decoderFrame(index, frame);
        run = await this.#open(version, index - 1, frame);
        if (run.closed || frame !== undefined && this.#random.chance(0.5)) {
          await this.#finish(run, index - 1);
          run = undefined;
        }
        continue;
      }
      const frame = this.#frames.next(run.version, run.ids);
      const frameStarted = performance.now();
      index = await this.#decoderFrame(index, frame);
      run.frames.push(frame);
      if (this.#random.chance(0.25)) {
        // In pieces, as a socket may hand it over: the connection's decoder joins them.
        for (const chunk of chunks(this.#random, frame.bytes, this.#random.pick([1, 2, 7]))) {
          void run.broker.push(chunk);
        }
      } else {
        void run.broker.push(frame.bytes);
      }
      await turn();
      await turn();
      if (this.#random.chance(0.1)) {
        // Time passes: keepalive sends PINGREQ, and gives up on a broker that does not answer.
        run.clockMoved = true;
        if (!await run.clock.advance(this.#random.int(0, 8000))) {
          this.#fail(index - 1, "timers kept firing: a thousand in 8 s", run.frames);
        }
      }
      if (run.reconnecting && !run.closed && this.#random.chance(0.15)) {
        await this.#reconnect(run, index - 1);
      }
      const took = performance.now() - frameStarted;
      if (took > this.#deadline) {
        this.#fail(index - 1, `the frame took ${took.toFixed(0)} ms`, run.frames);
      }
      // A connection lives for a few frames, unless a frame ends it sooner.
      if (run.closed || this.#random.chance(0.3)) {
        await this.#finish(run, index - 1);
        run = undefined;
      }
      if (onProgress !== undefined && index % every === 0) {
        report.ms = performance.now() - started;
        onProgress(report);
      }
    }
    if (run !== undefined) await this.#finish(run, index - 1);
    report.ms = performance.now() - started;
  }

  /** The decoders' share of a frame; returns the next frame number. */
  async #decoderFrame(index: number, frame: Frame): Promise<number> {
    const report = this.report;
    report.frames++;
    report.kinds.set(frame.kind, (report.kinds.get(frame.kind) ?? 0) + 1);
    const started = performance.now();
    const random = this.#random;
    // A limit now and then, so that too large a packet is refused too.
    const maximumPacketSize = random.chance(0.1) ? random.int(2, 64) : undefined;
    for (const version of VERSIONS) {
      const whole = this.#decodeWhole(index, frame, version, maximumPacketSize);
      if (version !== frame.version) continue;
      // The same bytes through the stream, in random chunks, must come out the same.
      const stream = await this.#decodeStream(frame, version, maximumPacketSize, random);
      if (stream === undefined) {
        this.#fail(index, `MqttDecoderStream v${version} did not settle`, [frame]);
      } else if (stream.error !== undefined && !(stream.error instanceof ProtocolError)) {
        this.#fail(
          index,
          `MqttDecoderStream v${version} failed with ${
            (stream.error as Error)?.stack ?? stream.error
          }`,
          [frame],
        );
      } else if (
        (stream.error as Error | undefined)?.message !== whole.error?.message ||
        (whole.error === undefined &&
          (stream.packets !== whole.packets || stream.truncated !== whole.pending))
      ) {
        this.#fail(
          index,
          `MqttDecoderStream v${version} in chunks gave ${stream.packets} packets, ${
            stream.error ? describe(stream.error) : stream.truncated ? "truncated" : "no error"
          }; PacketDecoder in one chunk gave ${whole.packets}, ${
            whole.error ? describe(whole.error) : whole.pending ? "pending" : "no error"
          }`,
          [frame],
        );
      }
    }
    const took = performance.now() - started;
    if (took > this.#deadline) {
      this.#fail(index, `decoding the frame took ${took.toFixed(0)} ms`, [frame]);
    }
    return index + 1;
  }

  /** `PacketDecoder` on the whole frame, and `decode` on it as one packet. */
  #decodeWhole(
    index: number,
    frame: Frame,
    version: ProtocolVersion,
    maximumPacketSize: number | undefined,
  ): { packets: number; error?: ProtocolError; pending: boolean } {
    const report = this.report;
    const decoder = new PacketDecoder({ protocolVersion: version, maximumPacketSize });
    let packets = 0;
    let error: ProtocolError | undefined;
    try {
      decoder.push(frame.bytes, () => packets++);
    } catch (caught) {
      if (caught instanceof ProtocolError) {
        error = caught;
        report.decoderErrors++;
        this.#count(caught);
      } else {
        this.#fail(index, `PacketDecoder v${version} threw ${(caught as Error)?.stack}`, [frame]);
      }
    }
    report.packets += packets;
    let packet: Packet | undefined;
    try {
      packet = decode(frame.bytes, version);
    } catch (caught) {
      if (!(caught instanceof ProtocolError)) {
        this.#fail(index, `decode v${version} threw ${(caught as Error)?.stack}`, [frame]);
      }
    }
    if (packet !== undefined) {
      // What the decoder accepts the encoder writes back as the same packet.
      try {
        const again = encode(packet, packet.type === "connect" ? packet.protocolVersion : version);
        decode(again, version);
      } catch (caught) {
        if (!(caught instanceof ProtocolError || caught instanceof TypeError)) {
          this.#fail(index, `re-encoding v${version} threw ${(caught as Error)?.stack}`, [frame]);
        } else {
          const key = `${caught.name}: ${normalize(caught.message)}`;
          report.reencodeRefused.set(key, (report.reencodeRefused.get(key) ?? 0) + 1);
        }
      }
    }
    return { packets, error, pending: error === undefined && decoder.pending };
  }

  /** `MqttDecoderStream` on the frame in random chunks; `undefined` when it did not settle. */
  async #decodeStream(
    frame: Frame,
    version: ProtocolVersion,
    maximumPacketSize: number | undefined,
    random: Random,
  ): Promise<{ packets: number; error?: unknown; truncated: boolean } | undefined> {
    const stream = new MqttDecoderStream({ protocolVersion: version, maximumPacketSize });
    const writer = stream.writable.getWriter();
    const reader = stream.readable.getReader();
    const result: { packets: number; error?: unknown; truncated: boolean } = {
      packets: 0,
      truncated: false,
    };
    const reading = (async () => {
      try {
        while (true) {
          const { done } = await reader.read();
          if (done) break;
          result.packets++;
        }
      } catch (error) {
        result.error = error;
      }
    })();
    const writing = (async () => {
      try {
        for (const chunk of chunks(random, frame.bytes, random.pick([1, 3, 16, 1024]))) {
          await writer.write(chunk);
        }
        await writer.close();
      } catch {
        // The reader sees the error.
      }
    })();
    if (!await settlesWithin(Promise.all([reading, writing]), 10)) return undefined;
    result.truncated = stream.truncated;
    return result;
  }

  /** Connects a client of `version`; `early` is sent before CONNACK. */
  async #open(
    version: ProtocolVersion,
    index: number,
    early: Frame | undefined,
  ): Promise<ClientRun> {
    const random = this.#random;
    const run = new ClientRun(
      version,
      random.chance(0.2),
      random.pick(["client", "client", "client", "publisher", "subscriber"] as const),
    );
    const publishes = run.profile !== "subscriber";
    const subscribes = run.profile !== "publisher";
    const { client, broker, clock } = run;
    const v5 = version === 5;
    const options = {
      clientId: "fuzz",
      ...(run.reconnecting ? { reconnect: { minDelay: 10, maxDelay: 100 } } : {}),
      keepalive: random.pick([0, 0, 5]),
      protocolVersion: version,
      clock,
      ...(random.chance(0.1) ? { maximumPacketSize: random.int(16, 512) } : {}),
      ...(v5 && random.chance(0.3)
        ? { properties: { receiveMaximum: random.int(1, 3), topicAliasMaximum: random.int(0, 4) } }
        : {}),
    };
    run.watched.push(watch("connect()", () => client.connect(options)));
    let connect: Sent | undefined;
    await until(() => (connect = broker.tryNext()) !== undefined);
    if (connect?.packet.type !== "connect") {
      this.#fail(index, `the client sent ${connect?.packet.type ?? "nothing"}, not CONNECT`, []);
      return run;
    }
    if (early !== undefined) {
      run.frames.push(early);
      void broker.push(early.bytes);
      await turn();
      await turn();
      if (run.watched[0].settled) return run;
    }
    const connack = randomPacket(random, "connack", version) as Packet & { type: "connack" };
    connack.reasonCode = 0;
    if (random.chance(0.7)) delete connack.properties;
    // A CONNACK allowing the client less than it asks for is fine; one naming an authentication
    // method the client never sent is a ProtocolError. Both are part of the run.
    void broker.push(encode(connack, version));
    await turn();
    await turn();
    if (client.state !== "connected") return run;
    // Messages go to a handler, to an iterator, or nowhere (held, their acks waiting); a pure
    // publisher acknowledges them at once.
    const consumer = subscribes ? random.int(0, 2) : 2;
    if (consumer === 0) client.setPublishHandler(() => {});
    if (consumer === 1) {
      // Filters that match the topics the frames use, some of them, or none.
      const filter = random.pick([undefined, "#", "+/+", "t/#", "+", "$SYS/#", "a//b"]);
      const messages = client.messages(filter, { highWaterMark: random.pick([1, 100]) });
      run.watched.push(watch("messages()", async () => {
        for await (const _ of messages) {
          // Taken; nothing to do with it.
        }
      }));
    }
    if (publishes) {
      run.watched.push(
        watch("publish qos 1", () => client.publish("t/1", "one", { qos: 1 })),
        watch("publish qos 2", () => client.publish("t/2", "two", { qos: 2 })),
      );
    }
    if (subscribes) {
      run.watched.push(
        watch("subscribe", () => client.subscribe(["a/+", "b/#"])),
        watch("unsubscribe", () => client.unsubscribe("c")),
      );
    }
    if (publishes) run.watched.push(watch("publish qos 0", () => client.publish("t/0", "zero")));
    await turn();
    this.#readIds(run, FIRST_IDS);
    return run;
  }

  /** Takes what the client sent, and the packet ids its requests now have from it. */
  #readIds(run: ClientRun, ids: InFlight): void {
    ids = { ...ids };
    const broker = run.broker;
    for (let sent = broker.tryNext(); sent !== undefined; sent = broker.tryNext()) {
      const packet = sent.packet;
      if (packet.type === "publish" && packet.qos === 1) ids.qos1 = packet.packetId!;
      if (packet.type === "publish" && packet.qos === 2) ids.qos2 = packet.packetId!;
      if (packet.type === "subscribe") ids.subscribe = packet.packetId;
      if (packet.type === "unsubscribe") ids.unsubscribe = packet.packetId;
    }
    run.ids = ids;
  }

  /**
   * The broker goes away under a client that reconnects: it dials again after its backoff,
   * sends CONNECT, and gets a CONNACK that may say the session is still there (so that its
   * publishes go again, with DUP) or not.
   */
  async #reconnect(run: ClientRun, index: number): Promise<void> {
    const random = this.#random;
    const old = run.broker;
    run.hungUp = true;
    void (random.chance() ? old.hangUp() : old.reset());
    await turn();
    await turn();
    // A client that stopped reading (messages held) has not noticed yet.
    if (run.client.state !== "reconnecting") return;
    run.clockMoved = true;
    await run.clock.advance(200); // past the longest backoff
    if (!await until(() => run.broker !== old)) {
      this.#fail(index, `the client did not dial again (${run.client.state})`, run.frames);
      return;
    }
    let connect: Sent | undefined;
    await until(() => (connect = run.broker.tryNext()) !== undefined);
    if (connect?.packet.type !== "connect") {
      this.#fail(index, `the client sent ${connect?.packet.type ?? "nothing"}, not CONNECT`, []);
      return;
    }
    const sessionPresent = run.version > 3 && random.chance();
    void run.broker.push(
      encode({ type: "connack", sessionPresent, reasonCode: 0 }, run.version),
    );
    await turn();
    await turn();
    // The state has moved on since the check above; TypeScript cannot know that.
    if ((run.client.state as string) === "connected") this.report.reconnects++;
    this.#readIds(run, run.ids);
  }

  /** Ends a client run and checks how it ended. */
  async #finish(run: ClientRun, index: number): Promise<void> {
    const report = this.report;
    const { client, broker } = run;
    if (client.state === "connected") {
      report.clientsSurvived++;
    }
    run.closedByItself = run.closed;
    if (!run.closed) {
      if (this.#random.chance()) {
        run.hungUp = true;
        void (this.#random.chance() ? broker.hangUp() : broker.reset());
        await turn();
        await turn();
      }
      // A client that stopped reading (messages held, nobody taking them) has not seen the
      // end of the stream; disconnect() ends it either way.
      const disconnecting = watch("disconnect()", () => client.disconnect());
      run.watched.push(disconnecting);
    }
    // Everything settles within a few turns; with the clock moved past every grace at the latest.
    let settled = await this.#allSettled(run, 20);
    if (!settled) {
      run.clockMoved = true;
      if (!await run.clock.advance(10_000)) {
        this.#fail(index, "timers kept firing: a thousand in 10 s", run.frames);
      }
      settled = await this.#allSettled(run, 20);
    }
    if (!settled) {
      const pending = run.watched.filter((w) => !w.settled).map((w) => w.name);
      this.#fail(index, `never settled: ${pending.join(", ")}`, run.frames);
    }
    if (!run.closed) {
      this.#fail(index, `the client is ${client.state} after disconnect()`, run.frames);
    }
    this.#checkErrors(run, index);
    this.#checkEnd(run, index);
    this.#checkSent(run, index);
    const escaped = this.#escaped;
    if (escaped.length > 0) {
      this.#escaped = [];
      for (const reason of escaped) {
        this.#fail(
          index,
          `unhandled rejection or uncaught exception: ${(reason as Error)?.stack ?? reason}`,
          run.frames,
        );
      }
    }
  }

  async #allSettled(run: ClientRun, turns: number): Promise<boolean> {
    for (let i = 0; i < turns; i++) {
      if (run.closed && run.watched.every((w) => w.settled)) return true;
      await turn();
    }
    return run.closed && run.watched.every((w) => w.settled);
  }

  /** Every error the client reported or rejected with is one a hostile broker may cause. */
  #checkErrors(run: ClientRun, index: number): void {
    let protocolError = false;
    for (const error of run.errors) {
      if (error instanceof ProtocolError) {
        protocolError = true;
        this.#count(error);
      } else if (!this.#allowed(run, error)) {
        this.#fail(index, `the client reported ${(error as Error)?.stack ?? error}`, run.frames);
      }
    }
    if (protocolError) this.report.clientProtocolErrors++;
    for (const watched of run.watched) {
      if (!watched.rejected) continue;
      const reason = watched.reason;
      const key = `${watched.name}: ${reason instanceof Error ? reason.name : String(reason)}`;
      this.report.rejections.set(key, (this.report.rejections.get(key) ?? 0) + 1);
      const foreign = foreignCause(reason, run.hungUp);
      if (foreign !== undefined) {
        this.#fail(
          index,
          `${watched.name} rejected with ${describe(reason)}, caused by ${
            (foreign as Error)?.stack ?? foreign
          }`,
          run.frames,
        );
      }
    }
  }

  /**
   * The client said once that it disconnected; when it closed by itself, it said why, and why
   * is one of the reasons a hostile broker may cause.
   */
  #checkEnd(run: ClientRun, index: number): void {
    const final = run.disconnects.filter((d) => !d.reconnecting);
    if (final.length !== 1) {
      this.#fail(index, `${final.length} final disconnect events`, run.frames);
      return;
    }
    if (!run.closedByItself) return;
    const error = final[0].error;
    if (error === undefined) {
      this.#fail(index, "the client closed by itself without saying why", run.frames);
    } else if (!(error instanceof ProtocolError) && !this.#allowed(run, error)) {
      this.#fail(index, `the client closed with ${(error as Error)?.stack ?? error}`, run.frames);
    }
  }

  /** What the client sent is well-formed, and nothing follows its DISCONNECT. */
  #checkSent(run: ClientRun, index: number): void {
    const broker = run.broker;
    let disconnected = false;
    for (let i = 0; i < 10_000; i++) {
      let sent;
      try {
        sent = broker.tryNext();
      } catch (error) {
        this.#fail(index, `the client sent a malformed packet: ${describe(error)}`, run.frames);
        return;
      }
      if (sent === undefined) return;
      if (disconnected) {
        this.#fail(index, `the client sent ${sent.hex} after DISCONNECT`, run.frames);
        return;
      }
      disconnected = sent.packet.type === "disconnect";
    }
  }

  /** Whether a client error other than a ProtocolError is one this run may see. */
  #allowed(run: ClientRun, error: unknown): boolean {
    if (foreignCause(error, run.hungUp) !== undefined) return false;
    // The broker said goodbye with a DISCONNECT, or hung up.
    if (error instanceof BrokerDisconnect) return true;
    if (error instanceof ConnectionClosedError) return run.hungUp;
    // A frame before CONNACK may be a valid refusing CONNACK.
    if (error instanceof ConnectionRefusedError) return true;
    if (error instanceof TimeoutError) return run.clockMoved;
    return false;
  }
}
