/**
 * Awaited batches of QoS 1 publishes, Kite against MQTT.js, through mosquitto with its default
 * TCP settings and with `set_tcp_nodelay true`, on the runtime that runs this file.
 *
 * The program: publish `size` messages without awaiting each, then await every publish and every
 * arrival at a subscriber in the same process, then the next batch. mosquitto leaves Nagle's
 * algorithm on by default: a small packet it writes while an earlier one is unacknowledged waits
 * for that acknowledgement, and the client's kernel delays its acknowledgement (up to 40 ms on
 * Linux) while the program has nothing to send, which is how the end of every batch looks. With
 * `set_tcp_nodelay true` mosquitto writes at once. Kite sets `TCP_NODELAY` on the sockets it
 * dials and in its broker; nothing in a client can make the peer's kernel acknowledge sooner.
 *
 * With `--ws`, the clients connect over `ws://` to mosquitto's websockets listener instead; on
 * Deno 2.9.6 Kite then waits about 44 ms a batch from 20 up, in Deno's `WebSocket`
 * (bench/README.md).
 *
 * `--qos 0` or `--qos 2` measures that QoS instead of 1. Kite runs with its default in-flight
 * window (20) unless `--window N`. Sizes `--sizes 1,5,20,100,1000`; `--batches N` (default 40)
 * timed batches after 5 of warm-up, per library and size; the libraries take turns, `--runs N`
 * (3) times; medians of the time a batch takes.
 *
 *     npm ci --prefix bench && deno run -A bench/batches.ts && bun run bench/batches.ts
 *
 * @module
 */

import process from "node:process";
import { median, openPair, option, type Pair, runtime, startLoadedMosquitto } from "./_common.ts";

const sizes = (option("sizes") ?? "1,5,20,100,1000").split(",").map(Number);
const batchCount = Number(option("batches") ?? 0) || 40;
const runCount = Number(option("runs") ?? 0) || 3;
const window = Number(option("window") ?? 0) || undefined;
const overWebSocket = process.argv.includes("--ws");
const qos = Number(option("qos") ?? 1) as 0 | 1 | 2;
const WARM_UP = 5;
const payload = new Uint8Array(64).fill(0x61);
const topic = "bench/batches";

async function batch(run: Pair, size: number): Promise<void> {
  const received = run.receive(size);
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < size; i++) pending.push(run.publish());
  await Promise.all(pending);
  await received;
}

const LIBRARIES = ["kite", "mqttjs"] as const;
const LABELS = { kite: "Kite", mqttjs: "MQTT.js" } as const;

/** How long one run may take before it counts as not finished. */
const LIMIT_MS = 120_000;

/**
 * Milliseconds per batch of `size`, over `batchCount` batches after a warm-up; `NaN` when the run
 * fails or does not finish within `LIMIT_MS`.
 */
async function measure(
  library: "kite" | "mqttjs",
  url: string,
  size: number,
): Promise<number> {
  const run = await openPair(library, url, {
    topic,
    qos,
    payload,
    clientIds: "batches",
    inflightWindow: window,
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const ms = await Promise.race([
    (async () => {
      for (let i = 0; i < WARM_UP; i++) await batch(run, size);
      const started = performance.now();
      for (let i = 0; i < batchCount; i++) await batch(run, size);
      return (performance.now() - started) / batchCount;
    })().catch((error) => {
      console.log(`    ${LABELS[library]}: ${error instanceof Error ? error.message : error}`);
      return NaN;
    }),
    new Promise<number>((resolve) => timer = setTimeout(() => resolve(NaN), LIMIT_MS)),
  ]);
  clearTimeout(timer);
  await Promise.race([run.close(), new Promise((resolve) => setTimeout(resolve, 2000))]);
  return ms;
}

console.log(
  `Awaited batches of QoS ${qos} publishes through mosquitto${
    overWebSocket ? " over ws://" : ""
  } on ${runtime}: ${batchCount} batches ` +
    `a run, 64-byte payloads, publisher and subscriber in one process; median of ${runCount} runs`,
);
for (const nodelay of [false, true]) {
  const broker = await startLoadedMosquitto(nodelay ? "set_tcp_nodelay true" : "", {
    websockets: overWebSocket,
  });
  try {
    const url = overWebSocket
      ? `ws://127.0.0.1:${broker.wsPort}/`
      : `mqtt://127.0.0.1:${broker.port}`;
    console.log(`  mosquitto ${nodelay ? "set_tcp_nodelay true" : "default (Nagle on)"}`);
    for (const size of sizes) {
      const runs = { kite: [] as number[], mqttjs: [] as number[] };
      for (let i = 0; i < runCount; i++) {
        for (const library of LIBRARIES) runs[library].push(await measure(library, url, size));
      }
      const cells = LIBRARIES.map((library) => {
        const ms = median(runs[library]);
        const name = LABELS[library];
        if (Number.isNaN(ms)) return `${name} failed or did not finish within ${LIMIT_MS / 1000} s`;
        return `${name} ${ms.toFixed(2).padStart(7)} ms (${
          (size / ms).toFixed(1).padStart(5)
        }k msg/s)`;
      });
      console.log(`    batch of ${String(size).padEnd(5)} ${cells.join("   ")}`);
    }
  } finally {
    await broker.stop();
  }
}
