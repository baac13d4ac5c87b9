/**
 * Automatic topic aliases (`topicAliases: "auto"`), byte by byte: the first PUBLISH to a topic
 * carries the topic and a new alias, later ones an empty topic and the alias; the broker's Topic
 * Alias Maximum bounds them; MQTT 3.1.1 and a maximum of 0 get none; a publish may not set its
 * own alias.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MqttClient } from "../../src/client/clients.ts";
import type { ConnackPacket } from "../../src/packet/types.ts";
import { connected, utf8Hex } from "./harness.ts";

function connack(topicAliasMaximum?: number): ConnackPacket {
  return {
    type: "connack",
    sessionPresent: false,
    reasonCode: 0,
    ...(topicAliasMaximum === undefined ? {} : { properties: { topicAliasMaximum } }),
  };
}

describe("topic aliases auto", () => {
  test("v5: the topic and alias 1 first, then an empty topic and alias 1; a second topic gets alias 2", async () => {
    const { client, broker } = await connected(5, {
      options: { topicAliases: "auto" },
      connack: connack(2),
    });
    await client.publish("a/b/c", "hi");
    // 0x30, length 13: topic "a/b/c", properties (3 bytes: Topic Alias 1), payload "hi".
    assert.equal((await broker.next()).hex, `30 0d 00 05 ${utf8Hex("a/b/c")} 03 23 00 01 68 69`);
    await client.publish("a/b/c", "hi");
    // length 8: an empty topic.
    assert.equal((await broker.next()).hex, "30 08 00 00 03 23 00 01 68 69");
    const qos1 = client.publish("x/y/z", "hi", { qos: 1 });
    assert.equal(
      (await broker.next()).hex,
      `32 0f 00 05 ${utf8Hex("x/y/z")} 00 01 03 23 00 02 68 69`,
    );
    await broker.send("40 03 00 01 00");
    await qos1;
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("v5 with Topic Alias Maximum 2: a third topic takes the alias of the least recently used one", async () => {
    const { client, broker } = await connected(5, {
      options: { topicAliases: "auto" },
      connack: connack(2),
    });
    const sent: [string, number | undefined][] = [];
    for (const topic of ["one/1", "two/2", "one/1", "three/3", "one/1"]) {
      await client.publish(topic, "x");
      const publish = await broker.expect("publish");
      sent.push([publish.topic, publish.properties?.topicAlias]);
    }
    assert.deepEqual(sent, [["one/1", 1], ["two/2", 2], ["", 1], ["three/3", 2], ["", 1]]);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("v5 with no Topic Alias Maximum (0): the PUBLISH goes as without the option", async () => {
    const { client, broker } = await connected(5, {
      options: { topicAliases: "auto" },
      connack: connack(),
    });
    for (let i = 0; i < 2; i++) {
      await client.publish("a/b/c", "hi");
      assert.equal((await broker.next()).hex, `30 0a 00 05 ${utf8Hex("a/b/c")} 00 68 69`);
    }
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("v3.1.1: no aliases", async () => {
    const { client, broker } = await connected(4, { options: { topicAliases: "auto" } });
    for (let i = 0; i < 2; i++) {
      await client.publish("a/b/c", "hi");
      assert.equal((await broker.next()).hex, `30 09 00 05 ${utf8Hex("a/b/c")} 68 69`);
    }
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("a publish that sets properties.topicAlias rejects with TypeError; nothing is sent", async () => {
    const { client, broker } = await connected(5, {
      options: { topicAliases: "auto" },
      connack: connack(5),
    });
    await assert.rejects(
      client.publish("a/b/c", "hi", { qos: 1, properties: { topicAlias: 1 } }),
      TypeError,
    );
    assert.deepEqual(client.pending, { inflight: 0, waiting: 0 });
    await client.publish("a/b/c", "hi");
    assert.equal((await broker.next()).hex, `30 0d 00 05 ${utf8Hex("a/b/c")} 03 23 00 01 68 69`);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("an unknown topicAliases value rejects connect with TypeError", async () => {
    const client = new MqttClient(() => Promise.reject(new Error("never dialed")));
    await assert.rejects(
      client.connect({ protocolVersion: 5, topicAliases: "always" as "auto" }),
      TypeError,
    );
  });
});
