import assert from "node:assert/strict";
import { test } from "node:test";
import { Broker } from "../../src/broker/mod.ts";
import type { QoS } from "../../src/packet/types.ts";
import {
  connectKite,
  pause,
  RawClient,
  str,
  text,
  versionName,
  VERSIONS,
  waitFor,
} from "./helpers.ts";

for (const version of VERSIONS) {
  for (const qos of [0, 1, 2] as QoS[]) {
    test(`Broker - ${versionName(version)} QoS ${qos} end to end`, async () => {
      const broker = new Broker();
      const sub = await connectKite(broker, { clientId: "sub", protocolVersion: version });
      assert.equal(await sub.client.subscribe("a/+", { qos }), qos);
      const pub = await connectKite(broker, { clientId: "pub", protocolVersion: version });
      for (let i = 0; i < 5; i++) {
        await pub.client.publish("a/b", `m${i}`, { qos });
      }
      await waitFor(() => sub.messages.length === 5, "five messages");
      assert.deepEqual(sub.messages.map((m) => str(m.payload)), ["m0", "m1", "m2", "m3", "m4"]);
      for (const message of sub.messages) {
        assert.equal(message.qos, qos);
        assert.equal(message.topic, "a/b");
        assert.equal(message.retain, false);
      }
      await pause();
      assert.equal(broker.sessions().find((s) => s.clientId === "sub")?.inflight, 0);
      await pub.client.disconnect();
      await sub.client.disconnect();
      await broker.close();
    });
  }
}

test("Broker - the delivered QoS is the minimum of published and granted", async () => {
  const broker = new Broker();
  const sub = await connectKite(broker, { clientId: "sub" });
  await sub.client.subscribe("low", { qos: 1 });
  await sub.client.subscribe("high", { qos: 2 });
  const pub = await connectKite(broker, { clientId: "pub" });
  await pub.client.publish("low", "x", { qos: 2 });
  await pub.client.publish("high", "y", { qos: 1 });
  await waitFor(() => sub.messages.length === 2, "two messages");
  assert.deepEqual(sub.messages.map((m) => [m.topic, m.qos]), [["low", 1], ["high", 1]]);
  await pub.client.disconnect();
  await sub.client.disconnect();
  await broker.close();
});

test("Broker - overlapping subscriptions deliver one message at the highest QoS", async () => {
  const broker = new Broker();
  const sub = await connectKite(broker, { clientId: "sub" });
  await sub.client.subscribe([{ topic: "a/#", qos: 0 }, { topic: "a/b", qos: 2 }]);
  const pub = await connectKite(broker, { clientId: "pub" });
  await pub.client.publish("a/b", "once", { qos: 2 });
  await waitFor(() => sub.messages.length === 1, "a message");
  await pause();
  assert.equal(sub.messages.length, 1);
  assert.equal(sub.messages[0].qos, 2);
  await pub.client.disconnect();
  await sub.client.disconnect();
  await broker.close();
});

test("Broker - wildcards match by level and not across the $ rule", async () => {
  const broker = new Broker();
  const sub = await connectKite(broker, { clientId: "sub" });
  await sub.client.subscribe(["sport/+/player", "news/#", "#"]);
  const sys = await connectKite(broker, { clientId: "sys" });
  await sys.client.subscribe("$SYS/#");
  const pub = await connectKite(broker, { clientId: "pub" });
  for (const topic of ["sport/tennis/player", "sport/player", "news", "news/a/b", "$SYS/up"]) {
    await pub.client.publish(topic, topic, { qos: 1 });
  }
  await waitFor(() => sys.messages.length === 1, "the $SYS message");
  await pause();
  // "#" matches everything but $SYS/up; the other two filters add one copy each at most.
  assert.deepEqual(sub.messages.map((m) => m.topic), [
    "sport/tennis/player",
    "sport/player",
    "news",
    "news/a/b",
  ]);
  assert.deepEqual(sys.messages.map((m) => m.topic), ["$SYS/up"]);
  await Promise.all([sub, sys, pub].map(({ client }) => client.disconnect()));
  await broker.close();
});

test("Broker - UNSUBSCRIBE stops delivery; v5 UNSUBACK says which existed", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 5);
  await raw.connect("raw");
  await raw.send({ type: "subscribe", packetId: 1, subscriptions: [{ topicFilter: "t", qos: 0 }] });
  assert.deepEqual((await raw.expect("suback")).reasonCodes, [0]);
  await raw.send({ type: "unsubscribe", packetId: 2, topicFilters: ["t", "nope"] });
  assert.deepEqual((await raw.expect("unsuback")).reasonCodes, [0x00, 0x11]);
  const pub = await connectKite(broker, { clientId: "pub" });
  await pub.client.publish("t", "x", { qos: 1 });
  await pause();
  assert.deepEqual(raw.received, []);
  assert.deepEqual(broker.sessions().find((s) => s.clientId === "raw")?.subscriptions, []);
  await pub.client.disconnect();
  await broker.close();
});

test("Broker - Kite's unsubscribe over v3.1.1", async () => {
  const broker = new Broker();
  const sub = await connectKite(broker, { clientId: "sub" });
  await sub.client.subscribe("t");
  await sub.client.unsubscribe("t");
  const pub = await connectKite(broker, { clientId: "pub" });
  await pub.client.publish("t", "x", { qos: 1 });
  await pause();
  assert.equal(sub.messages.length, 0);
  await pub.client.disconnect();
  await sub.client.disconnect();
  await broker.close();
});

