/**
 * A subscriber that reads slowly or not at all costs the broker a bounded amount of memory:
 * past `maxBufferedBytes` its QoS 0 messages are dropped and counted, its QoS 1 and 2 messages
 * wait in its session, and a client that keeps sending without reading its replies is cut off
 * past `maxOverflowBytes`. Every assertion is on the broker's counters, never on time or RSS.
 */

import assert from "node:assert/strict";
import type * as Net from "node:net";
import { test } from "node:test";
import { Broker } from "../../src/broker/mod.ts";
import { encode } from "../../src/packet/encode.ts";
import type { PublishPacket } from "../../src/packet/types.ts";
import {
  connectKite,
  FakeClock,
  RawClient,
  settle,
  str,
  versionName,
  VERSIONS,
  waitFor,
} from "./helpers.ts";

/** A 1,000-byte payload that starts with `index`, as text. */
function numbered(index: number): Uint8Array {
  const payload = new Uint8Array(1000);
  payload.set(new TextEncoder().encode(`${index};`));
  return payload;
}

/** The index a {@linkcode numbered} payload starts with. */
function indexOf(payload: Uint8Array): number {
  return Number(str(payload).split(";")[0]);
}

function sessionOf(broker: Broker, clientId: string) {
  const session = broker.sessions().find((s) => s.clientId === clientId);
  assert.ok(session, `a session for ${clientId}`);
  return session;
}

/** A raw MQTT 3.1.1 client that does not read, subscribed to "t" at `qos`. */
async function pausedSubscriber(
  broker: Broker,
  clientId: string,
  qos: 0 | 1,
  clean = true,
): Promise<RawClient> {
  const client = new RawClient(broker, 4, { paused: true });
  await client.send({ type: "connect", protocolVersion: 4, clientId, clean, keepalive: 0 });
  await client.send({
    type: "subscribe",
    packetId: 1,
    subscriptions: [{ topicFilter: "t", qos }],
  });
  return client;
}

// A PUBLISH to "t" with a 1,000-byte payload: 1 + 2 (Remaining Length 1005) + 3 + 1000 bytes,
// 2 more with a packet id.
const QOS0_SIZE = 1006;

test("Broker - a subscriber that does not read: QoS 0 past maxBufferedBytes is dropped and counted", async () => {
  const broker = new Broker({ maxBufferedBytes: 4096 });
  const stuck = await pausedSubscriber(broker, "stuck", 0);
  const fast = await connectKite(broker, { clientId: "fast" });
  await fast.client.subscribe("t", { qos: 0 });
  const pub = await connectKite(broker, { clientId: "pub" });
  for (let i = 0; i < 100; i++) await pub.client.publish("t", numbered(i), { qos: 0 });
  // Routed in order: once this is acknowledged, every message before it was handled.
  await pub.client.publish("done", "", { qos: 1 });

  const { buffered, dropped } = sessionOf(broker, "stuck");
  assert.ok(dropped > 0, "messages were dropped");
  assert.ok(buffered >= 4096, `the limit was reached: ${buffered} bytes`);
  assert.ok(buffered < 4096 + QOS0_SIZE, `at most one message past the limit: ${buffered} bytes`);
  // The client that reads is not disturbed.
  await waitFor(() => fast.messages.length === 100, "every message at the fast subscriber");

  stuck.startReading();
  await waitFor(() => stuck.received.length === 2 + 100 - dropped, "what was not dropped");
  const delivered = stuck.received.slice(2) as PublishPacket[];
  assert.deepEqual(delivered.map((p) => indexOf(p.payload)), [...Array(100 - dropped).keys()]);
  await pub.client.disconnect();
  await fast.client.disconnect();
  await broker.close();
});

test("Broker - QoS 1 for a subscriber that does not read waits in its session and arrives once it reads", async () => {
  const broker = new Broker({ maxBufferedBytes: 4096 });
  const slow = await pausedSubscriber(broker, "slow", 1);
  const pub = await connectKite(broker, { clientId: "pub" });
  for (let i = 0; i < 20; i++) await pub.client.publish("t", numbered(i), { qos: 1 });

  const { buffered, queued, inflight, dropped } = sessionOf(broker, "slow");
  assert.equal(dropped, 0);
  assert.equal(inflight + queued, 20);
  assert.ok(queued > 0, "messages wait in the session");
  assert.ok(buffered < 4096 + QOS0_SIZE + 2, `at most one message past the limit: ${buffered}`);

  slow.startReading();
  await waitFor(() => slow.received.length === 22, "every message");
  const delivered = slow.received.slice(2) as PublishPacket[];
  assert.deepEqual(delivered.map((p) => indexOf(p.payload)), [...Array(20).keys()]);
  assert.equal(sessionOf(broker, "slow").queued, 0);
  await pub.client.disconnect();
  await broker.close();
});

test("Broker - a persistent session keeps the QoS 1 a stuck subscriber did not take, for its next connection", async () => {
  const broker = new Broker({ maxBufferedBytes: 4096 });
  await pausedSubscriber(broker, "keeper", 1, false);
  const pub = await connectKite(broker, { clientId: "pub" });
  for (let i = 0; i < 20; i++) await pub.client.publish("t", numbered(i), { qos: 1 });
  broker.dropClient("keeper");
  const away = sessionOf(broker, "keeper");
  assert.equal(away.connected, false);
  assert.equal(away.inflight + away.queued, 20);
  assert.equal(away.dropped, 0);

  const back = new RawClient(broker, 4);
  assert.equal((await back.connect("keeper", { clean: false })).sessionPresent, true);
  await waitFor(() => back.received.length === 20, "every message");
  const delivered = back.received as PublishPacket[];
  assert.deepEqual(delivered.map((p) => indexOf(p.payload)), [...Array(20).keys()]);
  // What was sent to the stuck connection comes again with DUP [MQTT-4.4.0-1].
  assert.deepEqual(delivered.map((p) => p.dup), delivered.map((_, i) => i < away.inflight));
  await pub.client.disconnect();
  await broker.close();
});

