/**
 * MQTT 5 request / response end to end: a responder client and a requester client, through a
 * real mosquitto and through Kite's own broker, with concurrent requests matched by their
 * Correlation Data.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { type Message, MqttClient, MqttError } from "../../mod.ts";
import { Broker } from "../../src/broker/mod.ts";
import { mosquittoSkipReason, sharedMosquitto } from "../helpers/mosquitto.ts";
import { Clients } from "../helpers/clients.ts";

const skip = mosquittoSkipReason();
const decoder = new TextDecoder();
const text = (message: Message): string => decoder.decode(message.payload);

/** Twenty requests at once, "a b" → "a+b", each answer matched to its question. */
async function concurrentSums(requester: MqttClient, responder: MqttClient): Promise<void> {
  const answered: string[] = [];
  // Every answer waits until all twenty requests are in, then they go out last first.
  const waiting: (() => void)[] = [];
  const stop = responder.respond("svc/add/+", async (request) => {
    const [a, b] = decoder.decode(request.payload).split(" ").map(Number);
    answered.push(request.topic);
    const answer = new Promise<void>((resolve) => waiting.push(resolve));
    if (waiting.length === 20) { for (const resolve of waiting.reverse()) resolve(); }
    await answer;
    return String(a + b);
  }, { qos: 1 });
  assert.equal(await stop.ready, 1);
  const replies = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      requester.request(`svc/add/${i % 3}`, `${i} ${i * 10}`, {
        timeout: 10_000,
        qos: i % 2 === 0 ? 0 : 1,
      })),
  );
  assert.deepEqual(replies.map(text), Array.from({ length: 20 }, (_, i) => String(i * 11)));
  assert.equal(answered.length, 20);
  for (const reply of replies) {
    assert.equal(reply.topic, `kite/response/${requester.clientId}`);
    assert.equal(reply.properties?.correlationData?.length, 16);
  }
  await stop();
  // Once stopped, nobody answers: the request times out (short, real time: nothing to wait for).
  await assert.rejects(
    requester.request("svc/add/0", "1 1", { timeout: 300 }),
    (error) => error instanceof MqttError && /no response/.test(error.message),
  );
}

describe("request / response with mosquitto", { skip }, () => {
  const broker = sharedMosquitto();

  test("mosquitto v5: concurrent requests between two clients, each matched by Correlation Data", {
    skip,
    timeout: 30_000,
  }, async () => {
    await using clients = new Clients({ protocolVersion: 5, reconnect: false });
    const responder = await clients.connect(broker.url, { clientId: "kite-responder" });
    const requester = await clients.connect(broker.url, {
      clientId: "kite-requester",
      properties: { requestResponseInformation: true },
    });
    await concurrentSums(requester, responder);
  });

  test("mosquitto v5: one client answers its own requests", { skip, timeout: 30_000 }, async () => {
    await using clients = new Clients({ protocolVersion: 5, reconnect: false });
    const client = await clients.connect(broker.url, { clientId: "kite-both" });
    await concurrentSums(client, client);
  });

  test("mosquitto v3.1.1: request rejects, naming MQTT 5", { skip, timeout: 30_000 }, async () => {
    await using clients = new Clients({ protocolVersion: 4, reconnect: false });
    const client = await clients.connect(broker.url);
    await assert.rejects(client.request("svc", "x"), /needs MQTT 5/);
  });
});

test("local broker v5: concurrent requests between two clients, each matched by Correlation Data", {
  timeout: 30_000,
}, async () => {
  const broker = new Broker();
  const responder = new MqttClient(broker.connectClient());
  const requester = new MqttClient(broker.connectClient());
  try {
    await responder.connect({ clientId: "responder", protocolVersion: 5, keepalive: 0 });
    await requester.connect({ clientId: "requester", protocolVersion: 5, keepalive: 0 });
    await concurrentSums(requester, responder);
  } finally {
    await requester.disconnect();
    await responder.disconnect();
    await broker.close();
  }
});
