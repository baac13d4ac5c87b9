/**
 * Kite's client against MQTT.js, end to end through a real mosquitto on loopback, on the runtime
 * that runs this file: one publisher and one subscriber per library, `--messages N` messages
 * (default 100,000) of 64 bytes to one topic, published in batches of 1,000 whose promises are
 * awaited. A run is timed from the first publish to the moment every publish has settled and the
 * subscriber has received every message. The libraries take turns, `--runs N` times (default 3)
 * after a warm-up each, and the median run is reported, so that noise from other work on the
 * machine spreads over all of them. `--qos 0,1` picks the QoS levels.
 *
 *     npm ci --prefix bench && deno run -A bench/client.ts && bun run bench/client.ts
 *
 * @module
 */

import { connect } from "../mod.ts";
import { loadMqttJs, median, option, runtime, startLoadedMosquitto } from "./_common.ts";

interface Library {
  name: string;
  /** Connects a publisher and a subscriber; returns the run. */
  setup(url: string, qos: 0 | 1 | 2, count: number): Promise<{
    publish(index: number): Promise<unknown>;
    received: Promise<void>;
    close(): Promise<void>;
  }>;
}

const count = Number(option("messages") ?? 0) || 100_000;
const runCount = Number(option("runs") ?? 0) || 3;
const qosLevels = (option("qos") ?? "0,1,2").split(",").map(Number) as (0 | 1 | 2)[];
const batch = 1000;
const payload = new Uint8Array(64).fill(0x61);
const topic = "bench/client";

/**
 * Kite, with the in-flight window given. The default, 20, is mosquitto's own limit: a 3.1.1
 * client with more QoS 2 publishes in flight gets PUBREC 0x97 and its connection closed.
 */
const kite = (inflightWindow: number): Library => ({
  name: inflightWindow === 20 ? "Kite" : `Kite, window ${inflightWindow}`,
  async setup(url, qos, count) {
    const options = { reconnect: false, inflightWindow };
    const subscriber = await connect(url, { ...options, clientId: `kite-sub-${qos}` });
    await subscriber.subscribe(topic, { qos });
    const publisher = await connect(url, { ...options, clientId: `kite-pub-${qos}` });
    let got = 0;
    let done!: () => void;
    const received = new Promise<void>((resolve) => done = resolve);
    subscriber.setPublishHandler(() => {
      if (++got === count) done();
    });
    return {
      publish: (i) => publisher.publish(topic, payload.subarray(0, 64 - (i & 1)), { qos }),
      received,
      close: async () => {
        await Promise.all([publisher.disconnect(), subscriber.disconnect()]);
      },
    };
  },
});

async function mqttJsLibrary(): Promise<Library> {
  const lib = await loadMqttJs();
  return {
    name: "MQTT.js",
    async setup(url, qos, count) {
      const options = { protocolVersion: 4, clean: true, reconnectPeriod: 0 };
      const subscriber = await lib.connectAsync(url, { ...options, clientId: `mqttjs-sub-${qos}` });
      await subscriber.subscribeAsync(topic, { qos });
      const publisher = await lib.connectAsync(url, { ...options, clientId: `mqttjs-pub-${qos}` });
      let got = 0;
      let done!: () => void;
      const received = new Promise<void>((resolve) => done = resolve);
      subscriber.on("message", () => {
        if (++got === count) done();
      });
      return {
        publish: (i) => publisher.publishAsync(topic, payload.subarray(0, 64 - (i & 1)), { qos }),
        received,
        close: async () => {
          await Promise.all([publisher.endAsync(), subscriber.endAsync()]);
        },
      };
    },
  };
}

/** How long one run may take before it counts as not finished. */
const LIMIT_MS = 60_000;

/** The median of `values`; `NaN` if any is `NaN` (a run that failed). */

/** Messages per second, or `NaN` when the run failed or did not finish within the limit. */
async function measure(library: Library, url: string, qos: 0 | 1 | 2): Promise<number> {
  const run = await library.setup(url, qos, count);
  const start = performance.now();
  const work = (async () => {
    for (let sent = 0; sent < count; sent += batch) {
      const pending: Promise<unknown>[] = [];
      for (let i = sent; i < Math.min(count, sent + batch); i++) pending.push(run.publish(i));
      await Promise.all(pending);
    }
    await run.received;
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const finished = await Promise.race([
    work.then(() => true, (error) => {
      console.log(`  ${library.name}: ${error instanceof Error ? error.message : error}`);
      return false;
    }),
    new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), LIMIT_MS)),
  ]);
  clearTimeout(timer);
  const seconds = (performance.now() - start) / 1000;
  await Promise.race([run.close(), new Promise((resolve) => setTimeout(resolve, 2000))]);
  return finished ? count / seconds : NaN;
}

console.log(`Kite vs MQTT.js through mosquitto on ${runtime}: ${count} messages of 64 bytes`);
// Both libraries are measured on the same footing: no queue limit, no debug log (LOAD_CONFIG).
const broker = await startLoadedMosquitto();
try {
  const url = `mqtt://127.0.0.1:${broker.port}`;
  const mqttjs = await mqttJsLibrary();
  for (const qos of qosLevels) {
    const libraries = [kite(20), mqttjs];
    const runs: number[][] = libraries.map(() => []);
    const failed = new Set<Library>();
    for (const library of libraries) {
      // Warm up; a library that fails here (MQTT.js at QoS 2, see above) is not timed again.
      if (Number.isNaN(await measure(library, url, qos))) failed.add(library);
    }
    for (let run = 0; run < runCount; run++) {
      for (const [i, library] of libraries.entries()) {
        runs[i].push(failed.has(library) ? NaN : await measure(library, url, qos));
      }
    }
    const rates = runs.map(median);
    for (const [i, library] of libraries.entries()) {
      const rate = rates[i];
      const shown = Number.isNaN(rate)
        ? `failed or did not finish within ${LIMIT_MS / 1000} s`
        : `${(rate / 1000).toFixed(1)}k msg/s  (runs: ${
          runs[i].map((r) => (r / 1000).toFixed(1)).join(", ")
        })`;
      console.log(`  QoS ${qos}  ${library.name.padEnd(17)} ${shown}`);
    }
    const mqttjsRate = rates.at(-1)!;
    if (!Number.isNaN(mqttjsRate)) {
      console.log(`  QoS ${qos}  Kite / MQTT.js ${(rates[0] / mqttjsRate).toFixed(2)}x`);
    }
  }
} finally {
  await broker.stop();
}
