/**
 * The first program almost everyone writes: a loop of `--messages N` (default 20,000)
 * `publish(topic, payload, { qos: 1 })` calls without `await`, while connected to mosquitto with
 * default options, then waiting for every promise. Kite and MQTT.js side by side, on the runtime
 * that runs this file, each publisher in a fresh child process of its own, so its peak resident
 * memory is its own: the messages a second (first publish to the last PUBACK) and the peak RSS.
 * One subscriber (Kite, in this process) counts what arrives; a run where a message is missing
 * or a publish failed counts as failed. The libraries take turns, `--runs N` times (default 3),
 * and the median is reported with every run shown.
 *
 *     npm ci --prefix bench && deno run -A bench/burst.ts && bun run bench/burst.ts
 *
 * @module
 */

import { spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { connect } from "../mod.ts";
import { loadMqttJs, median, option, runtime, startLoadedMosquitto } from "./_common.ts";

const count = Number(option("messages") ?? 0) || 20_000;
const runCount = Number(option("runs") ?? 0) || 3;
const topic = "bench/burst";
const LIMIT_MS = 60_000;

/** What a child reports: one burst of one library. */
interface Burst {
  /** From the first publish until every promise settled. */
  seconds: number;
  /** The largest resident set seen, in bytes. */
  peakRss: number;
  /** The resident set once connected, before the first publish. */
  baseRss: number;
  /** The publishes that rejected, and the first reason. */
  failed: number;
  firstError?: string;
}

/** Connects a publisher of `library`; returns its publish and close. */
async function publisher(library: string, url: string): Promise<{
  publish(payload: string): Promise<unknown>;
  close(): Promise<void>;
}> {
  if (library === "Kite") {
    const client = await connect(url, {
      clientId: "burst-kite",
      reconnect: false,
    });
    return {
      publish: (payload) => client.publish(topic, payload, { qos: 1 }),
      close: () => client.disconnect(),
    };
  }
  const client = await (await loadMqttJs()).connectAsync(url, {
    clientId: "burst-mqttjs",
    reconnectPeriod: 0,
  });
  return {
    publish: (payload) => client.publishAsync(topic, payload, { qos: 1 }),
    close: () => client.endAsync(),
  };
}

/** The child: one burst, reported as one line of JSON on stdout. */
async function child(library: string, url: string): Promise<void> {
  const client = await publisher(library, url);
  let peakRss = process.memoryUsage().rss;
  const sample = () => {
    const rss = process.memoryUsage().rss;
    if (rss > peakRss) peakRss = rss;
  };
  const baseRss = peakRss;
  const sampler = setInterval(sample, 5);
  const start = performance.now();
  const published: Promise<unknown>[] = [];
  for (let i = 0; i < count; i++) {
    published.push(client.publish(`${i}`.padEnd(64, ".")));
  }
  sample();
  const results = await Promise.allSettled(published);
  const seconds = (performance.now() - start) / 1000;
  sample();
  clearInterval(sampler);
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  const burst: Burst = { seconds, peakRss, baseRss, failed: failures.length };
  if (failures.length > 0) burst.firstError = String(failures[0].reason);
  console.log(JSON.stringify(burst));
  await client.close();
}

/** Runs one burst of `library` in a child process; `undefined` if it did not finish. */
function runChild(library: string, url: string): Promise<Burst | undefined> {
  const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";
  const file = fileURLToPath(import.meta.url);
  const command = isDeno ? ["run", "-A", file] : ["run", file];
  const proc = spawn(process.execPath, [
    ...command,
    "--child",
    library,
    "--url",
    url,
    "--messages",
    `${count}`,
  ], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  proc.stdout!.on("data", (chunk) => out += chunk);
  return new Promise((resolve) => {
    const timer = setTimeout(() => proc.kill("SIGKILL"), LIMIT_MS);
    proc.on("close", () => {
      clearTimeout(timer);
      const line = out.split("\n").find((l) => l.startsWith("{"));
      resolve(line === undefined ? undefined : JSON.parse(line) as Burst);
    });
  });
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

async function main(): Promise<void> {
  console.log(
    `Burst on ${runtime}: ${count} publishes at QoS 1 without await, 64-byte strings, through mosquitto`,
  );
  const broker = await startLoadedMosquitto();
  const url = `mqtt://127.0.0.1:${broker.port}`;
  const subscriber = await connect(url, {
    clientId: "burst-sub",
    reconnect: false,
  });
  try {
    await subscriber.subscribe(topic, { qos: 1 });
    let received = 0;
    let wake: (() => void) | undefined;
    subscriber.setPublishHandler(() => {
      received++;
      if (received >= count) wake?.();
    });
    /** Waits until the subscriber has `count` more messages, or a few seconds more. */
    const allArrived = async (): Promise<boolean> => {
      if (received < count) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, 10_000);
        });
        clearTimeout(timer);
        wake = undefined;
      }
      return received === count;
    };
    const libraries = ["Kite", "MQTT.js"];
    const runs = new Map<
      string,
      { rate: number; peak: number; growth: number }[]
    >(
      libraries.map((library) => [library, []]),
    );
    const failures = new Map<string, string>();
    for (let run = 0; run < runCount; run++) {
      for (const library of libraries) {
        received = 0;
        const burst = await runChild(library, url);
        const delivered = await allArrived();
        const ok = burst !== undefined && burst.failed === 0 && delivered;
        if (!ok) {
          failures.set(
            library,
            burst === undefined
              ? `did not finish within ${LIMIT_MS / 1000} s`
              : burst.failed > 0
              ? `${burst.failed} publishes failed: ${burst.firstError}`
              : `${received} of ${count} delivered`,
          );
        }
        runs.get(library)!.push(
          ok
            ? {
              rate: count / burst!.seconds,
              peak: burst!.peakRss,
              growth: burst!.peakRss - burst!.baseRss,
            }
            : { rate: NaN, peak: NaN, growth: NaN },
        );
      }
    }
    for (const library of libraries) {
      const results = runs.get(library)!;
      const rate = median(results.map((r) => r.rate));
      if (Number.isNaN(rate)) {
        console.log(`  ${library.padEnd(8)} failed: ${failures.get(library)}`);
        continue;
      }
      console.log(
        `  ${library.padEnd(8)} ${(rate / 1000).toFixed(1)}k msg/s, peak RSS ${
          mb(median(results.map((r) => r.peak)))
        } (+${mb(median(results.map((r) => r.growth)))} over connected)  (runs: ${
          results.map((r) => `${(r.rate / 1000).toFixed(1)}k ${mb(r.peak)}`)
            .join(", ")
        })`,
      );
    }
  } finally {
    await subscriber.disconnect();
    await broker.stop();
  }
}

const childLibrary = option("child");
if (childLibrary !== undefined) {
  await child(childLibrary, option("url")!);
  process.exit(0);
} else {
  await main();
}