test("Broker - an invalid filter is refused in SUBACK (0x80 / v5 0x8F)", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 4);
  await raw.connect("raw");
  // SUBSCRIBE id 1, filter "a/#/b" QoS 0: the encoder would refuse it, so bytes.
  await raw.sendBytes([0x82, 0x0a, 0, 1, 0, 5, 0x61, 0x2f, 0x23, 0x2f, 0x62, 0]);
  assert.deepEqual((await raw.expect("suback")).reasonCodes, [0x80]);
  const raw5 = new RawClient(broker, 5);
  await raw5.connect("raw5");
  await raw5.sendBytes([0x82, 0x0b, 0, 1, 0, 0, 5, 0x61, 0x2f, 0x23, 0x2f, 0x62, 0]);
  assert.deepEqual((await raw5.expect("suback")).reasonCodes, [0x8f]);
  assert.deepEqual(broker.sessions().flatMap((s) => s.subscriptions), []);
  await broker.close();
});

test("Broker - QoS 2 inbound is exactly once: a resent PUBLISH is not routed again", async () => {
  const broker = new Broker();
  const sub = await connectKite(broker, { clientId: "sub" });
  await sub.client.subscribe("x", { qos: 2 });
  const raw = new RawClient(broker, 4);
  await raw.connect("raw");
  const publish = {
    type: "publish" as const,
    topic: "x",
    payload: text("once"),
    qos: 2 as const,
    retain: false,
    dup: false,
    packetId: 7,
  };
  await raw.send(publish);
  assert.equal((await raw.expect("pubrec")).packetId, 7);
  await raw.send({ ...publish, dup: true });
  assert.equal((await raw.expect("pubrec")).packetId, 7);
  await raw.send({ type: "pubrel", packetId: 7 });
  assert.equal((await raw.expect("pubcomp")).packetId, 7);
  // After PUBCOMP the id is free: the same id is a new message.
  await raw.send(publish);
  await raw.expect("pubrec");
  await raw.send({ type: "pubrel", packetId: 7 });
  await raw.expect("pubcomp");
  await waitFor(() => sub.messages.length === 2, "two messages");
  await pause();
  assert.equal(sub.messages.length, 2);
  await sub.client.disconnect();
  await broker.close();
});

test("Broker - QoS 2 outbound: PUBLISH, PUBREC, PUBREL, PUBCOMP with packet ids", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 4);
  await raw.connect("raw");
  await raw.send({ type: "subscribe", packetId: 1, subscriptions: [{ topicFilter: "x", qos: 2 }] });
  await raw.expect("suback");
  const pub = await connectKite(broker, { clientId: "pub" });
  await pub.client.publish("x", "a", { qos: 2 });
  await pub.client.publish("x", "b", { qos: 1 });
  const first = await raw.expect("publish");
  const second = await raw.expect("publish");
  assert.equal(first.qos, 2);
  assert.equal(second.qos, 1);
  assert.notEqual(first.packetId, second.packetId);
  await raw.send({ type: "pubrec", packetId: first.packetId! });
  assert.equal((await raw.expect("pubrel")).packetId, first.packetId);
  assert.equal(broker.sessions().find((s) => s.clientId === "raw")?.inflight, 2);
  await raw.send({ type: "pubcomp", packetId: first.packetId! });
  await raw.send({ type: "puback", packetId: second.packetId! });
  await pause();
  assert.equal(broker.sessions().find((s) => s.clientId === "raw")?.inflight, 0);
  await pub.client.disconnect();
  await broker.close();
});

test("Broker - v5 PUBREL for an unknown id is answered PUBCOMP 0x92", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 5);
  await raw.connect("raw");
  await raw.send({ type: "pubrel", packetId: 9 });
  const pubcomp = await raw.expect("pubcomp");
  assert.equal(pubcomp.reasonCode, 0x92);
  await broker.close();
});

test("Broker - withholdAcks keeps PUBACK back but still routes", async () => {
  const broker = new Broker();
  const sub = await connectKite(broker, { clientId: "sub" });
  await sub.client.subscribe("w", { qos: 1 });
  const raw = new RawClient(broker, 4);
  await raw.connect("raw");
  broker.withholdAcks(true);
  await raw.send({
    type: "publish",
    topic: "w",
    payload: text("held"),
    qos: 1,
    retain: false,
    dup: false,
    packetId: 3,
  });
  await waitFor(() => sub.messages.length === 1, "the message");
  await pause();
  assert.deepEqual(raw.received, []);
  broker.withholdAcks(false);
  await raw.send({
    type: "publish",
    topic: "w",
    payload: text("acked"),
    qos: 1,
    retain: false,
    dup: false,
    packetId: 4,
  });
  assert.equal((await raw.expect("puback")).packetId, 4);
  await sub.client.disconnect();
  await broker.close();
});

test("Broker - many publishers at QoS 2: every message arrives exactly once, in order", async () => {
  const broker = new Broker();
  const sub = await connectKite(broker, { clientId: "sub", protocolVersion: 5 });
  await sub.client.subscribe("load/#", { qos: 2 });
  const publishers = await Promise.all(
    Array.from({ length: 10 }, (_, i) => connectKite(broker, { clientId: `pub${i}` })),
  );
  await Promise.all(publishers.map(async ({ client }, i) => {
    for (let n = 0; n < 50; n++) await client.publish(`load/${i}`, `${n}`, { qos: 2 });
  }));
  await waitFor(() => sub.messages.length === 500, "500 messages");
  await pause();
  assert.equal(sub.messages.length, 500);
  for (let i = 0; i < 10; i++) {
    const mine = sub.messages.filter((m) => m.topic === `load/${i}`).map((m) =>
      Number(str(m.payload))
    );
    assert.deepEqual(mine, Array.from({ length: 50 }, (_, n) => n));
  }
  await Promise.all([sub, ...publishers].map(({ client }) => client.disconnect()));
  await broker.close();
});
