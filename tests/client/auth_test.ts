/**
 * MQTT 5 enhanced authentication against a byte-scripted broker: CONNECT with the method and the
 * initial data, any number of AUTH 0x18 rounds answered by an async handler, the broker's final
 * data checked before anything else goes out, every way it fails (a refusing CONNACK, a handler
 * that throws, a signature that does not hold, an AUTH the broker may not send), re-authentication
 * on a live connection (traffic goes on, one exchange at a time, a DISCONNECT refuses), the
 * exchange again after a reconnection, and SCRAM-SHA-1 with the bytes of RFC 5802.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  AuthenticationError,
  ConnectionClosedError,
  ConnectionRefusedError,
  ProtocolError,
  StateError,
  TimeoutError,
} from "../../src/errors.ts";
import { Deferred } from "../../src/_async.ts";
import type { AuthPacket } from "../../src/packet/types.ts";
import type { Authenticator } from "../../src/client/types.ts";
import { scramSha1, scramSha256 } from "../../src/client/scram.ts";
import { connect } from "../../src/client/connect.ts";
import { mosquittoSkipReason, startMosquitto } from "../helpers/mosquitto.ts";
import { MqttClient } from "../../src/client/clients.ts";
import {
  assertQuiet,
  connected,
  FakeBroker,
  FakeClock,
  settle,
  UnhandledGuard,
  utf8Hex,
  watch,
} from "./harness.ts";

const encoder = new TextEncoder();
const text = (bytes: Uint8Array | undefined): string => new TextDecoder().decode(bytes);

/** A method "TOK": sends [1, 2], answers each challenge [n] with [2n], records what it saw. */
function doubling(seen: string[] = []): Authenticator {
  return {
    method: "TOK",
    start: (context) => {
      seen.push(`start ${context.reauthentication ? "re" : "connect"} ${context.clientId}`);
      return {
        data: new Uint8Array([1, 2]),
        next: (data) => {
          seen.push(`challenge ${data![0]}`);
          return new Uint8Array([data![0] * 2]);
        },
        done: (data) => {
          seen.push(`done ${data === undefined ? "-" : data[0]}`);
        },
      };
    },
  };
}

function auth(reasonCode: number, data?: number[]): AuthPacket {
  const properties: AuthPacket["properties"] = { authenticationMethod: "TOK" };
  if (data !== undefined) properties.authenticationData = new Uint8Array(data);
  return { type: "auth", reasonCode, properties };
}

/** A client connecting over a fake broker with `options`, not yet answered. */
function connecting(options: Parameters<MqttClient["connect"]>[0], version: 4 | 5 = 5) {
  const broker = new FakeBroker(version);
  const clock = new FakeClock();
  const client = new MqttClient(broker.transport);
  const connect = watch(
    client.connect({ clientId: "kite", keepalive: 0, protocolVersion: version, clock, ...options }),
  );
  return { broker, client, clock, connect };
}

