/**
 * Acknowledging after processing, byte by byte: in manual mode PUBACK and PUBREC go out only on
 * `ack()`, and always in the order the PUBLISHes came; in automatic mode when the consumer takes
 * the message; an iterator left early hands back what it had not yielded; and an `ack()` that
 * outlives its connection.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MqttClient } from "../../src/client/clients.ts";
import type { Dialer } from "../../src/client/reconnect.ts";
import type { Message } from "../../src/client/types.ts";
import type { ProtocolVersion } from "../../src/packet/types.ts";
import {
  assertQuiet,
  connected,
  FakeBroker,
  FakeClock,
  nextEvent,
  utf8Hex,
  versionName,
  VERSIONS,
} from "./harness.ts";

/** A PUBLISH from the broker, as `version` writes it, with payload `m<packetId>`. */
function incoming(
  version: ProtocolVersion,
  qos: 0 | 1 | 2,
  packetId: number,
  { dup = false, topic = "a/b" } = {},
): string {
  const first = 0x30 | (dup ? 8 : 0) | (qos << 1);
  const body = [
    `00 ${topic.length.toString(16).padStart(2, "0")}`,
    utf8Hex(topic),
    qos > 0 ? `00 ${packetId.toString(16).padStart(2, "0")}` : "",
    version === 5 ? "00" : "",
    utf8Hex(`m${packetId}`),
  ].filter((part) => part !== "").join(" ");
  const length = body.split(" ").length;
  return `${first.toString(16)} ${length.toString(16).padStart(2, "0")} ${body}`;
}

/** The PUBACK (QoS 1) or PUBREC (QoS 2) of `packetId`, in hex. */
function ackHex(qos: 1 | 2, packetId: number): string {
  return `${qos === 1 ? "40" : "50"} 02 00 ${packetId.toString(16).padStart(2, "0")}`;
}

/** The next `count` messages of `iterator`. */
async function read(iterator: AsyncIterator<Message>, count: number): Promise<Message[]> {
  const messages: Message[] = [];
  for (let i = 0; i < count; i++) messages.push((await iterator.next()).value!);
  return messages;
}

