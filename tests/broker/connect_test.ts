import assert from "node:assert/strict";
import { test } from "node:test";
import { Broker } from "../../src/broker/mod.ts";
import { ConnectionRefusedError } from "../../src/errors.ts";
import { connectKite, pause, RawClient, versionName, VERSIONS, waitFor } from "./helpers.ts";

for (const version of VERSIONS) {
  test(`Broker - ${versionName(version)} CONNECT is accepted with CONNACK 0`, async () => {
    const broker = new Broker();
    const { client } = await connectKite(broker, { clientId: "c1", protocolVersion: version });
    assert.equal(client.connack?.reasonCode, 0);
    assert.equal(client.sessionPresent, false);
    const [session] = broker.sessions();
    assert.equal(session.clientId, "c1");
    assert.equal(session.protocolVersion, version);
    assert.equal(session.connected, true);
    await client.disconnect();
    await broker.close();
  });

  test(`Broker - ${versionName(version)} PINGREQ is answered with PINGRESP`, async () => {
    const broker = new Broker();
    const raw = new RawClient(broker, version);
    await raw.connect("ping");
    await raw.send({ type: "pingreq" });
    await raw.expect("pingresp");
    await broker.close();
  });

  test(`Broker - ${versionName(version)} DISCONNECT closes the connection`, async () => {
    const broker = new Broker();
    const raw = new RawClient(broker, version);
    await raw.connect("bye");
    await raw.send({ type: "disconnect" });
    assert.deepEqual(await raw.waitClosed(), []);
    assert.deepEqual(broker.sessions(), []);
    await broker.close();
  });
}

test("Broker - an unsupported 3.x protocol level is refused with CONNACK 0x01", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 4);
  // CONNECT "MQTT" level 2, clean, keepalive 0, client id "x".
  await raw.sendBytes([0x10, 0x0d, 0, 4, 0x4d, 0x51, 0x54, 0x54, 2, 2, 0, 0, 0, 1, 0x78]);
  const packets = await raw.waitClosed();
  assert.deepEqual(packets, [{ type: "connack", sessionPresent: false, reasonCode: 0x01 }]);
  await broker.close();
});

test("Broker - an unsupported level above 5 is refused with the v5 CONNACK 0x84", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 5);
  await raw.sendBytes([0x10, 0x0e, 0, 4, 0x4d, 0x51, 0x54, 0x54, 6, 2, 0, 0, 0, 0, 1, 0x78]);
  const packets = await raw.waitClosed();
  assert.equal(packets.length, 1);
  assert.equal(packets[0].type, "connack");
  assert.equal((packets[0] as { reasonCode: number }).reasonCode, 0x84);
  await broker.close();
});

test("Broker - a malformed v5 CONNECT is answered with CONNACK 0x81", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 5);
  // CONNECT "MQTT" level 5 with the reserved connect flag set.
  await raw.sendBytes([0x10, 0x0e, 0, 4, 0x4d, 0x51, 0x54, 0x54, 5, 3, 0, 0, 0, 0, 1, 0x78]);
  assert.deepEqual(await raw.waitClosed(), [
    { type: "connack", sessionPresent: false, reasonCode: 0x81 },
  ]);
  await broker.close();
});

test("Broker - a malformed v3.1.1 CONNECT just closes the connection", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 4);
  await raw.sendBytes([0x10, 0x0d, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 3, 0, 0, 0, 1, 0x78]);
  assert.deepEqual(await raw.waitClosed(), []);
  await broker.close();
});

test("Broker - a first packet other than CONNECT closes the connection", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker);
  await raw.send({ type: "pingreq" });
  assert.deepEqual(await raw.waitClosed(), []);
  await broker.close();
});

test("Broker - a second CONNECT closes the connection (v5 DISCONNECT 0x82)", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 5);
  await raw.connect("twice");
  await raw.send({
    type: "connect",
    protocolVersion: 5,
    clientId: "twice",
    clean: true,
    keepalive: 0,
  });
  assert.deepEqual(await raw.waitClosed(), [{ type: "disconnect", reasonCode: 0x82 }]);
  await broker.close();
});

test("Broker - v3.1.1 empty client id with a clean session is assigned one", async () => {
  const broker = new Broker();
  const { client } = await connectKite(broker, { clientId: "", protocolVersion: 4 });
  assert.equal(broker.sessions().length, 1);
  assert.match(broker.sessions()[0].clientId, /^kite-broker-/);
  await client.disconnect();
  await broker.close();
});

test("Broker - v5 empty client id gets an Assigned Client Identifier", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 5);
  const connack = await raw.connect("");
  assert.equal(connack.reasonCode, 0);
  assert.match(connack.properties?.assignedClientIdentifier ?? "", /^kite-broker-/);
  await broker.close();
});

test("Broker - v3.1.1 empty client id without a clean session is refused with 0x02", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 4);
  // CONNECT "MQTT" level 4, no flags, keepalive 0, client id "".
  await raw.sendBytes([0x10, 0x0c, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0, 0, 0, 0, 0]);
  assert.deepEqual(await raw.waitClosed(), [
    { type: "connack", sessionPresent: false, reasonCode: 0x02 },
  ]);
  await broker.close();
});

test("Broker - v3.1 empty client id is refused with 0x02", async () => {
  const broker = new Broker();
  const raw = new RawClient(broker, 3);
  // CONNECT "MQIsdp" level 3, clean, keepalive 0, client id "".
  await raw.sendBytes([0x10, 0x0e, 0, 6, 0x4d, 0x51, 0x49, 0x73, 0x64, 0x70, 3, 2, 0, 0, 0, 0]);
  assert.deepEqual(await raw.waitClosed(), [
    { type: "connack", sessionPresent: false, reasonCode: 0x02 },
  ]);
  await broker.close();
});

test("Broker - refuseConnections answers server unavailable (3 and 0x88)", async () => {
  const broker = new Broker();
  broker.refuseConnections(true);
  await assert.rejects(
    connectKite(broker, { clientId: "r4", protocolVersion: 4 }),
    (error) => error instanceof ConnectionRefusedError && error.reasonCode === 3,
  );
  await assert.rejects(
    connectKite(broker, { clientId: "r5", protocolVersion: 5 }),
    (error) => error instanceof ConnectionRefusedError && error.reasonCode === 0x88,
  );
  broker.refuseConnections(false);
  const { client } = await connectKite(broker, { clientId: "ok" });
  await client.disconnect();
  await broker.close();
});

test("Broker - v5 CONNACK announces the broker's limits", async () => {
  const broker = new Broker({ receiveMaximum: 5, maximumPacketSize: 1000, topicAliasMaximum: 3 });
  const raw = new RawClient(broker, 5);
  const connack = await raw.connect("limits");
  assert.equal(connack.properties?.receiveMaximum, 5);
  assert.equal(connack.properties?.maximumPacketSize, 1000);
  assert.equal(connack.properties?.topicAliasMaximum, 3);
  assert.equal(connack.properties?.sharedSubscriptionAvailable, true);
  await broker.close();
});

test("Broker - close() ends every connection and is idempotent", async () => {
  const broker = new Broker();
  const a = await connectKite(broker, { clientId: "a", protocolVersion: 4 });
  const raw = new RawClient(broker, 5);
  await raw.connect("b");
  await broker.close();
  assert.deepEqual(await raw.waitClosed(), [{ type: "disconnect", reasonCode: 0x8b }]);
  await waitFor(() => a.client.state === "closed", "the client to see the close");
  await broker.close();
  assert.throws(() => broker.connectClient());
  await pause(1);
});
