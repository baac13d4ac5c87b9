/**
 * `kite bench conn|pub|sub`, run in-process through `main()` against a mosquitto the test starts
 * and against Kite's own broker: the connections the broker sees, the counts and latency of the
 * `--json` result, failures counted, and the command line checked (exit 2). The histogram behind
 * the percentiles is checked on its own.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { main } from "../../src/cli/mod.ts";
import { benchFlagNames, benchUsage, parseBenchArgs } from "../../src/cli/bench_args.ts";
import { LatencyHistogram } from "../../src/cli/bench_stats.ts";
import type { BenchResult } from "../../src/cli/bench_stats.ts";
import { Broker } from "../../src/broker/broker.ts";
import { UsageError } from "../../src/cli/settings.ts";
import { type Mosquitto, mosquittoSkipReason, sharedMosquitto } from "../helpers/mosquitto.ts";
import { within } from "../helpers/wait.ts";

const TIMEOUT = { timeout: 30_000 };
const skip = mosquittoSkipReason();
const WITH_MOSQUITTO = { skip, timeout: 30_000 };

/** `kite ARGS...` running in this process, its output captured, stopped by `interrupt()`. */
class Run {
  readonly status: Promise<number>;
  stdout = "";
  stderr = "";
  readonly #interrupt = new AbortController();
  #wake = new Set<() => void>();
  #settled = false;

  constructor(args: string[], options: { terminal?: boolean } = {}) {
    const sink = (name: "stdout" | "stderr") =>
      new WritableStream<Uint8Array>({
        write: (chunk) => {
          this[name] += new TextDecoder().decode(chunk);
          this.#wakeAll();
        },
      });
    this.status = main(args, {
      stdout: sink("stdout"),
      stderr: sink("stderr"),
      stdin: new ReadableStream({ start: (controller) => controller.close() }),
      env: {},
      signal: this.#interrupt.signal,
      isTerminal: () => options.terminal ?? false,
    });
    this.status.finally(() => {
      this.#settled = true;
      this.#wakeAll();
    });
  }

