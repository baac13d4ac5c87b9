import assert from "node:assert/strict";
import { test } from "node:test";
import { Broker } from "../../src/broker/mod.ts";
import type { DisconnectEventDetail } from "../../src/client/events.ts";
import {
  connectKite,
  FakeClock,
  pause,
  RawClient,
  str,
  versionName,
  VERSIONS,
  waitFor,
} from "./helpers.ts";

for (const version of [4, 5] as const) {
  const persistent = version === 5
    ? { clean: false, properties: { sessionExpiryInterval: 3600 } }
    : { clean: false };
  test(`Broker - ${versionName(version)} persistent session queues messages while away`, async () => {
    const broker = new Broker();
    const first = await connectKite(broker, {
      clientId: "p",
      protocolVersion: version,
      ...persistent,
    });
    assert.equal(first.client.sessionPresent, false);
    await first.client.subscribe("q/#", { qos: 2 });
    await first.client.disconnect();
    const pub = await connectKite(broker, { clientId: "pub" });
    await pub.client.publish("q/1", "one", { qos: 1 });
    await pub.client.publish("q/2", "two", { qos: 2 });
    await pub.client.publish("q/0", "zero", { qos: 0 });
    await pause();
    const [session] = broker.sessions().filter((s) => s.clientId === "p");
    assert.equal(session.connected, false);
    assert.equal(session.queued, 2);
    const second = await connectKite(broker, {
      clientId: "p",
      protocolVersion: version,
      ...persistent,
    });
    assert.equal(second.client.sessionPresent, true);
    await waitFor(() => second.messages.length === 2, "the queued messages");
    assert.deepEqual(second.messages.map((m) => [m.topic, str(m.payload), m.qos]), [
      ["q/1", "one", 1],
      ["q/2", "two", 2],
    ]);
    await pub.client.disconnect();
    await second.client.disconnect();
    await broker.close();
  });
}

for (const version of VERSIONS) {
  test(`Broker - ${versionName(version)} clean session discards the old one`, async () => {
    const broker = new Broker();
    const first = await connectKite(broker, { clientId: "c", protocolVersion: version });
    await first.client.subscribe("t", { qos: 1 });
    await first.client.disconnect();
    assert.deepEqual(broker.sessions(), []);
    const second = await connectKite(broker, { clientId: "c", protocolVersion: version });
    assert.equal(second.client.sessionPresent, false);
    const pub = await connectKite(broker, { clientId: "pub" });
    await pub.client.publish("t", "x", { qos: 1 });
    await pause();
    assert.equal(second.messages.length, 0);
    await pub.client.disconnect();
    await second.client.disconnect();
    await broker.close();
  });
}

test("Broker - v3.1.1 clean session on a persistent one starts afresh", async () => {
  const broker = new Broker();
  const first = await connectKite(broker, { clientId: "c", clean: false });
  await first.client.subscribe("t", { qos: 1 });
  await first.client.disconnect();
  assert.equal(broker.sessions().length, 1);
  const second = await connectKite(broker, { clientId: "c", clean: true });
  assert.equal(second.client.sessionPresent, false);
  assert.deepEqual(broker.sessions()[0].subscriptions, []);
  await second.client.disconnect();
  await broker.close();
});

test("Broker - the queue is bounded: messages past maxQueuedMessages are dropped", async () => {
  const broker = new Broker({ maxQueuedMessages: 3 });
  const away = await connectKite(broker, { clientId: "away", clean: false });
  await away.client.subscribe("t", { qos: 1 });
  await away.client.disconnect();
  const pub = await connectKite(broker, { clientId: "pub" });
  for (let i = 0; i < 5; i++) await pub.client.publish("t", `${i}`, { qos: 1 });
  await pause();
  const session = broker.sessions().find((s) => s.clientId === "away")!;
  assert.equal(session.queued, 3);
  assert.equal(session.dropped, 2);
  const back = await connectKite(broker, { clientId: "away", clean: false });
  await waitFor(() => back.messages.length === 3, "three messages");
  assert.deepEqual(back.messages.map((m) => str(m.payload)), ["0", "1", "2"]);
  await pub.client.disconnect();
  await back.client.disconnect();
  await broker.close();
});

