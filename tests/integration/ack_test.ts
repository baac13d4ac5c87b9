/**
 * At least once, end to end, against a real mosquitto: a consumer that throws half-way, one that
 * leaves `for await` early, and one that acknowledges out of order; each then reconnects to its
 * persistent session, and every message published is processed at the end (some twice, none
 * missing), at QoS 1 and 2.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Message, QoS } from "../../mod.ts";
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

/** How a scenario consumes on the first connection. */
interface Scenario {
  /** The mode of the iterator the first connection reads. */
  ack: "auto" | "manual";
  /**
   * Before the consumer reads, wait until this many messages wait in its iterator: a marker
   * published after them, on a topic a second iterator reads, has arrived.
   */
  waiting?: number;
  /** Reads some of the messages, then leaves the iterator. */
  consume(messages: AsyncIterableIterator<Message>, processed: Processed): Promise<void>;
}

/**
 * Subscribes a persistent session, publishes TOTAL messages to it, lets the scenario handle some
 * of them on that connection and disconnects; then connects the same session again and processes
 * what the broker sends, acknowledging each after it is processed. Returns what was processed.
 */
async function consumeThenReconnect(
  url: string,
  qos: QoS,
  name: string,
  scenario: Scenario,
): Promise<Processed> {
  await using clients = new Clients({ reconnect: false, protocolVersion: 4 });
  const id = clientId(name);
  const topic = `kite/ack/${id}`;
  const markerTopic = `${topic}-marker`;
  const session = { clientId: id, clean: false };
  const first = await clients.connect(url, session);
  await first.subscribe([topic, markerTopic], { qos });
  const messages = first.messages(topic, { ack: scenario.ack });
  const markers = first.messages(markerTopic);
  const publisher = await clients.connect(url, { clientId: clientId("pub") });
  const published: Promise<void>[] = [];
  for (let i = 0; i < TOTAL; i++) {
    if (i === scenario.waiting) published.push(publisher.publish(markerTopic, "marker", { qos }));
    published.push(publisher.publish(topic, `m${i}`, { qos }));
  }
  if (scenario.waiting !== undefined) {
    // The broker sends in order, and the client hands each message to its iterator as it reads
    // it: once the marker is here, the messages before it wait in `messages`.
    await markers.next();
  }
  await markers.return!();
  const processed = new Processed();
  await scenario.consume(messages, processed);
  await Promise.all(published);
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
  const options = { skip, timeout: 60_000 };

  for (const qos of [1, 2] as const) {
    test(
      `ack qos${qos}: a manual consumer that throws half-way, then reconnects: no message missing`,
      options,
      async () => {
        await consumeThenReconnect(broker.url, qos, `t${qos}`, {
          ack: "manual",
          async consume(messages, processed) {
            await assert.rejects(async () => {
              for await (const message of messages) {
                if (processed.size === TOTAL / 2) throw new Error("the database is down");
                processed.add(message);
                message.ack();
              }
            }, /the database is down/);
          },
        });
      },
    );

    test(
      `ack qos${qos}: an automatic consumer that leaves for await early, then reconnects: no message missing`,
      options,
      async () => {
        await consumeThenReconnect(broker.url, qos, `l${qos}`, {
          ack: "auto",
          // Fewer than mosquitto sends before it waits for acknowledgements (20 by default).
          waiting: 15,
          async consume(messages, processed) {
            for await (const message of messages) {
              processed.add(message);
              // Ten messages wait in the iterator: handed back, never acknowledged.
              if (processed.size === 5) break;
            }
          },
        });
      },
    );

    test(
      `ack qos${qos}: a manual consumer that acknowledges out of order, then reconnects: no message missing`,
      options,
      async () => {
        await consumeThenReconnect(broker.url, qos, `o${qos}`, {
          ack: "manual",
          async consume(messages, processed) {
            const batch: Message[] = [];
            let batches = 0;
            for await (const message of messages) {
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
              // The last batch: only the second and the fourth are processed, then it stops.
              for (const done of [batch[3], batch[1]]) {
                processed.add(done);
                done.ack();
              }
              break;
            }
          },
        });
      },
    );
  }
});