describe("enhanced authentication, connecting", () => {
  test("auth v5: CONNECT carries the method and the initial data, two challenges are answered, CONNACK with the method resolves connect", async () => {
    const guard = new UnhandledGuard();
    const seen: string[] = [];
    const { broker, client, connect } = connecting({ auth: doubling(seen) });
    const connect1 = await broker.next();
    // CONNECT v5, clean, properties: Authentication Method "TOK", Authentication Data 01 02.
    assert.equal(
      connect1.hex,
      "10 1c 00 04 4d 51 54 54 05 02 00 00 0b 15 00 03 54 4f 4b 16 00 02 01 02 00 04 6b 69 74 65",
    );
    // A publish made now waits for CONNACK [MQTT-3.1.2-30].
    const published = watch(client.publish("a", "x", { qos: 1 }));
    await broker.send("f0 0c 18 0a 15 00 03 54 4f 4b 16 00 01 05"); // AUTH 0x18, data 05
    assert.equal((await broker.next()).hex, "f0 0c 18 0a 15 00 03 54 4f 4b 16 00 01 0a");
    await broker.sendPacket(auth(0x18, [7]));
    assert.equal((await broker.next()).hex, "f0 0c 18 0a 15 00 03 54 4f 4b 16 00 01 0e");
    await assertQuiet(broker);
    await broker.send("20 09 00 00 06 15 00 03 54 4f 4b"); // CONNACK 0, method TOK
    await settle();
    assert.equal(connect.fulfilled, true);
    assert.deepEqual(seen, ["start connect kite", "challenge 5", "challenge 7", "done -"]);
    assert.equal((await broker.expect("publish")).topic, "a");
    await broker.sendPacket({ type: "puback", packetId: 1 });
    await published.promise;
    await client.disconnect();
    await guard.check();
  });

  test("auth v5: an async handler's answer goes out only once it resolves", async () => {
    const guard = new UnhandledGuard();
    const answer = new Deferred<Uint8Array>();
    const { broker, client, connect } = connecting({
      auth: { method: "TOK", start: () => Promise.resolve({ next: () => answer.promise }) },
    });
    const connectPacket = await broker.expect("connect");
    assert.deepEqual(connectPacket.properties, { authenticationMethod: "TOK" });
    await broker.sendPacket(auth(0x18, [1]));
    await assertQuiet(broker);
    answer.resolve(new Uint8Array([42]));
    const reply = await broker.expect("auth");
    assert.equal(reply.reasonCode, 0x18);
    assert.deepEqual(reply.properties?.authenticationData, new Uint8Array([42]));
    await broker.sendPacket({
      type: "connack",
      sessionPresent: false,
      reasonCode: 0,
      properties: { authenticationMethod: "TOK" },
    });
    await connect.promise;
    await client.disconnect();
    await guard.check();
  });

  test("auth v5: CONNACK 0x87 in the middle of the exchange rejects connect with ConnectionRefusedError 0x87", async () => {
    const guard = new UnhandledGuard();
    const { broker, client, connect } = connecting({ auth: doubling() });
    await broker.expect("connect");
    await broker.sendPacket(auth(0x18, [1]));
    await broker.expect("auth");
    await broker.send("20 03 00 87 00");
    await settle();
    assert.equal(connect.rejected, true);
    assert.ok(connect.reason instanceof ConnectionRefusedError);
    assert.equal((connect.reason as ConnectionRefusedError).reasonCode, 0x87);
    assert.equal(client.state, "closed");
    await guard.check();
  });

  test("auth v5: a handler that throws rejects connect with AuthenticationError and closes the connection", async () => {
    const guard = new UnhandledGuard();
    const { broker, client, connect } = connecting({
      auth: {
        method: "TOK",
        start: () => ({
          next: () => {
            throw new Error("no token");
          },
        }),
      },
    });
    await broker.expect("connect");
    await broker.sendPacket(auth(0x18, [1]));
    await broker.closed();
    await settle();
    assert.ok(connect.reason instanceof AuthenticationError, String(connect.reason));
    assert.equal((connect.reason as AuthenticationError).reasonCode, 0x87);
    assert.match((connect.reason as Error).message, /no token/);
    assert.equal(client.state, "closed");
    await guard.check();
  });

  test("auth v5: a start that throws sends no CONNECT and rejects connect", async () => {
    const guard = new UnhandledGuard();
    const { broker, connect } = connecting({
      auth: {
        method: "TOK",
        start: () => Promise.reject(new AuthenticationError("revoked", 0x8c)),
      },
    });
    const rest = await broker.closed();
    assert.deepEqual(rest, []);
    await settle();
    assert.ok(connect.reason instanceof AuthenticationError);
    assert.equal((connect.reason as AuthenticationError).reasonCode, 0x8c);
    await guard.check();
  });

  test("auth v5: connectTimeout covers the exchange: a handler that never answers times out", async () => {
    const guard = new UnhandledGuard();
    const { broker, clock, connect } = connecting({
      connectTimeout: 5_000,
      auth: { method: "TOK", start: () => ({ next: () => new Promise<undefined>(() => {}) }) },
    });
    await broker.expect("connect");
    await broker.sendPacket(auth(0x18, [1]));
    await settle();
    clock.advance(4_999);
    await settle();
    assert.equal(connect.settled, false);
    clock.advance(1);
    await settle();
    assert.ok(connect.reason instanceof TimeoutError, String(connect.reason));
    await guard.check();
  });

  test("auth v5: final data the handler refuses rejects connect, and nothing queued is sent to that broker", async () => {
    const guard = new UnhandledGuard();
    const { broker, client, connect } = connecting({
      auth: {
        method: "TOK",
        start: () => ({
          done: (data) => {
            if (data?.[0] !== 1) throw new AuthenticationError("the broker did not prove itself");
          },
        }),
      },
    });
    const published = watch(client.publish("secret", "x", { qos: 0 }));
    await broker.expect("connect");
    await broker.sendPacket({
      type: "connack",
      sessionPresent: false,
      reasonCode: 0,
      properties: { authenticationMethod: "TOK", authenticationData: new Uint8Array([9]) },
    });
    const rest = await broker.closed();
    assert.deepEqual(rest.map((sent) => sent.packet.type), []);
    await settle();
    assert.ok(connect.reason instanceof AuthenticationError);
    assert.match((connect.reason as Error).message, /did not prove itself/);
    assert.equal(published.rejected, true);
    assert.equal(client.state, "closed");
    await guard.check();
  });

  test("auth v5: AUTH naming another method is a protocol error [MQTT-4.12.0-5]", async () => {
    const guard = new UnhandledGuard();
    const { broker, connect } = connecting({ auth: doubling() });
    await broker.expect("connect");
    await broker.sendPacket({
      type: "auth",
      reasonCode: 0x18,
      properties: { authenticationMethod: "OTHER" },
    });
    await broker.closed();
    await settle();
    assert.ok(connect.reason instanceof ProtocolError);
    assert.equal((connect.reason as ProtocolError).statementId, "MQTT-4.12.0-5");
    await guard.check();
  });

  test("auth v5: an accepting CONNACK without the method is a protocol error [MQTT-4.12.0-5]", async () => {
    const guard = new UnhandledGuard();
    const { broker, connect } = connecting({ auth: doubling() });
    await broker.expect("connect");
    await broker.send("20 03 00 00 00");
    await broker.closed();
    await settle();
    assert.ok(connect.reason instanceof ProtocolError);
    assert.equal((connect.reason as ProtocolError).statementId, "MQTT-4.12.0-5");
    await guard.check();
  });

  test("auth v5: AUTH to a client that named no method is a protocol error [MQTT-4.12.0-6]", async () => {
    const guard = new UnhandledGuard();
    const { broker, connect } = connecting({});
    await broker.expect("connect");
    await broker.sendPacket(auth(0x18));
    await broker.closed();
    await settle();
    assert.ok(connect.reason instanceof ProtocolError);
    assert.equal((connect.reason as ProtocolError).statementId, "MQTT-4.12.0-6");
    await guard.check();
  });

  test("auth v5: AUTH 0x00 instead of CONNACK, and AUTH 0x19 from the broker, are protocol errors [MQTT-3.15.2-1]", async () => {
    const guard = new UnhandledGuard();
    for (const code of [0x00, 0x19]) {
      const { broker, connect } = connecting({ auth: doubling() });
      await broker.expect("connect");
      await broker.sendPacket(auth(code));
      await broker.closed();
      await settle();
      assert.ok(connect.reason instanceof ProtocolError, `0x${code.toString(16)}`);
      assert.equal((connect.reason as ProtocolError).statementId, "MQTT-3.15.2-1");
    }
    await guard.check();
  });

  test("auth v3.1.1: the auth option is refused with a TypeError naming protocolVersion 5", async () => {
    const client = new MqttClient(new FakeBroker(4).transport);
    await assert.rejects(
      client.connect({ protocolVersion: 4, auth: doubling() }),
      (error: Error) => error instanceof TypeError && /protocolVersion: 5/.test(error.message),
    );
  });
});

