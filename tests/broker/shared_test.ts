/**
 * Shared subscriptions `$share/{ShareName}/{filter}` in the local broker (MQTT 5 section 4.8.2,
 * served to 3.1.1 clients too, as mosquitto does): one member per message, in turn, with that
 * member's QoS; what a member that goes away had not acknowledged goes to another; no retained
 * messages; No Local is a protocol error.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { Broker } from "../../src/broker/mod.ts";
import { connectKite, RawClient, str, text, waitFor } from "./helpers.ts";

const count = (messages: { payload: Uint8Array }[]) => messages.length;

test("Broker - shared subscription: each message goes to one member in turn, v5 and v3.1.1 members alike; a plain subscriber and another group get every one", async () => {
  const broker = new Broker();
  const a = await connectKite(broker, { clientId: "a", protocolVersion: 5 });
  const b = await connectKite(broker, { clientId: "b", protocolVersion: 4 });
  const c = await connectKite(broker, { clientId: "c", protocolVersion: 5 });
  const plain = await connectKite(broker, { clientId: "plain", protocolVersion: 4 });
  const other = await connectKite(broker, { clientId: "other", protocolVersion: 5 });
  for (const member of [a, b, c]) await member.client.subscribe("$share/g/jobs/+", { qos: 1 });
  await plain.client.subscribe("jobs/#", { qos: 1 });
  await other.client.subscribe("$share/h/jobs/#", { qos: 1 });
  const publisher = await connectKite(broker, { clientId: "pub" });
  for (let i = 0; i < 9; i++) await publisher.client.publish("jobs/x", `m${i}`, { qos: 1 });
  await waitFor(() => count(plain.messages) === 9 && count(other.messages) === 9, "every copy");
  await waitFor(() => count(a.messages) + count(b.messages) + count(c.messages) === 9, "shares");
  // Round robin: each member every third message, in order.
  assert.deepEqual(a.messages.map((m) => str(m.payload)), ["m0", "m3", "m6"]);
  assert.deepEqual(b.messages.map((m) => str(m.payload)), ["m1", "m4", "m7"]);
  assert.deepEqual(c.messages.map((m) => str(m.payload)), ["m2", "m5", "m8"]);
  assert.equal(a.messages[0].topic, "jobs/x");
  for (const each of [a, b, c, plain, other, publisher]) await each.client.disconnect();
  await broker.close();
});

test("Broker - shared subscription: a message goes with the QoS of the member that gets it [MQTT-4.8.2-3]", async () => {
  const broker = new Broker();
  const low = await connectKite(broker, { clientId: "low", protocolVersion: 5 });
  const high = await connectKite(broker, { clientId: "high", protocolVersion: 5 });
  assert.equal(await low.client.subscribe("$share/g/t", { qos: 0 }), 0);
  assert.equal(await high.client.subscribe("$share/g/t", { qos: 2 }), 2);
  const publisher = await connectKite(broker, { clientId: "pub" });
  await publisher.client.publish("t", "1", { qos: 1 });
  await publisher.client.publish("t", "2", { qos: 1 });
  await waitFor(() => low.messages.length === 1 && high.messages.length === 1, "both");
  assert.equal(low.messages[0].qos, 0);
  assert.equal(high.messages[0].qos, 1);
  for (const each of [low, high, publisher]) await each.client.disconnect();
  await broker.close();
});

test("Broker - shared subscription: a member that goes away with a QoS 1 message unacknowledged, its session kept, hands it to another member at once", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 4);
  await raw.connect("slow", { clean: false });
  await raw.send({
    type: "subscribe",
    packetId: 1,
    subscriptions: [{ topicFilter: "$share/g/work", qos: 1 }],
  });
  assert.deepEqual((await raw.expect("suback")).reasonCodes, [1]);
  const steady = await connectKite(broker, { clientId: "steady", protocolVersion: 5 });
  await steady.client.subscribe("$share/g/work", { qos: 1 });
  const publisher = await connectKite(broker, { clientId: "pub" });
  // The raw member's turn first: it takes the PUBLISH and never acknowledges it.
  await publisher.client.publish("work", "job-1", { qos: 1 });
  const sent = await raw.expect("publish");
  assert.equal(str(sent.payload), "job-1");
  assert.equal(steady.messages.length, 0);
  await raw.close();
  await waitFor(() => steady.messages.length === 1, "the job handed over");
  assert.equal(str(steady.messages[0].payload), "job-1");
  assert.equal(steady.messages[0].qos, 1);
  // Not kept for the member that left: its session holds nothing in flight.
  const slow = broker.sessions().find((session) => session.clientId === "slow")!;
  assert.equal(slow.inflight, 0);
  for (const each of [steady, publisher]) await each.client.disconnect();
  await broker.close();
});

test("Broker - shared subscription: messages queued behind a member's Receive Maximum go to another member when it disconnects, and a clean member's in-flight ones too", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 5);
  await raw.connect("tight", { properties: { receiveMaximum: 1 } });
  await raw.send({
    type: "subscribe",
    packetId: 1,
    subscriptions: [{ topicFilter: "$share/g/work", qos: 1 }],
  });
  await raw.expect("suback");
  const publisher = await connectKite(broker, { clientId: "pub" });
  for (let i = 0; i < 3; i++) await publisher.client.publish("work", `job-${i}`, { qos: 1 });
  assert.equal(str((await raw.expect("publish")).payload), "job-0");
  const steady = await connectKite(broker, { clientId: "steady", protocolVersion: 5 });
  await steady.client.subscribe("$share/g/work", { qos: 1 });
  await raw.close();
  await waitFor(() => steady.messages.length === 3, "every job handed over");
  assert.deepEqual(steady.messages.map((m) => str(m.payload)).sort(), ["job-0", "job-1", "job-2"]);
  for (const each of [steady, publisher]) await each.client.disconnect();
  await broker.close();
});

test("Broker - shared subscription: a QoS 2 message already sent stays with its member and is completed when it reconnects [MQTT-4.8.2-4]", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 4);
  await raw.connect("q2", { clean: false });
  await raw.send({
    type: "subscribe",
    packetId: 1,
    subscriptions: [{ topicFilter: "$share/g/work", qos: 2 }],
  });
  await raw.expect("suback");
  const steady = await connectKite(broker, { clientId: "steady" });
  await steady.client.subscribe("$share/g/work", { qos: 2 });
  const publisher = await connectKite(broker, { clientId: "pub" });
  await publisher.client.publish("work", "once", { qos: 2 });
  const first = await raw.expect("publish");
  await raw.close();
  await waitFor(() => raw.closed, "the connection closed");
  const back = new RawClient(broker, 4);
  const connack = await back.connect("q2", { clean: false });
  assert.equal(connack.sessionPresent, true);
  const again = await back.expect("publish");
  assert.equal(again.packetId, first.packetId);
  assert.equal(again.dup, true);
  assert.equal(steady.messages.length, 0, "never sent to another member");
  await back.close();
  for (const each of [steady, publisher]) await each.client.disconnect();
  await broker.close();
});

test("Broker - shared subscription: with every member away, a QoS 1 message waits in one member's session", async () => {
  const broker = new Broker();
  const member = await connectKite(broker, { clientId: "m", clean: false });
  await member.client.subscribe("$share/g/t", { qos: 1 });
  broker.dropClient("m");
  await waitFor(() => broker.sessions().find((s) => s.clientId === "m")?.connected === false);
  const publisher = await connectKite(broker, { clientId: "pub" });
  await publisher.client.publish("t", "later", { qos: 1 });
  assert.equal(broker.sessions().find((s) => s.clientId === "m")?.queued, 1);
  const back = await connectKite(broker, { clientId: "m", clean: false });
  await waitFor(() => back.messages.length === 1, "the queued message");
  assert.equal(str(back.messages[0].payload), "later");
  for (const each of [back, publisher]) await each.client.disconnect();
  await broker.close();
});

test("Broker - shared subscription: no retained message on subscribing; unsubscribing leaves the group, the last one ends it", async () => {
  const broker = new Broker();
  const publisher = await connectKite(broker, { clientId: "pub" });
  await publisher.client.publish("t", "kept", { qos: 1, retain: true });
  const a = await connectKite(broker, { clientId: "a", protocolVersion: 5 });
  const b = await connectKite(broker, { clientId: "b", protocolVersion: 4 });
  await a.client.subscribe("$share/g/t", { qos: 1 });
  await b.client.subscribe("$share/g/t", { qos: 1 });
  await a.client.subscribe("t", { qos: 1 }); // a plain subscription does get it
  await waitFor(() => a.messages.length === 1, "the retained message on the plain one");
  assert.equal(b.messages.length, 0);
  await b.client.unsubscribe("$share/g/t");
  for (let i = 0; i < 2; i++) await publisher.client.publish("t", `n${i}`, { qos: 1 });
  // a alone in the group now: both shares, and both plain copies.
  await waitFor(() => a.messages.length === 5, "a's copies");
  assert.equal(b.messages.length, 0);
  await a.client.unsubscribe("$share/g/t");
  await a.client.unsubscribe("t");
  await publisher.client.publish("t", "none", { qos: 1 });
  assert.equal(a.messages.length, 5);
  for (const each of [a, b, publisher]) await each.client.disconnect();
  await broker.close();
});

test("Broker - v5: No Local on a shared subscription is a protocol error: DISCONNECT 0x82 [MQTT-3.8.3-4]", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 5);
  const connack = await raw.connect("nl");
  assert.equal(connack.properties?.sharedSubscriptionAvailable, true);
  // The codec will not encode it: the bytes by hand, options 0x05 (QoS 1, No Local).
  await raw.sendBytes([0x82, 16, 0, 1, 0, 0, 10, ...text("$share/g/t"), 0x05]);
  const rest = await raw.waitClosed();
  assert.deepEqual(rest.map((packet) => packet.type), ["disconnect"]);
  assert.equal((rest[0] as { reasonCode?: number }).reasonCode, 0x82);
  await broker.close();
});

test("Broker - a shared subscription with a bad share name is refused (0x8F on v5)", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 5);
  await raw.connect("bad");
  // The codec will not encode them: the bytes by hand.
  await raw.sendBytes([
    0x82,
    28,
    0,
    1,
    0,
    0,
    11,
    ...text("$share/g+/t"),
    1,
    0,
    8,
    ...text("$share/g"),
    1,
  ]);
  assert.deepEqual((await raw.expect("suback")).reasonCodes, [0x8f, 0x8f]);
  await raw.close();
  await broker.close();
});

test("Broker - sessions() lists a shared subscription under its whole filter", async () => {
  const broker = new Broker();
  const a = await connectKite(broker, { clientId: "a", protocolVersion: 5 });
  await a.client.subscribe("$share/g/x/#", { qos: 2, properties: { subscriptionIdentifier: 4 } });
  const [info] = broker.sessions();
  assert.equal(info.subscriptions[0].topicFilter, "$share/g/x/#");
  assert.equal(info.subscriptions[0].subscriptionIdentifier, 4);
  const publisher = await connectKite(broker, { clientId: "pub" });
  await publisher.client.publish("x/y", text("z"), { qos: 2 });
  await waitFor(() => a.messages.length === 1, "the message");
  assert.deepEqual(a.messages[0].properties?.subscriptionIdentifiers, [4]);
  for (const each of [a, publisher]) await each.client.disconnect();
  await broker.close();
});