  /** Resolves once `pattern` shows on `stream`; fails if the run ends first. */
  async waitFor(stream: "stdout" | "stderr", pattern: RegExp): Promise<void> {
    while (!pattern.test(this[stream])) {
      if (this.#settled) {
        assert.fail(
          `ended (${await this.status}) before printing ${pattern}\n` +
            `stdout: ${this.stdout}\nstderr: ${this.stderr}`,
        );
      }
      await new Promise<void>((resolve) => this.#wake.add(resolve));
    }
  }

  /** Ctrl-C. */
  interrupt(): void {
    this.#interrupt.abort(new Error("interrupted"));
  }

  /** The exit status and the `--json` result. */
  async result(): Promise<{ status: number; result: BenchResult }> {
    const status = await within(this.status, 20_000, "kite bench to end");
    const line = this.stdout.trim().split("\n").at(-1) ?? "";
    let result: BenchResult;
    try {
      result = JSON.parse(line);
    } catch {
      assert.fail(`no JSON on stdout\nstdout: ${this.stdout}\nstderr: ${this.stderr}`);
    }
    return { status, result };
  }

  #wakeAll(): void {
    const waiters = [...this.#wake];
    this.#wake.clear();
    for (const wake of waiters) wake();
  }
}

/** Resolves once mosquitto's log has `count` matches of `pattern` (read again as it grows). */
async function logCount(broker: Mosquitto, pattern: RegExp, count: number): Promise<void> {
  const file = path.join(broker.dir, "mosquitto.log");
  const deadline = Date.now() + 10_000;
  const global = new RegExp(pattern.source, "gm");
  for (;;) {
    const seen = fs.readFileSync(file, "utf8").match(global)?.length ?? 0;
    if (seen >= count) {
      assert.equal(seen, count, `mosquitto logged ${pattern} ${seen} times`);
      return;
    }
    if (Date.now() > deadline) assert.fail(`mosquitto logged ${pattern} ${seen} of ${count} times`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function logText(broker: Mosquitto): string {
  return fs.readFileSync(path.join(broker.dir, "mosquitto.log"), "utf8");
}

let counter = 0;
function uniquePrefix(label: string): string {
  return `kb${label}${++counter}${Math.random().toString(36).slice(2, 6)}`;
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function assertLatencySane(latency: BenchResult["latencyMs"], count: number): void {
  assert.equal(latency.count, count);
  assert.ok(latency.min >= 0, `min ${latency.min}`);
  assert.ok(latency.min <= latency.p50, `min ${latency.min} > p50 ${latency.p50}`);
  assert.ok(latency.p50 <= latency.p90, `p50 ${latency.p50} > p90 ${latency.p90}`);
  assert.ok(latency.p90 <= latency.p99, `p90 ${latency.p90} > p99 ${latency.p99}`);
  assert.ok(latency.p99 <= latency.max, `p99 ${latency.p99} > max ${latency.max}`);
  assert.ok(latency.max < 10_000, `a latency of ${latency.max} ms on loopback`);
}

describe("kite bench against mosquitto", () => {
  const broker = sharedMosquitto();
  const at = () => ["-h", broker.host, "-p", `${broker.port}`];

  test(
    "conn - holds N connections the broker sees, from each --ifaddr, and closes each with DISCONNECT",
    WITH_MOSQUITTO,
    async () => {
      const prefix = uniquePrefix("conn");
      const run = new Run([
        "bench",
        "conn",
        ...at(),
        "-c",
        "12",
        "--ifaddr",
        "127.0.0.1,127.0.0.2,127.0.0.3",
        "-k",
        "5",
        "--prefix",
        prefix,
        "--json",
      ]);
      try {
        await run.waitFor("stderr", /12 of 12 connected, 0 failed/);
        await logCount(broker, new RegExp(`New client connected from .* as ${prefix}-\\d+ `), 12);
        for (const address of ["127.0.0.1", "127.0.0.2", "127.0.0.3"]) {
          const from = logText(broker).match(
            new RegExp(
              `New client connected from ${address.replaceAll(".", "\\.")}:\\d+ as ${prefix}-`,
              "g",
            ),
          );
          assert.equal(from?.length, 4, `connections from ${address}`);
        }
        // Each asked for a keepalive of 5 s.
        await logCount(broker, new RegExp(`as ${prefix}-\\d+ \\(p2, c1, k5\\)`), 12);
      } finally {
        run.interrupt();
      }
      const { status, result } = await run.result();
      assert.equal(status, 0, run.stderr);
      assert.equal(result.mode, "conn");
      assert.equal(result.clients, 12);
      assert.deepEqual(
        { ...result.connections, connectMs: undefined },
        {
          attempted: 12,
          up: 12,
          peak: 12,
          failed: 0,
          lost: 0,
          errors: {},
          connectMs: undefined,
        },
      );
      assert.equal(result.connections.connectMs.count, 12);
      assert.ok(result.rssBytes.end > 0 && result.rssBytes.peak >= result.rssBytes.end);
      // Closed cleanly: a DISCONNECT from each, none just dropped.
      await logCount(broker, new RegExp(`Client ${prefix}-\\d+ disconnected\\.`), 12);
      assert.doesNotMatch(
        logText(broker),
        new RegExp(`Client ${prefix}-\\d+ closed its connection`),
      );
    },
  );

  test(
    "pub and sub - every message counted, latency read from the payloads, %i in the topic",
    WITH_MOSQUITTO,
    async () => {
      const root = uniquePrefix("t");
      const publishers = 3;
      const perPublisher = 20;
      const subscribers = 2;
      const total = publishers * perPublisher * subscribers;
      const sub = new Run([
        "bench",
        "sub",
        ...at(),
        "-c",
        `${subscribers}`,
        "-t",
        `${root}/#`,
        "-q",
        "1",
        "--limit",
        `${total}`,
        "--json",
      ]);
      // A third subscriber, on the topic of publisher 2 alone: %i names each one's topic.
      const only = new Run([
        "bench",
        "sub",
        ...at(),
        "-t",
        `${root}/2`,
        "-q",
        "1",
        "--limit",
        `${perPublisher}`,
        "--json",
      ]);
      try {
        await sub.waitFor("stderr", /2 of 2 connected and subscribed/);
        await only.waitFor("stderr", /1 of 1 connected and subscribed/);
        const pub = new Run([
          "bench",
          "pub",
          ...at(),
          "-c",
          `${publishers}`,
          "-t",
          `${root}/%i`,
          "-q",
          "1",
          "-s",
          "64",
          "-I",
          "2",
          "--limit",
          `${perPublisher}`,
          "--json",
        ]);
        const published = await pub.result();
        assert.equal(published.status, 0, pub.stderr);
        assert.equal(published.result.mode, "pub");
        assert.equal(published.result.messages.sent, publishers * perPublisher);
        assert.equal(published.result.messages.sendFailed, 0);
        assert.ok(published.result.messages.sentPerSecond > 0);
        assert.equal(published.result.connections.peak, publishers);
      } finally {
        // Once the limit is reached they end by themselves; on a failure, stop them.
        const timer = setTimeout(() => {
          sub.interrupt();
          only.interrupt();
        }, 10_000);
        await Promise.allSettled([sub.status, only.status]);
        clearTimeout(timer);
      }
      const received = await sub.result();
      assert.equal(received.status, 0, sub.stderr);
      assert.equal(received.result.messages.received, total);
      assert.ok(received.result.messages.receivedPerSecond > 0);
      assertLatencySane(received.result.latencyMs, total);
      const one = await only.result();
      assert.equal(one.status, 0, only.stderr);
      assert.equal(one.result.messages.received, perPublisher);
    },
  );

  test(
    "pub - a payload under 8 bytes carries no timestamp: no latency",
    WITH_MOSQUITTO,
    async () => {
      const root = uniquePrefix("small");
      const sub = new Run([
        "bench",
        "sub",
        ...at(),
        "-t",
        `${root}/#`,
        "-q",
        "1",
        "--limit",
        "5",
        "--json",
      ]);
      try {
        await sub.waitFor("stderr", /1 of 1 connected and subscribed/);
        const pub = new Run([
          "bench",
          "pub",
          ...at(),
          "-t",
          `${root}/%c`,
          "-q",
          "1",
          "-s",
          "4",
          "-I",
          "0",
          "--limit",
          "5",
          "--json",
        ]);
        assert.equal((await pub.result()).status, 0, pub.stderr);
      } finally {
        const timer = setTimeout(() => sub.interrupt(), 10_000);
        await sub.status.catch(() => {});
        clearTimeout(timer);
      }
      const { status, result } = await sub.result();
      assert.equal(status, 0, sub.stderr);
      assert.equal(result.messages.received, 5);
      assert.equal(result.latencyMs.count, 0);
    },
  );

  test(
    "pub --duration, flat out at QoS 1 - stops by itself, each publish acknowledged, a summary",
    WITH_MOSQUITTO,
    async () => {
      const run = new Run([
        "bench",
        "pub",
        ...at(),
        "-c",
        "2",
        "-t",
        `${uniquePrefix("d")}/%i`,
        "-q",
        "1",
        "-I",
        "0",
        "--duration",
        "0.3",
      ]);
      assert.equal(await within(run.status, 20_000, "kite bench pub to end"), 0, run.stderr);
      assert.equal(run.stderr, "");
      assert.match(run.stdout, /2 of 2 connected, 0 failed/);
      assert.match(run.stdout, /^connections +2 up at most, 2 at the end, 0 failed, 0 lost$/m);
      const sent = run.stdout.match(/^sent +(\d+) \(\d+\/s\), 0 failed$/m);
      assert.ok(sent !== null && Number(sent[1]) > 0, run.stdout);
      assert.match(run.stdout, /^rss +\d+ MiB at the end/m);
    },
  );
});

describe("kite bench against Kite's broker", () => {
  test("conn - the broker holds each connection while the run lasts", TIMEOUT, async () => {
    await using broker = new Broker();
    const { port } = await broker.listen({ port: 0, hostname: "127.0.0.1" });
    const prefix = uniquePrefix("kite");
    const run = new Run([
      "bench",
      "conn",
      "-L",
      `mqtt://127.0.0.1:${port}`,
      "-c",
      "8",
      "-R",
      "1000",
      "-V",
      "5",
      "--prefix",
      prefix,
      "--json",
    ]);
    try {
      await run.waitFor("stderr", /8 of 8 connected, 0 failed/);
      const sessions = broker.sessions().filter((session) => session.connected);
      assert.deepEqual(
        sessions.map((session) => session.clientId).sort(),
        Array.from({ length: 8 }, (_, i) => `${prefix}-${i + 1}`).sort(),
      );
      assert.ok(sessions.every((session) => session.protocolVersion === 5));
    } finally {
      run.interrupt();
    }
    const { status, result } = await run.result();
    assert.equal(status, 0, run.stderr);
    assert.equal(result.connections.peak, 8);
    assert.equal(result.connections.failed, 0);
  });

  test("pub and sub at QoS 2 over two broker URLs, taken in turn", TIMEOUT, async () => {
    await using broker = new Broker();
    const first = await broker.listen({ port: 0, hostname: "127.0.0.1" });
    const second = await broker.listen({ port: 0, hostname: "127.0.0.1" });
    const urls = [`mqtt://127.0.0.1:${first.port}`, `mqtt://127.0.0.1:${second.port}`];
    const brokers = urls.flatMap((url) => ["-L", url]);
    const sub = new Run([
      "bench",
      "sub",
      ...brokers,
      "-c",
      "2",
      "-t",
      "k/#",
      "-q",
      "2",
      "--limit",
      "40",
      "--json",
    ]);
    try {
      await sub.waitFor("stderr", /2 of 2 connected and subscribed/);
      const pub = new Run([
        "bench",
        "pub",
        ...brokers,
        "-c",
        "2",
        "-t",
        "k/%i",
        "-q",
        "2",
        "-I",
        "0",
        "--limit",
        "10",
        "--json",
      ]);
      const published = await pub.result();
      assert.equal(published.status, 0, pub.stderr);
      assert.equal(published.result.messages.sent, 20);
      assert.deepEqual(published.result.urls, urls);
    } finally {
      const timer = setTimeout(() => sub.interrupt(), 10_000);
      await sub.status.catch(() => {});
      clearTimeout(timer);
    }
    const { status, result } = await sub.result();
    assert.equal(status, 0, sub.stderr);
    assert.equal(result.messages.received, 40);
    assertLatencySane(result.latencyMs, 40);
  });
});

describe("kite bench failures", () => {
  test(
    "a port where nothing listens - every attempt counted as failed, exit 1",
    TIMEOUT,
    async () => {
      const port = await closedPort();
      const run = new Run([
        "bench",
        "conn",
        "-h",
        "127.0.0.1",
        "-p",
        `${port}`,
        "-c",
        "5",
        "--json",
      ]);
      const { status, result } = await run.result();
      assert.equal(status, 1);
      assert.equal(result.connections.attempted, 5);
      assert.equal(result.connections.failed, 5);
      assert.equal(result.connections.peak, 0);
      const errors = Object.entries(result.connections.errors);
      assert.equal(errors.length, 1);
      assert.equal(errors[0][1], 5);
      assert.match(errors[0][0], /refused/i);
      // The summary table goes to stderr with --json; the last line says why the status is 1.
      const last = run.stderr.trim().split("\n").at(-1);
      assert.match(
        last!,
        /^kite bench conn: no connection succeeded: 5 failed, 0 lost \(.*refused/i,
      );
    },
  );

  test("some attempts fail, some succeed - counted apart, exit 0", TIMEOUT, async () => {
    await using broker = new Broker();
    const { port } = await broker.listen({ port: 0, hostname: "127.0.0.1" });
    const closed = await closedPort();
    const run = new Run([
      "bench",
      "conn",
      "-L",
      `mqtt://127.0.0.1:${port}`,
      "-L",
      `mqtt://127.0.0.1:${closed}`,
      "-c",
      "6",
      "--json",
    ]);
    try {
      await run.waitFor("stderr", /3 of 6 connected, 3 failed/);
    } finally {
      run.interrupt();
    }
    const { status, result } = await run.result();
    assert.equal(status, 0, run.stderr);
    assert.equal(result.connections.peak, 3);
    assert.equal(result.connections.failed, 3);
  });

  test("the broker goes away - every connection lost, counted, exit 1", TIMEOUT, async () => {
    const broker = new Broker();
    const { port } = await broker.listen({ port: 0, hostname: "127.0.0.1" });
    // One connection from a chosen local address: on Deno that one goes through node:net.
    const run = new Run([
      "bench",
      "conn",
      ...["-p", `${port}`, "-h", "127.0.0.1", "-c", "3", "--json"],
      ...["--ifaddr", "127.0.0.1,127.0.0.5"],
    ]);
    try {
      await run.waitFor("stderr", /3 of 3 connected/);
    } finally {
      await broker.close();
    }
    const { status, result } = await run.result();
    assert.equal(status, 1);
    assert.equal(result.connections.lost, 3);
    assert.equal(result.connections.up, 0);
    assert.match(
      run.stderr.trim().split("\n").at(-1)!,
      /every connection was lost: 0 failed, 3 lost/,
    );
  });
});

describe("kite bench command line", () => {
  const wrong: [string, string[], RegExp][] = [
    ["no mode", ["bench"], /no mode given/],
    ["an unknown mode", ["bench", "flood"], /unknown mode "flood"/],
    ["an unknown flag", ["bench", "conn", "--flood"], /unknown option --flood/],
    ["a pub flag for conn", ["bench", "conn", "-s", "10"], /unknown option -s/],
    ["no topic for pub", ["bench", "pub"], /no topic given/],
    ["no topic for sub", ["bench", "sub"], /no topic given/],
    ["a wildcard in a pub topic", ["bench", "pub", "-t", "a/#"], /-t: /],
    ["-c 0", ["bench", "conn", "-c", "0"], /-c needs a whole number from 1/],
    ["-q 3", ["bench", "pub", "-t", "a", "-q", "3"], /-q needs a QoS/],
    ["-V 6", ["bench", "conn", "-V", "6"], /-V needs 3, 4 or 5/],
    ["-R 0", ["bench", "conn", "-R", "0"], /-R needs a number above 0/],
    ["a topic in -L", ["bench", "conn", "-L", "mqtt://127.0.0.1/a"], /topic from -t/],
    ["-L and -p", ["bench", "conn", "-L", "mqtt://127.0.0.1", "-p", "1"], /either with -L/],
    ["--ifaddr ,", ["bench", "conn", "--ifaddr", "127.0.0.1,"], /comma-separated/],
    ["a value missing", ["bench", "pub", "-t"], /-t needs a value/],
  ];
  for (const [name, args, pattern] of wrong) {
    test(`${name} - exit 2 with one line`, TIMEOUT, async () => {
      const run = new Run(args);
      assert.equal(await run.status, 2);
      assert.equal(run.stdout, "");
      const lines = run.stderr.split("\n").filter((line) => line !== "");
      assert.equal(lines.length, 1, run.stderr);
      assert.match(lines[0], pattern);
      assert.match(lines[0], /^kite bench( \w+)?: .* \(see kite bench( \w+)? --help\)$/);
    });
  }

  test("--help - every flag of the mode listed, exit 0", TIMEOUT, async () => {
    for (const mode of ["conn", "pub", "sub"] as const) {
      const run = new Run(["bench", mode, "--help"]);
      assert.equal(await run.status, 0);
      const names = benchFlagNames(mode);
      assert.ok(names.length > 20);
      for (const name of names) {
        assert.match(run.stdout, new RegExp(`(^|[ ,])${name}[ ,\\n]`, "m"), `${mode}: ${name}`);
      }
      assert.ok(run.stdout.split("\n").every((line) => line.length <= 80), run.stdout);
    }
    const run = new Run(["bench", "--help"]);
    assert.equal(await run.status, 0);
    assert.equal(run.stdout, benchUsage());
    assert.match(run.stdout, /kite bench conn/);
  });

  test("the settings - rates, patterns and defaults", () => {
    const conn = parseBenchArgs("conn", ["-c", "100", "-R", "250", "-V", "mqttv5"], {});
    assert.ok(!("help" in conn));
    assert.equal(conn.clients, 100);
    assert.equal(conn.connectInterval, 4);
    assert.equal(conn.protocolVersion, 5);
    assert.deepEqual(conn.urls, ["mqtt://localhost:1883"]);
    const pub = parseBenchArgs("pub", ["-h", "a,b", "-t", "x/%i", "--msg-rate", "50"], {
      MQTT_URL: "mqtt://ignored:1",
    });
    assert.ok(!("help" in pub));
    assert.equal(pub.publishInterval, 20);
    assert.equal(pub.size, 256);
    assert.deepEqual(pub.urls, ["mqtt://a:1883", "mqtt://b:1883"]);
    const sub = parseBenchArgs("sub", ["-t", "x/#"], { MQTT_URL: "mqtts://u:p@broker:8000" });
    assert.ok(!("help" in sub));
    assert.deepEqual(sub.urls, ["mqtts://broker:8000"]);
    assert.equal(sub.username, "u");
    assert.throws(() => parseBenchArgs("sub", ["-t", "a/#x"], {}), UsageError);
  });
});

describe("kite bench output", () => {
  test("on a terminal the progress line is rewritten in place", TIMEOUT, async () => {
    await using broker = new Broker();
    const { port } = await broker.listen({ port: 0, hostname: "127.0.0.1" });
    const run = new Run(["bench", "conn", "-h", "127.0.0.1", "-p", `${port}`, "-c", "2"], {
      terminal: true,
    });
    try {
      await run.waitFor("stdout", /2 of 2 connected/);
    } finally {
      run.interrupt();
    }
    assert.equal(await run.status, 0, run.stderr);
    // Carriage return, the line, then ESC [K to clear what a longer line left behind.
    const line = new RegExp(
      "\r\\d+s {2}up 2 {2}failed 0 {2}out 0/s {2}in 0/s {2}rss \\d+ MiB" +
        String.fromCharCode(27) + "\\[K\n",
    );
    assert.match(run.stdout, line);
    assert.match(run.stdout, /^mode +conn/m);
  });

  test("elsewhere, plain progress lines", TIMEOUT, async () => {
    await using broker = new Broker();
    const { port } = await broker.listen({ port: 0, hostname: "127.0.0.1" });
    const run = new Run(["bench", "conn", "-h", "127.0.0.1", "-p", `${port}`, "-c", "2"]);
    try {
      await run.waitFor("stdout", /2 of 2 connected/);
    } finally {
      run.interrupt();
    }
    assert.equal(await run.status, 0, run.stderr);
    assert.doesNotMatch(run.stdout, /\r/);
    assert.match(run.stdout, /^\d+s {2}up 2 {2}failed 0 {2}out 0\/s {2}in 0\/s {2}rss \d+ MiB$/m);
  });
});

describe("LatencyHistogram", () => {
  test("percentiles within 3 % of the exact ones, in a fixed size", () => {
    const histogram = new LatencyHistogram();
    const values: number[] = [];
    for (let i = 0; i < 100_000; i++) {
      // Spread over five orders of magnitude, from 10 µs to 1 s.
      const ms = 0.01 * 10 ** (5 * ((i * 7919) % 100_000) / 100_000);
      values.push(ms);
      histogram.record(ms);
    }
    values.sort((a, b) => a - b);
    for (const p of [1, 50, 90, 99, 99.9]) {
      const exact = values[Math.ceil((p / 100) * values.length) - 1];
      const read = histogram.percentile(p);
      assert.ok(Math.abs(read - exact) <= exact * 0.03 + 0.001, `p${p}: ${read} vs ${exact}`);
    }
    assert.equal(histogram.count, 100_000);
    assert.equal(histogram.min, values[0]);
    assert.equal(histogram.max, values.at(-1));
  });

  test("small values exactly, huge ones clamped, negative ones as 0", () => {
    const histogram = new LatencyHistogram();
    histogram.record(0.005);
    histogram.record(-3);
    histogram.record(1e12);
    assert.equal(histogram.percentile(0), 0);
    assert.equal(histogram.percentile(34), 0.005);
    assert.equal(histogram.percentile(100), 1e12);
    assert.equal(new LatencyHistogram().percentile(50), 0);
  });
});
