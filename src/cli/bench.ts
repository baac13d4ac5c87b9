/**
 * `kite bench conn|pub|sub`: many of Kite's own clients against a broker, counted as they go.
 *
 * Every client is a {@linkcode MqttClient} from `connect()`, without reconnecting: a connection
 * that fails or is lost is counted, never thrown. Publishers write the time they send into the
 * first 8 bytes of each payload (a big-endian float64 of milliseconds since the epoch), and
 * subscribers read it back for the end-to-end latency, kept in a fixed-size histogram.
 *
 * @module
 */

import process from "node:process";
import { within } from "../_async.ts";
import { connect, type ConnectOptions } from "../client/connect.ts";
import type { MqttClient } from "../client/clients.ts";
import type { DisconnectEventDetail } from "../client/events.ts";
import type { Message } from "../client/types.ts";
import {
  type BenchCounters,
  type BenchResult,
  newCounters,
  summarize,
  summaryTable,
} from "./bench_stats.ts";
import { applyCredentials, type CommandIo, oneLine } from "./commands.ts";
import { writeTo } from "./io.ts";
import { BenchPublisher, type PublisherRun, wallClock } from "./bench_publisher.ts";
import { Progress, type ProgressRun } from "./bench_progress.ts";
import type { BenchSettings } from "./settings.ts";

/** How long the end of a run waits for subscriptions, and acknowledgements, still under way. */
const END_GRACE_MS = 5000;
/** Payload timestamps further off than this are not ours, or not a time: not counted. */
const MAX_LATENCY_MS = 3_600_000;

/**
 * Runs `kite bench conn`, `kite bench pub` or `kite bench sub` until Ctrl-C, `--duration`,
 * `--limit`, or until no connection is left; then closes every connection with DISCONNECT and
 * prints the summary (or, with `--json`, the result object).
 *
 * @param settings The parsed flags.
 * @param io The streams and the interrupt signal.
 * @returns The exit status: 0 when the run ended, 1 when no connection succeeded or every one
 * was lost (with one line on stderr saying so).
 * @throws {CommandError} When a `--cafile`, `--cert` or `--key` cannot be read.
 *
 * @example
 * ```ts ignore
 * import { parseBenchArgs } from "./bench_args.ts";
 * import { runBench } from "./bench.ts";
 * import { processIo } from "./io.ts";
 *
 * const settings = parseBenchArgs("conn", ["-c", "100", "--duration", "10"], {});
 * if (!("help" in settings)) await runBench(settings, processIo());
 * ```
 */
export async function runBench(settings: BenchSettings, io: CommandIo): Promise<number> {
  const options = await connectOptions(settings);
  const run = new BenchRun(settings, io, options);
  const result = await run.run();
  if (settings.json) {
    if (!settings.quiet) await writeTo(io.stderr, summaryTable(result));
    await writeTo(io.stdout, JSON.stringify(result) + "\n");
  } else {
    await writeTo(io.stdout, summaryTable(result));
  }
  const problem = result.connections.peak === 0
    ? `no connection succeeded: ${failures(result)}`
    : result.connections.up === 0 && result.connections.lost > 0
    ? `every connection was lost: ${failures(result)}`
    : undefined;
  if (problem !== undefined) {
    await writeTo(io.stderr, `kite bench ${settings.mode}: ${problem}\n`);
    return 1;
  }
  return 0;
}

function failures(result: BenchResult): string {
  const { failed, lost, errors } = result.connections;
  const reasons = Object.entries(errors).sort((a, b) => b[1] - a[1]);
  const reason = reasons.length === 0 ? "" : ` (${reasons[0][0]})`;
  return `${failed} failed, ${lost} lost${reason}`;
}

async function connectOptions(settings: BenchSettings): Promise<ConnectOptions> {
  const options: ConnectOptions = {
    protocolVersion: settings.protocolVersion,
    keepalive: settings.keepalive,
    clean: true,
    reconnect: false,
    connectTimeout: settings.connectTimeout,
  };
  await applyCredentials(options, settings);
  return options;
}

/**
 * How many clients disconnect at a time when a run ends. All at once, what 18,000 closes hold
 * while they wait on their sockets is alive together and outlives the young generation, and on
 * Deno the heap it grew stays in RSS (`bench/README.md`, "What closing a client costs": 6.7 KiB a
 * client for 18,000 at once, 1.4 KiB with 500 at a time).
 */
const DISCONNECT_WINDOW = 500;

/** Disconnects every client, {@linkcode DISCONNECT_WINDOW} at a time. */
async function disconnectAll(clients: MqttClient[]): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < clients.length) await clients[next++].disconnect();
  };
  const workers: Promise<void>[] = [];
  for (let i = 0; i < Math.min(DISCONNECT_WINDOW, clients.length); i++) workers.push(worker());
  await Promise.all(workers);
}

function rss(): number {
  const usage = process.memoryUsage as { rss?: () => number } & (() => { rss: number });
  return typeof usage.rss === "function" ? usage.rss() : usage().rss;
}

