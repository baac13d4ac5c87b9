/**
 * Kite's codec against mqtt-packet, the codec inside MQTT.js, in the same process on the same
 * runtime: decoding and encoding 1,000,000 PUBLISH packets (MQTT 3.1.1, topic `bench/t`, a 64-byte
 * payload, QoS 0 and 1 alternating).
 *
 * Run it with `deno task bench`, which installs mqtt-packet under `bench/node_modules` and runs
 * this file on Deno and then on Bun. Options: `--packets N` (default 1,000,000), `--runs N`
 * (timed runs per case, default 5; the median is reported) and `--only TEXT` (only the cases
 * whose group or name contains TEXT, such as `encode` or `Kite`).
 *
 * Everything a case needs (packet objects, byte chunks) is built before its clock starts; each
 * case runs once untimed to warm up, then the cases take turns, run after run, so that noise from
 * other work on the machine spreads over all of them. Every run checks its own result (the number
 * of packets decoded, a sample of them field by field, the bytes encoded) so that a broken codec
 * cannot look fast.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { readFileSync } from "node:fs";
import { arch, cpus, platform } from "node:os";
import process from "node:process";
import {
  encode,
  encodeInto,
  MqttDecoderStream,
  type Packet,
  PacketDecoder,
  type PublishPacket,
  Writer,
} from "../src/packet/mod.ts";

// ---------------------------------------------------------------------------------------------
// mqtt-packet: only the part of its API used here. It is loaded with a computed specifier so that
// `deno check .` passes on a clone where `bench/node_modules` has not been installed.

interface MqttPacketPublish {
  cmd: "publish";
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
  dup: boolean;
  messageId?: number;
}

interface MqttPacketParser {
  parse(chunk: Buffer): number;
  on(event: "packet", listener: (packet: MqttPacketPublish) => void): unknown;
  on(event: "error", listener: (error: Error) => void): unknown;
}

interface MqttPacket {
  parser(options?: { protocolVersion?: number }): MqttPacketParser;
  generate(
    packet: MqttPacketPublish,
    options?: { protocolVersion?: number },
  ): Buffer;
}

async function loadMqttPacket(): Promise<
  { mqtt: MqttPacket; version: string }
> {
  const specifier = "mqtt-packet";
  try {
    const module = await import(specifier);
    const manifest = new URL(
      "./node_modules/mqtt-packet/package.json",
      import.meta.url,
    );
    const version = JSON.parse(readFileSync(manifest, "utf8"))
      .version as string;
    return { mqtt: (module.default ?? module) as MqttPacket, version };
  } catch (error) {
    throw new Error(
      "mqtt-packet is not installed: run `npm install --prefix bench` (`deno task bench` does)",
      { cause: error },
    );
  }
}

// ---------------------------------------------------------------------------------------------
// The runtime.

interface BunGlobal {
  version: string;
  revision: string;
  gc(force: boolean): void;
}

const bun = (globalThis as { Bun?: BunGlobal }).Bun;

function runtimeName(): string {
  if (bun !== undefined) {
    return `Bun ${bun.version} (JavaScriptCore, ${bun.revision.slice(0, 9)})`;
  }
  if (typeof Deno !== "undefined") {
    return `Deno ${Deno.version.deno} (V8 ${Deno.version.v8})`;
  }
  return `Node ${process.versions.node} (V8 ${process.versions.v8})`;
}

// A full collection before every timed run, where the runtime offers one, so that no run pays for
// the garbage of the one before. Deno needs `--v8-flags=--expose-gc` for it.
const v8gc = (globalThis as { gc?: () => void }).gc;
const collect: (() => void) | undefined = bun !== undefined
  ? () => bun.gc(true)
  : v8gc !== undefined
  ? () => v8gc()
  : undefined;

function option(name: string): string | undefined {
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    if (args[i] === `--${name}`) return args[i + 1];
    if (args[i].startsWith(`--${name}=`)) return args[i].slice(name.length + 3);
  }
  return undefined;
}

function count(name: string, fallback: number): number {
  const value = option(name);
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`--${name} needs a positive integer`);
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// The workload.

const PACKETS = count("packets", 1_000_000);
const RUNS = count("runs", 5);
// Runs only the cases whose group or name contains this text, e.g. `--only encode`.
const ONLY = option("only");
const CHUNK_SIZE = 64 * 1024;
const TOPIC = "bench/t";
const PAYLOAD_SIZE = 64;
// Distinct payloads, reused round robin: different bytes without 64 MB of them.
const PAYLOAD_COUNT = 1024;
// Every SAMPLE-th packet a run produces is kept and checked after the clock stops.
const SAMPLE_MASK = 1023;

function qosOf(i: number): 0 | 1 {
  return (i & 1) as 0 | 1;
}

function packetIdOf(i: number): number {
  return (i % 65535) + 1;
}

const { mqtt, version: mqttPacketVersion } = await loadMqttPacket();

// Pseudo-random payload bytes (xorshift32), the same on every run and runtime.
const payloadPool = new Uint8Array(PAYLOAD_COUNT * PAYLOAD_SIZE);
for (let i = 0, x = 0x9e3779b9; i < payloadPool.length; i++) {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  payloadPool[i] = x & 0xff;
}
const payloads: Uint8Array[] = [];
const payloadBuffers: Buffer[] = [];
for (let i = 0; i < PAYLOAD_COUNT; i++) {
  payloads.push(payloadPool.subarray(i * PAYLOAD_SIZE, (i + 1) * PAYLOAD_SIZE));
  // mqtt-packet wants Node Buffers; these share the same memory.
  payloadBuffers.push(
    Buffer.from(payloadPool.buffer, i * PAYLOAD_SIZE, PAYLOAD_SIZE),
  );
}

// The same packets as each codec spells them.
const kitePackets: PublishPacket[] = new Array(PACKETS);
const mqttPackets: MqttPacketPublish[] = new Array(PACKETS);
for (let i = 0; i < PACKETS; i++) {
  const qos = qosOf(i);
  const kite: PublishPacket = {
    type: "publish",
    topic: TOPIC,
    payload: payloads[i % PAYLOAD_COUNT],
    qos,
    retain: false,
    dup: false,
  };
  const other: MqttPacketPublish = {
    cmd: "publish",
    topic: TOPIC,
    payload: payloadBuffers[i % PAYLOAD_COUNT],
    qos,
    retain: false,
    dup: false,
  };
  if (qos > 0) kite.packetId = other.messageId = packetIdOf(i);
  kitePackets[i] = kite;
  mqttPackets[i] = other;
}

// The byte stream: every packet back to back, and where each one starts.
const offsets = new Float64Array(PACKETS + 1);
const stream = (() => {
  const w = new Writer();
  for (let i = 0; i < PACKETS; i++) {
    offsets[i] = w.pos;
    encodeInto(w, kitePackets[i]);
  }
  offsets[PACKETS] = w.pos;
  return w.bytes().slice();
})();

// The two encoders must agree on every packet before either is timed.
for (let i = 0; i < PACKETS; i++) {
  const expected = stream.subarray(offsets[i], offsets[i + 1]);
  const kite = encode(kitePackets[i]);
  const other = mqtt.generate(mqttPackets[i]);
  if (!equalBytes(kite, expected) || !equalBytes(other, expected)) {
    throw new Error(`the encoders disagree on packet ${i}`);
  }
}

// The stream cut into 64 KiB chunks, each in its own buffer as a socket would hand them over;
// mqtt-packet gets Buffers over the same memory.
const kiteChunks: Uint8Array[] = [];
const mqttChunks: Buffer[] = [];
for (let pos = 0; pos < stream.length; pos += CHUNK_SIZE) {
  const chunk = stream.slice(pos, pos + CHUNK_SIZE);
  kiteChunks.push(chunk);
  mqttChunks.push(
    Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength),
  );
}

// ---------------------------------------------------------------------------------------------
// Checks, run after the clock stops.

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

let expectedQosSum = 0;
for (let i = 0; i < PACKETS; i++) expectedQosSum += qosOf(i);

/**
 * What a decoding run saw: counted in the callback, sampled for the checks. Every topic is
 * compared, as a client dispatching messages would, so a lazily built string pays for itself
 * inside the timed region.
 */