for (const version of VERSIONS) {
  const v = versionName(version);

  describe(`ack manual ${v}`, () => {
    test(`ack manual ${v}: PUBACK only on ack(), and in the order the PUBLISHes came however they are acked [MQTT-4.6.0-2]`, async () => {
      const { client, broker } = await connected(version);
      const iterator = client.messages("a/#", { ack: "manual" });
      await broker.send([1, 2, 3].map((id) => incoming(version, 1, id)).join(" "));
      const [one, two, three] = await read(iterator, 3);
      await assertQuiet(broker);
      three.ack();
      two.ack();
      await assertQuiet(broker);
      one.ack();
      for (const id of [1, 2, 3]) assert.equal((await broker.next()).hex, ackHex(1, id));
      await assertQuiet(broker);
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`ack manual ${v}: QoS 1 and 2 interleaved: PUBACKs and PUBRECs leave in arrival order [MQTT-4.6.0-3]`, async () => {
      const { client, broker } = await connected(version);
      const iterator = client.messages(undefined, { ack: "manual" });
      await broker.send(
        [incoming(version, 1, 1), incoming(version, 2, 2), incoming(version, 1, 3)].join(" "),
      );
      const [one, two, three] = await read(iterator, 3);
      two.ack();
      await assertQuiet(broker);
      one.ack();
      assert.equal((await broker.next()).hex, ackHex(1, 1));
      assert.equal((await broker.next()).hex, ackHex(2, 2));
      await assertQuiet(broker);
      three.ack();
      assert.equal((await broker.next()).hex, ackHex(1, 3));
      await broker.send("62 02 00 02");
      assert.equal((await broker.next()).hex, "70 02 00 02");
      await Promise.all([client.disconnect(), broker.closed()]);
    });
  });
}

describe("ack manual with a handler", () => {
  test("ack manual handler: the PUBACK waits for ack(), which may come after the handler returned; a QoS 0 message's ack() sends nothing", async () => {
    const { client, broker } = await connected(4);
    const kept: Message[] = [];
    client.setPublishHandler((message) => void kept.push(message), { ack: "manual" });
    await broker.send(incoming(4, 0, 0) + " " + incoming(4, 1, 1) + " " + incoming(4, 2, 2));
    await assertQuiet(broker);
    assert.equal(kept.length, 3);
    kept[0].ack();
    kept[2].ack();
    await assertQuiet(broker);
    kept[1].ack();
    assert.equal((await broker.next()).hex, ackHex(1, 1));
    assert.equal((await broker.next()).hex, ackHex(2, 2));
    await assertQuiet(broker);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("ack manual handler: a handler that throws leaves its message unacknowledged, and the acknowledgements after it wait", async () => {
    const { client, broker } = await connected(4);
    const error = nextEvent(client, "error");
    const kept: Message[] = [];
    client.setPublishHandler((message) => {
      if (message.packetId === 1) throw new Error("boom");
      kept.push(message);
      message.ack();
    }, { ack: "manual" });
    await broker.send(incoming(4, 1, 1) + " " + incoming(4, 1, 2));
    await error;
    assert.equal(kept.length, 1);
    await assertQuiet(broker);
    assert.equal(client.state, "connected");
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});

describe("ack auto", () => {
  test("ack auto: an iterator's message is acknowledged when yielded, not when it waits in the iterator", async () => {
    const { client, broker } = await connected(4);
    const iterator = client.messages();
    await broker.send(incoming(4, 1, 1) + " " + incoming(4, 2, 2));
    await assertQuiet(broker);
    await iterator.next();
    assert.equal((await broker.next()).hex, ackHex(1, 1));
    await assertQuiet(broker);
    await iterator.next();
    assert.equal((await broker.next()).hex, ackHex(2, 2));
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("ack auto: a handler with { ack: 'auto' } is acknowledged when its promise settles", async () => {
    const { client, broker } = await connected(4);
    let finish!: () => void;
    client.setPublishHandler(
      () => new Promise<void>((resolve) => finish = resolve),
      { ack: "auto" },
    );
    await broker.send(incoming(4, 1, 1));
    await assertQuiet(broker);
    finish();
    assert.equal((await broker.next()).hex, ackHex(1, 1));
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("ack auto: leaving for await early sends no acknowledgement for what waited; the next iterator gets it and acknowledges it", async () => {
    const { client, broker } = await connected(4);
    await broker.send([1, 2, 3].map((id) => incoming(4, 1, id)).join(" "));
    for await (const message of client.messages()) {
      assert.equal(message.packetId, 1);
      break;
    }
    assert.equal((await broker.next()).hex, ackHex(1, 1));
    await assertQuiet(broker);
    const next = client.messages();
    await assertQuiet(broker);
    assert.deepEqual((await read(next, 2)).map((m) => m.packetId), [2, 3]);
    assert.equal((await broker.next()).hex, ackHex(1, 2));
    assert.equal((await broker.next()).hex, ackHex(1, 3));
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});

describe("ack across a reconnect", () => {
  /** A client that reconnects, each connection to a new fake broker. */
  function rig(): { client: MqttClient; clock: FakeClock; next(): Promise<FakeBroker> } {
    const clock = new FakeClock();
    const waiting: ((broker: FakeBroker) => void)[] = [];
    const dial: Dialer = () => {
      const broker = new FakeBroker(4);
      waiting.shift()?.(broker);
      return Promise.resolve(broker.transport);
    };
    return {
      client: new MqttClient(dial),
      clock,
      next: () => new Promise((resolve) => waiting.push(resolve)),
    };
  }

  test("ack after reconnect: a QoS 1 message of the lost connection sends nothing; its re-sent copy is delivered again and acknowledged; a QoS 2 one's PUBREC answers its re-sent copy", async () => {
    const { client, clock, next } = rig();
    const firstBroker = next();
    const connecting = client.connect({
      clientId: "kite",
      keepalive: 0,
      clean: false,
      clock,
      reconnect: { minDelay: 100, maxDelay: 100, random: () => 0 },
    });
    const first = await firstBroker;
    await first.accept(false);
    await connecting;
    const iterator = client.messages(undefined, { ack: "manual" });
    await first.send(incoming(4, 1, 1) + " " + incoming(4, 2, 2));
    const [qos1, qos2] = await read(iterator, 2);
    const scheduled = nextEvent(client, "reconnect");
    await first.hangUp();
    await scheduled;
    const secondBroker = next();
    await clock.advance(100);
    const second = await secondBroker;
    const reconnected = nextEvent(client, "connect");
    await second.accept(true);
    await reconnected;
    // The broker re-sends both; the QoS 2 copy is not delivered again.
    await second.send(
      incoming(4, 1, 1, { dup: true }) + " " + incoming(4, 2, 2, { dup: true }),
    );
    const [copy] = await read(iterator, 1);
    assert.equal(copy.packetId, 1);
    assert.equal(copy.dup, true);
    qos1.ack();
    qos2.ack();
    // PUBREC for 2 waits for the copy of 1, which came before it on this connection.
    await assertQuiet(second);
    copy.ack();
    assert.equal((await second.next()).hex, ackHex(1, 1));
    assert.equal((await second.next()).hex, ackHex(2, 2));
    await assertQuiet(second);
    await Promise.all([client.disconnect(), second.closed()]);
  });
});

describe("ack manual and the Receive Maximum", () => {
  test("ack manual v5: a message acked behind an unacknowledged one still counts against our Receive Maximum of 2; the broker's third PUBLISH is refused (DISCONNECT 0x93)", async () => {
    const { client, broker } = await connected(5, {
      options: { properties: { receiveMaximum: 2 } },
    });
    const iterator = client.messages(undefined, { ack: "manual" });
    await broker.send(incoming(5, 1, 1) + " " + incoming(5, 1, 2));
    const [, second] = await read(iterator, 2);
    second.ack();
    await assertQuiet(broker);
    const disconnected = nextEvent(client, "disconnect");
    await broker.send(incoming(5, 1, 3));
    await disconnected;
    assert.deepEqual((await broker.closed()).map((sent) => sent.hex), ["e0 01 93"]);
  });

  test("ack manual v5: once the earliest is acked, both PUBACKs go and the broker may send two more", async () => {
    const { client, broker } = await connected(5, {
      options: { properties: { receiveMaximum: 2 } },
    });
    const iterator = client.messages(undefined, { ack: "manual" });
    await broker.send(incoming(5, 1, 1) + " " + incoming(5, 1, 2));
    const [first, second] = await read(iterator, 2);
    second.ack();
    first.ack();
    assert.equal((await broker.next()).hex, ackHex(1, 1));
    assert.equal((await broker.next()).hex, ackHex(1, 2));
    await broker.send(incoming(5, 1, 3) + " " + incoming(5, 2, 4));
    for (const message of await read(iterator, 2)) message.ack();
    assert.equal((await broker.next()).hex, ackHex(1, 3));
    assert.equal((await broker.next()).hex, ackHex(2, 4));
    assert.equal(client.state, "connected");
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});