test("Broker - unacknowledged QoS 1 is resent with DUP on reconnect", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 4);
  await raw.connect("raw", { clean: false });
  await raw.send({ type: "subscribe", packetId: 1, subscriptions: [{ topicFilter: "t", qos: 1 }] });
  await raw.expect("suback");
  const pub = await connectKite(broker, { clientId: "pub" });
  await pub.client.publish("t", "again", { qos: 1 });
  const first = await raw.expect("publish");
  assert.equal(first.dup, false);
  await raw.close();
  await waitFor(() => !broker.sessions().find((s) => s.clientId === "raw")!.connected, "away");
  const again = new RawClient(broker, 4);
  const connack = await again.connect("raw", { clean: false });
  assert.equal(connack.sessionPresent, true);
  const resent = await again.expect("publish");
  assert.equal(resent.dup, true);
  assert.equal(resent.packetId, first.packetId);
  assert.equal(str(resent.payload), "again");
  await pub.client.disconnect();
  await broker.close();
});

test("Broker - QoS 2 outbound after PUBREC resumes with PUBREL on reconnect", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 4);
  await raw.connect("raw", { clean: false });
  await raw.send({ type: "subscribe", packetId: 1, subscriptions: [{ topicFilter: "t", qos: 2 }] });
  await raw.expect("suback");
  const pub = await connectKite(broker, { clientId: "pub" });
  await pub.client.publish("t", "x", { qos: 2 });
  const publish = await raw.expect("publish");
  await raw.send({ type: "pubrec", packetId: publish.packetId! });
  await raw.expect("pubrel");
  await raw.close();
  await waitFor(() => !broker.sessions().find((s) => s.clientId === "raw")!.connected, "away");
  const again = new RawClient(broker, 4);
  await again.connect("raw", { clean: false });
  assert.equal((await again.expect("pubrel")).packetId, publish.packetId);
  await again.send({ type: "pubcomp", packetId: publish.packetId! });
  await pause();
  assert.equal(broker.sessions().find((s) => s.clientId === "raw")!.inflight, 0);
  await pub.client.disconnect();
  await broker.close();
});

test("Broker - session takeover closes the first connection (v3.1.1)", async () => {
  const broker = new Broker();
  const first = await connectKite(broker, { clientId: "same", clean: false });
  await first.client.subscribe("t", { qos: 1 });
  const second = await connectKite(broker, { clientId: "same", clean: false });
  assert.equal(second.client.sessionPresent, true);
  await waitFor(() => first.client.state === "closed", "the first client to be closed");
  const pub = await connectKite(broker, { clientId: "pub" });
  await pub.client.publish("t", "to the second", { qos: 1 });
  await waitFor(() => second.messages.length === 1, "the message");
  assert.equal(first.messages.length, 0);
  assert.equal(broker.sessions().filter((s) => s.clientId === "same").length, 1);
  await pub.client.disconnect();
  await second.client.disconnect();
  await broker.close();
});

test("Broker - v5 session takeover sends DISCONNECT 0x8E to the first", async () => {
  const broker = new Broker();
  const first = await connectKite(broker, { clientId: "same", protocolVersion: 5 });
  let detail: DisconnectEventDetail | undefined;
  first.client.addEventListener("disconnect", (event) => {
    detail = (event as CustomEvent<DisconnectEventDetail>).detail;
  });
  const raw = new RawClient(broker, 5);
  await raw.connect("same");
  await waitFor(() => first.client.state === "closed", "the first client to be closed");
  assert.equal(detail?.packet?.reasonCode, 0x8e);
  await broker.close();
});

test("Broker - v5 session expiry ends the session after the interval", async () => {
  const clock = new FakeClock();
  const broker = new Broker({ clock });
  const c = await connectKite(broker, {
    clientId: "exp",
    protocolVersion: 5,
    clean: false,
    properties: { sessionExpiryInterval: 10 },
  });
  await c.client.subscribe("t", { qos: 1 });
  await c.client.disconnect();
  assert.equal(broker.sessions().length, 1);
  await clock.advance(9_999);
  assert.equal(broker.sessions().length, 1);
  await clock.advance(1);
  assert.deepEqual(broker.sessions(), []);
  await broker.close();
});

test("Broker - v5 DISCONNECT may change the Session Expiry Interval, not from 0", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 5);
  await raw.connect("z");
  await raw.send({ type: "disconnect", properties: { sessionExpiryInterval: 60 } });
  assert.deepEqual(await raw.waitClosed(), [{ type: "disconnect", reasonCode: 0x82 }]);
  const kept = new RawClient(broker, 5);
  await kept.connect("k", { properties: { sessionExpiryInterval: 5 } });
  await kept.send({ type: "disconnect", properties: { sessionExpiryInterval: 0 } });
  await kept.waitClosed();
  assert.deepEqual(broker.sessions(), []);
  await broker.close();
});
