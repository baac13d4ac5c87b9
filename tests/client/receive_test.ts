/**
 * Receiving, broker to client: every QoS flow byte by byte, exactly-once delivery of QoS 2,
 * PUBREL for an unknown id, the pure publisher's duty to acknowledge, messages held until a
 * consumer is attached, iterators with filters, back-pressure, and MQTT 5 topic aliases.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MqttClient, MqttPublisher, MqttSubscriber } from "../../src/client/clients.ts";
import type { Message } from "../../src/client/types.ts";
import { Deferred } from "../../src/_async.ts";
import { MqttError, ProtocolError } from "../../src/errors.ts";
import type { ProtocolVersion } from "../../src/packet/types.ts";
import {
  assertQuiet,
  connected,
  FakeBroker,
  FakeClock,
  nextEvent,
  recordEvents,
  settle,
  utf8Hex,
  versionName,
  VERSIONS,
} from "./harness.ts";

/** A PUBLISH from the broker, as `version` writes it. */
function incoming(
  version: ProtocolVersion,
  qos: 0 | 1 | 2,
  packetId = 7,
  { dup = false, retain = false, topic = "a/b", payload = "hi" } = {},
): string {
  const first = 0x30 | (dup ? 8 : 0) | (qos << 1) | (retain ? 1 : 0);
  const body = [
    (topic.length >> 8).toString(16).padStart(2, "0"),
    (topic.length & 0xff).toString(16).padStart(2, "0"),
    utf8Hex(topic),
    qos > 0
      ? `${(packetId >> 8).toString(16).padStart(2, "0")} ${
        (packetId & 0xff).toString(16).padStart(2, "0")
      }`
      : "",
    version === 5 ? "00" : "",
    utf8Hex(payload),
  ].filter((part) => part !== "").join(" ");
  const length = body.split(" ").length;
  return `${first.toString(16)} ${length.toString(16).padStart(2, "0")} ${body}`;
}

/** Two-byte hex of a packet id. */
function idHex(packetId: number): string {
  return `${(packetId >> 8).toString(16).padStart(2, "0")} ${
    (packetId & 0xff).toString(16).padStart(2, "0")
  }`;
}

/** Collects what a handler receives, and wakes waiters as messages come. */
class Inbox {
  readonly messages: Message[] = [];
  #waiters: { count: number; wake: () => void }[] = [];

  readonly handler = (message: Message): void => {
    this.messages.push(message);
    this.#waiters = this.#waiters.filter((waiter) => {
      if (this.messages.length < waiter.count) return true;
      waiter.wake();
      return false;
    });
  };

  /** Resolves once `count` messages have arrived in all. */
  until(count: number): Promise<void> {
    if (this.messages.length >= count) return Promise.resolve();
    return new Promise((wake) => this.#waiters.push({ count, wake }));
  }

  get payloads(): string[] {
    return this.messages.map((m) => new TextDecoder().decode(m.payload));
  }
}

