/**
 * Keepalive on the fake clock: PINGREQ only after `keepalive` seconds in which the client sent
 * nothing, and a broker that stops answering PINGREQ closes the connection.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MqttError, TimeoutError } from "../../src/errors.ts";
import {
  assertQuiet,
  connected,
  nextEvent,
  recordEvents,
  versionName,
  VERSIONS,
  watch,
} from "./harness.ts";

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
}

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
