/**
 * A broker that breaks the protocol: malformed bytes, packets a server must not send, packets
 * out of order. Each ends in a `ProtocolError` `error` event and a closed client (MQTT 5: after
 * a DISCONNECT with the error's reason code), never in an uncaught exception or an unhandled
 * rejection.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MqttClient } from "../../src/client/clients.ts";
import { ConnectionClosedError, ProtocolError } from "../../src/errors.ts";
import type { ProtocolVersion } from "../../src/packet/types.ts";
import {
  connected,
  FakeBroker,
  FakeClock,
  nextEvent,
  recordEvents,
  type SetupOptions,
  UnhandledGuard,
  versionName,
  VERSIONS,
  watch,
} from "./harness.ts";

interface Case {
  name: string;
  /** The bytes for a version, or undefined where the case does not apply. */
  bytes: (version: ProtocolVersion) => string | undefined;
  /** The reason code an MQTT 5 client gives in its DISCONNECT. */
  reason: number;
}

const MALFORMED: Case[] = [
  { name: "the reserved packet type 0", bytes: () => "00 00", reason: 0x81 },
  {
    name: "a Remaining Length of five bytes",
    bytes: () => "30 ff ff ff ff 01",
    reason: 0x81,
  },
  { name: "a PUBLISH at QoS 3", bytes: () => "36 05 00 01 74 00 01", reason: 0x81 },
  {
    name: "a PUBLISH with DUP at QoS 0",
    bytes: (v) => v === 5 ? "38 04 00 01 74 00" : "38 03 00 01 74",
    reason: 0x81,
  },
  { name: "a PUBACK too short for its packet id", bytes: () => "40 01 00", reason: 0x81 },
  { name: "a PUBACK with packet id 0", bytes: () => "40 02 00 00", reason: 0x81 },
  { name: "a PUBREL with fixed header flags 0000", bytes: () => "60 02 00 01", reason: 0x81 },
  { name: "a PINGRESP with a body", bytes: () => "d0 01 00", reason: 0x81 },
  {
    name: "a topic that is not UTF-8",
    bytes: (v) => v === 5 ? "30 06 00 02 c3 28 00 78" : "30 05 00 02 c3 28 78",
    reason: 0x81,
  },
  {
    name: "a topic with U+0000",
    bytes: (v) => v === 5 ? "30 05 00 01 00 00 78" : "30 04 00 01 00 78",
    reason: 0x81,
  },
  {
    name: "a PUBLISH topic with a wildcard",
    bytes: (v) => v === 5 ? "30 06 00 03 61 2f 23 00" : "30 05 00 03 61 2f 23",
    reason: 0x90,
  },
  {
    name: "a PUBLISH with an empty topic and no alias",
    bytes: (v) => v === 5 ? "30 04 00 00 00 78" : "30 03 00 00 78",
    reason: 0x82,
  },
  {
    name: "a PUBLISH property that does not exist (id 0)",
    bytes: (v) => v === 5 ? "30 06 00 01 74 01 00 78" : undefined,
    reason: 0x81,
  },
  {
    name: "a PUBACK reason code PUBACK does not have (0x92)",
    bytes: (v) => v === 5 ? "40 03 00 01 92" : undefined,
    reason: 0x81,
  },
  {
    name: "a SUBACK return code that does not exist (0x03)",
    bytes: (v) => v === 5 ? "90 04 00 01 00 03" : "90 03 00 01 03",
    reason: 0x81,
  },
];

