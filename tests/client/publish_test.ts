/**
 * Publishing, client to broker: every QoS flow byte by byte, MQTT 5 reason codes in
 * acknowledgements, acknowledgements that match nothing, packet identifiers, and the in-flight
 * window.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MqttClient } from "../../src/client/clients.ts";
import { LimitError, ProtocolError, StateError } from "../../src/errors.ts";
import type { ProtocolVersion } from "../../src/packet/types.ts";
import { PublishError } from "../../src/session/session.ts";
import {
  assertQuiet,
  connected,
  FakeBroker,
  recordEvents,
  settle,
  versionName,
  VERSIONS,
  watch,
} from "./harness.ts";

/** The PUBLISH of "hi" to "a/b" with packet id 1 (QoS > 0), as `version` writes it. */
function publishHex(version: ProtocolVersion, qos: 0 | 1 | 2, retain = false): string {
  const first = (0x30 | (qos << 1) | (retain ? 1 : 0)).toString(16);
  const id = qos > 0 ? " 00 01" : "";
  const properties = version === 5 ? " 00" : "";
  const length = 7 + (qos > 0 ? 2 : 0) + (version === 5 ? 1 : 0);
  return `${first} ${length.toString(16).padStart(2, "0")} 00 03 61 2f 62${id}${properties} 68 69`;
}

/** The ids of the next `count` PUBLISH packets the client sends, with their payloads. */
async function nextPublishes(broker: FakeBroker, count: number): Promise<[number, string][]> {
  const out: [number, string][] = [];
  for (let i = 0; i < count; i++) {
    const publish = await broker.expect("publish");
    out.push([publish.packetId!, new TextDecoder().decode(publish.payload)]);
  }
  return out;
}

