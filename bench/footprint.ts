/**
 * Memory per idle connection: Kite against MQTT.js, on the runtime that runs this file. Each
 * case runs in a child process of its own (same runtime, same flags) that opens `--connections N`
 * (default 1,000) connections to one mosquitto, keepalive 60 s, and holds them idle. The child
 * measures its resident set size (and the anonymous part of it, without the pages of the runtime's
 * binary: see `anonymousRss`) and JS heap after a full GC before opening them and again after, and
 * the difference divided by N is the cost of one connection. Then it opens N more and
 * measures again: "next RSS" is what each of those cost on top. The cases take turns, `--runs N`
 * times (default 3), and the median is reported.
 *
 * What a process pays once is left out of the figure, for both clients alike, so that it is what
 * each connection costs:
 * - Before measuring, the child opens and closes `--warmup N` connections (default: four times as
 *   many as it measures), 100 at a time, so that the code is compiled (Maglev, TurboFan) and the
 *   modules loaded. After only as many as it measures, pages of Deno's binary (most likely its
 *   optimizing compilers') were still being paged in, into the measured RSS. In rounds, so that
 *   the warm-up leaves no heap freed for the measured connections to fill without growing RSS:
 *   opening all 4,000 at once, MQTT.js measured 2.5 KiB of RSS for 7.4 KiB of heap used on Bun
 *   (bench/README.md).
 * - On Deno the GC is V8's memory-reducing one (`gc({ flavor: "last-resort" })`), which gives
 *   back the young generation that a burst of connects grew. An idle process gets there by
 *   itself: V8's memory reducer shrinks the heap some 30 to 40 s after the burst (bench/README.md
 *   shows it). With a plain `gc()`, the figure varies with how far the young generation grew,
 *   from 6 to 11 KiB for the same code. On Bun, `Bun.gc(true)` is a full, synchronous GC.
 *
 * Cases: `Kite` (`connect(url)`), `MQTT.js` (`mqtt.connectAsync(url)`), on Deno `Kite over
 * Deno.Conn` (`new MqttClient(await Deno.connect(...))`, the README's low-level way), and `bare
 * socket`, the floor: a socket of the runtime's own (`Deno.connect`, `Bun.connect`) that sends
 * CONNECT, reads CONNACK and keeps one read pending (into 512 bytes on Deno), with no client at all.
 *
 *     npm ci --prefix bench
 *     deno run -A --v8-flags=--expose-gc bench/footprint.ts && bun run bench/footprint.ts
 *
 * @module
 */

import process from "node:process";
import { connect, MqttClient } from "../mod.ts";
import {
  loadMqttJs,
  median,
  type MqttJsClient,
  option,
  runJsonChild,
  runtime,
  startLoadedMosquitto,
} from "./_common.ts";

const connections = Number(option("connections") ?? 0) || 1000;
const runCount = Number(option("runs") ?? 0) || 3;
const warmup = Number(option("warmup") ?? 4 * connections);
/** How many warm-up connections are open at once. */
const WARMUP_ROUND = 100;
const isBun = process.versions.bun !== undefined;

/** What a child reports. */
interface Footprint {
  /** RSS per connection, bytes. */
  rss: number;
  /** Anonymous RSS per connection (RSS without the pages of files, see `anonymousRss`), bytes. */
  anon: number;
  /** JS heap used per connection, bytes. */
  heap: number;
  /** JS heap reserved per connection (used, and free space the heap keeps), bytes. */
  heapTotal: number;
  /** Memory of array buffers and other objects outside the heap, per connection, bytes. */
  external: number;
  /** How long opening all of them took, ms. */
  openMs: number;
  /**
   * RSS per connection of as many again, opened on top of the first ones and measured the same
   * way, bytes: the cost of one more connection once the process has paid what it pays once
   * (compiled code, the young generation the first burst grew).
   */
  rssNext: number;
  /** Anonymous RSS per connection of those opened on top, bytes. */
  anonNext: number;
}

/**
 * The process's anonymous resident memory (`RssAnon` of /proc/self/status), bytes; NaN where there
 * is no such file. RSS also counts the pages of files mapped in, the runtime's own binary among
 * them: code the runtime runs for the first time while the connections open is paged in then, and
 * on Deno, after a warm-up of 1,000 at once, that was 0.2 or 1.7 KiB a connection from one run to
 * the next (1.7 to 1.9 for the bare socket), with the anonymous memory the same in both
 * (bench/README.md). That is the process's code, not the connections' memory; the anonymous
 * figure leaves it out.
 */
