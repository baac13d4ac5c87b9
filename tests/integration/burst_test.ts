/**
 * Bursts and back-pressure against a real mosquitto: 20,000 publishes that are not awaited,
 * made while connected with default options, all delivered at QoS 0, 1 and 2; a burst past
 * `queue.maxBytes` refused with a `LimitError` that names the option; and a large
 * `ReadableStream` piped into `client.writable()` delivered in full while the bytes waiting stay
 * under the queue's high-water mark.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { LimitError, type MqttClient, type OutgoingMessage, type QoS } from "../../mod.ts";
import { LOAD_CONFIG, mosquittoSkipReason, sharedMosquitto } from "../helpers/mosquitto.ts";
import { Clients } from "../helpers/clients.ts";

const skip = mosquittoSkipReason();
const SLOW = { skip, timeout: 120_000 };
const BURST = 20_000;

// These tests count what Kite delivers: the broker must keep every message (LOAD_CONFIG).

/**
 * Counts the distinct messages numbered 0 to `count - 1` (the payload starts with the number) that a
 * subscriber receives, and resolves once it has them all.
 */
class Tally {
  readonly seen: Uint8Array;
  distinct = 0;
  duplicates = 0;
  #done = Promise.withResolvers<void>();

  constructor(subscriber: MqttClient, count: number) {
    this.seen = new Uint8Array(count);
    const decoder = new TextDecoder();
    subscriber.setPublishHandler((message) => {
      // The number leads the payload; what follows it is filler.
      const index = parseInt(decoder.decode(message.payload), 10);
      if (this.seen[index]++ === 0) {
        if (++this.distinct === count) this.#done.resolve();
      } else {
        this.duplicates++;
      }
    });
  }

  /** Resolves once every message arrived; fails after `ms` with the count so far. */
  async all(ms: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `${this.distinct} of ${this.seen.length} arrived within ${ms} ms`,
            ),
          ),
        ms,
      );
    });
    try {
      await Promise.race([this.#done.promise, late]);
    } finally {
      clearTimeout(timer);
    }
  }
}

describe("mosquitto: bursts of publishes that are not awaited", () => {
  const broker = sharedMosquitto({ extraConfig: LOAD_CONFIG }, skip);

  for (const qos of [0, 1, 2] as QoS[]) {
    test(
      `QoS ${qos}: 20,000 publishes in a loop without await, default options, are all delivered`,
      SLOW,
      async () => {
        await using clients = new Clients({ reconnect: false });
        const topic = `kite/burst/qos${qos}`;
        const subscriber = await clients.connect(broker.url);
        const tally = new Tally(subscriber, BURST);
        await subscriber.subscribe(topic, { qos });
        const publisher = await clients.connect(broker.url);
        const published: Promise<void>[] = [];
        for (let i = 0; i < BURST; i++) {
          published.push(publisher.publish(topic, `${i}`, { qos }));
        }
        const results = await Promise.allSettled(published);
        const failed = results.filter((result) => result.status === "rejected");
        assert.equal(
          failed.length,
          0,
          `${failed.length} publishes failed, the first with ${
            (failed[0] as PromiseRejectedResult | undefined)?.reason
          }`,
        );
        await tally.all(60_000);
        assert.equal(tally.distinct, BURST);
        if (qos === 2) assert.equal(tally.duplicates, 0);
        assert.deepEqual(publisher.pending, { inflight: 0, waiting: 0 });
        assert.equal(publisher.bufferedAmount, 0);
      },
    );
  }

  test(
    "a burst past queue.maxBytes: what fits is delivered, the rest rejects at once with a LimitError naming queue.maxBytes",
    SLOW,
    async () => {
      await using clients = new Clients({ reconnect: false });
      const topic = "kite/burst/bound";
      const payload = "x".repeat(100);
      const subscriber = await clients.connect(broker.url);
      const received: string[] = [];
      const arrived = Promise.withResolvers<void>();
      subscriber.setPublishHandler((message) => {
        received.push(new TextDecoder().decode(message.payload));
        if (received.length === 30) arrived.resolve();
      });
      await subscriber.subscribe(topic, { qos: 1 });
      const publisher = await clients.connect(broker.url, {
        queue: { maxBytes: 1_000 },
      });
      // 20 go in flight (the window), 10 of 100 bytes wait: 1,000 bytes; the rest do not fit.
      const published = Array.from(
        { length: 40 },
        (_, i) =>
          publisher.publish(topic, `${i}`.padStart(3, "0") + payload.slice(3), {
            qos: 1,
          }),
      );
      const results = await Promise.allSettled(published);
      assert.deepEqual(
        results.map((result) => result.status),
        [...Array(30).fill("fulfilled"), ...Array(10).fill("rejected")],
      );
      for (const result of results.slice(30)) {
        const reason = (result as PromiseRejectedResult).reason;
        assert.ok(reason instanceof LimitError, String(reason));
        assert.match(
          reason.message,
          /more than queue\.maxBytes \(1000\); raise queue\.maxBytes/,
        );
      }
      await arrived.promise;
      assert.deepEqual(
        received.map((text) => Number(text.slice(0, 3))),
        Array.from({ length: 30 }, (_, i) => i),
      );
    },
  );
});

describe("mosquitto: pipeTo(client.writable())", () => {
  const broker = sharedMosquitto({ extraConfig: LOAD_CONFIG }, skip);

  for (const qos of [0, 1] as QoS[]) {
    test(
      `QoS ${qos}: 20,000 messages of 1 KiB piped from a ReadableStream are all delivered; the bytes waiting stay under the high-water mark`,
      SLOW,
      async () => {
        await using clients = new Clients({ reconnect: false });
        const topic = `kite/pipe/qos${qos}`;
        const highWaterMark = 64 * 1024;
        const maxBytes = 256 * 1024;
        const subscriber = await clients.connect(broker.url);
        const tally = new Tally(subscriber, BURST);
        await subscriber.subscribe(topic, { qos });
        const publisher = await clients.connect(broker.url, {
          queue: { maxBytes, highWaterMark },
        });
        const filler = "x".repeat(1024);
        let next = 0;
        let peak = 0;
        const source = new ReadableStream<OutgoingMessage>({
          pull(controller) {
            peak = Math.max(peak, publisher.bufferedAmount);
            const index = `${next}`;
            controller.enqueue({
              topic,
              payload: index + filler.slice(index.length),
            });
            if (++next === BURST) controller.close();
          },
        }, { highWaterMark: 0 });
        // 20 MB in all: without back-pressure it would pass maxBytes many times over.
        await source.pipeTo(publisher.writable({ qos }));
        await tally.all(60_000);
        assert.equal(tally.distinct, BURST);
        assert.ok(
          peak > 0,
          "the broker was slower than the source at some point",
        );
        assert.ok(
          peak < highWaterMark + 1024,
          `at most the mark and one message waited; ${peak} bytes did`,
        );
      },
    );
  }
});
