/**
 * At least once, end to end, against a real mosquitto: a consumer that throws half-way, one that
 * leaves `for await` early, and one that acknowledges out of order; each then reconnects to its
 * persistent session, and every message published is processed at the end (some twice, none
 * missing), at QoS 1 and 2.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Message, MqttClient, QoS } from "../../mod.ts";
import { mosquittoSkipReason, sharedMosquitto } from "../helpers/mosquitto.ts";
import { Clients } from "../helpers/clients.ts";

const skip = mosquittoSkipReason();
const TOTAL = 60;
const decoder = new TextDecoder();

let idCounter = 0;
/** A short client id, unique in this run. */
function clientId(label: string): string {
  return `kack${label}${(++idCounter).toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

/** What a consumer did with the messages: processed (by payload), and how many deliveries. */
class Processed {
  readonly payloads = new Set<string>();
  deliveries = 0;

  add(message: Message): void {
    this.deliveries++;
    this.payloads.add(decoder.decode(message.payload));
  }

  get size(): number {
    return this.payloads.size;
  }
}

/**
 * Subscribes a persistent session, publishes TOTAL messages to it, lets `consume` handle some of
 * them on that connection and disconnects; then connects the same session again and processes
 * what the broker sends, acknowledging each after it is processed. Returns what was processed.
 */
async function consumeThenReconnect(
  url: string,
  qos: QoS,
  name: string,
  consume: (client: MqttClient, topic: string, processed: Processed) => Promise<void>,
): Promise<Processed> {
  await using clients = new Clients({ reconnect: false, protocolVersion: 4 });
  const id = clientId(name);
  const topic = `kite/ack/${id}`;
  const session = { clientId: id, clean: false };
  const first = await clients.connect(url, session);
  await first.subscribe(topic, { qos });
  const publisher = await clients.connect(url, { clientId: clientId("pub") });
  await Promise.all(
    Array.from({ length: TOTAL }, (_, i) => publisher.publish(topic, `m${i}`, { qos })),
  );
  const processed = new Processed();
  await consume(first, topic, processed);
  await first.disconnect();
  assert.ok(processed.size < TOTAL, "the first connection processed only part of the messages");

  const again = await clients.connect(url, session);
  // A deadline for a failure, not a wait for success: if a message is missing, the loop ends
  // here and the assertion below says how many.
  const deadline = setTimeout(() => void again.disconnect(), 15_000);
  try {
    for await (const message of again.messages(topic, { ack: "manual" })) {
      processed.add(message);
      message.ack();
      if (processed.size === TOTAL) break;
    }
  } finally {
    clearTimeout(deadline);
  }
  assert.equal(processed.size, TOTAL, `${TOTAL - processed.size} messages missing`);
  return processed;
}

describe("at least once through a reconnect (mosquitto, persistent session)", () => {
  const broker = sharedMosquitto();

  for (const qos of [1, 2] as const) {
    test(
      `ack qos${qos}: a manual consumer that throws half-way, then reconnects: no message missing`,
      {
        skip,
        timeout: 60_000,
      },
      async () => {
        await consumeThenReconnect(broker.url, qos, `t${qos}`, async (client, topic, processed) => {
          await assert.rejects(async () => {
            for await (const message of client.messages(topic, { ack: "manual" })) {
              if (processed.size === TOTAL / 2) throw new Error("the database is down");
              processed.add(message);
              message.ack();
            }
          }, /the database is down/);
        });
      },
    );

    test(
      `ack qos${qos}: an automatic consumer that leaves for await early, then reconnects: no message missing`,
      {
        skip,
        timeout: 60_000,
      },
      async () => {
        await consumeThenReconnect(broker.url, qos, `l${qos}`, async (client, topic, processed) => {
          for await (const message of client.messages(topic)) {
            processed.add(message);
            if (processed.size === TOTAL / 3) break;
          }
        });
      },
    );

    test(
      `ack qos${qos}: a manual consumer that acknowledges out of order, then reconnects: no message missing`,
      {
        skip,
        timeout: 60_000,
      },
      async () => {
        await consumeThenReconnect(broker.url, qos, `o${qos}`, async (client, topic, processed) => {
          const batch: Message[] = [];
          let batches = 0;
          for await (const message of client.messages(topic, { ack: "manual" })) {
            batch.push(message);
            if (batch.length < 5) continue;
            batches++;
            if (batches < 4) {
              // Newest first: each acknowledgement waits for the older ones.
              for (const done of batch.reverse()) {
                processed.add(done);
                done.ack();
              }
              batch.length = 0;
              continue;
            }
            // The last batch: only the second and the fourth are processed, then the consumer stops.
            for (const done of [batch[3], batch[1]]) {
              processed.add(done);
              done.ack();
            }
            break;
          }
        });
      },
    );
  }
});