/** One run: the clients, the counters, and when to stop. */
class BenchRun implements PublisherRun, ProgressRun {
  readonly counters: BenchCounters = newCounters();
  readonly settings: BenchSettings;
  readonly #io: CommandIo;
  readonly #options: ConnectOptions;
  readonly #clients: MqttClient[] = [];
  readonly #publishers: BenchPublisher[] = [];
  /** Aborts the connection attempts under way when the run stops. */
  readonly #giveUp = new AbortController();
  #stopping = false;
  #wakeStop: (() => void) | undefined;
  #connecting = 0;
  #attemptsDone = 0;
  #slotFree: (() => void) | undefined;
  #publishersDone = 0;
  #startedAt = 0;
  #firstSentAt = 0;
  #lastSentAt = 0;
  #firstReceivedAt = 0;
  #lastReceivedAt = 0;
  #peakRss = 0;
  #progress!: Progress;
  #drained: (() => void) | undefined;
  /** Publishes made, settled or not. */
  issued = 0;
  // For reading a payload's timestamp without an allocation per message.
  readonly #stamp = new DataView(new ArrayBuffer(8));

  constructor(settings: BenchSettings, io: CommandIo, options: ConnectOptions) {
    this.settings = settings;
    this.#io = io;
    this.#options = { ...options, signal: this.#giveUp.signal };
  }