class Seen {
  count = 0;
  qosSum = 0;
  otherTopics = 0;
  samples: {
    index: number;
    topic: string;
    qos: number;
    id?: number;
    payload: Uint8Array;
  }[] = [];

  check(what: string): void {
    if (this.count !== PACKETS) {
      throw new Error(`${what} decoded ${this.count} packets, not ${PACKETS}`);
    }
    if (this.qosSum !== expectedQosSum) {
      throw new Error(`${what} decoded the wrong QoS levels`);
    }
    if (this.otherTopics !== 0) {
      throw new Error(`${what} decoded ${this.otherTopics} wrong topics`);
    }
    if (this.samples.length !== Math.ceil(PACKETS / (SAMPLE_MASK + 1))) {
      throw new Error(`${what} kept ${this.samples.length} samples`);
    }
    for (const { index, topic, qos, id, payload } of this.samples) {
      const ok = topic === TOPIC && qos === qosOf(index) &&
        id === (qos > 0 ? packetIdOf(index) : undefined) &&
        equalBytes(payload, payloads[index % PAYLOAD_COUNT]);
      if (!ok) throw new Error(`${what} decoded packet ${index} wrongly`);
    }
  }
}

/** Checks a sample of separately encoded packets, and their total size. */
function checkEncoded(
  what: string,
  total: number,
  samples: Uint8Array[],
): void {
  if (total !== stream.length) {
    throw new Error(`${what} wrote ${total} bytes, not ${stream.length}`);
  }
  samples.forEach((bytes, k) => {
    const i = k * (SAMPLE_MASK + 1);
    if (!equalBytes(bytes, stream.subarray(offsets[i], offsets[i + 1]))) {
      throw new Error(`${what} encoded packet ${i} wrongly`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// The cases. Each returns the milliseconds its timed region took; the two sides of a comparison
// do the same work outside the codec (a counter, a running sum, a sample every 1024 packets).

function decodeKite(): number {
  const decoder = new PacketDecoder({ protocolVersion: 4 });
  const seen = new Seen();
  const emit = (packet: Packet): void => {
    const p = packet as PublishPacket;
    seen.qosSum += p.qos;
    if (p.topic !== TOPIC) seen.otherTopics++;
    if ((seen.count++ & SAMPLE_MASK) === 0) {
      seen.samples.push({
        index: seen.count - 1,
        topic: p.topic,
        qos: p.qos,
        id: p.packetId,
        payload: p.payload,
      });
    }
  };
  const chunks = kiteChunks;
  const start = performance.now();
  for (let i = 0; i < chunks.length; i++) decoder.push(chunks[i], emit);
  const ms = performance.now() - start;
  if (decoder.pending) {
    throw new Error("PacketDecoder holds a partial packet at the end");
  }
  seen.check("PacketDecoder");
  return ms;
}

async function decodeKiteStream(): Promise<number> {
  const seen = new Seen();
  const chunks = kiteChunks;
  let next = 0;
  const source = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (next < chunks.length) controller.enqueue(chunks[next++]);
      else controller.close();
    },
  });
  const packets = source.pipeThrough(
    new MqttDecoderStream({ protocolVersion: 4 }),
  );
  const start = performance.now();
  for await (const packet of packets) {
    const p = packet as PublishPacket;
    seen.qosSum += p.qos;
    if (p.topic !== TOPIC) seen.otherTopics++;
    if ((seen.count++ & SAMPLE_MASK) === 0) {
      seen.samples.push({
        index: seen.count - 1,
        topic: p.topic,
        qos: p.qos,
        id: p.packetId,
        payload: p.payload,
      });
    }
  }
  const ms = performance.now() - start;
  seen.check("MqttDecoderStream");
  return ms;
}

function decodeMqttPacket(): number {
  const parser = mqtt.parser({ protocolVersion: 4 });
  const seen = new Seen();
  parser.on("packet", (p) => {
    seen.qosSum += p.qos;
    if (p.topic !== TOPIC) seen.otherTopics++;
    if ((seen.count++ & SAMPLE_MASK) === 0) {
      seen.samples.push({
        index: seen.count - 1,
        topic: p.topic,
        qos: p.qos,
        id: p.messageId,
        payload: p.payload,
      });
    }
  });
  let error: Error | undefined;
  parser.on("error", (e) => error ??= e);
  const chunks = mqttChunks;
  const start = performance.now();
  let left = 0;
  for (let i = 0; i < chunks.length; i++) left = parser.parse(chunks[i]);
  const ms = performance.now() - start;
  if (error !== undefined) throw error;
  if (left !== 0) throw new Error(`mqtt-packet holds ${left} bytes at the end`);
  seen.check("mqtt-packet parser");
  return ms;
}

function encodeKite(): number {
  const packets = kitePackets;
  const samples: Uint8Array[] = [];
  let total = 0;
  const start = performance.now();
  for (let i = 0; i < packets.length; i++) {
    const bytes = encode(packets[i]);
    total += bytes.length;
    if ((i & SAMPLE_MASK) === 0) samples.push(bytes);
  }
  const ms = performance.now() - start;
  checkEncoded("encode", total, samples);
  return ms;
}

function encodeKiteBatched(): number {
  const packets = kitePackets;
  const w = new Writer();
  const start = performance.now();
  for (let i = 0; i < packets.length; i++) encodeInto(w, packets[i]);
  const ms = performance.now() - start;
  if (!equalBytes(w.bytes(), stream)) {
    throw new Error("encodeInto wrote the wrong bytes");
  }
  return ms;
}

function encodeMqttPacket(): number {
  const packets = mqttPackets;
  const samples: Uint8Array[] = [];
  let total = 0;
  const start = performance.now();
  for (let i = 0; i < packets.length; i++) {
    const bytes = mqtt.generate(packets[i]);
    total += bytes.length;
    if ((i & SAMPLE_MASK) === 0) samples.push(bytes);
  }
  const ms = performance.now() - start;
  checkEncoded("mqtt-packet generate", total, samples);
  return ms;
}

interface Case {
  group: "decode" | "encode";
  name: string;
  run: () => number | Promise<number>;
  times: number[];
}

const allCases: Case[] = [
  {
    group: "decode",
    name: "Kite PacketDecoder.push",
    run: decodeKite,
    times: [],
  },
  {
    group: "decode",
    name: "Kite MqttDecoderStream (for await)",
    run: decodeKiteStream,
    times: [],
  },
  {
    group: "decode",
    name: "mqtt-packet parser.parse",
    run: decodeMqttPacket,
    times: [],
  },
  { group: "encode", name: "Kite encode", run: encodeKite, times: [] },
  {
    group: "encode",
    name: "Kite encodeInto, one Writer (batched)",
    run: encodeKiteBatched,
    times: [],
  },
  {
    group: "encode",
    name: "mqtt-packet generate",
    run: encodeMqttPacket,
    times: [],
  },
];

const cases = allCases.filter((c) =>
  ONLY === undefined || c.group.includes(ONLY) || c.name.includes(ONLY)
);

// ---------------------------------------------------------------------------------------------
// Running and reporting.

const cpu = cpus()[0]?.model.trim() ?? "unknown CPU";
const megabytes = (stream.length / 1e6).toFixed(1);
console.log(`Kite vs mqtt-packet ${mqttPacketVersion} on ${runtimeName()}`);
console.log(`${platform()} ${arch()}, ${cpu}, ${cpus().length} cores`);
console.log(
  `${PACKETS.toLocaleString("en-US")} PUBLISH (topic "${TOPIC}", ${PAYLOAD_SIZE}-byte payload, ` +
    `QoS 0/1 alternating, MQTT 3.1.1): ${megabytes} MB in ${kiteChunks.length} chunks of 64 KiB`,
);
console.log(
  `median of ${RUNS} runs after one warm-up run` +
    (collect ? ", full GC before each run" : ", no forced GC (not exposed)"),
);

for (const c of cases) {
  collect?.();
  await c.run();
}
for (let run = 0; run < RUNS; run++) {
  for (const c of cases) {
    collect?.();
    c.times.push(await c.run());
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function rate(ms: number): number {
  return PACKETS / (ms / 1000);
}

function millions(perSecond: number): string {
  return `${(perSecond / 1e6).toFixed(2)} M/s`;
}

const rates = new Map<string, number>();
for (const group of ["decode", "encode"] as const) {
  console.log(
    `\n${group.padEnd(40)}${"packets/s".padStart(12)}   runs (M packets/s)`,
  );
  for (const c of cases.filter((c) => c.group === group)) {
    const perSecond = rate(median(c.times));
    rates.set(c.name, perSecond);
    const runs = c.times.map((ms) => (rate(ms) / 1e6).toFixed(2)).join(" ");
    console.log(
      `  ${c.name.padEnd(38)}${millions(perSecond).padStart(12)}   ${runs}`,
    );
  }
}

function ratio(kite: string, other: string, bar?: number): string {
  if (!rates.has(kite) || !rates.has(other)) return "not run";
  const x = rates.get(kite)! / rates.get(other)!;
  const verdict = bar === undefined ? "" : `   bar ${bar}x: ${x >= bar ? "met" : "NOT met"}`;
  return `${x.toFixed(2)}x${verdict}`;
}

console.log("\nKite / mqtt-packet");
console.log(
  `  decode, PacketDecoder.push           ${
    ratio("Kite PacketDecoder.push", "mqtt-packet parser.parse", 3)
  }`,
);
console.log(
  `  decode, MqttDecoderStream            ${
    ratio("Kite MqttDecoderStream (for await)", "mqtt-packet parser.parse")
  }   (a stream against a synchronous parser)`,
);
console.log(
  `  encode, encode                       ${ratio("Kite encode", "mqtt-packet generate", 2)}`,
);
console.log(
  `  encode, encodeInto batched           ${
    ratio("Kite encodeInto, one Writer (batched)", "mqtt-packet generate")
  }   (one buffer for all packets)`,
);
