/**
 * What `kite bench` counts and how it shows it: a fixed-size latency histogram, the counters of a
 * run, the live progress line and the summary table.
 *
 * @module
 */

/** Sub-buckets per power of two: a recorded value is off by at most 1/32 (about 3 %). */
const SUB_BUCKET_BITS = 5;
const SUB_BUCKETS = 1 << SUB_BUCKET_BITS;
/** Powers of two above the linear range: microseconds up to 2^38, about three days. */
const MAGNITUDES = 33;

/**
 * A latency histogram of fixed size (560 counters, whatever the number of samples), in
 * log-linear buckets as HdrHistogram has them: values below 32 µs exactly, larger ones within
 * about 3 %. Percentiles are read from the buckets, so a million samples cost what ten do.
 *
 * @example
 * ```ts
 * import { LatencyHistogram } from "./bench_stats.ts";
 *
 * const histogram = new LatencyHistogram();
 * for (let ms = 1; ms <= 100; ms++) histogram.record(ms);
 * console.log(histogram.count, histogram.percentile(50), histogram.percentile(99)); // 100 ~50 ~99
 * ```
 */
export class LatencyHistogram {
  readonly #counts = new Float64Array(SUB_BUCKETS + MAGNITUDES * (SUB_BUCKETS / 2));
  #count = 0;
  #sumMs = 0;
  #minMs = Infinity;
  #maxMs = 0;

  /** How many values were recorded. */
  get count(): number {
    return this.#count;
  }

  /** The smallest value recorded, in milliseconds; 0 when none was. */
  get min(): number {
    return this.#count === 0 ? 0 : this.#minMs;
  }

  /** The largest value recorded, in milliseconds. */
  get max(): number {
    return this.#maxMs;
  }

  /** The mean of the values recorded, in milliseconds; 0 when none was. */
  get mean(): number {
    return this.#count === 0 ? 0 : this.#sumMs / this.#count;
  }

