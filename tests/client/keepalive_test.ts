/**
 * Keepalive on the fake clock: PINGREQ only after `keepalive` seconds in which the client sent
 * nothing, and a broker that stops answering PINGREQ closes the connection.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Deferred } from "../../src/_async.ts";
import { MqttError, TimeoutError } from "../../src/errors.ts";
import { encode } from "../../src/packet/encode.ts";
import type { ProtocolVersion } from "../../src/packet/types.ts";
import {
  assertQuiet,
  connected,
  type FakeBroker,
  nextEvent,
  recordEvents,
  settle,
  versionName,
  VERSIONS,
  watch,
} from "./harness.ts";

/** A QoS 1 PUBLISH from the broker to "t", with payload `m<id>`. */
function qos1(version: ProtocolVersion, packetId: number): Uint8Array {
  return encode({
    type: "publish",
    topic: "t",
    payload: new TextEncoder().encode(`m${packetId}`),
    qos: 1,
    retain: false,
    dup: false,
    packetId,
  }, version);
}

/**
 * Lets `periods` keepalive periods of 10 s pass while the client reads nothing: each brings a
 * PINGREQ (nothing else was sent), which the broker answers, behind what the client left unread.
 */
async function idle(
  broker: FakeBroker,
  clock: { advance(ms: number): Promise<unknown> },
  periods: number,
): Promise<Promise<boolean>[]> {
  const answers: Promise<boolean>[] = [];
  for (let i = 0; i < periods; i++) {
    await clock.advance(10_000);
    assert.equal((await broker.next()).hex, "c0 00");
    answers.push(broker.push("d0 00"));
    await settle();
  }
  return answers;
}

