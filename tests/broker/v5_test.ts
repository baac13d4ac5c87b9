import assert from "node:assert/strict";
import { test } from "node:test";
import { Broker } from "../../src/broker/mod.ts";
import type { PublishPacket } from "../../src/packet/types.ts";
import { connectKite, FakeClock, pause, RawClient, str, text, waitFor } from "./helpers.ts";

function publish(
  topic: string,
  payload: string,
  extra: Partial<PublishPacket> = {},
): PublishPacket {
  return {
    type: "publish",
    topic,
    payload: text(payload),
    qos: 0,
    retain: false,
    dup: false,
    ...extra,
  };
}

test("Broker - v5 Receive Maximum of the client limits messages in flight", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 5);
  await raw.connect("slow", { properties: { receiveMaximum: 2 } });
  await raw.send({ type: "subscribe", packetId: 1, subscriptions: [{ topicFilter: "t", qos: 1 }] });
  await raw.expect("suback");
  const pub = await connectKite(broker, { clientId: "pub" });
  for (let i = 0; i < 5; i++) await pub.client.publish("t", `${i}`, { qos: 1 });
  await pause();
  const first = raw.received.splice(0) as PublishPacket[];
  assert.deepEqual(first.map((p) => str(p.payload)), ["0", "1"]);
  assert.equal(broker.sessions().find((s) => s.clientId === "slow")?.queued, 3);
  await raw.send({ type: "puback", packetId: first[0].packetId! });
  const third = await raw.expect("publish");
  assert.equal(str(third.payload), "2");
  await pause();
  assert.deepEqual(raw.received, []);
  await pub.client.disconnect();
  await broker.close();
});

test("Broker - v5 Receive Maximum of the broker: too many QoS 2 closes with 0x93", async () => {
  const broker = new Broker({ receiveMaximum: 2 });
  const raw = new RawClient(broker, 5);
  await raw.connect("greedy");
  for (const packetId of [1, 2, 3]) {
    await raw.send(publish("t", "x", { qos: 2, packetId }));
  }
  const packets = await raw.waitClosed();
  assert.deepEqual(packets.map((p) => p.type), ["pubrec", "pubrec", "disconnect"]);
  assert.deepEqual(packets[2], { type: "disconnect", reasonCode: 0x93 });
  await broker.close();
});

test("Broker - v5 Maximum Packet Size of the client: larger messages are not sent", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 5);
  await raw.connect("small", { properties: { maximumPacketSize: 64 } });
  await raw.send({ type: "subscribe", packetId: 1, subscriptions: [{ topicFilter: "t", qos: 1 }] });
  await raw.expect("suback");
  const pub = await connectKite(broker, { clientId: "pub" });
  await pub.client.publish("t", "x".repeat(100), { qos: 1 });
  await pub.client.publish("t", "fits", { qos: 1 });
  const got = await raw.expect("publish");
  assert.equal(str(got.payload), "fits");
  await pub.client.disconnect();
  await broker.close();
});

test("Broker - Maximum Packet Size of the broker: a larger packet closes with 0x95", async () => {
  const broker = new Broker({ maximumPacketSize: 100 });
  const raw = new RawClient(broker, 5);
  await raw.connect("big");
  await raw.send(publish("t", "x".repeat(200)));
  assert.deepEqual(await raw.waitClosed(), [{ type: "disconnect", reasonCode: 0x95 }]);
  await broker.close();
});

test("Broker - v5 incoming topic aliases are resolved", async () => {
  const broker = new Broker();
  const sub = await connectKite(broker, { clientId: "sub" });
  await sub.client.subscribe("long/topic/name");
  const raw = new RawClient(broker, 5);
  await raw.connect("aliaser");
  await raw.send(publish("long/topic/name", "first", { properties: { topicAlias: 1 } }));
  await raw.send(publish("", "second", { properties: { topicAlias: 1 } }));
  await waitFor(() => sub.messages.length === 2, "two messages");
  assert.deepEqual(sub.messages.map((m) => [m.topic, str(m.payload)]), [
    ["long/topic/name", "first"],
    ["long/topic/name", "second"],
  ]);
  await sub.client.disconnect();
  await broker.close();
});

test("Broker - v5 a topic alias above the maximum closes with 0x94", async () => {
  const broker = new Broker({ topicAliasMaximum: 2 });
  const raw = new RawClient(broker, 5);
  await raw.connect("aliaser");
  await raw.send(publish("t", "x", { properties: { topicAlias: 3 } }));
  assert.deepEqual(await raw.waitClosed(), [{ type: "disconnect", reasonCode: 0x94 }]);
  await broker.close();
});