async function anonymousRss(): Promise<number> {
  // The runtimes' own file APIs, not node:fs: the child loads no more of Node's modules than it
  // did, since on Bun one of them (node:test, see _common.ts) changed what a connection measures.
  const { Deno, Bun } = globalThis as {
    Deno?: { readTextFile(path: string): Promise<string> };
    Bun?: { file(path: string): { text(): Promise<string> } };
  };
  try {
    const status = Deno !== undefined
      ? await Deno.readTextFile(STATUS)
      : await Bun!.file(STATUS).text();
    const match = /^RssAnon:\s+(\d+) kB$/m.exec(status);
    return match === null ? NaN : Number(match[1]) * 1024;
  } catch {
    return NaN;
  }
}

const STATUS = "/proc/self/status";

/**
 * A library under test: opens one idle connection and resolves with what it is (the client, or
 * the socket), and closes one. The harness keeps only what `open` resolves with: a closure per
 * connection would keep the scope of the `async` function that made it, and on Bun that costs
 * about 1 KiB a connection (measured: 3.7 to 4.2 KiB of RSS for a Kite connection kept as its
 * client, 4.8 to 5.3 KiB kept as a closure over that scope), which is the harness's, not the
 * library's.
 */
interface Library {
  open(url: string, index: number): Promise<unknown>;
  close(connection: unknown): Promise<unknown>;
}

const disconnect = (client: unknown) => (client as MqttClient).disconnect();

async function library(name: string): Promise<Library> {
  switch (name) {
    case "kite":
      return {
        open: (url, i) => connect(url, { clientId: `fp-kite-${i}`, keepalive: 60 }),
        close: disconnect,
      };
    case "kite-conn":
      return {
        open: async (url, i) => {
          const { hostname, port } = new URL(url);
          const conn = await Deno.connect({ hostname, port: Number(port) });
          const client = new MqttClient(conn);
          await client.connect({ clientId: `fp-conn-${i}`, keepalive: 60 });
          return client;
        },
        close: disconnect,
      };
    case "bare":
      return isBun ? bareBun : bareDeno;
    case "mqttjs": {
      const lib = await loadMqttJs();
      return {
        open: (url, i) =>
          lib.connectAsync(url, {
            clientId: `fp-mqttjs-${i}`,
            keepalive: 60,
            protocolVersion: 4,
            reconnectPeriod: 0,
          }),
        close: (client) => (client as MqttJsClient).endAsync(),
      };
    }
  }
  throw new Error(`unknown case ${name}`);
}

const CONNECT = Uint8Array.of(
  0x10,
  12,
  0,
  4,
  0x4d,
  0x51,
  0x54,
  0x54,
  4,
  2,
  0,
  60,
  0,
  0,
);

const bareDeno: Library = {
  open: async (url) => {
    const { hostname, port } = new URL(url);
    const conn = await Deno.connect({ hostname, port: Number(port) });
    conn.setNoDelay(true);
    await conn.write(CONNECT);
    const buffer = new Uint8Array(512);
    await conn.read(buffer);
    conn.read(buffer).catch(() => {});
    return conn;
  },
  close: (conn) => Promise.resolve((conn as Deno.Conn).close()),
};

interface BareBunSocket {
  write(bytes: Uint8Array): number;
  end(): void;
}

const bareBun: Library = {
  open: (url) => openBareBun(url),
  close: (socket) => Promise.resolve((socket as BareBunSocket).end()),
};

async function openBareBun(url: string): Promise<BareBunSocket> {
  const { hostname, port } = new URL(url);
  const runtime = (globalThis as unknown as {
    Bun: {
      connect(options: {
        hostname: string;
        port: number;
        socket: { open(socket: BareBunSocket): void; data(): void };
      }): Promise<BareBunSocket>;
    };
  }).Bun;
  let connack!: () => void;
  const connacked = new Promise<void>((resolve) => connack = resolve);
  const socket = await runtime.connect({
    hostname,
    port: Number(port),
    socket: { open: (socket) => socket.write(CONNECT), data: () => connack() },
  });
  await connacked;
  return socket;
}

/**
 * A full GC, several times over, so that what is left is what is reachable; on Deno the
 * memory-reducing one, which also gives back the empty young generation.
 */