const ILLEGAL: Case[] = [
  {
    name: "CONNECT, which a server never sends",
    bytes: () => "10 0c 00 04 4d 51 54 54 04 02 00 3c 00 00",
    reason: 0x82,
  },
  {
    name: "SUBSCRIBE, which a server never sends",
    bytes: (v) => v === 5 ? "82 07 00 01 00 00 01 61 00" : "82 06 00 01 00 01 61 00",
    reason: 0x82,
  },
  {
    name: "UNSUBSCRIBE, which a server never sends",
    bytes: (v) => v === 5 ? "a2 06 00 01 00 00 01 61" : "a2 05 00 01 00 01 61",
    reason: 0x82,
  },
  { name: "PINGREQ, which a server never sends", bytes: () => "c0 00", reason: 0x82 },
  {
    name: "a second CONNACK",
    bytes: (v) => v === 5 ? "20 03 00 00 00" : "20 02 00 00",
    reason: 0x82,
  },
  {
    name: "AUTH, when no authentication method was set",
    bytes: (v) => v === 5 ? "f0 00" : undefined,
    reason: 0x82,
  },
  {
    name: "the reserved packet type 15 (AUTH exists only in MQTT 5)",
    bytes: (v) => v === 5 ? undefined : "f0 00",
    reason: 0x81,
  },
];

/**
 * Sends `bytes` to a connected client with a QoS 1 publish in flight, and checks that it closes
 * with a ProtocolError, after a DISCONNECT with `reason` on MQTT 5.
 */
async function expectProtocolError(
  version: ProtocolVersion,
  bytes: string,
  reason: number,
  options: SetupOptions<MqttClient> = {},
): Promise<ProtocolError> {
  const guard = new UnhandledGuard();
  const { client, broker } = await connected<MqttClient>(version, options);
  const events = recordEvents(client, ["error", "disconnect"]);
  const disconnected = nextEvent(client, "disconnect");
  const inflight = watch(client.publish("t", "x", { qos: 1 }));
  await broker.expect("publish");
  void broker.push(bytes);
  const sent = (await broker.closed()).map((s) => s.hex);
  await disconnected;
  assert.equal(client.state, "closed");
  assert.deepEqual(events.map(([type]) => type), ["error", "disconnect"]);
  const error = events[0][1];
  assert.ok(error instanceof ProtocolError, `the error is ${error}`);
  assert.equal((events[1][1] as { error: unknown }).error, error);
  if (version === 5) {
    assert.equal(error.reasonCode, reason);
    assert.deepEqual(sent, [`e0 01 ${reason.toString(16)}`]);
  } else {
    assert.deepEqual(sent, []);
  }
  assert.equal(broker.transport.closed, true);
  await assert.rejects(inflight.promise, ConnectionClosedError);
  await guard.check();
  return error;
}

