/**
 * The progress output of `kite bench`: on a terminal one line rewritten in place; elsewhere a
 * plain line each second.
 *
 * @module
 */

import { type BenchCounters, progressLine } from "./bench_stats.ts";
import { writeTo } from "./io.ts";

/** How often the progress line is written. */
const PROGRESS_INTERVAL_MS = 1000;

/** What the progress line reads from the run. */
export interface ProgressRun {
  readonly counters: BenchCounters;
  /** Milliseconds since the run started. */
  readonly elapsed: number;
  /** The resident set size now, in bytes (also keeps the peak). */
  sampleRss(): number;
}

/**
 * The progress output: on a terminal one line rewritten in place; elsewhere a plain line each
 * second. Writes are chained, so lines never interleave.
 */
export class Progress {
  readonly #stream: WritableStream<Uint8Array> | undefined;
  readonly #terminal: boolean;
  readonly #run: ProgressRun;
  readonly #timer: ReturnType<typeof setInterval>;
  #writing: Promise<void> = Promise.resolve();
  #lastAt: number;
  #lastSent = 0;
  #lastReceived = 0;
  #onLine = false;
  #lastLineAt = -Infinity;

  /** `stream` absent (`--quiet`): only the memory is sampled each second. */
  constructor(
    stream: WritableStream<Uint8Array> | undefined,
    terminal: boolean,
    run: ProgressRun,
  ) {
    this.#stream = stream;
    this.#terminal = terminal;
    this.#run = run;
    this.#lastAt = performance.now();
    this.#timer = setInterval(() => this.#tick(), PROGRESS_INTERVAL_MS);
  }

  note(line: string): void {
    this.#write(`${this.#onLine ? "\n" : ""}${line}\n`);
    this.#onLine = false;
  }

  /** Stops the timer; nothing more is written. */
  dispose(): void {
    clearInterval(this.#timer);
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    // A last line with the final figures, unless one was just written.
    if (performance.now() - this.#lastLineAt > PROGRESS_INTERVAL_MS / 5) this.#tick();
    if (this.#onLine) this.#write("\n");
    this.#onLine = false;
    await this.#writing;
  }

  #tick(): void {
    const run = this.#run;
    const counters = run.counters;
    const rss = run.sampleRss();
    if (this.#stream === undefined) return;
    const now = performance.now();
    const seconds = Math.max(0.001, (now - this.#lastAt) / 1000);
    const rates = {
      out: (counters.sent - this.#lastSent) / seconds,
      in: (counters.received - this.#lastReceived) / seconds,
    };
    this.#lastAt = now;
    this.#lastSent = counters.sent;
    this.#lastReceived = counters.received;
    const line = progressLine(counters, rates, run.elapsed, rss);
    this.#lastLineAt = now;
    if (this.#terminal) {
      this.#write(`\r${line}\x1b[K`);
      this.#onLine = true;
    } else {
      this.#write(`${line}\n`);
    }
  }

  #write(text: string): void {
    const stream = this.#stream;
    if (stream === undefined) return;
    this.#writing = this.#writing.then(() => writeTo(stream, text)).catch(() => {});
  }
}