async function collect(): Promise<void> {
  const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
  const gc = (globalThis as { gc?: (options?: Record<string, string>) => void }).gc;
  for (let i = 0; i < 3; i++) {
    if (bun !== undefined) bun.gc(true);
    else gc?.({ type: "major", execution: "sync", flavor: "last-resort" });
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Opens `count` connections, at most 50 at a time. */
async function openAll(
  lib: Library,
  url: string,
  count: number,
  offset: number,
): Promise<unknown[]> {
  const connections: unknown[] = [];
  for (let i = 0; i < count; i += 50) {
    const batch = [];
    for (let j = i; j < Math.min(count, i + 50); j++) {
      batch.push(lib.open(url, offset + j));
    }
    connections.push(...await Promise.all(batch));
  }
  return connections;
}

/** The child: measures one case and prints its {@linkcode Footprint} as JSON. */
async function child(name: string, url: string): Promise<void> {
  const lib = await library(name);
  // The first read of a file starts what the runtime reads files with (a thread, on Bun about 1
  // MiB of RSS): before the first measurement, not within it.
  await anonymousRss();
  // Warm up: the code paths are compiled and the modules loaded before the first measurement.
  for (let done = 0; done < warmup; done += WARMUP_ROUND) {
    const round = Math.min(WARMUP_ROUND, warmup - done);
    for (const connection of await openAll(lib, url, round, 1_000_000 + done)) {
      await lib.close(connection);
    }
  }
  await collect();
  const before = process.memoryUsage();
  const anonBefore = await anonymousRss();
  const started = performance.now();
  const first = await openAll(lib, url, connections, 0);
  const openMs = performance.now() - started;
  // Let whatever each connection starts (reads, timers) settle, then collect.
  await new Promise((resolve) => setTimeout(resolve, 500));
  await collect();
  const after = process.memoryUsage();
  const anonAfter = await anonymousRss();
  const more = await openAll(lib, url, connections, connections);
  await new Promise((resolve) => setTimeout(resolve, 500));
  await collect();
  const next = process.memoryUsage();
  const anonNext = await anonymousRss();
  const result: Footprint = {
    rss: (after.rss - before.rss) / connections,
    anon: (anonAfter - anonBefore) / connections,
    heap: (after.heapUsed - before.heapUsed) / connections,
    heapTotal: (after.heapTotal - before.heapTotal) / connections,
    external: (after.external - before.external) / connections,
    openMs,
    rssNext: (next.rss - after.rss) / connections,
    anonNext: (anonNext - anonAfter) / connections,
  };
  console.log(JSON.stringify(result));
  await Promise.all([...first, ...more].map((connection) => lib.close(connection)));
  process.exit(0);
}

/** Runs one case in a child process of this runtime. */
function runChild(name: string, url: string): Promise<Footprint> {
  const args = [
    ...["--child", name, "--url", url],
    ...["--connections", String(connections), "--warmup", String(warmup)],
  ];
  return runJsonChild(new URL(import.meta.url).pathname, args, name, [
    "--v8-flags=--expose-gc",
  ]);
}

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`.padStart(10);

const childCase = option("child");
if (childCase !== undefined) {
  await child(childCase, option("url")!);
} else {
  const cases: [string, string][] = [["kite", "Kite"], ["mqttjs", "MQTT.js"]];
  if (!isBun) cases.push(["kite-conn", "Kite over Deno.Conn"]);
  cases.push(["bare", "bare socket"]);
  const only = option("only");
  const chosen = only === undefined ? cases : cases.filter(([id]) => only.split(",").includes(id));
  console.log(
    `Memory per idle connection on ${runtime}: ${connections} connections to mosquitto, ` +
      `keepalive 60 s, after ${warmup} opened and closed ${WARMUP_ROUND} at a time and a full ` +
      `GC; median of ${runCount} runs`,
  );
  if (!isBun && (globalThis as { gc?: unknown }).gc === undefined) {
    console.log(
      "  (run with --v8-flags=--expose-gc: the children are; this process need not)",
    );
  }
  const broker = await startLoadedMosquitto();
  try {
    const url = `mqtt://127.0.0.1:${broker.port}`;
    const results = new Map<string, Footprint[]>(
      chosen.map(([id]) => [id, []]),
    );
    for (let run = 0; run < runCount; run++) {
      for (const [id] of chosen) results.get(id)!.push(await runChild(id, url));
    }
    const columns = ["RSS", "anon RSS", "heap used", "heap total", "external", "next RSS"];
    console.log(
      `  ${"".padEnd(20)} ${columns.map((c) => c.padStart(10)).join(" ")} ${
        "next anon".padStart(10)
      }   RSS runs (anon)`,
    );
    const of = (id: string, key: keyof Footprint) => median(results.get(id)!.map((r) => r[key]));
    for (const [id, label] of chosen) {
      const runs = results.get(id)!;
      const figures =
        (["rss", "anon", "heap", "heapTotal", "external", "rssNext", "anonNext"] as const)
          .map((key) => kib(of(id, key)));
      const each = runs.map((r) => `${(r.rss / 1024).toFixed(1)} (${(r.anon / 1024).toFixed(1)})`);
      console.log(`  ${label.padEnd(20)} ${figures.join(" ")}   ${each.join(", ")}`);
    }
    if (results.has("kite") && results.has("mqttjs")) {
      const ratio = (key: keyof Footprint) => (of("kite", key) / of("mqttjs", key)).toFixed(2);
      console.log(
        `  Kite / MQTT.js: RSS ${ratio("rss")}x, anonymous ${ratio("anon")}x; ` +
          `next ${connections}: RSS ${ratio("rssNext")}x, anonymous ${ratio("anonNext")}x`,
      );
    }
  } finally {
    await broker.stop();
  }
}
