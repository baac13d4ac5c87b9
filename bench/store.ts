/**
 * What a store costs a publisher, end to end through a real mosquitto on loopback, on the runtime
 * that runs this file: QoS 1 messages a second with no store, with a `MemoryStore`, and with a
 * `FileStore` under each fsync policy ("never", "batch", "always"), side by side.
 *
 * One publisher (clean session off, the store under test, the default in-flight window of 20)
 * and one subscriber; `--messages N` messages (default 20,000) of 64 bytes to one topic,
 * published in batches of 1,000 whose promises are awaited. A run is timed from the first
 * publish until every publish has settled and the subscriber has every message; the process's
 * CPU time (publisher and subscriber) over the run is reported per message too. The cases take
 * turns, `--runs N` times (default 5) after a warm-up each, and the median run is reported.
 * `--dir PATH` puts the stores' folders under PATH (default: the system's temporary folder),
 * which matters for `"always"`: its cost is the disk's flush.
 *
 *     deno run -A bench/store.ts && bun run bench/store.ts
 *
 * @module
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { connect, FileStore, MemoryStore } from "../mod.ts";
import type { Store } from "../mod.ts";
import { median, option, runtime, startLoadedMosquitto } from "./_common.ts";

const count = Number(option("messages") ?? 0) || 20_000;
const runCount = Number(option("runs") ?? 0) || 5;
const root = option("dir") ?? tmpdir();
const batch = 1000;
const payload = new Uint8Array(64).fill(0x61);
const topic = "bench/store";
/** How long one run may take before it counts as not finished. */
const LIMIT_MS = 120_000;

interface Case {
  name: string;
  /** A new store for one run, and how to clean up after it. */
  store(): { store: Store | undefined; remove(): void };
}

const fileStore = (fsync: "always" | "batch" | "never"): Case => ({
  name: `FileStore, fsync "${fsync}"`,
  store() {
    const directory = mkdtempSync(join(root, "kite-bench-store-"));
    return {
      store: new FileStore(directory, { fsync }),
      remove: () => rmSync(directory, { recursive: true, force: true }),
    };
  },
});

const cases: Case[] = [
  { name: "no store", store: () => ({ store: undefined, remove() {} }) },
  {
    name: "MemoryStore",
    store: () => ({ store: new MemoryStore(), remove() {} }),
  },
  fileStore("never"),
  fileStore("batch"),
  fileStore("always"),
];

let runId = 0;

/** One run: messages a second (`NaN` when it failed or did not finish), and CPU µs a message. */
interface Run {
  rate: number;
  cpu: number;
}

/** Runs `kind` once. */
async function measure(url: string, kind: Case): Promise<Run> {
  const id = runId++;
  const { store, remove } = kind.store();
  const subscriber = await connect(url, {
    clientId: `bench-store-sub-${id}`,
    reconnect: false,
  });
  await subscriber.subscribe(topic, { qos: 1 });
  const publisher = await connect(url, {
    clientId: `bench-store-pub-${id}`,
    clean: false,
    reconnect: false,
    store,
  });
  let got = 0;
  let done!: () => void;
  const received = new Promise<void>((resolve) => done = resolve);
  subscriber.setPublishHandler(() => {
    if (++got === count) done();
  });
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  const work = (async () => {
    for (let sent = 0; sent < count; sent += batch) {
      const pending: Promise<void>[] = [];
      for (let i = sent; i < Math.min(count, sent + batch); i++) {
        pending.push(publisher.publish(topic, payload, { qos: 1 }));
      }
      await Promise.all(pending);
    }
    await received;
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const finished = await Promise.race([
    work.then(() => true, (error) => {
      console.log(
        `  ${kind.name}: ${error instanceof Error ? error.message : error}`,
      );
      return false;
    }),
    new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), LIMIT_MS)),
  ]);
  clearTimeout(timer);
  const seconds = (performance.now() - start) / 1000;
  const cpuUsed = process.cpuUsage(cpuStart);
  await Promise.race([
    Promise.all([publisher.disconnect(), subscriber.disconnect()]),
    new Promise((resolve) => setTimeout(resolve, 2000)),
  ]);
  remove();
  return {
    rate: finished ? count / seconds : NaN,
    cpu: (cpuUsed.user + cpuUsed.system) / count,
  };
}

/** The median of `values`; `NaN` if any is `NaN` (a run that failed). */

console.log(
  `QoS 1 publishes through mosquitto, by store, on ${runtime}: ${count} messages of 64 bytes, ` +
    `stores under ${root}`,
);
const broker = await startLoadedMosquitto();
try {
  const url = `mqtt://127.0.0.1:${broker.port}`;
  const runs: Run[][] = cases.map(() => []);
  for (const kind of cases) await measure(url, kind); // warm-up
  for (let run = 0; run < runCount; run++) {
    for (const [i, kind] of cases.entries()) runs[i].push(await measure(url, kind));
  }
  const rates = runs.map((list) => median(list.map((run) => run.rate)));
  const cpus = runs.map((list) => median(list.map((run) => run.cpu)));
  const memory = rates[1];
  for (const [i, kind] of cases.entries()) {
    const rate = rates[i];
    const shown = Number.isNaN(rate)
      ? `failed or did not finish within ${LIMIT_MS / 1000} s`
      : `${(rate / 1000).toFixed(1)}k msg/s  ${(rate / memory).toFixed(2)}x MemoryStore  ` +
        `${cpus[i].toFixed(1)} µs CPU/msg  (runs: ${
          runs[i].map((r) => (r.rate / 1000).toFixed(1)).join(", ")
        })`;
    console.log(`  ${kind.name.padEnd(26)} ${shown}`);
  }
} finally {
  await broker.stop();
}
