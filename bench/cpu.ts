/**
 * The client's own CPU time per message: Kite against MQTT.js, on the runtime that runs this
 * file. Each measurement runs in a child process of its own (same runtime) holding one publisher
 * and one subscriber of one library, connected to one mosquitto (a process apart, so its CPU is
 * not counted). The publisher sends `--messages N` (default 20,000) messages of 64 bytes to the
 * subscriber's topic, at most `--window N` (default 20) publishes unsettled at a time. The child
 * takes its user + system CPU time (`process.cpuUsage()`) from the first publish until every
 * publish has settled and every message has arrived, after a warm-up of `--warmup N` messages
 * (default: as many as it measures). The libraries take turns, `--runs N` times (default 3); the
 * median is reported. `--qos 0,1,2` picks the QoS levels.
 *
 * At QoS 1 and 2 a third case, the floor (`_floor.ts`), does the same exchange with no library:
 * pre-encoded packets, one write per chunk read, nothing allocated per message. What it costs is
 * mostly the kernel's part, which any client pays for writing as soon as it can; it shows how far
 * below MQTT.js a client can get at all on this machine.
 *
 * The warm-up is as long as the measurement so that both clients run code the JIT has finished
 * with: after 2,000 messages (the warm-up until 2026-12-07) MQTT.js still sped up a lot, Kite
 * less (bench/README.md), and the ratio flattered Kite.
 *
 *     npm ci --prefix bench
 *     deno run -A bench/cpu.ts && bun run bench/cpu.ts
 *
 * @module
 */

import process from "node:process";
import { openFloor } from "./_floor.ts";
import {
  median,
  openPair,
  option,
  type Pair,
  runJsonChild,
  runtime,
  startLoadedMosquitto,
} from "./_common.ts";

const count = Number(option("messages") ?? 0) || 20_000;
const window = Number(option("window") ?? 0) || 20;
const runCount = Number(option("runs") ?? 0) || 3;
const qosLevels = (option("qos") ?? "0,1,2").split(",").map(
  Number,
) as (0 | 1 | 2)[];
const payload = new Uint8Array(64).fill(0x61);
const warmUp = Number(option("warmup") ?? count);

/** What a child reports. */
interface Result {
  /** CPU time per message, µs (user + system). */
  cpu: number;
  /** Of which in the kernel (system), µs. */
  system: number;
  /** Messages per second. */
  rate: number;
}

/** Publishes `n` messages, at most `window` unsettled at a time, and waits for their arrival. */
async function send(run: Pair, n: number): Promise<void> {
  const received = run.receive(n);
  let sent = 0;
  const lane = async () => {
    while (sent < n) {
      sent++;
      await run.publish();
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, n) }, lane));
  await received;
}

async function child(name: string, url: string, qos: 0 | 1 | 2): Promise<void> {
  let run: { send(n: number): Promise<void>; close(): unknown };
  if (name === "floor") {
    if (qos === 0) throw new RangeError("the floor runs at QoS 1 and 2 only");
    run = await openFloor(url, qos, window);
  } else {
    const libraryPair = await openPair(name as "kite" | "mqttjs", url, {
      topic: `bench/cpu/${qos}`,
      qos,
      payload,
      clientIds: `cpu-${qos}`,
      inflightWindow: window,
    });
    run = {
      send: (n) => send(libraryPair, n),
      close: () => libraryPair.close(),
    };
  }
  await run.send(warmUp);
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  await run.send(count);
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const result: Result = {
    cpu: (cpu.user + cpu.system) / count,
    system: cpu.system / count,
    rate: count / seconds,
  };
  console.log(JSON.stringify(result));
  await run.close();
  process.exit(0);
}

const LABELS: Record<string, string> = {
  kite: "Kite",
  mqttjs: "MQTT.js",
  floor: "floor",
};

function runChild(name: string, url: string, qos: number): Promise<Result> {
  const args = ["--child", name, "--url", url, "--qos", String(qos)];
  args.push(
    "--messages",
    String(count),
    "--window",
    String(window),
    "--warmup",
    String(warmUp),
  );
  return runJsonChild(new URL(import.meta.url).pathname, args, name);
}

const childCase = option("child");
if (childCase !== undefined) {
  await child(childCase, option("url")!, qosLevels[0]);
} else {
  console.log(
    `Client CPU per message on ${runtime}: ${count} messages of 64 bytes after ${warmUp} of ` +
      `warm-up, window ${window}, ` +
      `publisher and subscriber in one process, mosquitto apart; median of ${runCount} runs`,
  );
  const broker = await startLoadedMosquitto();
  try {
    const url = `mqtt://127.0.0.1:${broker.port}`;
    for (const qos of qosLevels) {
      const names = qos === 0 ? ["kite", "mqttjs"] : ["kite", "mqttjs", "floor"];
      const results: Record<string, Result[]> = {
        kite: [],
        mqttjs: [],
        floor: [],
      };
      for (let i = 0; i < runCount; i++) {
        for (const name of names) {
          results[name].push(await runChild(name, url, qos));
        }
      }
      const cpu = (name: string) => median(results[name].map((r) => r.cpu));
      const rate = (name: string) => median(results[name].map((r) => r.rate));
      for (const name of names) {
        console.log(
          `  QoS ${qos}  ${LABELS[name].padEnd(8)} ${
            cpu(name).toFixed(1).padStart(6)
          } µs/msg (system ${median(results[name].map((r) => r.system)).toFixed(1)})  ${
            (rate(name) / 1000).toFixed(1).padStart(5)
          }k msg/s  (CPU runs: ${results[name].map((r) => r.cpu.toFixed(1)).join(", ")})`,
        );
      }
      console.log(
        `  QoS ${qos}  CPU Kite / MQTT.js ${(cpu("kite") / cpu("mqttjs")).toFixed(2)}x` +
          (qos === 0 ? "" : `, floor / MQTT.js ${(cpu("floor") / cpu("mqttjs")).toFixed(2)}x`),
      );
    }
  } finally {
    await broker.stop();
  }
}