for (const version of VERSIONS) {
  const v = versionName(version);

  describe(`publish b2c ${v}`, () => {
    test(`publish b2c qos0 ${v}: delivered with its fields, nothing sent back`, async () => {
      const { client, broker } = await connected(version);
      const inbox = new Inbox();
      client.setPublishHandler(inbox.handler);
      await broker.send(incoming(version, 0, 0, { retain: true }));
      await inbox.until(1);
      const message = inbox.messages[0];
      assert.equal(message.topic, "a/b");
      assert.deepEqual([...message.payload], [0x68, 0x69]);
      assert.equal(message.qos, 0);
      assert.equal(message.retain, true);
      assert.equal(message.dup, false);
      assert.equal(message.packetId, undefined);
      await assertQuiet(broker);
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`publish b2c qos1 ${v}: PUBLISH, delivered, then PUBACK`, async () => {
      const { client, broker } = await connected(version);
      const inbox = new Inbox();
      let deliveredBeforeAck = false;
      client.setPublishHandler(inbox.handler);
      await broker.send(incoming(version, 1, 7));
      const puback = await broker.next();
      deliveredBeforeAck = inbox.messages.length === 1;
      assert.equal(puback.hex, "40 02 00 07");
      assert.ok(deliveredBeforeAck);
      assert.equal(inbox.messages[0].qos, 1);
      assert.equal(inbox.messages[0].packetId, 7);
      await assertQuiet(broker);
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`publish b2c qos2 ${v}: PUBLISH, PUBREC, PUBREL, PUBCOMP; delivered once`, async () => {
      const { client, broker } = await connected(version);
      const inbox = new Inbox();
      client.setPublishHandler(inbox.handler);
      await broker.send(incoming(version, 2, 7));
      assert.equal((await broker.next()).hex, "50 02 00 07");
      assert.equal(inbox.messages.length, 1);
      assert.equal(inbox.messages[0].qos, 2);
      await broker.send("62 02 00 07");
      assert.equal((await broker.next()).hex, "70 02 00 07");
      await assertQuiet(broker);
      assert.equal(inbox.messages.length, 1);
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`publish b2c qos2 ${v} duplicate: a re-sent PUBLISH (DUP) before PUBREL gets PUBREC and is not delivered again`, async () => {
      const { client, broker } = await connected(version);
      const inbox = new Inbox();
      client.setPublishHandler(inbox.handler);
      await broker.send(incoming(version, 2, 7, { payload: "first" }));
      assert.equal((await broker.next()).hex, "50 02 00 07");
      await broker.send(incoming(version, 2, 7, { dup: true, payload: "first" }));
      assert.equal((await broker.next()).hex, "50 02 00 07");
      await broker.send(incoming(version, 2, 7, { dup: true, payload: "first" }));
      assert.equal((await broker.next()).hex, "50 02 00 07");
      await broker.send("62 02 00 07");
      assert.equal((await broker.next()).hex, "70 02 00 07");
      assert.deepEqual(inbox.payloads, ["first"]);
      // After PUBREL the id is free: a new PUBLISH with it is a new message.
      await broker.send(incoming(version, 2, 7, { payload: "second" }));
      assert.equal((await broker.next()).hex, "50 02 00 07");
      assert.deepEqual(inbox.payloads, ["first", "second"]);
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`publish b2c qos1 ${v} duplicate: a re-sent QoS 1 PUBLISH is delivered again and acknowledged again`, async () => {
      const { client, broker } = await connected(version);
      const inbox = new Inbox();
      client.setPublishHandler(inbox.handler);
      await broker.send(incoming(version, 1, 7));
      assert.equal((await broker.next()).hex, "40 02 00 07");
      await broker.send(incoming(version, 1, 7, { dup: true }));
      assert.equal((await broker.next()).hex, "40 02 00 07");
      assert.deepEqual(inbox.messages.map((m) => m.dup), [false, true]);
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(
      `publish b2c ${v}: PUBREL for an unknown id gets PUBCOMP${
        version === 5 ? " 0x92 (Packet Identifier not found)" : ""
      }`,
      async () => {
        const { client, broker } = await connected(version);
        await broker.send("62 02 00 63");
        assert.equal((await broker.next()).hex, version === 5 ? "70 03 00 63 92" : "70 02 00 63");
        assert.equal(client.state, "connected");
        await Promise.all([client.disconnect(), broker.closed()]);
      },
    );

    test(`publish b2c ${v}: QoS 1 PUBACKs go out in the order the PUBLISHes came [MQTT-4.6.0-2]`, async () => {
      const { client, broker } = await connected(version);
      const inbox = new Inbox();
      client.setPublishHandler(inbox.handler);
      await broker.send(
        incoming(version, 1, 3) + " " + incoming(version, 1, 1) + " " + incoming(version, 1, 2),
      );
      assert.equal((await broker.next()).hex, "40 02 00 03");
      assert.equal((await broker.next()).hex, "40 02 00 01");
      assert.equal((await broker.next()).hex, "40 02 00 02");
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`publish b2c ${v}: MqttPublisher acknowledges a PUBLISH it is sent (PUBACK, PUBREC, PUBCOMP)`, async () => {
      const { client, broker } = await connected(version, { Client: MqttPublisher });
      await broker.send(incoming(version, 1, 5));
      assert.equal((await broker.next()).hex, "40 02 00 05");
      await broker.send(incoming(version, 2, 6));
      assert.equal((await broker.next()).hex, "50 02 00 06");
      await broker.send(incoming(version, 2, 6, { dup: true }));
      assert.equal((await broker.next()).hex, "50 02 00 06");
      await broker.send("62 02 00 06");
      assert.equal((await broker.next()).hex, "70 02 00 06");
      await broker.send(incoming(version, 0));
      await assertQuiet(broker);
      assert.equal(client.state, "connected");
      await Promise.all([client.disconnect(), broker.closed()]);
    });
  });
}

describe("messages before a consumer", () => {
  for (const Client of [MqttClient, MqttSubscriber]) {
    test(`held messages (${Client.name}): messages before any handler are held, acknowledged only once the first handler takes them`, async () => {
      const { client, broker } = await connected(4, { Client });
      await broker.send(incoming(4, 1, 1, { payload: "one" }));
      await broker.send(incoming(4, 0, 0, { payload: "two" }));
      await broker.send(incoming(4, 2, 2, { payload: "three" }));
      await assertQuiet(broker);
      const inbox = new Inbox();
      client.setPublishHandler(inbox.handler);
      assert.deepEqual(inbox.payloads, ["one", "two", "three"]);
      assert.equal((await broker.next()).hex, "40 02 00 01");
      assert.equal((await broker.next()).hex, "50 02 00 02");
      await Promise.all([client.disconnect(), broker.closed()]);
    });
  }

  test("held messages: the first messages() iterator gets them, in order, and acknowledges each as it yields it", async () => {
    const { client, broker } = await connected(5, { Client: MqttSubscriber });
    await broker.send(incoming(5, 1, 1, { payload: "one" }));
    await broker.send(incoming(5, 1, 2, { payload: "two" }));
    await assertQuiet(broker);
    const iterator = client.messages();
    await assertQuiet(broker);
    const first = await iterator.next();
    assert.equal((await broker.next()).hex, "40 02 00 01");
    await assertQuiet(broker);
    const second = await iterator.next();
    assert.equal((await broker.next()).hex, "40 02 00 02");
    assert.equal(new TextDecoder().decode(first.value!.payload), "one");
    assert.equal(new TextDecoder().decode(second.value!.payload), "two");
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("held messages: a PUBLISH in the same chunk as CONNACK (a resumed session) is held until the handler is set after connect()", async () => {
    const broker = new FakeBroker(4);
    const client = new MqttClient(broker.transport);
    const connecting = client.connect({
      clientId: "kite",
      clean: false,
      keepalive: 0,
      clock: new FakeClock(),
    });
    await broker.expect("connect");
    await broker.send("20 02 01 00 " + incoming(4, 1, 9, { payload: "queued" }));
    assert.equal(await connecting, true);
    await assertQuiet(broker);
    const inbox = new Inbox();
    client.setPublishHandler(inbox.handler);
    assert.deepEqual(inbox.payloads, ["queued"]);
    assert.equal((await broker.next()).hex, "40 02 00 09");
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("held messages: with maxHeldMessages 2 the client stops reading until a consumer is attached", async () => {
    const { client, broker } = await connected(4, { options: { maxHeldMessages: 2 } });
    const pushes = Array.from(
      { length: 10 },
      (_, i) => broker.push(incoming(4, 1, i + 1, { payload: `${i}` })),
    );
    let taken = 0;
    for (const push of pushes) push.then((took) => taken += took ? 1 : 0);
    await assertQuiet(broker);
    assert.ok(taken < 10, "the client read every message while nobody took them");
    const inbox = new Inbox();
    client.setPublishHandler(inbox.handler);
    for (let id = 1; id <= 10; id++) {
      assert.equal((await broker.next()).hex, `40 02 ${idHex(id)}`);
    }
    await Promise.all(pushes);
    assert.equal(taken, 10);
    assert.deepEqual(inbox.payloads, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("held messages: released to a handler that returns a promise, one at a time", async () => {
    const { client, broker } = await connected(4);
    await broker.send(incoming(4, 1, 1, { payload: "one" }));
    await broker.send(incoming(4, 1, 2, { payload: "two" }));
    await assertQuiet(broker);
    const calls: string[] = [];
    const gates = [new Deferred<void>(), new Deferred<void>()];
    client.setPublishHandler((message) => {
      calls.push(new TextDecoder().decode(message.payload));
      return gates[calls.length - 1].promise;
    });
    await settle();
    assert.deepEqual(calls, ["one"]);
    await assertQuiet(broker);
    gates[0].resolve();
    assert.equal((await broker.next()).hex, "40 02 00 01");
    await settle();
    assert.deepEqual(calls, ["one", "two"]);
    gates[1].resolve();
    assert.equal((await broker.next()).hex, "40 02 00 02");
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});

describe("messages before a consumer, handed over one at a time", () => {
  test("held messages: a message that arrives while held ones are handed over comes after them", async () => {
    const { client, broker } = await connected(4);
    await broker.send(incoming(4, 1, 1, { payload: "one" }));
    await broker.send(incoming(4, 1, 2, { payload: "two" }));
    await assertQuiet(broker);
    const calls: string[] = [];
    const gate = new Deferred<void>();
    client.setPublishHandler((message) => {
      calls.push(new TextDecoder().decode(message.payload));
      return calls.length === 1 ? gate.promise : undefined;
    });
    await broker.send(incoming(4, 1, 3, { payload: "three" }));
    await assertQuiet(broker);
    assert.deepEqual(calls, ["one"]);
    gate.resolve();
    for (const id of [1, 2, 3]) assert.equal((await broker.next()).hex, `40 02 00 0${id}`);
    assert.deepEqual(calls, ["one", "two", "three"]);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("held messages: a handler removed while they are handed over leaves the rest held, unacknowledged, for the next one", async () => {
    const { client, broker } = await connected(4);
    await broker.send(incoming(4, 1, 1, { payload: "one" }));
    await broker.send(incoming(4, 1, 2, { payload: "two" }));
    const gate = new Deferred<void>();
    const first: string[] = [];
    client.setPublishHandler((message) => {
      first.push(new TextDecoder().decode(message.payload));
      return gate.promise;
    });
    client.setPublishHandler(undefined);
    gate.resolve();
    assert.equal((await broker.next()).hex, "40 02 00 01");
    await assertQuiet(broker);
    assert.deepEqual(first, ["one"]);
    const inbox = new Inbox();
    client.setPublishHandler(inbox.handler);
    assert.equal((await broker.next()).hex, "40 02 00 02");
    assert.deepEqual(inbox.payloads, ["two"]);
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});

describe("consumers", () => {
  test("messages(filter): each iterator sees the messages that match its filter, the handler sees all", async () => {
    const { client, broker } = await connected(4);
    const all = new Inbox();
    client.setPublishHandler(all.handler);
    const sensors = client.messages("sensors/#");
    const plus = client.messages("+/b");
    const every = client.messages();
    await broker.send(incoming(4, 0, 0, { topic: "sensors/1", payload: "s1" }));
    await broker.send(incoming(4, 0, 0, { topic: "a/b", payload: "ab" }));
    await broker.send(incoming(4, 1, 3, { topic: "sensors/b", payload: "sb" }));
    const take = async (iterator: AsyncIterableIterator<Message>, count: number) => {
      const out: string[] = [];
      for (let i = 0; i < count; i++) {
        out.push(new TextDecoder().decode((await iterator.next()).value!.payload));
      }
      return out;
    };
    assert.deepEqual(await take(sensors, 2), ["s1", "sb"]);
    assert.deepEqual(await take(plus, 2), ["ab", "sb"]);
    // Acknowledged once the handler and the three iterators all took it.
    await assertQuiet(broker);
    assert.deepEqual(await take(every, 3), ["s1", "ab", "sb"]);
    assert.equal((await broker.next()).hex, "40 02 00 03");
    assert.deepEqual(all.payloads, ["s1", "ab", "sb"]);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("messages(filter): an invalid filter throws", () => {
    const client = new MqttClient(new FakeBroker(4).transport);
    assert.throws(() => client.messages("a/#/b"), ProtocolError);
  });

  test("back-pressure: with highWaterMark 2 and nobody reading, the client stops reading, and each PUBACK waits for the consumer to read its message", async () => {
    const { client, broker } = await connected(4);
    const iterator = client.messages(undefined, { highWaterMark: 2 });
    const pushes = Array.from(
      { length: 10 },
      (_, i) => broker.push(incoming(4, 1, i + 1, { payload: `${i}` })),
    );
    let taken = 0;
    for (const push of pushes) push.then((took) => taken += took ? 1 : 0);
    // The first message leaves room in the queue; the second fills it. Neither is read.
    await assertQuiet(broker);
    assert.ok(taken < 10, `the client took all ${taken} messages while nobody read`);
    const takenWhileFull = taken;
    // Each message read lets its PUBACK out, and makes room for one more.
    for (let i = 0; i < 10; i++) {
      const { value } = await iterator.next();
      assert.equal(new TextDecoder().decode(value!.payload), `${i}`);
      assert.equal((await broker.next()).hex, `40 02 ${idHex(i + 1)}`);
      await assertQuiet(broker);
    }
    assert.ok(taken > takenWhileFull);
    await Promise.all(pushes);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("back-pressure: a handler's promise holds back the next message and its PUBACK", async () => {
    const { client, broker } = await connected(5);
    const calls: number[] = [];
    const gates = [new Deferred<void>(), new Deferred<void>()];
    const called = [new Deferred<void>(), new Deferred<void>()];
    client.setPublishHandler((message) => {
      calls.push(message.packetId!);
      called[calls.length - 1].resolve();
      return gates[calls.length - 1].promise;
    });
    void broker.push(incoming(5, 1, 1));
    void broker.push(incoming(5, 1, 2));
    await called[0].promise;
    await assertQuiet(broker);
    assert.deepEqual(calls, [1]);
    gates[0].resolve();
    assert.equal((await broker.next()).hex, "40 02 00 01");
    await called[1].promise;
    assert.deepEqual(calls, [1, 2]);
    await assertQuiet(broker);
    gates[1].resolve();
    assert.equal((await broker.next()).hex, "40 02 00 02");
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("a handler that throws: an error event, the message is still acknowledged, the client stays connected", async () => {
    const { client, broker } = await connected(4);
    const error = nextEvent<MqttError>(client, "error");
    client.setPublishHandler(() => {
      throw new Error("boom");
    });
    await broker.send(incoming(4, 1, 1));
    assert.equal((await broker.next()).hex, "40 02 00 01");
    const event = await error;
    assert.ok(event.detail instanceof MqttError);
    assert.match(event.detail.message, /boom/);
    assert.equal(client.state, "connected");
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("an iterator left with break no longer holds messages back", async () => {
    const { client, broker } = await connected(4);
    const inbox = new Inbox();
    client.setPublishHandler(inbox.handler);
    const iterator = client.messages(undefined, { highWaterMark: 1 });
    await broker.send(incoming(4, 0, 0, { payload: "0" }));
    for await (const _ of iterator) break;
    for (let id = 1; id <= 5; id++) {
      await broker.send(incoming(4, 1, id));
      assert.equal((await broker.next()).hex, `40 02 ${idHex(id)}`);
    }
    assert.equal(inbox.messages.length, 6);
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});

describe("topic aliases from the broker (v5)", () => {
  test("topic alias v5: a PUBLISH that sets alias 1, then one that uses it with an empty topic", async () => {
    const { client, broker } = await connected(5, {
      options: { properties: { topicAliasMaximum: 2 } },
    });
    const inbox = new Inbox();
    client.setPublishHandler(inbox.handler);
    // Topic Alias (0x23) 1 with the topic "a/b", then with no topic.
    await broker.send("30 0b 00 03 61 2f 62 03 23 00 01 68 69");
    await broker.send("30 08 00 00 03 23 00 01 68 69");
    // A new topic for the same alias replaces it.
    await broker.send("30 09 00 01 63 03 23 00 01 68 69");
    await broker.send("30 08 00 00 03 23 00 01 68 69");
    await inbox.until(4);
    assert.deepEqual(inbox.messages.map((m) => m.topic), ["a/b", "a/b", "c", "c"]);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  for (
    const [name, options, bytes, reason] of [
      [
        "alias 3 above the advertised maximum of 2",
        { topicAliasMaximum: 2 },
        "30 09 00 01 63 03 23 00 03 68 69",
        "94",
      ],
      ["an alias when none was advertised", {}, "30 09 00 01 63 03 23 00 01 68 69", "94"],
      [
        "an alias with an empty topic before it was set",
        { topicAliasMaximum: 2 },
        "30 08 00 00 03 23 00 01 68 69",
        "82",
      ],
    ] as const
  ) {
    test(`topic alias v5: ${name} is a ProtocolError; DISCONNECT 0x${reason} and the client closes`, async () => {
      const { client, broker } = await connected(5, { options: { properties: options } });
      const events = recordEvents(client, ["error", "disconnect"]);
      const disconnected = nextEvent(client, "disconnect");
      client.setPublishHandler(() => assert.fail("delivered"));
      await broker.send(bytes);
      assert.deepEqual((await broker.closed()).map((s) => s.hex), [`e0 01 ${reason}`]);
      await disconnected;
      assert.equal(client.state, "closed");
      assert.deepEqual(events.map(([type]) => type), ["error", "disconnect"]);
      assert.ok(events[0][1] instanceof ProtocolError);
      assert.equal((events[0][1] as ProtocolError).reasonCode, parseInt(reason, 16));
    });
  }
});