  /**
   * Records one value.
   *
   * @param ms A duration in milliseconds; a negative one counts as 0.
   */
  record(ms: number): void {
    if (!(ms > 0)) ms = 0;
    this.#counts[bucketOf(Math.round(ms * 1000))]++;
    this.#count++;
    this.#sumMs += ms;
    if (ms < this.#minMs) this.#minMs = ms;
    if (ms > this.#maxMs) this.#maxMs = ms;
  }

  /**
   * The value below which `p` percent of the recorded values lie.
   *
   * @param p A percentage from 0 to 100.
   * @returns Milliseconds (the middle of the bucket, within the recorded minimum and maximum);
   * 0 when nothing was recorded.
   */
  percentile(p: number): number {
    if (this.#count === 0) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * this.#count));
    if (rank >= this.#count) return this.#maxMs;
    let seen = 0;
    for (let bucket = 0; bucket < this.#counts.length; bucket++) {
      seen += this.#counts[bucket];
      if (seen >= rank) {
        const ms = middleOf(bucket) / 1000;
        return Math.min(this.#maxMs, Math.max(this.#minMs, ms));
      }
    }
    return this.#maxMs;
  }
}

/** The bucket of a value in microseconds. */
function bucketOf(us: number): number {
  if (us < SUB_BUCKETS) return us;
  const highestBit = us < 2 ** 31 ? 31 - Math.clz32(us) : Math.floor(Math.log2(us));
  const magnitude = Math.min(MAGNITUDES, highestBit - SUB_BUCKET_BITS + 1);
  const sub = Math.min(SUB_BUCKETS / 2 - 1, Math.floor(us / 2 ** magnitude) - SUB_BUCKETS / 2);
  // Above the linear range each power of two has SUB_BUCKETS / 2 buckets of its own width.
  return SUB_BUCKETS + (magnitude - 1) * (SUB_BUCKETS / 2) + Math.max(0, sub);
}

/** The middle of a bucket, in microseconds. */
function middleOf(bucket: number): number {
  if (bucket < SUB_BUCKETS) return bucket;
  const above = bucket - SUB_BUCKETS;
  const magnitude = Math.floor(above / (SUB_BUCKETS / 2)) + 1;
  const sub = above % (SUB_BUCKETS / 2) + SUB_BUCKETS / 2;
  return (sub + 0.5) * 2 ** magnitude;
}

/** The counters of a `kite bench` run; the runner adds to them, the reporter reads them. */
export interface BenchCounters {
  /** Connection attempts started. */
  attempted: number;
  /** Connections up now (CONNACK accepted, not lost or closed since). */
  up: number;
  /** The most connections up at once. */
  peak: number;
  /** Attempts that failed: refused, unreachable, timed out. */
  failed: number;
  /** Connections that ended without being asked to. */
  lost: number;
  /** Messages published (written at QoS 0, acknowledged at QoS 1 and 2). */
  sent: number;
  /** Publishes that failed. */
  sendFailed: number;
  /** Messages received. */
  received: number;
  /** Failure messages, with how often each was seen. */
  errors: Map<string, number>;
  /** From sending a CONNECT's connection attempt to its CONNACK, per connection. */
  connectTime: LatencyHistogram;
  /** From the timestamp in a payload's first 8 bytes to its arrival. */
  latency: LatencyHistogram;
}

/**
 * Fresh counters, all zero.
 *
 * @returns The counters.
 *
 * @example
 * ```ts
 * import { newCounters } from "./bench_stats.ts";
 *
 * console.log(newCounters().up); // 0
 * ```
 */
export function newCounters(): BenchCounters {
  return {
    attempted: 0,
    up: 0,
    peak: 0,
    failed: 0,
    lost: 0,
    sent: 0,
    sendFailed: 0,
    received: 0,
    errors: new Map(),
    connectTime: new LatencyHistogram(),
    latency: new LatencyHistogram(),
  };
}

/** Latency figures in milliseconds, as the result object carries them. */
export interface LatencySummary {
  /** Samples. */
  count: number;
  /** Smallest. */
  min: number;
  /** Mean. */
  mean: number;
  /** Median. */
  p50: number;
  /** 90th percentile. */
  p90: number;
  /** 99th percentile. */
  p99: number;
  /** Largest. */
  max: number;
}

/** What a `kite bench` run measured: the object `--json` prints. */
export interface BenchResult {
  /** `conn`, `pub` or `sub`. */
  mode: string;
  /** The runtime and its version, such as `deno 2.9.6`. */
  runtime: string;
  /** The broker URLs, without credentials. */
  urls: string[];
  /** The clients asked for (`-c`). */
  clients: number;
  /** How long the run took, from the first connection attempt to the last close, in ms. */
  elapsedMs: number;
  /** Connections. */
  connections: {
    attempted: number;
    /** Up when the run ended, before they were closed. */
    up: number;
    peak: number;
    failed: number;
    lost: number;
    /** Each failure message, with its count. */
    errors: Record<string, number>;
    /** Connection attempt to CONNACK. */
    connectMs: LatencySummary;
  };
  /** Messages. */
  messages: {
    sent: number;
    sendFailed: number;
    received: number;
    /** Sent per second over the time publishers ran. */
    sentPerSecond: number;
    /** Received per second over the time subscribers ran. */
    receivedPerSecond: number;
  };
  /** End-to-end latency; `count` 0 when no message carried a timestamp. */
  latencyMs: LatencySummary;
  /** The process's resident set size: when the run ended, and the highest seen. */
  rssBytes: { end: number; peak: number };
}

/**
 * Latency figures of a histogram.
 *
 * @param histogram The histogram.
 * @returns Its count, min, mean, p50, p90, p99 and max, in ms rounded to µs.
 *
 * @example
 * ```ts
 * import { LatencyHistogram, summarize } from "./bench_stats.ts";
 *
 * console.log(summarize(new LatencyHistogram()).count); // 0
 * ```
 */
export function summarize(histogram: LatencyHistogram): LatencySummary {
  const round = (ms: number) => Math.round(ms * 1000) / 1000;
  return {
    count: histogram.count,
    min: round(histogram.min),
    mean: round(histogram.mean),
    p50: round(histogram.percentile(50)),
    p90: round(histogram.percentile(90)),
    p99: round(histogram.percentile(99)),
    max: round(histogram.max),
  };
}

/**
 * One line of progress: connections, message rates, latency and memory.
 *
 * @param counters The counters now.
 * @param rates Messages a second out and in since the last line.
 * @param elapsedMs Time since the start.
 * @param rss The resident set size in bytes.
 * @returns The line, without a newline.
 *
 * @example
 * ```ts
 * import { newCounters, progressLine } from "./bench_stats.ts";
 *
 * console.log(progressLine(newCounters(), { out: 0, in: 0 }, 1000, 50e6));
 * ```
 */
export function progressLine(
  counters: BenchCounters,
  rates: { out: number; in: number },
  elapsedMs: number,
  rss: number,
): string {
  const parts = [
    `${(elapsedMs / 1000).toFixed(0)}s`,
    `up ${counters.up}`,
    `failed ${counters.failed}`,
  ];
  if (counters.lost > 0) parts.push(`lost ${counters.lost}`);
  parts.push(`out ${Math.round(rates.out)}/s`, `in ${Math.round(rates.in)}/s`);
  if (counters.latency.count > 0) {
    parts.push(
      `p50 ${formatMs(counters.latency.percentile(50))}`,
      `p99 ${formatMs(counters.latency.percentile(99))}`,
    );
  }
  parts.push(`rss ${formatBytes(rss)}`);
  return parts.join("  ");
}

/**
 * The summary table printed at the end of a run.
 *
 * @param result What the run measured.
 * @returns Lines of `name  value`, ending with a newline.
 *
 * @example
 * ```ts ignore
 * import { summaryTable } from "./bench_stats.ts";
 *
 * console.log(summaryTable(result));
 * ```
 */
export function summaryTable(result: BenchResult): string {
  const { connections, messages, latencyMs } = result;
  const rows: [string, string][] = [
    ["mode", `${result.mode} (${result.runtime})`],
    ["brokers", result.urls.join(" ")],
    ["elapsed", `${(result.elapsedMs / 1000).toFixed(1)} s`],
    ["clients", `${result.clients}`],
    [
      "connections",
      `${connections.peak} up at most, ${connections.up} at the end, ` +
      `${connections.failed} failed, ${connections.lost} lost`,
    ],
  ];
  if (connections.connectMs.count > 0) {
    const c = connections.connectMs;
    rows.push([
      "connect time",
      `p50 ${formatMs(c.p50)}  p99 ${formatMs(c.p99)}  max ${formatMs(c.max)}`,
    ]);
  }
  for (const [message, count] of Object.entries(connections.errors)) {
    rows.push(["error", `${count} x ${message}`]);
  }
  if (result.mode === "pub" || messages.sent > 0 || messages.sendFailed > 0) {
    rows.push([
      "sent",
      `${messages.sent} (${Math.round(messages.sentPerSecond)}/s), ${messages.sendFailed} failed`,
    ]);
  }
  if (result.mode === "sub" || messages.received > 0) {
    rows.push(["received", `${messages.received} (${Math.round(messages.receivedPerSecond)}/s)`]);
  }
  if (latencyMs.count > 0) {
    rows.push([
      "latency",
      `min ${formatMs(latencyMs.min)}  p50 ${formatMs(latencyMs.p50)}  ` +
      `p90 ${formatMs(latencyMs.p90)}  p99 ${formatMs(latencyMs.p99)}  max ${
        formatMs(latencyMs.max)
      }`,
    ]);
  }
  rows.push([
    "rss",
    `${formatBytes(result.rssBytes.end)} at the end, ${formatBytes(result.rssBytes.peak)} at most`,
  ]);
  const width = Math.max(...rows.map(([name]) => name.length));
  return rows.map(([name, value]) => `${name.padEnd(width)}  ${value}\n`).join("");
}

function formatMs(ms: number): string {
  if (ms < 1) return `${Math.round(ms * 1000)}µs`;
  if (ms < 100) return `${ms.toFixed(1)}ms`;
  return `${Math.round(ms)}ms`;
}

function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
  return `${(bytes / 1024 ** 2).toFixed(0)} MiB`;
}