for (const version of VERSIONS) {
  const v = versionName(version);

  describe(`publish c2b ${v}`, () => {
    test(`publish c2b qos0 ${v}: PUBLISH, resolves once the bytes are written, not before`, async () => {
      const { client, broker } = await connected(version, { blockWrites: true });
      const publish = watch(client.publish("a/b", "hi"));
      await assertQuietUnread(publish);
      assert.equal((await broker.next()).hex, publishHex(version, 0));
      await publish.promise;
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`publish c2b qos0 ${v} retained: the RETAIN flag is set`, async () => {
      const { client, broker } = await connected(version);
      const publish = client.publish("a/b", "hi", { retain: true });
      assert.equal((await broker.next()).hex, publishHex(version, 0, true));
      await publish;
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`publish c2b qos1 ${v}: PUBLISH, PUBACK; resolves only on PUBACK`, async () => {
      const { client, broker } = await connected(version);
      const publish = watch(client.publish("a/b", "hi", { qos: 1 }));
      assert.equal((await broker.next()).hex, publishHex(version, 1));
      await assertQuiet(broker);
      assert.equal(publish.settled, false);
      await broker.send("40 02 00 01");
      await publish.promise;
      assert.deepEqual(client.pending, { inflight: 0, waiting: 0 });
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`publish c2b qos2 ${v}: PUBLISH, PUBREC, PUBREL, PUBCOMP; resolves only on PUBCOMP`, async () => {
      const { client, broker } = await connected(version);
      const publish = watch(client.publish("a/b", "hi", { qos: 2 }));
      assert.equal((await broker.next()).hex, publishHex(version, 2));
      await broker.send("50 02 00 01");
      // [MQTT-4.3.3-4] PUBREL, with the flags 0010 in every version.
      assert.equal((await broker.next()).hex, "62 02 00 01");
      await assertQuiet(broker);
      assert.equal(publish.settled, false);
      await broker.send("70 02 00 01");
      await publish.promise;
      assert.deepEqual(client.pending, { inflight: 0, waiting: 0 });
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`publish c2b qos2 ${v} duplicate PUBREC: PUBREL is sent again, PUBCOMP completes once`, async () => {
      const { client, broker } = await connected(version);
      const publish = watch(client.publish("a/b", "hi", { qos: 2 }));
      await broker.expect("publish");
      await broker.send("50 02 00 01");
      assert.equal((await broker.next()).hex, "62 02 00 01");
      await broker.send("50 02 00 01");
      assert.equal((await broker.next()).hex, "62 02 00 01");
      await broker.send("70 02 00 01");
      await publish.promise;
      await broker.send("70 02 00 01");
      await assertQuiet(broker);
      assert.equal(client.state, "connected");
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`publish c2b ${v}: a PUBACK or PUBCOMP that matches nothing in flight is ignored`, async () => {
      const { client, broker } = await connected(version);
      const events = recordEvents(client, ["error", "disconnect"]);
      const qos1 = watch(client.publish("a/b", "hi", { qos: 1 }));
      const qos2 = watch(client.publish("a/b", "hi", { qos: 2 }));
      assert.deepEqual(await nextPublishes(broker, 2), [[1, "hi"], [2, "hi"]]);
      await broker.send("40 02 00 63"); // PUBACK 99: never used
      await broker.send("70 02 00 63"); // PUBCOMP 99: never used
      await broker.send("40 02 00 02"); // PUBACK 2: that is a QoS 2 flow
      await broker.send("70 02 00 02"); // PUBCOMP 2 before PUBREC: the flow is not at PUBREL
      await assertQuiet(broker);
      assert.equal(qos1.settled, false);
      assert.equal(qos2.settled, false);
      await broker.send("40 02 00 01");
      await qos1.promise;
      await broker.send("40 02 00 01"); // the same PUBACK again
      await broker.send("50 02 00 02");
      assert.equal((await broker.next()).hex, "62 02 00 02");
      await broker.send("70 02 00 02");
      await qos2.promise;
      assert.deepEqual(events, []);
      assert.equal(client.state, "connected");
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(
      `publish c2b ${v}: a PUBREC for an unknown id is answered with PUBREL${
        version === 5 ? " 0x92 (Packet Identifier not found)" : ""
      }`,
      async () => {
        const { client, broker } = await connected(version);
        await broker.send("50 02 00 63");
        assert.equal((await broker.next()).hex, version === 5 ? "62 03 00 63 92" : "62 02 00 63");
        assert.equal(client.state, "connected");
        await Promise.all([client.disconnect(), broker.closed()]);
      },
    );

    test(`publish c2b ${v}: concurrent publishes get ids 1, 2, 3; an acknowledged id is not reused while others are in flight`, async () => {
      const { client, broker } = await connected(version);
      const publishes = [1, 2, 3].map((i) => client.publish("t", `${i}`, { qos: 1 }));
      assert.deepEqual(await nextPublishes(broker, 3), [[1, "1"], [2, "2"], [3, "3"]]);
      await broker.send("40 02 00 02");
      await publishes[1];
      const fourth = client.publish("t", "4", { qos: 2 });
      assert.deepEqual(await nextPublishes(broker, 1), [[4, "4"]]);
      await broker.send("40 02 00 01 40 02 00 03 50 02 00 04");
      await broker.expect("pubrel");
      await broker.send("70 02 00 04");
      await Promise.all([...publishes, fourth]);
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`publish c2b ${v}: an invalid topic rejects before anything is sent`, async () => {
      const { client, broker } = await connected(version);
      await assert.rejects(client.publish("a/+", "x"), ProtocolError);
      await assert.rejects(client.publish("a/#", "x", { qos: 1 }), ProtocolError);
      await assert.rejects(client.publish("", "x", { qos: 1 }), ProtocolError);
      await assertQuiet(broker);
      // No packet id was spent on them.
      const publish = client.publish("a/b", "hi", { qos: 1 });
      assert.equal((await broker.next()).hex, publishHex(version, 1));
      await broker.send("40 02 00 01");
      await publish;
      await Promise.all([client.disconnect(), broker.closed()]);
    });
  });
}

describe("publish c2b v5 acknowledgements with reason codes", () => {
  test("publish c2b qos1 v5: PUBACK 0x10 (No matching subscribers) is a success", async () => {
    const { client, broker } = await connected(5);
    const publish = client.publish("a/b", "hi", { qos: 1 });
    await broker.expect("publish");
    await broker.send("40 03 00 01 10");
    await publish;
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("publish c2b qos1 v5: PUBACK with reason 0x00 and an empty property list resolves", async () => {
    const { client, broker } = await connected(5);
    const publish = client.publish("a/b", "hi", { qos: 1 });
    await broker.expect("publish");
    await broker.send("40 04 00 01 00 00");
    await publish;
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  for (const code of [0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]) {
    const codeHex = code.toString(16);
    test(`publish c2b qos1 v5: PUBACK 0x${codeHex} rejects with PublishError 0x${codeHex}; the connection stays`, async () => {
      const { client, broker } = await connected(5);
      const publish = client.publish("a/b", "hi", { qos: 1 });
      await broker.expect("publish");
      await broker.send(`40 03 00 01 ${codeHex}`);
      await assert.rejects(publish, (error) => {
        assert.ok(error instanceof PublishError);
        assert.equal(error.reasonCode, code);
        return true;
      });
      assert.equal(client.state, "connected");
      assert.deepEqual(client.pending, { inflight: 0, waiting: 0 });
      await Promise.all([client.disconnect(), broker.closed()]);
    });
  }

  test("publish c2b qos1 v5: the Reason String of a refusing PUBACK is in the error message", async () => {
    const { client, broker } = await connected(5);
    const publish = client.publish("a/b", "hi", { qos: 1 });
    await broker.expect("publish");
    // Reason 0x87 and the Reason String (0x1f) "no".
    await broker.send("40 09 00 01 87 05 1f 00 02 6e 6f");
    await assert.rejects(publish, (error) => {
      assert.ok(error instanceof PublishError);
      assert.equal(error.reasonCode, 0x87);
      assert.match(error.message, /PUBACK reason 0x87: no$/);
      return true;
    });
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("publish c2b qos2 v5: PUBREC 0x80 rejects with PublishError, ends the flow without PUBREL, frees its window slot", async () => {
    const { client, broker } = await connected(5, { options: { inflightWindow: 1 } });
    const refused = client.publish("a/b", "hi", { qos: 2 });
    const next = client.publish("a/b", "hi", { qos: 1 });
    assert.equal((await broker.next()).hex, publishHex(5, 2));
    await broker.send("50 03 00 01 80");
    await assert.rejects(refused, (error) => {
      assert.ok(error instanceof PublishError);
      assert.equal(error.reasonCode, 0x80);
      assert.match(error.message, /PUBREC/);
      return true;
    });
    // The flow ended: the window of 1 had room again at once, and no PUBREL came first.
    assert.equal((await broker.next()).hex, "32 0a 00 03 61 2f 62 00 02 00 68 69");
    await broker.send("40 02 00 02");
    await next;
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("publish c2b qos0 v5: properties are written after the topic", async () => {
    const { client, broker } = await connected(5);
    const publish = client.publish("a/b", "hi", {
      properties: { contentType: "t", messageExpiryInterval: 9 },
    });
    // Properties: Content Type (0x03) "t", Message Expiry Interval (0x02) 9.
    assert.equal(
      (await broker.next()).hex,
      "30 11 00 03 61 2f 62 09 03 00 01 74 02 00 00 00 09 68 69",
    );
    await publish;
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});

describe("packet identifiers", () => {
  for (const version of [4, 5] as const) {
    test(`packet ids ${versionName(version)}: 70,000 sequential QoS 1 publishes wrap from 65535 to 1 and never take the id held in flight`, async () => {
      const { client, broker } = await connected(version);
      const held = watch(client.publish("held", "", { qos: 2 }));
      const first = await broker.expect("publish");
      assert.equal(first.packetId, 1);
      // The QoS 2 flow moves past PUBREC: its id stays taken until PUBCOMP.
      await broker.send("50 02 00 01");
      await broker.expect("pubrel");
      let previous = 1;
      let wrapped = 0;
      for (let i = 0; i < 70_000; i++) {
        const publish = client.publish("t", "", { qos: 1 });
        const sent = await broker.expect("publish");
        const id = sent.packetId!;
        assert.notEqual(id, 1, `publish ${i} reused the id in flight`);
        assert.ok(id >= 1 && id <= 65535);
        // Ids go up by one, and from 65535 to 2, skipping 1.
        assert.equal(id, previous === 65535 ? 2 : previous + 1, `publish ${i}`);
        if (id < previous) wrapped++;
        previous = id;
        await broker.send(new Uint8Array([0x40, 0x02, id >> 8, id & 0xff]));
        await publish;
      }
      assert.equal(wrapped, 1);
      assert.equal(held.settled, false);
      await broker.send("70 02 00 01");
      await held.promise;
      // Ids 2 to 65535, then 2 to 4467: 70,000 in all. The counter goes on from there.
      const after = client.publish("t", "", { qos: 1 });
      assert.equal((await broker.expect("publish")).packetId, previous + 1);
      await broker.send(new Uint8Array([0x40, 0x02, (previous + 1) >> 8, (previous + 1) & 0xff]));
      await after;
      await Promise.all([client.disconnect(), broker.closed()]);
    });
  }

  test("packet ids: when the counter reaches an id in flight it skips it, and takes it again once free", async () => {
    const { client, broker } = await connected(4);
    const held = [1, 2, 3].map(() => watch(client.publish("held", "", { qos: 1 })));
    assert.deepEqual((await nextPublishes(broker, 3)).map(([id]) => id), [1, 2, 3]);
    // Free id 2 only; walk the counter around.
    await broker.send("40 02 00 02");
    await held[1].promise;
    let id = 3;
    while (id !== 65535) {
      const publish = client.publish("t", "", { qos: 1 });
      id = (await broker.expect("publish")).packetId!;
      await broker.send(new Uint8Array([0x40, 0x02, id >> 8, id & 0xff]));
      await publish;
    }
    const publish = client.publish("t", "", { qos: 1 });
    // 1 is held: 2 is free.
    assert.equal((await broker.expect("publish")).packetId, 2);
    await broker.send("40 02 00 02");
    await publish;
    const next = client.publish("t", "", { qos: 1 });
    // 3 is held: 4.
    assert.equal((await broker.expect("publish")).packetId, 4);
    await broker.send("40 02 00 04 40 02 00 01 40 02 00 03");
    await Promise.all([next, held[0].promise, held[2].promise]);
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});

describe("the in-flight window", () => {
  for (const version of VERSIONS) {
    test(`window ${versionName(version)}: by default 20 in flight; the 21st QoS 1 publish waits for an ack, order kept`, async () => {
      const { client, broker } = await connected(version);
      const publishes = Array.from(
        { length: 25 },
        (_, i) => watch(client.publish("t", `${i}`, { qos: 1 })),
      );
      const first = await nextPublishes(broker, 20);
      assert.deepEqual(first, Array.from({ length: 20 }, (_, i) => [i + 1, `${i}`]));
      await assertQuiet(broker);
      assert.deepEqual(client.pending, { inflight: 20, waiting: 5 });
      // QoS 0 does not count against the window.
      const qos0 = client.publish("t", "q0");
      assert.equal((await broker.expect("publish")).qos, 0);
      await qos0;
      // Any ack makes room, not only the oldest: PUBACK 5 lets the 21st out.
      await broker.send("40 02 00 05");
      await publishes[4].promise;
      assert.deepEqual(await nextPublishes(broker, 1), [[21, "20"]]);
      await assertQuiet(broker);
      await broker.send("40 02 00 01 40 02 00 02");
      assert.deepEqual(await nextPublishes(broker, 2), [[22, "21"], [23, "22"]]);
      for (const id of [3, 4, ...Array.from({ length: 18 }, (_, i) => i + 6)]) {
        await broker.send(new Uint8Array([0x40, 0x02, 0x00, id]));
      }
      // The counter goes on where it was, taking no freed id before its turn.
      assert.deepEqual(await nextPublishes(broker, 2), [[24, "23"], [25, "24"]]);
      await broker.send("40 02 00 18 40 02 00 19");
      await Promise.all(publishes.map((p) => p.promise));
      assert.deepEqual(client.pending, { inflight: 0, waiting: 0 });
      await Promise.all([client.disconnect(), broker.closed()]);
    });
  }

  test("window: inflightWindow 2 lets two out; a QoS 2 flow holds its place until PUBCOMP, not PUBREC", async () => {
    const { client, broker } = await connected(4, { options: { inflightWindow: 2 } });
    const a = client.publish("t", "a", { qos: 2 });
    const b = client.publish("t", "b", { qos: 1 });
    const c = client.publish("t", "c", { qos: 1 });
    assert.deepEqual(await nextPublishes(broker, 2), [[1, "a"], [2, "b"]]);
    await broker.send("50 02 00 01");
    assert.equal((await broker.next()).hex, "62 02 00 01");
    await assertQuiet(broker);
    await broker.send("70 02 00 01");
    await a;
    assert.deepEqual(await nextPublishes(broker, 1), [[3, "c"]]);
    await broker.send("40 02 00 02 40 02 00 03");
    await Promise.all([b, c]);
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});

describe("publish in the wrong state", () => {
  test("publish before connect rejects with StateError", async () => {
    const broker = new FakeBroker(4);
    await assert.rejects(new MqttClient(broker.transport).publish("t", "x"), StateError);
  });

  test("publish after disconnect rejects with StateError, and nothing is sent", async () => {
    const { client, broker } = await connected(4);
    await Promise.all([client.disconnect(), broker.closed()]);
    await assert.rejects(client.publish("t", "x", { qos: 1 }), StateError);
  });
});

/** Asserts that a publish waiting for its bytes to be written has not settled. */
async function assertQuietUnread(publish: { settled: boolean }): Promise<void> {
  await settle();
  assert.equal(publish.settled, false, "the publish settled before the broker read it");
}

describe("publish c2b v5: publishes queued before CONNACK meet the limits it announces", () => {
  test("a QoS 2 publish over Maximum QoS 1, or too large, rejects with LimitError and is not sent; the rest go", async () => {
    const broker = new FakeBroker(5);
    const client = new MqttClient(broker.transport);
    const connecting = client.connect({ clientId: "c", keepalive: 0, protocolVersion: 5 });
    await broker.expect("connect");
    const tooHighQoS = watch(client.publish("a/b", "hi", { qos: 2 }));
    const tooLarge = watch(client.publish("a/b", new Uint8Array(200), { qos: 1 }));
    const fine = client.publish("a/b", "hi", { qos: 1 });
    await broker.sendPacket({
      type: "connack",
      sessionPresent: false,
      reasonCode: 0,
      properties: { maximumQoS: 1, maximumPacketSize: 100 },
    });
    await connecting;
    await assert.rejects(tooHighQoS.promise, (e: unknown) => e instanceof LimitError);
    await assert.rejects(tooLarge.promise, (e: unknown) => e instanceof LimitError);
    const sent = await broker.expect("publish");
    assert.equal(sent.qos, 1);
    assert.equal(sent.payload.length, 2);
    await broker.sendPacket({ type: "puback", packetId: sent.packetId! });
    await fine;
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});
