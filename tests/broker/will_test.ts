import assert from "node:assert/strict";
import { test } from "node:test";
import { Broker } from "../../src/broker/mod.ts";
import { MqttClient } from "../../src/client/clients.ts";
import {
  connectKite,
  FakeClock,
  pause,
  RawClient,
  str,
  text,
  versionName,
  VERSIONS,
  waitFor,
} from "./helpers.ts";

for (const version of VERSIONS) {
  test(`Broker - ${versionName(version)} will is published when the connection is lost`, async () => {
    const broker = new Broker();
    const watcher = await connectKite(broker, { clientId: "watcher" });
    await watcher.client.subscribe("wills/#", { qos: 1 });
    const dying = await connectKite(broker, {
      clientId: "dying",
      protocolVersion: version,
      will: { topic: "wills/dying", payload: "gone", qos: 1 },
    });
    assert.equal(broker.dropClient("dying"), true);
    await waitFor(() => watcher.messages.length === 1, "the will");
    assert.equal(str(watcher.messages[0].payload), "gone");
    await waitFor(() => dying.client.state === "closed", "the client to see the loss");
    await watcher.client.disconnect();
    await broker.close();
  });

  test(`Broker - ${versionName(version)} will is not published after DISCONNECT`, async () => {
    const broker = new Broker();
    const watcher = await connectKite(broker, { clientId: "watcher" });
    await watcher.client.subscribe("wills/#", { qos: 1 });
    const leaving = await connectKite(broker, {
      clientId: "leaving",
      protocolVersion: version,
      will: { topic: "wills/leaving", payload: "gone" },
    });
    await leaving.client.disconnect();
    await pause();
    assert.equal(watcher.messages.length, 0);
    await watcher.client.disconnect();
    await broker.close();
  });
}

test("Broker - a retained will is retained", async () => {
  const broker = new Broker();
  await connectKite(broker, {
    clientId: "dying",
    will: { topic: "status/dying", payload: "offline", retain: true },
  });
  broker.dropClient("dying");
  await waitFor(() => broker.retained().length === 1, "the retained will");
  assert.equal(str(broker.retained()[0].payload), "offline");
  await broker.close();
});

test("Broker - v5 DISCONNECT 0x04 publishes the will", async () => {
  const broker = new Broker();
  const watcher = await connectKite(broker, { clientId: "watcher" });
  await watcher.client.subscribe("w");
  const raw = new RawClient(broker, 5);
  await raw.connect("leaver", {
    will: { topic: "w", payload: text("bye"), qos: 0, retain: false },
  });
  await raw.send({ type: "disconnect", reasonCode: 0x04 });
  await waitFor(() => watcher.messages.length === 1, "the will");
  await watcher.client.disconnect();
  await broker.close();
});

test("Broker - v5 DISCONNECT with an error reason publishes the will", async () => {
  const broker = new Broker();
  const watcher = await connectKite(broker, { clientId: "watcher" });
  await watcher.client.subscribe("w");
  const raw = new RawClient(broker, 5);
  await raw.connect("failing", {
    will: { topic: "w", payload: text("failed"), qos: 0, retain: false },
  });
  await raw.send({ type: "disconnect", reasonCode: 0x80 });
  await waitFor(() => watcher.messages.length === 1, "the will");
  await watcher.client.disconnect();
  await broker.close();
});

test("Broker - v5 will delay: published after the delay", async () => {
  const clock = new FakeClock();
  const broker = new Broker({ clock });
  const watcher = await connectKite(broker, { clientId: "watcher" });
  await watcher.client.subscribe("w");
  await connectKite(broker, {
    clientId: "delayed",
    protocolVersion: 5,
    clean: false,
    properties: { sessionExpiryInterval: 100 },
    will: { topic: "w", payload: "late", properties: { willDelayInterval: 30 } },
  });
  broker.dropClient("delayed");
  await clock.advance(29_000);
  assert.equal(watcher.messages.length, 0);
  await clock.advance(1_000);
  await waitFor(() => watcher.messages.length === 1, "the delayed will");
  await watcher.client.disconnect();
  await broker.close();
});

test("Broker - v5 will delay: a reconnect before the delay cancels the will", async () => {
  const clock = new FakeClock();
  const broker = new Broker({ clock });
  const watcher = await connectKite(broker, { clientId: "watcher" });
  await watcher.client.subscribe("w");
  const options = {
    clientId: "delayed",
    protocolVersion: 5 as const,
    clean: false,
    properties: { sessionExpiryInterval: 100 },
    will: { topic: "w", payload: "late", properties: { willDelayInterval: 30 } },
  };
  await connectKite(broker, options);
  broker.dropClient("delayed");
  await clock.advance(10_000);
  const back = await connectKite(broker, options);
  await clock.advance(60_000);
  await pause();
  assert.equal(watcher.messages.length, 0);
  await back.client.disconnect();
  await watcher.client.disconnect();
  await broker.close();
});

test("Broker - v5 will delay is cut short by session expiry", async () => {
  const clock = new FakeClock();
  const broker = new Broker({ clock });
  const watcher = await connectKite(broker, { clientId: "watcher" });
  await watcher.client.subscribe("w");
  await connectKite(broker, {
    clientId: "delayed",
    protocolVersion: 5,
    properties: { sessionExpiryInterval: 5 },
    will: { topic: "w", payload: "late", properties: { willDelayInterval: 30 } },
  });
  broker.dropClient("delayed");
  await clock.advance(5_000);
  await waitFor(() => watcher.messages.length === 1, "the will");
  await watcher.client.disconnect();
  await broker.close();
});

for (const version of VERSIONS) {
  test(`Broker - ${versionName(version)} keepalive is enforced at 1.5 times`, async () => {
    const clock = new FakeClock();
    const broker = new Broker({ clock });
    const watcher = await connectKite(broker, { clientId: "watcher" });
    await watcher.client.subscribe("w");
    // The client's own clock never moves, so it never pings: it goes silent.
    const silent = new MqttClient(broker.connectClient());
    silent.addEventListener("error", () => {});
    await silent.connect({
      clientId: "silent",
      protocolVersion: version,
      keepalive: 10,
      reconnect: false,
      clock: new FakeClock(),
      will: { topic: "w", payload: "timed out" },
    });
    await clock.advance(14_999);
    assert.equal(silent.state, "connected");
    await clock.advance(1);
    await waitFor(() => silent.state === "closed", "the broker to close the connection");
    await waitFor(() => watcher.messages.length === 1, "the will");
    await watcher.client.disconnect();
    await broker.close();
  });
}

test("Broker - any packet restarts the keepalive deadline", async () => {
  const clock = new FakeClock();
  const broker = new Broker({ clock });
  const raw = new RawClient(broker, 5);
  await raw.connect("k", { keepalive: 2 });
  await clock.advance(2_900);
  await raw.send({ type: "pingreq" });
  await raw.expect("pingresp");
  await clock.advance(2_900);
  assert.equal(raw.closed, false);
  await clock.advance(100);
  assert.deepEqual(await raw.waitClosed(), [{ type: "disconnect", reasonCode: 0x8d }]);
  await broker.close();
});
