/**
 * Soak test: publishes many QoS 1 messages through a fault proxy that cuts the publisher's
 * connection again and again at random bytes, to a persistent-session subscriber, and reports
 * how many arrived, the duplicates, the cuts, the time taken and the peak resident memory.
 *
 * It starts its own mosquitto (via the test harness) and fault proxy.
 *
 * Usage:
 *
 * ```sh
 * deno run -A bench/soak.ts [--messages 1000000] [--window 1000] [--min-bytes 20000]
 *   [--max-bytes 200000] [--seed N]
 * bun run bench/soak.ts --messages 100000
 * ```
 *
 * Exits with status 1 when a message is missing or a publish failed.
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { connect } from "../src/client/connect.ts";
import { startFaultProxy } from "../tests/helpers/fault_proxy.ts";
import { startMosquitto } from "../tests/helpers/mosquitto.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    messages: { type: "string", default: "1000000" },
    window: { type: "string", default: "1000" },
    "min-bytes": { type: "string", default: "20000" },
    "max-bytes": { type: "string", default: "200000" },
    seed: { type: "string" },
    "drain-timeout": { type: "string", default: "120000" },
  },
});

const total = Number(values.messages);
const window = Number(values.window);
const minBytes = Number(values["min-bytes"]);
const maxBytes = Number(values["max-bytes"]);
const seed = values.seed !== undefined
  ? Number(values.seed) >>> 0
  : (Math.random() * 2 ** 32) >>> 0;
const drainTimeout = Number(values["drain-timeout"]);
for (
  const [name, value] of [["messages", total], ["window", window]] as const
) {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new RangeError(
      `--${name} must be > 0`,
    );
  }
}

const runtime = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined"
  ? `Bun ${process.versions.bun}`
  : `Deno ${(globalThis as { Deno?: { version: { deno: string } } }).Deno?.version.deno}`;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

let peakRss = process.memoryUsage().rss;
const sampler = setInterval(() => {
  const rss = process.memoryUsage().rss;
  if (rss > peakRss) peakRss = rss;
}, 100);

const broker = await startMosquitto({ extraConfig: "max_queued_messages 0" });
const proxy = await startFaultProxy(broker, { seed });
const topic = `soak/${seed}`;
const counts = new Uint8Array(total);
let distinct = 0;
let duplicates = 0;
let strays = 0;
const all = Promise.withResolvers<void>();

const subscriber = await connect(`mqtt://127.0.0.1:${broker.port}`, {
  clientId: `soak-sub-${seed}`,
  clean: false,
  reconnect: { minDelay: 10, maxDelay: 200 },
});
subscriber.setPublishHandler((message) => {
  const index = Number(decoder.decode(message.payload));
  if (!(index >= 0 && index < total)) {
    strays++;
    return;
  }
  if (counts[index] === 0) {
    counts[index] = 1;
    if (++distinct === total) all.resolve();
  } else {
    duplicates++;
  }
});
await subscriber.subscribe(topic, { qos: 1 });

const publisher = await connect(`mqtt://127.0.0.1:${proxy.port}`, {
  clientId: `soak-pub-${seed}`,
  clean: false,
  reconnect: { minDelay: 10, maxDelay: 200 },
  queue: { maxMessages: Math.max(10_000, window * 2) },
});
let cuts = 0;
publisher.addEventListener("disconnect", () => cuts++);
let subscriberLosses = 0;
subscriber.addEventListener("disconnect", () => subscriberLosses++);

console.log(
  `soak: ${runtime}, ${total.toLocaleString("en")} QoS 1 messages, window ${window}, cuts every ` +
    `${minBytes}…${maxBytes} bytes of the publisher's traffic, seed ${seed}`,
);
proxy.cutRandomly({ minBytes, maxBytes });

const started = performance.now();
let failed = 0;
let firstFailure: unknown;
let completed = 0;
let nextReport = Math.ceil(total / 10);
// A sliding window: at most `window` publishes awaiting their PUBACK at once.
await new Promise<void>((resolve) => {
  let next = 0;
  let outstanding = 0;
  const settle = () => {
    outstanding--;
    completed++;
    if (completed >= nextReport) {
      nextReport += Math.ceil(total / 10);
      const seconds = (performance.now() - started) / 1000;
      console.log(
        `  ${completed.toLocaleString("en")} acknowledged, ${distinct.toLocaleString("en")} ` +
          `arrived, ${cuts} cuts, ${seconds.toFixed(1)} s, rss ${mb(process.memoryUsage().rss)}`,
      );
    }
    if (completed === total) resolve();
    else fill();
  };
  const fail = (error: unknown) => {
    failed++;
    firstFailure ??= error;
    settle();
  };
  const fill = () => {
    while (outstanding < window && next < total) {
      outstanding++;
      publisher.publish(topic, encoder.encode(String(next++)), { qos: 1 }).then(
        settle,
        fail,
      );
    }
  };
  fill();
});
const acknowledgedAt = performance.now();
proxy.stopCutting();
let timer: ReturnType<typeof setTimeout> | undefined;
const drained = await Promise.race([
  all.promise.then(() => true),
  new Promise<boolean>((
    resolve,
  ) => (timer = setTimeout(() => resolve(false), drainTimeout))),
]);
clearTimeout(timer);
const elapsed = performance.now() - started;
clearInterval(sampler);
peakRss = Math.max(peakRss, process.memoryUsage().rss);
// Counted before our own disconnect() adds a disconnect event of its own.
const publisherCuts = cuts;
const subscriberCuts = subscriberLosses;

await publisher.disconnect();
await subscriber.disconnect();
await proxy.close();
await broker.stop();

const seconds = elapsed / 1000;
console.log(`soak results (${runtime}, seed ${seed}):`);
console.log(
  `  published (acknowledged) ${(total - failed).toLocaleString("en")} of ${
    total.toLocaleString("en")
  }, failed ${failed}`,
);
console.log(
  `  delivered (distinct)     ${distinct.toLocaleString("en")}, missing ${total - distinct}`,
);
console.log(
  `  duplicates               ${duplicates.toLocaleString("en")} (${
    (duplicates / total * 100).toFixed(2)
  } %)`,
);
console.log(
  `  publisher cuts           ${publisherCuts} (subscriber connection lost ${subscriberCuts} times)`,
);
console.log(
  `  elapsed                  ${seconds.toFixed(1)} s (last PUBACK at ${
    ((acknowledgedAt - started) / 1000).toFixed(1)
  } s), ${Math.round(total / seconds).toLocaleString("en")} messages/s`,
);
console.log(`  peak RSS                 ${mb(peakRss)}`);
if (failed > 0) console.log(`  first failure: ${firstFailure}`);
if (strays > 0) {
  console.log(`  ${strays} messages that were never published arrived`);
}
if (!drained || failed > 0 || strays > 0) process.exit(1);

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
