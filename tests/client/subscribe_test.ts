/**
 * Subscribing and unsubscribing: the SUBSCRIBE and UNSUBSCRIBE bytes of each version, granted
 * QoS, refusals, filters rejected before anything is sent, and UNSUBACK.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MqttClient } from "../../src/client/clients.ts";
import {
  ConnectionClosedError,
  MqttError,
  ProtocolError,
  StateError,
  SubscribeError,
} from "../../src/errors.ts";
import {
  assertQuiet,
  connected,
  FakeBroker,
  FakeClock,
  recordEvents,
  versionName,
  VERSIONS,
  watch,
} from "./harness.ts";

for (const version of VERSIONS) {
  const v = versionName(version);
  // MQTT 5 puts a property length after the packet id of SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK.
  const p = version === 5 ? " 00" : "";

  describe(`subscribe ${v}`, () => {
    test(`subscribe ${v}: SUBSCRIBE with one filter, SUBACK grants QoS 1`, async () => {
      const { client, broker } = await connected(version);
      const granted = watch(client.subscribe("a/#", { qos: 1 }));
      assert.equal(
        (await broker.next()).hex,
        version === 5 ? "82 09 00 01 00 00 03 61 2f 23 01" : "82 08 00 01 00 03 61 2f 23 01",
      );
      await assertQuiet(broker);
      assert.equal(granted.settled, false);
      await broker.send(version === 5 ? "90 04 00 01 00 01" : "90 03 00 01 01");
      assert.equal(await granted.promise, 1);
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`subscribe ${v}: the broker may grant less than asked: QoS 0 for 2`, async () => {
      const { client, broker } = await connected(version);
      const granted = client.subscribe("a", { qos: 2 });
      await broker.expect("subscribe");
      await broker.send(`90 0${version === 5 ? 4 : 3} 00 01${p} 00`);
      assert.equal(await granted, 0);
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`subscribe ${v}: SUBSCRIBE with two filters, each with its QoS; resolves with both grants`, async () => {
      const { client, broker } = await connected(version);
      const granted = client.subscribe([{ topic: "a", qos: 1 }, "b"], { qos: 2 });
      assert.equal(
        (await broker.next()).hex,
        version === 5
          ? "82 0b 00 01 00 00 01 61 01 00 01 62 02"
          : "82 0a 00 01 00 01 61 01 00 01 62 02",
      );
      await broker.send(version === 5 ? "90 05 00 01 00 01 02" : "90 04 00 01 01 02");
      assert.deepEqual(await granted, [1, 2]);
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    // MQTT 3.1 defines no failure code in SUBACK; see the v3.1 test below.
    if (version !== 3) {
      test(`subscribe ${v}: SUBACK 0x80 rejects with SubscribeError carrying the filters and codes`, async () => {
        const { client, broker } = await connected(version);
        const granted = client.subscribe("a/#", { qos: 1 });
        await broker.expect("subscribe");
        await broker.send(`90 0${version === 5 ? 4 : 3} 00 01${p} 80`);
        await assert.rejects(granted, (error) => {
          assert.ok(error instanceof SubscribeError);
          assert.deepEqual(error.topicFilters, ["a/#"]);
          assert.deepEqual(error.reasonCodes, [0x80]);
          return true;
        });
        assert.equal(client.state, "connected");
        await Promise.all([client.disconnect(), broker.closed()]);
      });

      test(`subscribe ${v}: one refused filter out of two rejects the call with both codes`, async () => {
        const { client, broker } = await connected(version);
        const granted = client.subscribe(["a", "b"], { qos: 1 });
        await broker.expect("subscribe");
        await broker.send(`90 0${version === 5 ? 5 : 4} 00 01${p} 01 80`);
        await assert.rejects(granted, (error) => {
          assert.ok(error instanceof SubscribeError);
          assert.deepEqual(error.topicFilters, ["a", "b"]);
          assert.deepEqual(error.reasonCodes, [1, 0x80]);
          assert.match(error.message, /"b"/);
          assert.doesNotMatch(error.message, /"a"/);
          return true;
        });
        await Promise.all([client.disconnect(), broker.closed()]);
      });
    }

    for (const filter of ["a/#/b", "a+", "#/a", "a/b#", ""]) {
      test(`subscribe ${v}: the invalid filter "${filter}" rejects before anything is sent`, async () => {
        const { client, broker } = await connected(version);
        await assert.rejects(client.subscribe(filter, { qos: 1 }));
        await assert.rejects(client.subscribe(["ok", filter]));
        await assertQuiet(broker);
        // No packet id was spent.
        const granted = client.subscribe("ok");
        assert.equal((await broker.expect("subscribe")).packetId, 1);
        await broker.send(`90 0${version === 5 ? 4 : 3} 00 01${p} 00`);
        await granted;
        await Promise.all([client.disconnect(), broker.closed()]);
      });
    }

    test(`unsubscribe ${v}: UNSUBSCRIBE, UNSUBACK resolves`, async () => {
      const { client, broker } = await connected(version);
      const done = watch(client.unsubscribe("a/#"));
      assert.equal(
        (await broker.next()).hex,
        version === 5 ? "a2 08 00 01 00 00 03 61 2f 23" : "a2 07 00 01 00 03 61 2f 23",
      );
      await assertQuiet(broker);
      assert.equal(done.settled, false);
      await broker.send(version === 5 ? "b0 04 00 01 00 00" : "b0 02 00 01");
      await done.promise;
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`unsubscribe ${v}: several filters in one UNSUBSCRIBE`, async () => {
      const { client, broker } = await connected(version);
      const done = client.unsubscribe(["a", "b"]);
      assert.equal(
        (await broker.next()).hex,
        version === 5 ? "a2 09 00 01 00 00 01 61 00 01 62" : "a2 08 00 01 00 01 61 00 01 62",
      );
      await broker.send(version === 5 ? "b0 05 00 01 00 00 00" : "b0 02 00 01");
      await done;
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`subscribe ${v}: SUBSCRIBE, UNSUBSCRIBE and PUBLISH share packet ids; acks out of order settle their own call`, async () => {
      const { client, broker } = await connected(version);
      const subscribed = client.subscribe("s", { qos: 1 });
      const unsubscribed = watch(client.unsubscribe("u"));
      const published = watch(client.publish("t", "x", { qos: 1 }));
      assert.equal((await broker.expect("subscribe")).packetId, 1);
      assert.equal((await broker.expect("unsubscribe")).packetId, 2);
      assert.equal((await broker.expect("publish")).packetId, 3);
      await broker.send("40 02 00 03");
      await published.promise;
      await broker.send(`90 0${version === 5 ? 4 : 3} 00 01${p} 01`);
      assert.equal(await subscribed, 1);
      assert.equal(unsubscribed.settled, false);
      await broker.send(version === 5 ? "b0 04 00 02 00 00" : "b0 02 00 02");
      await unsubscribed.promise;
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`subscribe ${v}: a SUBACK or UNSUBACK for an id nobody waits for is ignored`, async () => {
      const { client, broker } = await connected(version);
      const events = recordEvents(client, ["error", "disconnect"]);
      await broker.send(`90 0${version === 5 ? 4 : 3} 00 63${p} 01`);
      await broker.send(version === 5 ? "b0 04 00 63 00 00" : "b0 02 00 63");
      const granted = client.subscribe("a");
      await broker.expect("subscribe");
      await broker.send(`90 0${version === 5 ? 4 : 3} 00 01${p} 00`);
      assert.equal(await granted, 0);
      assert.deepEqual(events, []);
      await Promise.all([client.disconnect(), broker.closed()]);
    });
  });
}

describe("subscribe v3.1", () => {
  test("subscribe v3.1: SUBACK 0x80, which MQTT 3.1 does not define, is malformed: the subscribe rejects and the client closes with ProtocolError", async () => {
    const { client, broker } = await connected(3);
    const events = recordEvents(client, ["error", "disconnect"]);
    const granted = client.subscribe("a/#", { qos: 1 });
    await broker.expect("subscribe");
    await broker.send("90 03 00 01 80");
    await assert.rejects(granted, ConnectionClosedError);
    await broker.closed();
    assert.deepEqual(events.map(([type]) => type), ["error", "disconnect"]);
    assert.ok(events[0][1] instanceof ProtocolError);
  });
});

describe("subscribe v5", () => {
  test("subscribe v5: options noLocal, retainAsPublished, retainHandling 1 and a Subscription Identifier", async () => {
    const { client, broker } = await connected(5);
    const granted = client.subscribe("a/#", {
      qos: 2,
      noLocal: true,
      retainAsPublished: true,
      retainHandling: 1,
      properties: { subscriptionIdentifier: 7 },
    });
    // Options byte 0x1e: retain handling 1 (0x10), retain as published (0x08), no local (0x04),
    // QoS 2. Properties: Subscription Identifier (0x0b) 7.
    assert.equal((await broker.next()).hex, "82 0b 00 01 02 0b 07 00 03 61 2f 23 1e");
    await broker.send("90 04 00 01 00 02");
    assert.equal(await granted, 2);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("subscribe v5: options per filter in a list, retainHandling 2", async () => {
    const { client, broker } = await connected(5);
    const granted = client.subscribe([
      { topic: "a", qos: 1, retainHandling: 2 },
      { topic: "b", noLocal: true },
    ]);
    assert.equal((await broker.next()).hex, "82 0b 00 01 00 00 01 61 21 00 01 62 04");
    await broker.send("90 05 00 01 00 01 00");
    assert.deepEqual(await granted, [1, 0]);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  for (const code of [0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2]) {
    const codeHex = code.toString(16);
    test(`subscribe v5: SUBACK 0x${codeHex} rejects with SubscribeError 0x${codeHex}`, async () => {
      const { client, broker } = await connected(5);
      const granted = client.subscribe("a/#");
      await broker.expect("subscribe");
      await broker.send(`90 04 00 01 00 ${codeHex}`);
      await assert.rejects(granted, (error) => {
        assert.ok(error instanceof SubscribeError);
        assert.deepEqual(error.reasonCodes, [code]);
        return true;
      });
      await Promise.all([client.disconnect(), broker.closed()]);
    });
  }

  test("subscribe v5: the Reason String of a refusing SUBACK is in the error message", async () => {
    const { client, broker } = await connected(5);
    const granted = client.subscribe("a/#");
    await broker.expect("subscribe");
    // Reason String (0x1f) "no", then the code 0x87.
    await broker.send("90 09 00 01 05 1f 00 02 6e 6f 87");
    await assert.rejects(granted, /"a\/#" \(0x87\): no$/);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("unsubscribe v5: UNSUBACK 0x11 (No subscription existed) resolves", async () => {
    const { client, broker } = await connected(5);
    const done = client.unsubscribe("a");
    await broker.expect("unsubscribe");
    await broker.send("b0 04 00 01 00 11");
    await done;
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("unsubscribe v5: UNSUBACK 0x87 (Not authorized) rejects with an MqttError naming the filter", async () => {
    const { client, broker } = await connected(5);
    const done = client.unsubscribe(["a", "b"]);
    await broker.expect("unsubscribe");
    await broker.send("b0 05 00 01 00 00 87");
    await assert.rejects(done, (error) => {
      assert.ok(error instanceof MqttError);
      assert.match(error.message, /from b /);
      return true;
    });
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});

describe("subscribe in other states", () => {
  test("subscribe while connecting: SUBSCRIBE goes out after CONNACK", async () => {
    const broker = new FakeBroker(4);
    const client = new MqttClient(broker.transport);
    const connecting = client.connect({ clientId: "k", keepalive: 0, clock: new FakeClock() });
    await broker.expect("connect");
    const granted = client.subscribe("a", { qos: 1 });
    await assertQuiet(broker);
    await broker.send("20 02 00 00");
    await connecting;
    assert.equal((await broker.next()).hex, "82 06 00 01 00 01 61 01");
    await broker.send("90 03 00 01 01");
    assert.equal(await granted, 1);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("subscribe before connect and after disconnect rejects with StateError", async () => {
    const broker = new FakeBroker(4);
    const client = new MqttClient(broker.transport);
    await assert.rejects(client.subscribe("a"), StateError);
    await assert.rejects(client.unsubscribe("a"), StateError);
    const setup = await connected(4);
    await Promise.all([setup.client.disconnect(), setup.broker.closed()]);
    await assert.rejects(setup.client.subscribe("a"), StateError);
    await assert.rejects(setup.client.unsubscribe("a"), StateError);
  });
});