test("Broker - v5 an unknown topic alias closes with 0x82", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 5);
  await raw.connect("aliaser");
  await raw.send(publish("", "x", { properties: { topicAlias: 1 } }));
  assert.deepEqual(await raw.waitClosed(), [{ type: "disconnect", reasonCode: 0x82 }]);
  await broker.close();
});

test("Broker - v5 topic alias 0 closes with 0x94 Topic Alias invalid [MQTT-3.3.2-8]", async () => {
  const broker = new Broker();
  const watcher = await connectKite(broker, { clientId: "watcher", protocolVersion: 5 });
  await watcher.client.subscribe("#");
  const raw = new RawClient(broker, 5);
  await raw.connect("aliaser");
  // PUBLISH to "a", QoS 0, properties: Topic Alias (0x23) 0; the encoder would refuse to write it.
  await raw.sendBytes([0x30, 0x07, 0x00, 0x01, 0x61, 0x03, 0x23, 0x00, 0x00]);
  assert.deepEqual(await raw.waitClosed(), [{ type: "disconnect", reasonCode: 0x94 }]);
  await watcher.client.publish("after", "x", { qos: 1 });
  await waitFor(() => watcher.messages.length === 1, "the watcher's own message");
  assert.deepEqual(watcher.messages.map((m) => m.topic), ["after"]);
  await watcher.client.disconnect();
  await broker.close();
});

test("Broker - v5 a client PUBLISH with a subscription identifier closes with 0x82 [MQTT-3.3.4-6]", async () => {
  const broker = new Broker();
  const watcher = await connectKite(broker, { clientId: "watcher", protocolVersion: 5 });
  await watcher.client.subscribe("#");
  const raw = new RawClient(broker, 5);
  await raw.connect("identifier");
  await raw.send(
    publish("t", "x", { qos: 1, packetId: 1, properties: { subscriptionIdentifiers: [7] } }),
  );
  assert.deepEqual(await raw.waitClosed(), [{ type: "disconnect", reasonCode: 0x82 }]);
  await watcher.client.publish("after", "x", { qos: 1 });
  await waitFor(() => watcher.messages.length === 1, "the watcher's own message");
  assert.deepEqual(watcher.messages.map((m) => m.topic), ["after"], "nothing was routed");
  await watcher.client.disconnect();
  await broker.close();
});

test("Broker - v5 subscription identifiers come with matching messages", async () => {
  const broker = new Broker();
  const sub = await connectKite(broker, { clientId: "sub", protocolVersion: 5 });
  await sub.client.subscribe("a/#", { properties: { subscriptionIdentifier: 7 } });
  await sub.client.subscribe("a/b", { properties: { subscriptionIdentifier: 9 } });
  await sub.client.subscribe("a/c");
  const pub = await connectKite(broker, { clientId: "pub" });
  await pub.client.publish("a/b", "both");
  await pub.client.publish("a/c", "one");
  await waitFor(() => sub.messages.length === 2, "two messages");
  assert.deepEqual(sub.messages[0].properties?.subscriptionIdentifiers?.sort(), [7, 9]);
  assert.deepEqual(sub.messages[1].properties?.subscriptionIdentifiers, [7]);
  await pub.client.disconnect();
  await sub.client.disconnect();
  await broker.close();
});

test("Broker - v5 No Local: own messages are not delivered back", async () => {
  const broker = new Broker();
  const both = await connectKite(broker, { clientId: "both", protocolVersion: 5 });
  await both.client.subscribe("t", { qos: 1, noLocal: true });
  const other = await connectKite(broker, { clientId: "other", protocolVersion: 5 });
  await other.client.subscribe("t", { qos: 1 });
  await both.client.publish("t", "mine", { qos: 1 });
  await waitFor(() => other.messages.length === 1, "the other's copy");
  await pause();
  assert.equal(both.messages.length, 0);
  await both.client.disconnect();
  await other.client.disconnect();
  await broker.close();
});

test("Broker - v5 Retain As Published keeps the RETAIN flag", async () => {
  const broker = new Broker();
  const sub = await connectKite(broker, { clientId: "sub", protocolVersion: 5 });
  await sub.client.subscribe("rap", { qos: 1, retainAsPublished: true });
  await sub.client.subscribe("plain", { qos: 1 });
  const pub = await connectKite(broker, { clientId: "pub" });
  await pub.client.publish("rap", "a", { qos: 1, retain: true });
  await pub.client.publish("plain", "b", { qos: 1, retain: true });
  await waitFor(() => sub.messages.length === 2, "two messages");
  assert.deepEqual(sub.messages.map((m) => [m.topic, m.retain]), [["rap", true], ["plain", false]]);
  await pub.client.disconnect();
  await sub.client.disconnect();
  await broker.close();
});