for (const version of VERSIONS) {
  const v = versionName(version);
  describe(`malformed bytes from the broker ${v}`, () => {
    for (const { name, bytes, reason } of MALFORMED) {
      const hex = bytes(version);
      if (hex === undefined) continue;
      test(
        `malformed ${v}: ${name} (${hex}) is a ProtocolError; the client closes${
          version === 5 ? ` after DISCONNECT 0x${reason.toString(16)}` : ""
        }`,
        async () => {
          await expectProtocolError(version, hex, reason);
        },
      );
    }

    test(
      `malformed ${v}: a packet larger than maximumPacketSize 16 is a ProtocolError${
        version === 5 ? " (DISCONNECT 0x95)" : ""
      }`,
      async () => {
        const payload = " 78".repeat(14);
        await expectProtocolError(
          version,
          (version === 5 ? "30 12 00 01 74 00" : "30 11 00 01 74") + payload,
          0x95,
          { options: { maximumPacketSize: 16 } },
        );
      },
    );
  });

  describe(`illegal packets from the broker ${v}`, () => {
    for (const { name, bytes, reason } of ILLEGAL) {
      const hex = bytes(version);
      if (hex === undefined) continue;
      test(`illegal ${v}: ${name} (${hex}) is a ProtocolError; the client closes`, async () => {
        await expectProtocolError(version, hex, reason);
      });
    }

    test(`illegal ${v}: a SUBACK with two codes for one filter is a ProtocolError`, async () => {
      const guard = new UnhandledGuard();
      const { client, broker } = await connected(version);
      const error = nextEvent(client, "error");
      const granted = watch(client.subscribe("a"));
      await broker.expect("subscribe");
      void broker.push(version === 5 ? "90 05 00 01 00 00 00" : "90 04 00 01 00 00");
      assert.ok((await error).detail instanceof ProtocolError);
      await assert.rejects(granted.promise, ConnectionClosedError);
      await broker.closed();
      await guard.check();
    });

    test(`illegal ${v}: a SUBACK answering an UNSUBSCRIBE is a ProtocolError`, async () => {
      const guard = new UnhandledGuard();
      const { client, broker } = await connected(version);
      const error = nextEvent(client, "error");
      const done = watch(client.unsubscribe("a"));
      await broker.expect("unsubscribe");
      void broker.push(version === 5 ? "90 04 00 01 00 00" : "90 03 00 01 00");
      assert.ok((await error).detail instanceof ProtocolError);
      await assert.rejects(done.promise, ConnectionClosedError);
      await broker.closed();
      await guard.check();
    });

    test(`illegal ${v}: PUBREL for a QoS 2 message whose PUBREC was not sent yet is a ProtocolError`, async () => {
      // Nobody consumes messages yet, so the PUBREC waits.
      const publish = version === 5 ? "34 07 00 01 74 00 05 00 78" : "34 06 00 01 74 00 05 78";
      const error = await expectProtocolError(version, `${publish} 62 02 00 05`, 0x82);
      assert.match(error.message, /PUBREL/);
    });

    test(`illegal ${v}: a packet before CONNACK rejects connect() with ProtocolError and closes`, async () => {
      const guard = new UnhandledGuard();
      const broker = new FakeBroker(version);
      const client = new MqttClient(broker.transport);
      const events = recordEvents(client, ["error", "disconnect"]);
      const disconnected = nextEvent(client, "disconnect");
      const connecting = watch(
        client.connect({ protocolVersion: version, clock: new FakeClock() }),
      );
      await broker.expect("connect");
      void broker.push(version === 5 ? "30 04 00 01 74 00" : "30 03 00 01 74");
      await assert.rejects(connecting.promise, (error) => {
        assert.ok(error instanceof ProtocolError);
        assert.equal(error.statementId, "MQTT-3.2.0-1");
        return true;
      });
      await broker.closed();
      await disconnected;
      assert.equal(client.state, "closed");
      assert.deepEqual(events.map(([type]) => type), ["error", "disconnect"]);
      await guard.check();
    });

    test(`illegal ${v}: a malformed CONNACK rejects connect() with ProtocolError and closes`, async () => {
      const guard = new UnhandledGuard();
      const broker = new FakeBroker(version);
      const client = new MqttClient(broker.transport);
      const disconnected = nextEvent(client, "disconnect");
      const connecting = watch(
        client.connect({ protocolVersion: version, clock: new FakeClock() }),
      );
      await broker.expect("connect");
      void broker.push("20 01 00");
      await assert.rejects(connecting.promise, ProtocolError);
      await broker.closed();
      await disconnected;
      await guard.check();
    });
  });
}

describe("illegal packets from the broker, version-specific", () => {
  test("illegal v3.1.1: CONNACK with reserved acknowledge flags set rejects connect()", async () => {
    const guard = new UnhandledGuard();
    const broker = new FakeBroker(4);
    const client = new MqttClient(broker.transport);
    const connecting = watch(client.connect({ clock: new FakeClock() }));
    await broker.expect("connect");
    void broker.push("20 02 02 00");
    await assert.rejects(connecting.promise, ProtocolError);
    await broker.closed();
    await guard.check();
  });

  test("illegal v5: more unacknowledged QoS 1 publishes than the Receive Maximum of 2 we announced (DISCONNECT 0x93)", async () => {
    const publish = (id: number) => `32 06 00 01 74 00 0${id} 00`;
    // Nobody consumes messages yet, so none of them is acknowledged.
    await expectProtocolError(5, [1, 2, 3].map(publish).join(" "), 0x93, {
      options: { properties: { receiveMaximum: 2 } },
    });
  });

  test("illegal v5: a Topic Alias above the maximum we announced (DISCONNECT 0x94)", async () => {
    await expectProtocolError(5, "30 09 00 01 63 03 23 00 05 68 69", 0x94, {
      options: { properties: { topicAliasMaximum: 4 } },
    });
  });
});