  async run(): Promise<BenchResult> {
    const { settings } = this;
    const io = this.#io;
    this.#startedAt = performance.now();
    this.#peakRss = rss();
    const stream = settings.json ? "stderr" : "stdout";
    this.#progress = new Progress(
      settings.quiet ? undefined : io[stream],
      io.isTerminal(stream),
      this,
    );
    const stopped = new Promise<void>((resolve) => this.#wakeStop = resolve);
    const stop = () => this.stop();
    io.signal?.addEventListener("abort", stop, { once: true });
    if (io.signal?.aborted) this.stop();
    const timer = settings.duration === undefined
      ? undefined
      : setTimeout(stop, Math.min(settings.duration, 2_147_483_647));
    try {
      const starting = this.#startAll();
      await stopped;
      this.#giveUp.abort(new Error("the benchmark stopped"));
      // Attempts under way end with the abort; a SUBACK that never comes must not hold the end.
      await within(starting, END_GRACE_MS);
      this.#slotFree?.();
      const upAtEnd = this.counters.up;
      for (const publisher of this.#publishers) publisher.stop();
      // What was published is counted once acknowledged: give the last ones time to be.
      const counters = this.counters;
      if (counters.sent + counters.sendFailed < this.issued) {
        await within(new Promise<void>((resolve) => this.#drained = resolve), END_GRACE_MS);
      }
      await this.#progress.stop();
      await disconnectAll(this.#clients);
      return this.#result(upAtEnd);
    } finally {
      clearTimeout(timer);
      this.#progress.dispose();
      io.signal?.removeEventListener("abort", stop);
    }
  }

  /** Ends the run: Ctrl-C, `--duration`, `--limit`, or nothing left to do. */
  stop(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#wakeStop?.();
  }

  get stopping(): boolean {
    return this.#stopping;
  }

  get elapsed(): number {
    return performance.now() - this.#startedAt;
  }

  sampleRss(): number {
    const now = rss();
    if (now > this.#peakRss) this.#peakRss = now;
    return now;
  }

  /** Starts the connections, paced by `-R`/`-i` and `--max-connecting`. */
  async #startAll(): Promise<void> {
    const { clients, connectInterval, maxConnecting } = this.settings;
    const started: Promise<void>[] = [];
    for (let index = 0; index < clients && !this.#stopping; index++) {
      if (connectInterval > 0) {
        const wait = this.#startedAt + index * connectInterval - performance.now();
        if (wait > 0) await this.#sleep(wait);
      }
      while (this.#connecting >= maxConnecting && !this.#stopping) {
        await new Promise<void>((resolve) => this.#slotFree = resolve);
      }
      if (this.#stopping) break;
      started.push(this.#open(index));
    }
    await Promise.all(started);
    if (!this.#stopping) {
      const { up, failed } = this.counters;
      const what = this.settings.mode === "sub" ? "connected and subscribed" : "connected";
      this.note(
        `${up} of ${clients} ${what}, ${failed} failed, in ${(this.elapsed / 1000).toFixed(1)} s`,
      );
    }
    this.#checkDone();
  }

  /** Waits `ms`, or less if the run stops. */
  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#giveUp.signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#giveUp.signal.addEventListener("abort", done);
    });
  }

  /** One client: connect, then hold (conn), publish (pub) or subscribe (sub). */
  async #open(index: number): Promise<void> {
    const { settings, counters } = this;
    const number = index + 1;
    const clientId = `${settings.prefix}-${number}`;
    const options: ConnectOptions = { ...this.#options, clientId };
    const localAddresses = settings.localAddresses;
    if (localAddresses.length > 0) {
      options.localAddress = localAddresses[index % localAddresses.length];
    }
    const url = settings.urls[index % settings.urls.length];
    counters.attempted++;
    this.#connecting++;
    const started = performance.now();
    let client: MqttClient;
    try {
      client = await connect(url, options);
    } catch (error) {
      if (!this.#giveUp.signal.aborted) {
        counters.failed++;
        this.countError(error);
      }
      return;
    } finally {
      this.#connecting--;
      this.#attemptsDone++;
      this.#slotFree?.();
    }
    counters.connectTime.record(performance.now() - started);
    this.#clients.push(client);
    counters.up++;
    if (counters.up > counters.peak) counters.peak = counters.up;
    const topic = settings.topic.replaceAll("%i", `${number}`).replaceAll("%c", clientId);
    const publisher = settings.mode === "pub" ? new BenchPublisher(this, client, topic) : undefined;
    client.addEventListener("disconnect", (event) => {
      const detail = (event as CustomEvent<DisconnectEventDetail>).detail;
      if (this.#stopping || detail.error === undefined) return;
      counters.up--;
      counters.lost++;
      this.countError(detail.error);
      publisher?.stop();
      this.#checkDone();
    });
    if (publisher !== undefined) {
      this.#publishers.push(publisher);
      publisher.start();
    } else if (settings.mode === "sub") {
      client.setPublishHandler(this.onMessage);
      try {
        await client.subscribe(topic, { qos: settings.qos });
      } catch (error) {
        if (!this.#stopping) this.countError(error);
      }
    }
  }

  /** Stops the run once there is nothing left to do. */
  #checkDone(): void {
    if (this.#attemptsDone < this.settings.clients) return;
    if (this.counters.up === 0) this.stop();
    if (this.settings.mode === "pub" && this.#publishersDone === this.#publishers.length) {
      if (this.settings.limit !== undefined) this.stop();
    }
  }

  countError(error: unknown): void {
    const message = oneLine(error instanceof Error ? (error.message || error.name) : String(error));
    this.counters.errors.set(message, (this.counters.errors.get(message) ?? 0) + 1);
  }

  /** A publisher has sent its `--limit` and each has settled. */
  publisherDone(): void {
    this.#publishersDone++;
    this.#checkDone();
  }

  sent(): void {
    const now = performance.now();
    if (this.counters.sent++ === 0) this.#firstSentAt = now;
    this.#lastSentAt = now;
    this.#checkDrained();
  }

  sendFailed(error: unknown): void {
    this.counters.sendFailed++;
    if (!this.#stopping) this.countError(error);
    this.#checkDrained();
  }

  #checkDrained(): void {
    if (
      this.#drained !== undefined && this.counters.sent + this.counters.sendFailed >= this.issued
    ) {
      this.#drained();
    }
  }

  /** Every subscriber's handler: count, and read the latency from the payload. */
  readonly onMessage = (message: Message): void => {
    const counters = this.counters;
    const now = performance.now();
    if (counters.received++ === 0) this.#firstReceivedAt = now;
    this.#lastReceivedAt = now;
    const payload = message.payload;
    if (payload.length >= 8) {
      const stamp = this.#stamp;
      for (let i = 0; i < 8; i++) stamp.setUint8(i, payload[i]);
      const latency = wallClock() - stamp.getFloat64(0);
      // Clocks of two processes may differ by a little: slightly negative counts as 0.
      if (latency > -1000 && latency < MAX_LATENCY_MS) counters.latency.record(latency);
    }
    if (this.settings.limit !== undefined && counters.received >= this.settings.limit) this.stop();
  };

  #result(upAtEnd: number): BenchResult {
    const counters = this.counters;
    const perSecond = (count: number, first: number, last: number) =>
      count > 1 && last > first ? Math.round((count / (last - first)) * 1000 * 10) / 10 : 0;
    const deno = (globalThis as { Deno?: { version: { deno: string } } }).Deno;
    const bun = (globalThis as { Bun?: { version: string } }).Bun;
    const runtime = deno !== undefined
      ? `deno ${deno.version.deno}`
      : bun !== undefined
      ? `bun ${bun.version}`
      : `node ${process.versions.node}`;
    return {
      mode: this.settings.mode,
      runtime,
      urls: this.settings.urls,
      clients: this.settings.clients,
      elapsedMs: Math.round(this.elapsed),
      connections: {
        attempted: counters.attempted,
        up: upAtEnd,
        peak: counters.peak,
        failed: counters.failed,
        lost: counters.lost,
        errors: Object.fromEntries(counters.errors),
        connectMs: summarize(counters.connectTime),
      },
      messages: {
        sent: counters.sent,
        sendFailed: counters.sendFailed,
        received: counters.received,
        sentPerSecond: perSecond(counters.sent, this.#firstSentAt, this.#lastSentAt),
        receivedPerSecond: perSecond(
          counters.received,
          this.#firstReceivedAt,
          this.#lastReceivedAt,
        ),
      },
      latencyMs: summarize(counters.latency),
      rssBytes: { end: rss(), peak: Math.max(this.#peakRss, rss()) },
    };
  }

  /** Writes a line about the run (not a progress line) where progress goes. */
  note(line: string): void {
    this.#progress.note(`kite bench ${this.settings.mode}: ${line}`);
  }
}
