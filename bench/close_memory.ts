/**
 * What closing many idle clients at once costs in memory, in one process: opens `--connections N`
 * (8,000) connections to one mosquitto (MQTT 3.1.1, keepalive 60 s, 200 at a time), forces a full
 * GC, reads `process.memoryUsage()`, calls `disconnect()` on every client at once (or
 * `--window N` at a time, as `kite bench conn` does on SIGINT, 500), reads it again once they have
 * all settled, and again after a
 * forced GC and after two more seconds and a GC. Figures are per connection, from the reading
 * before the close. With `--ifaddr`, the connections come from 127.0.0.1, 127.0.0.2, ... (5,000
 * each), so both runtimes dial through `node:net`, as `conn100k.sh` does; without it, Deno dials
 * with `Deno.connect` and Bun with `Bun.connect`.
 *
 *   ulimit -n 20000
 *   deno run -A --v8-flags=--expose-gc bench/close_memory.ts --connections 8000 --ifaddr
 *   bun run bench/close_memory.ts --connections 8000 --ifaddr
 *
 * @module
 */

import process from "node:process";
import { connect, type MqttClient } from "../mod.ts";
import { option, runtime, startLoadedMosquitto } from "./_common.ts";

const connections = Number(option("connections") ?? 8000);
const ifaddr = process.argv.includes("--ifaddr");
const window = Number(option("window") ?? 0);
const bun = (globalThis as { Bun?: { gc(full: boolean): void } }).Bun;
const v8gc = (globalThis as { gc?: () => void }).gc;
if (bun === undefined && v8gc === undefined) {
  console.error("run with --v8-flags=--expose-gc");
  process.exit(2);
}

function gc(): void {
  for (let i = 0; i < 3; i++) bun !== undefined ? bun.gc(true) : v8gc!();
}

type Usage = ReturnType<typeof process.memoryUsage>;
const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`.padStart(10);
const kib = (bytes: number) => `${(bytes / 1024 / connections).toFixed(2)}`.padStart(7);

function report(label: string, base?: Usage): Usage {
  const now = process.memoryUsage();
  let line = `${label.padEnd(34)} rss ${mib(now.rss)}  heap used ${mib(now.heapUsed)}` +
    `  heap total ${mib(now.heapTotal)}`;
  if (base !== undefined) {
    line += `  | KiB a connection: rss ${kib(now.rss - base.rss)}, heap used ` +
      `${kib(now.heapUsed - base.heapUsed)}, heap total ${kib(now.heapTotal - base.heapTotal)}`;
  }
  console.log(line);
  return now;
}

await using broker = await startLoadedMosquitto();
console.log(
  `Closing ${connections} idle connections ${window > 0 ? `${window} at a time` : "at once"} ` +
    `on ${runtime}` + (ifaddr ? " (node:net, --ifaddr)" : ""),
);
const clients: MqttClient[] = [];
for (let i = 0; i < connections; i += 200) {
  const batch: Promise<void>[] = [];
  for (let j = i; j < Math.min(i + 200, connections); j++) {
    const options: Parameters<typeof connect>[1] = { keepalive: 60, clientId: `close-${j}` };
    if (ifaddr) options.localAddress = `127.0.0.${1 + Math.floor(j / 5000)}`;
    batch.push(connect(broker.url, options).then((client) => void clients.push(client)));
  }
  await Promise.all(batch);
}
gc();
const before = report("held, after a full GC");
let peak = 0;
const sampler = setInterval(() => peak = Math.max(peak, process.memoryUsage().rss), 20);
const started = performance.now();
if (window > 0) {
  // As `kite bench conn` does: `window` disconnects under way at a time.
  let next = 0;
  const worker = async () => {
    while (next < clients.length) await clients[next++].disconnect();
  };
  await Promise.all(Array.from({ length: Math.min(window, clients.length) }, worker));
} else {
  await Promise.all(clients.map((client) => client.disconnect()));
}
const took = performance.now() - started;
clearInterval(sampler);
report("all disconnect() settled", before);
console.log(
  `${"".padEnd(34)} in ${took.toFixed(0)} ms; RSS sampled every 20 ms meanwhile: ` +
    (peak > 0 ? `highest ${mib(peak)}` : "no sample (the timer did not run)"),
);
gc();
report("then a full GC", before);
clients.length = 0;
await new Promise((resolve) => setTimeout(resolve, 2000));
gc();
report("clients dropped, 2 s, a full GC", before);
