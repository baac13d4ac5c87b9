import assert from "node:assert/strict";
import { test } from "node:test";
import { Broker } from "../../src/broker/mod.ts";
import { connectKite, pause, str, versionName, VERSIONS, waitFor } from "./helpers.ts";

for (const version of VERSIONS) {
  test(`Broker - ${versionName(version)} retained message is delivered on subscribe`, async () => {
    const broker = new Broker();
    const pub = await connectKite(broker, { clientId: "pub", protocolVersion: version });
    await pub.client.publish("r/a", "kept", { qos: 1, retain: true });
    await pub.client.publish("r/b", "kept too", { qos: 2, retain: true });
    await pub.client.publish("other", "no", { qos: 0, retain: true });
    await pause();
    assert.deepEqual(broker.retained().map((m) => m.topic).sort(), ["other", "r/a", "r/b"]);
    const sub = await connectKite(broker, { clientId: "sub", protocolVersion: version });
    await sub.client.subscribe("r/#", { qos: 1 });
    await waitFor(() => sub.messages.length === 2, "two retained messages");
    const got = sub.messages.map((m) => [m.topic, str(m.payload), m.qos, m.retain]).sort();
    assert.deepEqual(got, [["r/a", "kept", 1, true], ["r/b", "kept too", 1, true]]);
    await pub.client.disconnect();
    await sub.client.disconnect();
    await broker.close();
  });
}

test("Broker - a live message is forwarded with RETAIN cleared", async () => {
  const broker = new Broker();
  const sub = await connectKite(broker, { clientId: "sub" });
  await sub.client.subscribe("r", { qos: 1 });
  const pub = await connectKite(broker, { clientId: "pub" });
  await pub.client.publish("r", "live", { qos: 1, retain: true });
  await waitFor(() => sub.messages.length === 1, "the message");
  assert.equal(sub.messages[0].retain, false);
  assert.equal(broker.retained().length, 1);
  await pub.client.disconnect();
  await sub.client.disconnect();
  await broker.close();
});

test("Broker - a retained message with an empty payload clears the topic", async () => {
  const broker = new Broker();
  const pub = await connectKite(broker, { clientId: "pub" });
  await pub.client.publish("r", "x", { qos: 1, retain: true });
  await pub.client.publish("r", "y", { qos: 1, retain: true });
  await pause();
  assert.deepEqual(broker.retained().map((m) => str(m.payload)), ["y"]);
  await pub.client.publish("r", "", { qos: 1, retain: true });
  await pause();
  assert.deepEqual(broker.retained(), []);
  const sub = await connectKite(broker, { clientId: "sub" });
  await sub.client.subscribe("#");
  await pause();
  assert.equal(sub.messages.length, 0);
  await pub.client.disconnect();
  await sub.client.disconnect();
  await broker.close();
});

test("Broker - retained() returns copies", async () => {
  const broker = new Broker();
  const pub = await connectKite(broker, { clientId: "pub" });
  await pub.client.publish("r", "abc", { qos: 1, retain: true });
  await pause();
  broker.retained()[0].payload[0] = 0x7a;
  assert.equal(str(broker.retained()[0].payload), "abc");
  await pub.client.disconnect();
  await broker.close();
});
