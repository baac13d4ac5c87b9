/**
 * What automatic topic aliases (`topicAliases: "auto"`) save: bytes the publisher writes and
 * messages a second, with and without, through a real mosquitto on loopback (MQTT 5; its
 * `max_topic_alias` default is 10), on the runtime that runs this file. The workload: long topics
 * (8 topics of 60 characters, used in turn) and small payloads (8 bytes), `--messages N`
 * (default 100,000) published in batches of 1,000 whose promises are awaited, at QoS 0 and 1.
 * The publisher's transport counts every byte written after CONNACK; a run is timed from the
 * first publish until every publish has settled and the subscriber has received every message.
 * The two settings take turns, `--runs N` times (default 3), and the median is reported;
 * `--qos 0` picks the QoS levels (default `0,1`).
 *
 *     deno run -A bench/alias.ts && bun run bench/alias.ts
 *
 * @module
 */

import { connect, MqttClient, openTransport, type Transport } from "../mod.ts";
import { startMosquitto } from "../tests/helpers/mosquitto.ts";
import { median, option, runtime } from "./_common.ts";

const count = Number(option("messages") ?? 0) || 100_000;
const runCount = Number(option("runs") ?? 0) || 3;
const qosLevels = (option("qos") ?? "0,1").split(",").map(Number) as (0 | 1)[];
const batch = 1000;
const payload = new Uint8Array(8).fill(0x61);
const topics = Array.from(
  { length: 8 },
  (_, i) =>
    `bench/alias/site-${i}/building-4/floor-2/room-17/sensor/temperature`.slice(
      0,
      60,
    ),
);

/** A transport that counts the bytes written through it. */
function counting(
  transport: Transport,
): { transport: Transport; written: () => number } {
  let bytes = 0;
  const writer = transport.writable.getWriter();
  return {
    transport: {
      readable: transport.readable,
      writable: new WritableStream<Uint8Array>({
        write(chunk) {
          bytes += chunk.length;
          return writer.write(chunk);
        },
        close: () => writer.close(),
        abort: (reason) => writer.abort(reason),
      }),
      close: () => transport.close?.(),
    },
    written: () => bytes,
  };
}

interface Result {
  bytes: number;
  rate: number;
}

async function measure(
  url: string,
  auto: boolean,
  qos: 0 | 1,
): Promise<Result> {
  const subscriber = await connect(url, {
    protocolVersion: 5,
    reconnect: false,
  });
  await subscriber.subscribe("bench/alias/#", { qos });
  let got = 0;
  let done!: () => void;
  const received = new Promise<void>((resolve) => done = resolve);
  subscriber.setPublishHandler(() => {
    if (++got === count) done();
  });
  const wire = counting(await openTransport(new URL(url)));
  const publisher = new MqttClient(wire.transport);
  await publisher.connect({
    protocolVersion: 5,
    keepalive: 0,
    topicAliases: auto ? "auto" : "manual",
  });
  const before = wire.written();
  const start = performance.now();
  for (let sent = 0; sent < count; sent += batch) {
    const pending: Promise<unknown>[] = [];
    for (let i = sent; i < Math.min(count, sent + batch); i++) {
      pending.push(
        publisher.publish(topics[i % topics.length], payload, { qos }),
      );
    }
    await Promise.all(pending);
  }
  await received;
  const seconds = (performance.now() - start) / 1000;
  const bytes = wire.written() - before;
  await Promise.all([publisher.disconnect(), subscriber.disconnect()]);
  return { bytes, rate: count / seconds };
}

const broker = await startMosquitto();
try {
  console.log(
    `${runtime}: ${count.toLocaleString("en")} messages, ${topics.length} topics of ${
      topics[0].length
    } bytes, ${payload.length}-byte payloads, MQTT 5, median of ${runCount}`,
  );
  console.log("| QoS | topicAliases | bytes written | bytes/message | msg/s |");
  console.log("| --- | --- | ---: | ---: | ---: |");
  for (const qos of qosLevels) {
    const runs: Record<"manual" | "auto", Result[]> = { manual: [], auto: [] };
    await measure(broker.url, false, qos); // warm-up
    await measure(broker.url, true, qos);
    for (let run = 0; run < runCount; run++) {
      runs.manual.push(await measure(broker.url, false, qos));
      runs.auto.push(await measure(broker.url, true, qos));
    }
    for (const name of ["manual", "auto"] as const) {
      const bytes = median(runs[name].map((r) => r.bytes));
      const rate = median(runs[name].map((r) => r.rate));
      console.log(
        `| ${qos} | ${name === "auto" ? '"auto"' : "off"} | ${bytes.toLocaleString("en")} | ${
          (bytes / count).toFixed(1)
        } | ${Math.round(rate).toLocaleString("en")} |`,
      );
    }
  }
} finally {
  await broker.stop();
}
