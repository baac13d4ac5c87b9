/**
 * Reading a real socket with pauses: a subscriber whose held messages are full stops reading its
 * connection (the transport's read loop waits), the broker's bytes wait in the kernel and in
 * mosquitto, and once the application takes messages every one arrives, in order, with its bytes
 * intact. This runs through Kite's own socket transports (`Deno.connect` on Deno, `Bun.connect` on
 * Bun), whose reads go straight to the decoder into buffers sized by the last read, and whose
 * payloads are views into those buffers.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Message } from "../../mod.ts";
import { LOAD_CONFIG, mosquittoSkipReason, sharedMosquitto } from "../helpers/mosquitto.ts";
import { Clients } from "../helpers/clients.ts";

const skip = mosquittoSkipReason();
const COUNT = 200;

/** Message `index`'s payload: `size` bytes, each `(index + offset) & 0xff`, so none repeats. */
function payload(index: number, size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (index + i) & 0xff;
  return bytes;
}

describe("mosquitto: a subscriber that stops reading, then takes everything", () => {
  const broker = sharedMosquitto({ extraConfig: LOAD_CONFIG }, skip);

  for (const size of [100, 32 * 1024]) {
    test(
      `${COUNT} QoS 0 messages of ${size} bytes arrive in order and intact after the reads paused`,
      { skip, timeout: 60_000 },
      async () => {
        await using clients = new Clients({ reconnect: false });
        const topic = `kite/read-pause/${size}`;
        // At most 8 messages are held before anyone takes them: then reading stops.
        const subscriber = await clients.connect(broker.url, { maxHeldMessages: 8 });
        await subscriber.subscribe(`${topic}/+`, { qos: 0 });
        const publisher = await clients.connect(broker.url);
        const payloads = Array.from({ length: COUNT }, (_, i) => payload(i, size));
        // Numbered in the topic. All written to the broker before anyone takes a message.
        await Promise.all(payloads.map((bytes, i) => publisher.publish(`${topic}/${i}`, bytes)));
        const received: Message[] = [];
        for await (const message of subscriber.messages(`${topic}/+`)) {
          received.push(message);
          if (received.length === COUNT) break;
        }
        for (let i = 0; i < COUNT; i++) {
          const message = received[i];
          assert.equal(message.topic, `${topic}/${i}`, `message ${i} in order`);
          assert.deepEqual(message.payload, payloads[i], `message ${i} intact`);
        }
      },
    );
  }
});