for (const version of VERSIONS) {
  const v = versionName(version);

  describe(`keepalive ${v}`, () => {
    test(`keepalive ${v}: PINGREQ after 10 s without sending, not before; again 10 s after it`, async () => {
      const { client, broker, clock } = await connected(version, { options: { keepalive: 10 } });
      await clock.advance(9999);
      await assertQuiet(broker);
      await clock.advance(1);
      assert.equal((await broker.next()).hex, "c0 00");
      await clock.advance(5000);
      await broker.send("d0 00");
      await clock.advance(4999);
      await assertQuiet(broker);
      await clock.advance(1);
      assert.equal((await broker.next()).hex, "c0 00");
      await broker.send("d0 00");
      assert.equal(client.state, "connected");
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`keepalive ${v}: a publish postpones PINGREQ to 10 s after it`, async () => {
      const { client, broker, clock } = await connected(version, { options: { keepalive: 10 } });
      await clock.advance(6000);
      await client.publish("t", "x");
      await broker.expect("publish");
      await clock.advance(9999);
      await assertQuiet(broker);
      await clock.advance(1);
      assert.equal(clock.now(), 16_000);
      assert.equal((await broker.next()).hex, "c0 00");
      await broker.send("d0 00");
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`keepalive ${v}: a PUBACK the client sends postpones PINGREQ; what it receives does not`, async () => {
      const { client, broker, clock } = await connected(version, { options: { keepalive: 10 } });
      client.setPublishHandler(() => {});
      const qos0 = version === 5 ? "30 04 00 01 74 00" : "30 03 00 01 74";
      const qos1 = version === 5 ? "32 06 00 01 74 00 01 00" : "32 05 00 01 74 00 01";
      // Receiving alone: PINGREQ still at 10 s.
      await clock.advance(4000);
      await broker.send(qos0);
      await clock.advance(5999);
      await assertQuiet(broker);
      await clock.advance(1);
      assert.equal((await broker.next()).hex, "c0 00");
      await broker.send("d0 00");
      // A PUBACK at 13 s: the next PINGREQ at 23 s.
      await clock.advance(3000);
      await broker.send(qos1);
      assert.equal((await broker.next()).hex, "40 02 00 01");
      await clock.advance(9999);
      await assertQuiet(broker);
      await clock.advance(1);
      assert.equal((await broker.next()).hex, "c0 00");
      await broker.send("d0 00");
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`keepalive ${v} silent broker: no PINGRESP within the keepalive period closes the client with TimeoutError`, async () => {
      const { client, broker, clock } = await connected(version, { options: { keepalive: 10 } });
      const events = recordEvents(client, ["error", "disconnect"]);
      const disconnected = nextEvent(client, "disconnect");
      const inflight = watch(client.publish("t", "x", { qos: 1 }));
      await broker.expect("publish");
      await clock.advance(10_000);
      assert.equal((await broker.next()).hex, "c0 00");
      await clock.advance(9999);
      await assertQuiet(broker);
      assert.equal(client.state, "connected");
      await clock.advance(1);
      // The client closes the connection; at most it says why first.
      for (const sent of await broker.closed()) assert.equal(sent.packet.type, "disconnect");
      await disconnected;
      assert.equal(client.state, "closed");
      assert.deepEqual(events.map(([type]) => type), ["error", "disconnect"]);
      assert.ok(events[0][1] instanceof TimeoutError);
      assert.equal((events[1][1] as { error: MqttError }).error, events[0][1]);
      await assert.rejects(inflight.promise, MqttError);
    });
  });

  describe(`keepalive ${v} with a slow consumer`, () => {
    test(`keepalive ${v} slow consumer: an iterator left unread for 10 keepalive periods keeps the connection, PINGREQ still goes each period, and reading delivers everything`, async () => {
      const { client, broker, clock } = await connected(version, { options: { keepalive: 10 } });
      const events = recordEvents(client, ["error", "disconnect"]);
      const messages = client.messages(undefined, { highWaterMark: 1 });
      const pushes = [1, 2, 3, 4].map((id) => broker.push(qos1(version, id)));
      // The first message fills the iterator: the client stops reading, its PUBACK waits.
      await assertQuiet(broker);
      const answers = await idle(broker, clock, 10);
      assert.equal(client.state, "connected");
      assert.deepEqual(events, []);
      // The consumer comes back: every message, then every PUBACK, in order.
      for (let id = 1; id <= 4; id++) {
        const { value } = await messages.next();
        assert.equal(new TextDecoder().decode(value!.payload), `m${id}`);
        assert.equal((await broker.expect("puback")).packetId, id);
      }
      assert.deepEqual(await Promise.all([...pushes, ...answers]), Array(14).fill(true));
      // The PINGRESPs were read: keepalive goes on as usual.
      const answered = await idle(broker, clock, 2);
      await clock.advance(9999);
      assert.equal(client.state, "connected");
      assert.deepEqual(events, []);
      await Promise.all([client.disconnect(), broker.closed(), ...answered]);
    });
  });
}

describe("keepalive with a slow consumer", () => {
  test("keepalive slow consumer: messages held at maxHeldMessages with no consumer keep the connection; a handler attached later gets them all", async () => {
    const { client, broker, clock } = await connected(4, {
      options: { keepalive: 10, maxHeldMessages: 2 },
    });
    const events = recordEvents(client, ["error", "disconnect"]);
    const pushes = [1, 2, 3, 4].map((id) => broker.push(qos1(4, id)));
    await assertQuiet(broker);
    const answers = await idle(broker, clock, 5);
    assert.equal(client.state, "connected");
    const received: number[] = [];
    client.setPublishHandler((message) => void received.push(message.packetId!));
    for (let id = 1; id <= 4; id++) assert.equal((await broker.expect("puback")).packetId, id);
    assert.deepEqual(received, [1, 2, 3, 4]);
    await Promise.all([...pushes, ...answers]);
    await clock.advance(9999);
    assert.equal(client.state, "connected");
    assert.deepEqual(events, []);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("keepalive slow consumer: an async handler that takes 60 s over a message keeps the connection", async () => {
    const { client, broker, clock } = await connected(4, { options: { keepalive: 10 } });
    const events = recordEvents(client, ["error", "disconnect"]);
    const gate = new Deferred<void>();
    const received: number[] = [];
    client.setPublishHandler((message) => {
      received.push(message.packetId!);
      return message.packetId === 1 ? gate.promise : undefined;
    });
    const pushes = [1, 2].map((id) => broker.push(qos1(4, id)));
    await assertQuiet(broker);
    const answers = await idle(broker, clock, 6);
    assert.deepEqual(received, [1]);
    assert.equal(client.state, "connected");
    gate.resolve();
    assert.equal((await broker.expect("puback")).packetId, 1);
    assert.equal((await broker.expect("puback")).packetId, 2);
    assert.deepEqual(received, [1, 2]);
    await Promise.all([...pushes, ...answers]);
    await clock.advance(9999);
    assert.equal(client.state, "connected");
    assert.deepEqual(events, []);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("keepalive slow consumer: once the consumer catches up, a broker that never answered PINGREQ is found a ping timeout later", async () => {
    const { client, broker, clock } = await connected(4, { options: { keepalive: 10 } });
    const error = nextEvent<MqttError>(client, "error");
    const disconnected = nextEvent(client, "disconnect");
    const messages = client.messages(undefined, { highWaterMark: 1 });
    const pushes = [1, 2].map((id) => broker.push(qos1(4, id)));
    await assertQuiet(broker);
    // PINGREQs go out; no PINGRESP ever comes.
    for (let i = 0; i < 5; i++) {
      await clock.advance(10_000);
      assert.equal((await broker.next()).hex, "c0 00");
    }
    assert.equal(client.state, "connected");
    for (let id = 1; id <= 2; id++) {
      assert.equal((await messages.next()).value!.packetId, id);
      assert.equal((await broker.expect("puback")).packetId, id);
    }
    await Promise.all(pushes);
    await settle();
    // Reading resumed at 50 s, and nothing more arrives: the ping timeout (10 s) counts from then.
    await clock.advance(9999);
    assert.equal(client.state, "connected");
    await clock.advance(1);
    assert.ok((await error).detail instanceof TimeoutError);
    await disconnected;
    assert.equal(client.state, "closed");
    await broker.closed();
  });
});

describe("keepalive options", () => {
  test("keepalive pingTimeout 2000: no PINGRESP within 2 s of PINGREQ closes with TimeoutError", async () => {
    const { client, broker, clock } = await connected(4, {
      options: { keepalive: 10, pingTimeout: 2000 },
    });
    const error = nextEvent<MqttError>(client, "error");
    const disconnected = nextEvent(client, "disconnect");
    await clock.advance(10_000);
    assert.equal((await broker.next()).hex, "c0 00");
    await clock.advance(1999);
    assert.equal(client.state, "connected");
    await clock.advance(1);
    assert.ok((await error).detail instanceof TimeoutError);
    await disconnected;
    await broker.closed();
  });

  test("keepalive: a late PINGRESP, just in time, keeps the connection; the next PINGREQ follows", async () => {
    const { client, broker, clock } = await connected(4, { options: { keepalive: 10 } });
    await clock.advance(10_000);
    assert.equal((await broker.next()).hex, "c0 00");
    await clock.advance(9999);
    await broker.send("d0 00");
    await clock.advance(1);
    assert.equal(client.state, "connected");
    // 10 s after the last PINGREQ.
    assert.equal((await broker.next()).hex, "c0 00");
    await clock.advance(9999);
    assert.equal(client.state, "connected");
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("keepalive 0: no PINGREQ, however long the silence", async () => {
    const { client, broker, clock } = await connected(4, { options: { keepalive: 0 } });
    await clock.advance(24 * 3600 * 1000);
    await assertQuiet(broker);
    assert.equal(clock.pending, 0);
    assert.equal(client.state, "connected");
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("keepalive: disconnect leaves no timer behind", async () => {
    const { client, broker, clock } = await connected(5, { options: { keepalive: 10 } });
    assert.ok(clock.pending > 0);
    await Promise.all([client.disconnect(), broker.closed()]);
    assert.equal(clock.pending, 0);
  });
});