describe("enhanced authentication, re-authenticating", () => {
  async function authenticated(seen: string[] = []) {
    const setup = await connected(5, {
      options: { auth: doubling(seen) },
      connack: {
        type: "connack",
        sessionPresent: false,
        reasonCode: 0,
        properties: { authenticationMethod: "TOK" },
      },
    });
    return setup;
  }

  test("reauthenticate v5: AUTH 0x19 with the method, a challenge answered, publishes flow meanwhile, AUTH 0x00 resolves", async () => {
    const guard = new UnhandledGuard();
    const seen: string[] = [];
    const { client, broker } = await authenticated(seen);
    const reauth = watch(client.reauthenticate());
    // AUTH 0x19, method TOK, data 01 02 [MQTT-4.12.1-1].
    assert.equal((await broker.next()).hex, "f0 0d 19 0b 15 00 03 54 4f 4b 16 00 02 01 02");
    const published = watch(client.publish("during", "x", { qos: 1 }));
    assert.equal((await broker.expect("publish")).topic, "during");
    await broker.sendPacket({ type: "puback", packetId: 1 });
    await published.promise;
    await broker.sendPacket(auth(0x18, [3]));
    assert.deepEqual(
      (await broker.expect("auth")).properties?.authenticationData,
      new Uint8Array([6]),
    );
    assert.equal(reauth.settled, false);
    await broker.sendPacket(auth(0x00, [1]));
    await reauth.promise;
    assert.deepEqual(seen.slice(-3), ["start re kite", "challenge 3", "done 1"]);
    assert.equal(client.state, "connected");
    await client.disconnect();
    await guard.check();
  });

  test("reauthenticate v5: the broker's DISCONNECT 0x87 rejects it with AuthenticationError 0x87", async () => {
    const guard = new UnhandledGuard();
    const { client, broker } = await authenticated();
    const reauth = watch(client.reauthenticate());
    await broker.expect("auth");
    await broker.send("e0 01 87");
    await settle();
    assert.ok(reauth.reason instanceof AuthenticationError, String(reauth.reason));
    assert.equal((reauth.reason as AuthenticationError).reasonCode, 0x87);
    assert.equal(client.state, "closed");
    await guard.check();
  });

  test("reauthenticate v5: final data the handler refuses rejects it, and the client sends DISCONNECT 0x80 [MQTT-4.12.1-2]", async () => {
    const guard = new UnhandledGuard();
    const { client, broker } = await connected(5, {
      options: {
        auth: {
          method: "TOK",
          start: (context) => ({
            done: () => {
              if (context.reauthentication) throw new Error("bad server proof");
            },
          }),
        },
      },
      connack: {
        type: "connack",
        sessionPresent: false,
        reasonCode: 0,
        properties: { authenticationMethod: "TOK" },
      },
    });
    const reauth = watch(client.reauthenticate());
    await broker.expect("auth");
    await broker.sendPacket(auth(0x00));
    assert.equal((await broker.next()).hex, "e0 01 80");
    await settle();
    assert.ok(reauth.reason instanceof AuthenticationError);
    assert.match((reauth.reason as Error).message, /bad server proof/);
    assert.equal(client.state, "closed");
    await guard.check();
  });

  test("reauthenticate v5: two calls run one after the other, never two exchanges at once", async () => {
    const guard = new UnhandledGuard();
    const seen: string[] = [];
    const { client, broker } = await authenticated(seen);
    const first = watch(client.reauthenticate());
    const second = watch(client.reauthenticate());
    assert.equal((await broker.expect("auth")).reasonCode, 0x19);
    await assertQuiet(broker);
    await broker.sendPacket(auth(0x00));
    await first.promise;
    assert.equal((await broker.expect("auth")).reasonCode, 0x19);
    assert.equal(second.settled, false);
    await broker.sendPacket(auth(0x00));
    await second.promise;
    assert.equal(seen.filter((line) => line.startsWith("start re")).length, 2);
    await client.disconnect();
    await guard.check();
  });

  test("reauthenticate v5: a broker AUTH 0x00 with no re-authentication running is a protocol error", async () => {
    const guard = new UnhandledGuard();
    const { client, broker } = await authenticated();
    await broker.sendPacket(auth(0x00));
    // DISCONNECT 0x82 Protocol Error.
    assert.equal((await broker.next()).hex, "e0 01 82");
    await settle();
    assert.equal(client.state, "closed");
    await guard.check();
  });

  test("reauthenticate v5: disconnect() during it rejects it with ConnectionClosedError", async () => {
    const guard = new UnhandledGuard();
    const { client, broker } = await authenticated();
    const reauth = watch(client.reauthenticate());
    await broker.expect("auth");
    await client.disconnect();
    await settle();
    assert.ok(reauth.reason instanceof ConnectionClosedError);
    await guard.check();
  });

  test("reauthenticate: without the auth option it rejects with StateError and sends nothing", async () => {
    const guard = new UnhandledGuard();
    const { client, broker } = await connected(5);
    await assert.rejects(client.reauthenticate(), StateError);
    await assertQuiet(broker);
    await client.disconnect();
    await guard.check();
  });

  test("auth v5: after a reconnection the exchange runs again, with a fresh start", async () => {
    const guard = new UnhandledGuard();
    const seen: string[] = [];
    const brokers = [new FakeBroker(5), new FakeBroker(5)];
    let dials = 0;
    const clock = new FakeClock();
    const client = new MqttClient(() => Promise.resolve(brokers[dials++].transport));
    const connect = watch(
      client.connect({
        clientId: "kite",
        keepalive: 0,
        protocolVersion: 5,
        clock,
        auth: doubling(seen),
        reconnect: { minDelay: 10, maxDelay: 10, random: () => 0 },
      }),
    );
    const connack = {
      type: "connack" as const,
      sessionPresent: false,
      reasonCode: 0,
      properties: { authenticationMethod: "TOK" },
    };
    for (const broker of brokers) {
      const packet = await broker.expect("connect");
      assert.deepEqual(packet.properties?.authenticationData, new Uint8Array([1, 2]));
      await broker.sendPacket(auth(0x18, [4]));
      await broker.expect("auth");
      await broker.sendPacket(connack);
      await settle();
      if (broker === brokers[0]) {
        await connect.promise;
        await broker.hangUp();
        await settle();
        clock.advance(10);
      }
    }
    await settle();
    assert.equal(client.state, "connected");
    assert.deepEqual(seen.filter((line) => line.startsWith("start")), [
      "start connect kite",
      "start connect kite",
    ]);
    await client.disconnect();
    await guard.check();
  });
});