test("Broker - v5 Retain Handling 0, 1 and 2", async () => {
  const broker = new Broker();
  const pub = await connectKite(broker, { clientId: "pub" });
  await pub.client.publish("r", "kept", { qos: 1, retain: true });
  const sub = await connectKite(broker, { clientId: "sub", protocolVersion: 5 });
  await sub.client.subscribe("r", { retainHandling: 2 });
  await pause();
  assert.equal(sub.messages.length, 0, "2: never");
  await sub.client.unsubscribe("r");
  await sub.client.subscribe("r", { retainHandling: 1 });
  await waitFor(() => sub.messages.length === 1, "1: a new subscription gets it");
  await sub.client.subscribe("r", { retainHandling: 1 });
  await pause();
  assert.equal(sub.messages.length, 1, "1: not for an existing subscription");
  await sub.client.subscribe("r", { retainHandling: 0 });
  await waitFor(() => sub.messages.length === 2, "0: always");
  await pub.client.disconnect();
  await sub.client.disconnect();
  await broker.close();
});

test("Broker - v5 message properties are forwarded, the topic alias is not", async () => {
  const broker = new Broker();
  const sub = await connectKite(broker, { clientId: "sub", protocolVersion: 5 });
  await sub.client.subscribe("p");
  const raw = new RawClient(broker, 5);
  await raw.connect("raw");
  await raw.send(
    publish("p", "{}", {
      properties: { topicAlias: 1, contentType: "application/json", userProperties: [["k", "v"]] },
    }),
  );
  await waitFor(() => sub.messages.length === 1, "the message");
  assert.deepEqual(sub.messages[0].properties, {
    contentType: "application/json",
    userProperties: [["k", "v"]],
  });
  await sub.client.disconnect();
  await broker.close();
});

test("Broker - v5 properties are dropped for a v3.1.1 subscriber", async () => {
  const broker = new Broker();
  const sub = await connectKite(broker, { clientId: "sub", protocolVersion: 4 });
  await sub.client.subscribe("p", { qos: 1 });
  const pub = await connectKite(broker, { clientId: "pub", protocolVersion: 5 });
  await pub.client.publish("p", "x", { qos: 1, properties: { contentType: "text/plain" } });
  await waitFor(() => sub.messages.length === 1, "the message");
  assert.equal(sub.messages[0].properties, undefined);
  await pub.client.disconnect();
  await sub.client.disconnect();
  await broker.close();
});

test("Broker - v5 Message Expiry: a queued message expires while its client is away", async () => {
  const clock = new FakeClock();
  const broker = new Broker({ clock });
  const options = {
    clientId: "away",
    protocolVersion: 5 as const,
    clean: false,
    properties: { sessionExpiryInterval: 3600 },
  };
  const away = await connectKite(broker, options);
  await away.client.subscribe("t", { qos: 1 });
  await away.client.disconnect();
  const pub = await connectKite(broker, { clientId: "pub", protocolVersion: 5 });
  await pub.client.publish("t", "short", { qos: 1, properties: { messageExpiryInterval: 10 } });
  await pub.client.publish("t", "long", { qos: 1, properties: { messageExpiryInterval: 100 } });
  await pause();
  await clock.advance(30_000);
  const back = await connectKite(broker, options);
  await waitFor(() => back.messages.length === 1, "the message still alive");
  await pause();
  assert.equal(back.messages.length, 1);
  assert.equal(str(back.messages[0].payload), "long");
  assert.equal(back.messages[0].properties?.messageExpiryInterval, 70);
  await pub.client.disconnect();
  await back.client.disconnect();
  await broker.close();
});

test("Broker - v5 Message Expiry: an expired retained message is not delivered", async () => {
  const clock = new FakeClock();
  const broker = new Broker({ clock });
  const pub = await connectKite(broker, { clientId: "pub", protocolVersion: 5 });
  await pub.client.publish("r", "brief", {
    qos: 1,
    retain: true,
    properties: { messageExpiryInterval: 5 },
  });
  await pause();
  assert.equal(broker.retained().length, 1);
  await clock.advance(5_000);
  assert.deepEqual(broker.retained(), []);
  const sub = await connectKite(broker, { clientId: "sub", protocolVersion: 5 });
  await sub.client.subscribe("r");
  await pause();
  assert.equal(sub.messages.length, 0);
  await pub.client.disconnect();
  await sub.client.disconnect();
  await broker.close();
});
