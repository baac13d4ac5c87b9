/**
 * Connecting: the CONNECT bytes of each protocol version with every option, the CONNACK that
 * accepts or refuses, the MQTT 5 CONNACK properties the client must respect, the connect
 * timeout and the abort signal.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MqttClient, MqttPublisher } from "../../src/client/clients.ts";
import type { ClientOptions } from "../../src/client/types.ts";
import {
  ConnectionClosedError,
  ConnectionRefusedError,
  LimitError,
  StateError,
  TimeoutError,
} from "../../src/errors.ts";
import type { ProtocolVersion } from "../../src/packet/types.ts";
import {
  assertQuiet,
  connected,
  FakeBroker,
  FakeClock,
  nextEvent,
  recordEvents,
  type Sent,
  settle,
  versionName,
  VERSIONS,
  watch,
} from "./harness.ts";

/** The CONNECT a client sends with `options`; the connection is then accepted and closed. */
async function connectPacket(version: ProtocolVersion, options: ClientOptions): Promise<Sent> {
  const broker = new FakeBroker(version);
  const client = new MqttClient(broker.transport);
  const connecting = client.connect({
    ...options,
    protocolVersion: version,
    clock: new FakeClock(),
  });
  const sent = await broker.next();
  await broker.send(version === 5 ? "20 03 00 00 00" : "20 02 00 00");
  await connecting;
  await Promise.all([client.disconnect(), broker.closed()]);
  return sent;
}

/** A client whose CONNECT has been read, waiting for CONNACK. */
async function awaitingConnack(version: ProtocolVersion, options: ClientOptions = {}) {
  const broker = new FakeBroker(version);
  const clock = new FakeClock();
  const client = new MqttClient(broker.transport);
  const events = recordEvents(client, ["connect", "error", "disconnect"]);
  const connecting = watch(
    client.connect({ clientId: "kite", keepalive: 0, ...options, protocolVersion: version, clock }),
  );
  // The client's last word: once it fires, the client is closed.
  const disconnected = nextEvent(client, "disconnect");
  await broker.expect("connect");
  return { broker, clock, client, events, connecting, disconnected };
}