for (const version of VERSIONS) {
  test(`Broker - ${versionName(version)} a client that sends without reading is cut off past maxOverflowBytes; others carry on`, async () => {
    const broker = new Broker({ maxBufferedBytes: 64, maxOverflowBytes: 64 });
    const watcher = await connectKite(broker, { clientId: "watcher" });
    await watcher.client.subscribe("will", { qos: 1 });
    const greedy = new RawClient(broker, version, { paused: true });
    await greedy.send({
      type: "connect",
      protocolVersion: version,
      clientId: "greedy",
      clean: true,
      keepalive: 0,
      will: { topic: "will", payload: new TextEncoder().encode("cut"), qos: 1, retain: false },
    });
    // Every QoS 1 PUBLISH gets a PUBACK the client never reads.
    const publish = (packetId: number): PublishPacket => ({
      type: "publish",
      topic: "x",
      payload: new Uint8Array(0),
      qos: 1,
      retain: false,
      dup: false,
      packetId,
    });
    for (let packetId = 1; packetId <= 60; packetId++) await greedy.send(publish(packetId));
    await settle();
    assert.equal(broker.sessions().some((s) => s.clientId === "greedy"), false, "cut off");
    await waitFor(() => watcher.messages.length === 1, "the will");
    assert.equal(str(watcher.messages[0].payload), "cut");

    greedy.startReading();
    const packets = await greedy.waitClosed();
    if (version === 5) {
      // v5: the last thing it reads says why [MQTT-3.14.2-1]: 0x97 Quota exceeded.
      assert.deepEqual(packets.at(-1), { type: "disconnect", reasonCode: 0x97 });
      const pubacks = packets.filter((p) => p.type === "puback").length;
      assert.ok(pubacks < 60, `not every PUBLISH was answered: ${pubacks}`);
    } else {
      assert.equal(packets.some((p) => p.type === "disconnect"), false);
    }
    await watcher.client.publish("will", "still here", { qos: 1 });
    await waitFor(() => watcher.messages.length === 2, "the watcher's own message");
    await watcher.client.disconnect();
    await broker.close();
  });
}

test("Broker - a connection whose client never reads is cut closeTimeout after the broker ends it", async () => {
  const clock = new FakeClock();
  const broker = new Broker({
    clock,
    maxBufferedBytes: 64,
    maxOverflowBytes: 64,
    closeTimeout: 5_000,
  });
  const greedy = new RawClient(broker, 5, { paused: true });
  await greedy.send({
    type: "connect",
    protocolVersion: 5,
    clientId: "greedy",
    clean: true,
    keepalive: 0,
  });
  for (let packetId = 1; packetId <= 60; packetId++) {
    await greedy.send({
      type: "publish",
      topic: "x",
      payload: new Uint8Array(0),
      qos: 1,
      retain: false,
      dup: false,
      packetId,
    });
  }
  await settle();
  assert.equal(broker.sessions().length, 0, "cut off, its DISCONNECT waiting to be read");
  let closed = false;
  const closing = broker.close().then(() => closed = true);
  await clock.advance(4_999);
  assert.equal(closed, false, "close() waits for the client to read what is left");
  await clock.advance(1);
  await closing;
  assert.equal(clock.pending, 0, "no timer is left");
});

test("Broker - over TCP, a subscriber that never reads holds at most maxBufferedBytes and one message", async () => {
  const { default: net } = await import("node:net") as { default: typeof Net };
  const limit = 64 * 1024;
  const broker = new Broker({ maxBufferedBytes: limit });
  const { port } = await broker.listen();
  const socket = net.createConnection({ port, host: "127.0.0.1" });
  socket.on("error", () => {});
  // Never read: once the socket buffers fill, nothing more is taken from the broker.
  socket.pause();
  await new Promise((resolve) => socket.once("connect", resolve));
  socket.write(
    encode({
      type: "connect",
      protocolVersion: 4,
      clientId: "tcp-stuck",
      clean: true,
      keepalive: 0,
    }),
  );
  socket.write(
    encode({ type: "subscribe", packetId: 1, subscriptions: [{ topicFilter: "t", qos: 0 }] }),
  );
  await waitFor(
    () => broker.sessions().some((s) => s.clientId === "tcp-stuck" && s.subscriptions.length === 1),
    "the subscription",
  );
  const pub = await connectKite(broker, { clientId: "pub" });
  // 20 MB: more than any loopback socket buffers hold.
  const payload = new Uint8Array(1000);
  for (let round = 0; round < 20; round++) {
    const sent: Promise<void>[] = [];
    for (let i = 0; i < 1000; i++) sent.push(pub.client.publish("t", payload, { qos: 0 }));
    await Promise.all(sent);
  }
  await pub.client.publish("done", "", { qos: 1 });

  const { buffered, dropped } = sessionOf(broker, "tcp-stuck");
  assert.ok(dropped > 0, "messages were dropped");
  assert.ok(buffered < limit + QOS0_SIZE, `at most one message past the limit: ${buffered} bytes`);
  socket.destroy();
  await waitFor(() => !broker.sessions().some((s) => s.clientId === "tcp-stuck"), "the close");
  await pub.client.disconnect();
  await broker.close();
});

test("Broker - maxBufferedBytes below 1 is refused with RangeError", () => {
  assert.throws(() => new Broker({ maxBufferedBytes: 0 }), RangeError);
  assert.throws(() => new Broker({ maxBufferedBytes: -5 }), RangeError);
});
