/**
 * Shared subscriptions, the same checks against Kite's broker and against mosquitto 2 (which
 * serves `$share` to MQTT 5 and 3.1.1 clients): every message reaches exactly one member of a
 * group, each member gets its share, with the QoS it was granted, and a plain subscription to the
 * same topic gets every message.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Broker } from "../../src/broker/mod.ts";
import type { Message, MqttClient, ProtocolVersion } from "../../mod.ts";
import { Clients } from "../helpers/clients.ts";
import { mosquittoSkipReason, startMosquitto } from "../helpers/mosquitto.ts";
import { within } from "../helpers/wait.ts";

const decoder = new TextDecoder();

function collect(client: MqttClient): Message[] {
  const messages: Message[] = [];
  client.setPublishHandler((message) => {
    messages.push({ ...message, payload: message.payload.slice() });
  });
  return messages;
}

async function until(condition: () => boolean, what: string): Promise<void> {
  await within(
    (async () => {
      while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
    })(),
    10_000,
    what,
  );
}

async function sharedRoundTrip(url: string): Promise<void> {
  await using clients = new Clients({ keepalive: 0, reconnect: false });
  const members: { version: ProtocolVersion; qos: 0 | 1; messages: Message[] }[] = [];
  for (const [version, qos] of [[5, 1], [4, 0], [5, 1]] as const) {
    const client = await clients.connect(url, { protocolVersion: version });
    const messages = collect(client);
    assert.equal(await client.subscribe("$share/workers/jobs/+", { qos }), qos);
    members.push({ version, qos, messages });
  }
  const plain = await clients.connect(url, { protocolVersion: 5 });
  const everything = collect(plain);
  await plain.subscribe("jobs/#", { qos: 1 });
  const publisher = await clients.connect(url, { protocolVersion: 5 });
  const count = 30;
  for (let i = 0; i < count; i++) await publisher.publish(`jobs/${i % 3}`, `j${i}`, { qos: 1 });
  const shared = () => members.flatMap((member) => member.messages);
  await until(() => shared().length >= count && everything.length >= count, "every message");
  const payloads = shared().map((message) => decoder.decode(message.payload)).sort();
  const expected = Array.from({ length: count }, (_, i) => `j${i}`).sort();
  assert.deepEqual(payloads, expected, "each message to exactly one member");
  for (const member of members) {
    assert.ok(member.messages.length > 0, "every member gets a share");
    assert.ok(member.messages.every((message) => message.qos === member.qos));
  }
  assert.equal(everything.length, count);
}

describe("shared subscriptions", () => {
  test("Kite's broker over TCP", async () => {
    await using broker = new Broker();
    const { port } = await broker.listen();
    await sharedRoundTrip(`mqtt://127.0.0.1:${port}`);
  });

  test("mosquitto", { skip: mosquittoSkipReason(), timeout: 30_000 }, async () => {
    await using broker = await startMosquitto();
    await sharedRoundTrip(broker.url);
  });
});
