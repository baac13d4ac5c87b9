/**
 * Delivery as a whole: the order packets go out and come in [MQTT-4.6.0-*], exactly-once with
 * several QoS 2 flows interleaved, batched writes, and packets of any size and chunking.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MqttClient } from "../../src/client/clients.ts";
import type { Message } from "../../src/client/types.ts";
import { connected, FakeClock, hex } from "./harness.ts";

describe("order", () => {
  test("order c2b: publishes of every QoS go out in the order they were made", async () => {
    const { client, broker } = await connected(4);
    const publishes = [0, 1, 2, 0, 2, 1, 0].map((qos, i) =>
      client.publish("t", `${i}`, { qos: qos as 0 | 1 | 2 })
    );
    const sent: string[] = [];
    for (let i = 0; i < 7; i++) {
      const publish = await broker.expect("publish");
      sent.push(`${new TextDecoder().decode(publish.payload)}:${publish.qos}`);
    }
    assert.deepEqual(sent, ["0:0", "1:1", "2:2", "3:0", "4:2", "5:1", "6:0"]);
    await broker.send("40 02 00 01 50 02 00 02 50 02 00 03 40 02 00 04");
    assert.equal((await broker.next()).hex, "62 02 00 02");
    assert.equal((await broker.next()).hex, "62 02 00 03");
    await broker.send("70 02 00 03 70 02 00 02");
    await Promise.all(publishes);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("order c2b: PUBRELs go out in the order the PUBRECs came [MQTT-4.6.0-4]", async () => {
    const { client, broker } = await connected(5);
    const publishes = [1, 2, 3].map((i) => client.publish("t", `${i}`, { qos: 2 }));
    for (let i = 0; i < 3; i++) await broker.expect("publish");
    await broker.send("50 02 00 03 50 02 00 01 50 02 00 02");
    assert.equal((await broker.next()).hex, "62 02 00 03");
    assert.equal((await broker.next()).hex, "62 02 00 01");
    assert.equal((await broker.next()).hex, "62 02 00 02");
    await broker.send("70 02 00 01 70 02 00 02 70 02 00 03");
    await Promise.all(publishes);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("order b2c: PUBACKs and PUBRECs go out in the order the PUBLISHes came [MQTT-4.6.0-2, MQTT-4.6.0-3]", async () => {
    const { client, broker } = await connected(4);
    client.setPublishHandler(() => {});
    // QoS 2 id 4, QoS 1 id 9, QoS 2 id 2, QoS 1 id 1: topic "t", no payload.
    await broker.send(
      "34 05 00 01 74 00 04 32 05 00 01 74 00 09 34 05 00 01 74 00 02 32 05 00 01 74 00 01",
    );
    const order = [];
    for (let i = 0; i < 4; i++) order.push((await broker.next()).hex);
    assert.deepEqual(order, ["50 02 00 04", "40 02 00 09", "50 02 00 02", "40 02 00 01"]);
    await broker.send("62 02 00 02 62 02 00 04");
    assert.equal((await broker.next()).hex, "70 02 00 02");
    assert.equal((await broker.next()).hex, "70 02 00 04");
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("exactly once b2c: three QoS 2 flows interleaved with duplicates, each message delivered once", async () => {
    const { client, broker } = await connected(5);
    const delivered: string[] = [];
    client.setPublishHandler((m: Message) => {
      delivered.push(`${m.packetId}:${new TextDecoder().decode(m.payload)}`);
    });
    const publish = (id: number, payload: string, dup = false) =>
      `${dup ? "3c" : "34"} 07 00 01 74 00 0${id} 00 ${payload}`;
    await broker.send(publish(1, "61") + " " + publish(2, "62") + " " + publish(1, "61", true));
    assert.equal((await broker.next()).hex, "50 02 00 01");
    assert.equal((await broker.next()).hex, "50 02 00 02");
    assert.equal((await broker.next()).hex, "50 02 00 01");
    await broker.send("62 02 00 01 " + publish(3, "63") + " " + publish(2, "62", true));
    assert.equal((await broker.next()).hex, "70 02 00 01");
    assert.equal((await broker.next()).hex, "50 02 00 03");
    assert.equal((await broker.next()).hex, "50 02 00 02");
    await broker.send("62 02 00 02 62 02 00 03 62 02 00 01");
    assert.equal((await broker.next()).hex, "70 02 00 02");
    assert.equal((await broker.next()).hex, "70 02 00 03");
    // Id 1 was released already: its PUBREL again gets PUBCOMP, 0x92 on MQTT 5.
    assert.equal((await broker.next()).hex, "70 03 00 01 92");
    assert.deepEqual(delivered, ["1:a", "2:b", "3:c"]);
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});

describe("writes", () => {
  test("batched writes: 100 publishes made in one go are written in at most two writes, in order", async () => {
    const toClient = new TransformStream<Uint8Array, Uint8Array>();
    const broker = toClient.writable.getWriter();
    const writes: Uint8Array[] = [];
    const client = new MqttClient({
      readable: toClient.readable,
      writable: new WritableStream<Uint8Array>({
        write: (chunk) => void writes.push(chunk.slice()),
      }),
    });
    const connecting = client.connect({ clientId: "k", keepalive: 0, clock: new FakeClock() });
    await broker.write(new Uint8Array([0x20, 0x02, 0x00, 0x00]));
    await connecting;
    const before = writes.length;
    await Promise.all(Array.from({ length: 100 }, (_, i) => client.publish("t", `${i % 10}`)));
    const batches = writes.slice(before);
    assert.ok(batches.length <= 2, `${batches.length} writes`);
    const all = hex(new Uint8Array(batches.flatMap((b) => [...b])));
    const expected = Array.from({ length: 100 }, (_, i) => `30 04 00 01 74 3${i % 10}`).join(" ");
    assert.equal(all, expected);
    await client.disconnect();
  });

  for (
    const [size, header] of [[124, "30 7f"], [125, "30 80 01"], [16_380, "30 ff 7f"], [
      16_381,
      "30 80 80 01",
    ]] as const
  ) {
    test(`publish c2b: a ${size}-byte payload gets the Remaining Length ${header.slice(3)}`, async () => {
      const { client, broker } = await connected(4);
      const payload = new Uint8Array(size).map((_, i) => i % 251);
      const publish = client.publish("t", payload);
      const sent = await broker.next();
      assert.equal(sent.hex.slice(0, header.length), header);
      assert.equal(sent.bytes.length, header.split(" ").length + 3 + size);
      assert.deepEqual(sent.bytes.subarray(sent.bytes.length - size), payload);
      await publish;
      await Promise.all([client.disconnect(), broker.closed()]);
    });
  }

  test("publish c2b: a 1 MB payload, larger than the write buffer, goes out whole", async () => {
    const { client, broker } = await connected(5);
    const payload = new Uint8Array(1 << 20).map((_, i) => i * 7);
    const publish = client.publish("big", payload, { qos: 1 });
    const sent = await broker.expect("publish");
    assert.deepEqual(sent.payload, payload);
    await broker.send("40 02 00 01");
    await publish;
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("publish b2c: a PUBLISH arriving one byte at a time, and two in one chunk, are delivered whole", async () => {
    const { client, broker } = await connected(4);
    const payloads: string[] = [];
    client.setPublishHandler((m) => void payloads.push(new TextDecoder().decode(m.payload)));
    const bytes = [0x32, 0x08, 0x00, 0x01, 0x74, 0x00, 0x05, 0x61, 0x62, 0x63];
    for (const byte of bytes) await broker.send(new Uint8Array([byte]));
    assert.equal((await broker.next()).hex, "40 02 00 05");
    await broker.send("30 04 00 01 74 78 30 04 00 01 74 79");
    await broker.send("32 05 00 01 74 00 06");
    assert.equal((await broker.next()).hex, "40 02 00 06");
    assert.deepEqual(payloads, ["abc", "x", "y", ""]);
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});