describe("SCRAM-SHA-1 over MQTT 5, the bytes of RFC 5802 section 5", () => {
  const clientFirst = "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL";
  const serverFirst = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
  const clientFinal =
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
  const serverFinal = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=";
  const method = { authenticationMethod: "SCRAM-SHA-1" };

  for (
    const [name, final, accepted] of [
      ["the server signature holds: connect resolves", serverFinal, true],
      [
        "a wrong server signature: connect rejects with AuthenticationError",
        "v=AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        false,
      ],
    ] as const
  ) {
    test(`scramSha1 v5: ${name}`, async () => {
      const guard = new UnhandledGuard();
      const { broker, client, connect } = connecting({
        auth: scramSha1({
          username: "user",
          password: "pencil",
          nonce: () => "fyko+d2lbbFgONRv9qkxdawL",
        }),
      });
      const connectPacket = await broker.expect("connect");
      assert.equal(connectPacket.properties?.authenticationMethod, "SCRAM-SHA-1");
      assert.equal(text(connectPacket.properties?.authenticationData), clientFirst);
      assert.ok(broker.received[0].hex.endsWith(`${utf8Hex(clientFirst)} 00 04 6b 69 74 65`));
      await broker.sendPacket({
        type: "auth",
        reasonCode: 0x18,
        properties: { ...method, authenticationData: encoder.encode(serverFirst) },
      });
      const answer = await broker.expect("auth");
      assert.equal(text(answer.properties?.authenticationData), clientFinal);
      await broker.sendPacket({
        type: "connack",
        sessionPresent: false,
        reasonCode: 0,
        properties: { ...method, authenticationData: encoder.encode(final) },
      });
      await settle();
      if (accepted) {
        await connect.promise;
        await client.disconnect();
      } else {
        await broker.closed();
        await settle();
        assert.ok(connect.reason instanceof AuthenticationError);
        assert.match((connect.reason as Error).message, /server signature/);
      }
      await guard.check();
    });
  }
});

describe("enhanced authentication against mosquitto", () => {
  // mosquitto has no enhanced authentication without an auth plugin: it refuses every method.
  test(
    "mosquitto without an auth plugin refuses the method: ConnectionRefusedError 0x8c, no reconnection",
    {
      skip: mosquittoSkipReason(),
    },
    async () => {
      await using broker = await startMosquitto();
      await assert.rejects(
        connect(broker.url, {
          protocolVersion: 5,
          auth: scramSha256({ username: "alice", password: "secret" }),
        }),
        (error: ConnectionRefusedError) =>
          error instanceof ConnectionRefusedError && error.reasonCode === 0x8c,
      );
    },
  );
});