describe("CONNECT", () => {
  test("CONNECT v3.1: MQIsdp, level 3, client id, clean session, keepalive 60 by default", async () => {
    const sent = await connectPacket(3, { clientId: "kite-3" });
    assert.equal(
      sent.hex,
      "10 14 00 06 4d 51 49 73 64 70 03 02 00 3c 00 06 6b 69 74 65 2d 33",
    );
  });

  test("CONNECT v3.1 with every option: no clean session, keepalive, will QoS 1 retained, user name, password", async () => {
    const sent = await connectPacket(3, {
      clientId: "c3",
      clean: false,
      keepalive: 10,
      username: "u",
      password: "p",
      will: { topic: "w", payload: "bye", qos: 1, retain: true },
    });
    assert.equal(
      sent.hex,
      "10 1e 00 06 4d 51 49 73 64 70 03 ec 00 0a 00 02 63 33 00 01 77 00 03 62 79 65 00 01 75 00 01 70",
    );
  });

  for (const version of VERSIONS) {
    test(`CONNECT ${versionName(version)} without a client id: a random id of 1 to 23 characters from [0-9a-zA-Z], new for each client`, async () => {
      const first = await connectPacket(version, {});
      const second = await connectPacket(version, {});
      for (const sent of [first, second]) {
        assert.equal(sent.packet.type, "connect");
        if (sent.packet.type !== "connect") return;
        // [MQTT-3.1.3-5] the identifiers every server must accept; MQTT 3.1 allows 23 at most.
        assert.match(sent.packet.clientId, /^[0-9a-zA-Z]{1,23}$/);
      }
      assert.notEqual(
        (first.packet as { clientId: string }).clientId,
        (second.packet as { clientId: string }).clientId,
      );
    });
  }

  test("CONNECT v3.1.1: MQTT, level 4, clean session, keepalive 60 by default", async () => {
    const sent = await connectPacket(4, { clientId: "kite-1" });
    assert.equal(sent.hex, "10 12 00 04 4d 51 54 54 04 02 00 3c 00 06 6b 69 74 65 2d 31");
  });

  test("CONNECT v3.1.1 with every option: will QoS 2 not retained, user name, password, keepalive 300", async () => {
    const sent = await connectPacket(4, {
      clientId: "c4",
      clean: false,
      keepalive: 300,
      username: "user",
      password: "pass",
      will: { topic: "w/t", payload: "gone", qos: 2, retain: false },
    });
    assert.equal(
      sent.hex,
      "10 25 00 04 4d 51 54 54 04 d4 01 2c 00 02 63 34 00 03 77 2f 74 00 04 67 6f 6e 65 " +
        "00 04 75 73 65 72 00 04 70 61 73 73",
    );
  });

  test("CONNECT v3.1.1: an empty client id is sent as is, with clean session", async () => {
    const sent = await connectPacket(4, { clientId: "" });
    assert.equal(sent.hex, "10 0c 00 04 4d 51 54 54 04 02 00 3c 00 00");
  });

  test("CONNECT v3.1.1: clean session off and keepalive 0", async () => {
    const sent = await connectPacket(4, { clientId: "k", clean: false, keepalive: 0 });
    assert.equal(sent.hex, "10 0d 00 04 4d 51 54 54 04 00 00 00 00 01 6b");
  });

  test("CONNECT v3.1.1: a binary password is sent byte for byte", async () => {
    const sent = await connectPacket(4, {
      clientId: "b",
      username: "u",
      password: new Uint8Array([0x00, 0xff]),
    });
    assert.equal(sent.hex, "10 14 00 04 4d 51 54 54 04 c2 00 3c 00 01 62 00 01 75 00 02 00 ff");
  });

  test("CONNECT v5: level 5 and an empty property list", async () => {
    const sent = await connectPacket(5, { clientId: "c5" });
    assert.equal(sent.hex, "10 0f 00 04 4d 51 54 54 05 02 00 3c 00 00 02 63 35");
  });

  test("CONNECT v5 with every option: properties, maximumPacketSize, will properties, user name, password", async () => {
    const sent = await connectPacket(5, {
      clientId: "c5",
      keepalive: 30,
      username: "u",
      password: "p",
      will: {
        topic: "w",
        payload: "x",
        qos: 1,
        retain: true,
        properties: { willDelayInterval: 5 },
      },
      properties: { sessionExpiryInterval: 3600, receiveMaximum: 10 },
      maximumPacketSize: 1024,
    });
    assert.equal(
      sent.hex,
      "10 2e 00 04 4d 51 54 54 05 ee 00 1e 0d 11 00 00 0e 10 21 00 0a 27 00 00 04 00 " +
        "00 02 63 35 05 18 00 00 00 05 00 01 77 00 01 78 00 01 75 00 01 70",
    );
  });

  test("CONNECT is the first packet: a publish made while connecting goes out after CONNACK, in order", async () => {
    const { broker, client, connecting } = await awaitingConnack(4);
    const qos0 = watch(client.publish("a", "0"));
    const qos1 = watch(client.publish("b", "1", { qos: 1 }));
    await assertQuiet(broker);
    assert.equal(qos0.settled, false);
    await broker.send("20 02 00 00");
    assert.equal(await connecting.promise, false);
    assert.equal((await broker.next()).hex, "30 04 00 01 61 30");
    assert.equal((await broker.next()).hex, "32 06 00 01 62 00 01 31");
    await qos0.promise;
    await broker.send("40 02 00 01");
    await qos1.promise;
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});

describe("CONNACK", () => {
  test("CONNACK v3.1 accepted: connect() resolves false, as MQTT 3.1 has no session present flag", async () => {
    const { broker, client, connecting, events } = await awaitingConnack(3);
    await broker.send("20 02 01 00");
    assert.equal(await connecting.promise, false);
    assert.equal(client.state, "connected");
    assert.equal(client.sessionPresent, false);
    assert.deepEqual(events.map(([type]) => type), ["connect"]);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  for (
    const [version, accepted, present] of [
      [4, "20 02 00 00", "20 02 01 00"],
      [5, "20 03 00 00 00", "20 03 01 00 00"],
    ] as const
  ) {
    test(`CONNACK ${versionName(version)} accepted: connect() resolves with session present false`, async () => {
      const { broker, client, connecting, events } = await awaitingConnack(version);
      assert.equal(client.state, "connecting");
      await broker.send(accepted);
      assert.equal(await connecting.promise, false);
      assert.equal(client.state, "connected");
      assert.equal(client.sessionPresent, false);
      assert.deepEqual(client.connack, { type: "connack", sessionPresent: false, reasonCode: 0 });
      assert.deepEqual(events.map(([type]) => type), ["connect"]);
      const detail = events[0][1] as { connack: unknown; sessionPresent: boolean };
      assert.equal(detail.connack, client.connack);
      assert.equal(detail.sessionPresent, false);
      await Promise.all([client.disconnect(), broker.closed()]);
    });

    test(`CONNACK ${versionName(version)} accepted with session present: connect() resolves true`, async () => {
      const { broker, client, connecting } = await awaitingConnack(version, { clean: false });
      await broker.send(present);
      assert.equal(await connecting.promise, true);
      assert.equal(client.sessionPresent, true);
      assert.equal(client.connack?.sessionPresent, true);
      await Promise.all([client.disconnect(), broker.closed()]);
    });
  }

  const refusals311: [number, string][] = [
    [1, "Unacceptable Protocol Version"],
    [2, "Identifier Rejected"],
    [3, "Server Unavailable"],
    [4, "Bad User Name or Password"],
    [5, "Not Authorized"],
  ];
  for (const version of [3, 4] as const) {
    for (const [code, reason] of refusals311) {
      test(`CONNACK ${versionName(version)} refused with return code ${code}: ConnectionRefusedError "${reason}", client closed`, async () => {
        const { broker, client, connecting, events, disconnected } = await awaitingConnack(
          version,
        );
        await broker.send(`20 02 00 0${code}`);
        const error = await connecting.promise.then(
          () => assert.fail("connect() resolved"),
          (error) => error,
        );
        assert.ok(error instanceof ConnectionRefusedError);
        assert.equal(error.reasonCode, code);
        assert.equal(error.reason, reason);
        // The client closes the connection itself, and says why.
        assert.deepEqual(await broker.closed(), []);
        await disconnected;
        assert.equal(broker.transport.closed, true);
        assert.equal(client.state, "closed");
        assert.deepEqual(events.map(([type]) => type), ["error", "disconnect"]);
        assert.equal(events[0][1], error);
        assert.equal((events[1][1] as { error: unknown }).error, error);
      });
    }
  }

  const refusals5: [number, string][] = [
    [0x80, "Unspecified error"],
    [0x81, "Malformed Packet"],
    [0x82, "Protocol Error"],
    [0x83, "Implementation specific error"],
    [0x84, "Unsupported Protocol Version"],
    [0x85, "Client Identifier not valid"],
    [0x86, "Bad User Name or Password"],
    [0x87, "Not authorized"],
    [0x88, "Server unavailable"],
    [0x89, "Server busy"],
    [0x8a, "Banned"],
    [0x8c, "Bad authentication method"],
    [0x90, "Topic Name invalid"],
    [0x95, "Packet too large"],
    [0x97, "Quota exceeded"],
    [0x99, "Payload format invalid"],
    [0x9a, "Retain not supported"],
    [0x9b, "QoS not supported"],
    [0x9c, "Use another server"],
    [0x9d, "Server moved"],
    [0x9f, "Connection rate exceeded"],
  ];
  for (const [code, reason] of refusals5) {
    const codeHex = code.toString(16);
    test(`CONNACK v5 refused with reason code 0x${codeHex}: ConnectionRefusedError "${reason}", client closed`, async () => {
      const { broker, client, connecting, events, disconnected } = await awaitingConnack(5);
      await broker.send(`20 03 00 ${codeHex} 00`);
      await assert.rejects(connecting.promise, (error) => {
        assert.ok(error instanceof ConnectionRefusedError);
        assert.equal(error.reasonCode, code);
        assert.equal(error.reason, reason);
        return true;
      });
      assert.deepEqual(await broker.closed(), []);
      await disconnected;
      assert.equal(client.state, "closed");
      assert.deepEqual(events.map(([type]) => type), ["error", "disconnect"]);
    });
  }

  test("CONNACK v5 refused with a Reason String: the error message carries it", async () => {
    const { broker, connecting } = await awaitingConnack(5);
    // Reason code 0x86 and the property Reason String (0x1f) "bad".
    await broker.send("20 09 00 86 06 1f 00 03 62 61 64");
    await assert.rejects(connecting.promise, (error) => {
      assert.ok(error instanceof ConnectionRefusedError);
      assert.equal(error.reasonCode, 0x86);
      assert.match(error.message, /Bad User Name or Password.*: bad$/);
      return true;
    });
    await broker.closed();
  });
});

describe("CONNACK v5 properties", () => {
  test("CONNACK v5 Receive Maximum 2 caps the in-flight window at 2: the third QoS 1 publish waits for a PUBACK", async () => {
    // Receive Maximum (0x21) 2.
    const { client, broker } = await connected(5, { connack: "20 06 00 00 03 21 00 02" });
    const publishes = [0, 1, 2].map((i) => watch(client.publish("t", `${i}`, { qos: 1 })));
    assert.equal((await broker.next()).hex, "32 07 00 01 74 00 01 00 30");
    assert.equal((await broker.next()).hex, "32 07 00 01 74 00 02 00 31");
    await assertQuiet(broker);
    await broker.send("40 02 00 01");
    await publishes[0].promise;
    assert.equal((await broker.next()).hex, "32 07 00 01 74 00 03 00 32");
    await broker.send("40 02 00 02");
    await broker.send("40 02 00 03");
    await Promise.all(publishes.map((p) => p.promise));
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("CONNACK v5 Maximum Packet Size 32: a 33-byte PUBLISH rejects with LimitError and is not sent; 32 bytes go out", async () => {
    // Maximum Packet Size (0x27) 32.
    const { client, broker } = await connected(5, { connack: "20 08 00 00 05 27 00 00 00 20" });
    // 2 bytes of fixed header, 3 of topic, 1 of properties: 26 bytes of payload make 32.
    await assert.rejects(client.publish("t", "x".repeat(27), { qos: 1 }), LimitError);
    await assert.rejects(client.publish("t", "x".repeat(27)), LimitError);
    await assertQuiet(broker);
    const fits = client.publish("t", "x".repeat(26));
    const sent = await broker.next();
    assert.equal(sent.bytes.length, 32);
    assert.equal(sent.hex.slice(0, 17), "30 1e 00 01 74 00");
    await fits;
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("CONNACK v5 Maximum Packet Size 32: a larger SUBSCRIBE or UNSUBSCRIBE rejects with LimitError and is not sent [MQTT-3.2.2-15]", async () => {
    const { client, broker } = await connected(5, { connack: "20 08 00 00 05 27 00 00 00 20" });
    // SUBSCRIBE v5: 2 bytes of fixed header, 2 of packet id, 1 of properties, then per filter
    // 2 of length, the filter and 1 of options: a 24-character filter makes 32 bytes.
    await assert.rejects(client.subscribe("f".repeat(25), { qos: 1 }), LimitError);
    await assert.rejects(client.unsubscribe("f".repeat(26)), LimitError);
    await assertQuiet(broker);
    const subscribing = client.subscribe("f".repeat(24), { qos: 1 });
    const sent = await broker.next();
    assert.equal(sent.packet.type, "subscribe");
    assert.equal(sent.bytes.length, 32);
    await broker.send("90 04 00 01 00 01");
    assert.equal(await subscribing, 1);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("CONNACK v5 Assigned Client Identifier becomes client.clientId", async () => {
    const broker = new FakeBroker(5);
    const client = new MqttClient(broker.transport);
    const connecting = client.connect({ clientId: "", protocolVersion: 5, clock: new FakeClock() });
    const connect = await broker.expect("connect");
    assert.equal(connect.clientId, "");
    assert.equal(client.clientId, "");
    // Assigned Client Identifier (0x12) "auto1".
    await broker.send("20 0b 00 00 08 12 00 05 61 75 74 6f 31");
    await connecting;
    assert.equal(client.clientId, "auto1");
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("CONNACK v5 Server Keep Alive 5 replaces the keepalive of 60: PINGREQ after 5 s", async () => {
    // Server Keep Alive (0x13) 5.
    const { client, broker, clock } = await connected(5, {
      options: { keepalive: 60 },
      connack: "20 06 00 00 03 13 00 05",
    });
    await clock.advance(4999);
    await assertQuiet(broker);
    await clock.advance(1);
    assert.equal((await broker.next()).hex, "c0 00");
    await broker.send("d0 00");
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("CONNACK v5 Maximum QoS 1: a QoS 2 publish rejects with LimitError and is not sent", async () => {
    // Maximum QoS (0x24) 1.
    const { client, broker } = await connected(5, { connack: "20 05 00 00 02 24 01" });
    await assert.rejects(client.publish("t", "x", { qos: 2 }), LimitError);
    await assertQuiet(broker);
    const qos1 = client.publish("t", "x", { qos: 1 });
    assert.equal((await broker.next()).hex, "32 07 00 01 74 00 01 00 78");
    await broker.send("40 02 00 01");
    await qos1;
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("CONNACK v5 Retain Available 0: a retained publish rejects with LimitError and is not sent", async () => {
    // Retain Available (0x25) 0.
    const { client, broker } = await connected(5, { connack: "20 05 00 00 02 25 00" });
    await assert.rejects(client.publish("t", "x", { retain: true }), LimitError);
    await assertQuiet(broker);
    const plain = client.publish("t", "x");
    assert.equal((await broker.next()).hex, "30 05 00 01 74 00 78");
    await plain;
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("CONNACK v5 Topic Alias Maximum 2: alias 2 is sent, alias 3 rejects with LimitError; none without it", async () => {
    const without = await connected(5);
    await assert.rejects(
      without.client.publish("t", "x", { properties: { topicAlias: 1 } }),
      LimitError,
    );
    await assertQuiet(without.broker);
    await Promise.all([without.client.disconnect(), without.broker.closed()]);

    // Topic Alias Maximum (0x22) 2.
    const { client, broker } = await connected(5, { connack: "20 06 00 00 03 22 00 02" });
    await assert.rejects(client.publish("t", "x", { properties: { topicAlias: 3 } }), LimitError);
    await assertQuiet(broker);
    const aliased = client.publish("t", "x", { properties: { topicAlias: 2 } });
    assert.equal((await broker.next()).hex, "30 08 00 01 74 03 23 00 02 78");
    await aliased;
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});

describe("connect timeout and abort", () => {
  test("connect timeout: no CONNACK within the default 30 s rejects with TimeoutError and closes", async () => {
    const { broker, clock, client, connecting, events, disconnected } = await awaitingConnack(4);
    await clock.advance(29_999);
    assert.equal(connecting.settled, false);
    await clock.advance(1);
    await assert.rejects(connecting.promise, TimeoutError);
    assert.deepEqual(await broker.closed(), []);
    await disconnected;
    assert.equal(client.state, "closed");
    assert.deepEqual(events.map(([type]) => type), ["error", "disconnect"]);
    assert.ok(events[0][1] instanceof TimeoutError);
  });

  test("connect timeout: connectTimeout 5000 rejects with TimeoutError after 5 s, not before", async () => {
    const { broker, clock, connecting } = await awaitingConnack(5, { connectTimeout: 5000 });
    await clock.advance(4999);
    assert.equal(connecting.settled, false);
    await clock.advance(1);
    await assert.rejects(connecting.promise, TimeoutError);
    await broker.closed();
  });

  test("connect timeout: a CONNACK in time cancels the timer", async () => {
    const { broker, clock, client, connecting } = await awaitingConnack(4, {
      connectTimeout: 5000,
    });
    await broker.send("20 02 00 00");
    await connecting.promise;
    await clock.advance(60_000);
    assert.equal(client.state, "connected");
    await assertQuiet(broker);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("an aborted signal rejects connect with the signal's reason, and nothing is written", async () => {
    const broker = new FakeBroker(4);
    const client = new MqttClient(broker.transport);
    const disconnected = nextEvent(client, "disconnect");
    const reason = new Error("stop");
    await assert.rejects(
      client.connect({ signal: AbortSignal.abort(reason), clock: new FakeClock() }),
      (error) => error === reason,
    );
    await disconnected;
    assert.equal(client.state, "closed");
    assert.equal(broker.transport.closed, true);
    await assertQuiet(broker);
  });

  test("aborting while connecting rejects connect with the signal's reason and closes", async () => {
    const controller = new AbortController();
    const { broker, client, connecting, disconnected } = await awaitingConnack(4, {
      signal: controller.signal,
    });
    controller.abort();
    await assert.rejects(
      connecting.promise,
      (error) => error === controller.signal.reason && error instanceof DOMException,
    );
    assert.deepEqual(await broker.closed(), []);
    await disconnected;
    assert.equal(client.state, "closed");
  });

  test("aborting after CONNACK changes nothing: the signal only guards the attempt", async () => {
    const controller = new AbortController();
    const { client, broker } = await connected(4, { options: { signal: controller.signal } });
    controller.abort();
    await settle();
    assert.equal(client.state, "connected");
    const publish = client.publish("t", "x", { qos: 1 });
    await broker.expect("publish");
    await broker.send("40 02 00 01");
    await publish;
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});

describe("connect in the wrong state", () => {
  test("connect twice: the second call rejects with StateError; the first goes on", async () => {
    const { broker, client, connecting } = await awaitingConnack(4);
    await assert.rejects(client.connect(), StateError);
    await broker.send("20 02 00 00");
    await connecting.promise;
    await assert.rejects(client.connect(), StateError);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("connect after disconnect rejects with StateError", async () => {
    const { client, broker } = await connected(4);
    await Promise.all([client.disconnect(), broker.closed()]);
    await assert.rejects(client.connect(), StateError);
  });

  test("connect without a transport rejects with StateError", async () => {
    await assert.rejects(new MqttPublisher().connect(), StateError);
  });

  test("connect with protocol version 6 rejects with TypeError, and nothing is written", async () => {
    const broker = new FakeBroker(4);
    const client = new MqttClient(broker.transport);
    await assert.rejects(
      client.connect({ protocolVersion: 6 as ProtocolVersion, clock: new FakeClock() }),
      TypeError,
    );
    await assertQuiet(broker);
  });

  test("connect v3.1 with a 24-character client id rejects before anything is written", async () => {
    const broker = new FakeBroker(3);
    const client = new MqttClient(broker.transport);
    await assert.rejects(
      client.connect({ protocolVersion: 3, clientId: "x".repeat(24), clock: new FakeClock() }),
    );
    await assertQuiet(broker);
  });

  test("disconnect while connecting rejects connect with ConnectionClosedError", async () => {
    const { broker, client, connecting } = await awaitingConnack(4);
    const disconnect = client.disconnect();
    await assert.rejects(connecting.promise, ConnectionClosedError);
    await disconnect;
    assert.deepEqual(await broker.closed(), []);
  });

  test("the connect event fires once per CONNACK, after connect() is settled", async () => {
    const { broker, client, connecting } = await awaitingConnack(4);
    const event = nextEvent(client, "connect");
    await broker.send("20 02 00 00");
    const [sessionPresent, fired] = await Promise.all([connecting.promise, event]);
    assert.equal(sessionPresent, false);
    const detail = fired.detail as { sessionPresent: boolean; reconnected: boolean };
    assert.equal(detail.sessionPresent, false);
    // The first connection is not a reconnection.
    assert.equal(detail.reconnected, false);
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});
