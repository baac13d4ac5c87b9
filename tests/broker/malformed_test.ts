import assert from "node:assert/strict";
import { test } from "node:test";
import { Broker } from "../../src/broker/mod.ts";
import type { Packet } from "../../src/packet/types.ts";
import { connectKite, FakeClock, RawClient, str, waitFor } from "./helpers.ts";

/** A subscriber and a publisher that must keep working while a third client misbehaves. */
async function bystanders(broker: Broker) {
  const sub = await connectKite(broker, { clientId: "bystander-sub" });
  await sub.client.subscribe("ok", { qos: 1 });
  const pub = await connectKite(broker, { clientId: "bystander-pub" });
  return {
    async stillWork(round: string): Promise<void> {
      const before = sub.messages.length;
      await pub.client.publish("ok", round, { qos: 1 });
      await waitFor(() => sub.messages.length === before + 1, `the bystanders' ${round}`);
      assert.equal(str(sub.messages.at(-1)!.payload), round);
    },
    async close(): Promise<void> {
      await pub.client.disconnect();
      await sub.client.disconnect();
    },
  };
}

const cases: { name: string; version: 4 | 5; bytes: number[]; reasonCode?: number }[] = [
  { name: "a reserved packet type 0", version: 5, bytes: [0x00, 0x00], reasonCode: 0x81 },
  { name: "a reserved packet type 15 on 3.1.1", version: 4, bytes: [0xf0, 0x00] },
  { name: "PUBREL with wrong fixed-header flags", version: 5, bytes: [0x60, 0x02, 0, 1] },
  {
    name: "a PUBLISH whose topic has a wildcard",
    version: 5,
    bytes: [0x30, 0x06, 0, 3, 0x61, 0x2f, 0x23, 0],
  },
  { name: "a PUBLISH with QoS 3", version: 4, bytes: [0x36, 0x05, 0, 1, 0x61, 0, 1] },
  {
    name: "a remaining length over four bytes",
    version: 5,
    bytes: [0x30, 0xff, 0xff, 0xff, 0xff, 1],
  },
  {
    name: "a CONNACK, which only a server sends",
    version: 5,
    bytes: [0x20, 0x03, 0, 0, 0],
    reasonCode: 0x82,
  },
  { name: "a SUBSCRIBE with no filters", version: 4, bytes: [0x82, 0x02, 0, 1] },
  {
    name: "invalid UTF-8 in a topic",
    version: 4,
    bytes: [0x30, 0x04, 0, 2, 0xc3, 0x28],
  },
];

for (const { name, version, bytes, reasonCode } of cases) {
  test(`Broker - ${name} closes only that client`, async () => {
    const broker = new Broker();
    const others = await bystanders(broker);
    const bad = new RawClient(broker, version);
    await bad.connect("bad");
    await bad.sendBytes(bytes);
    const packets = await bad.waitClosed();
    if (version === 5) {
      assert.equal(packets.length, 1, JSON.stringify(packets));
      const disconnect = packets[0] as Packet & { type: "disconnect" };
      assert.equal(disconnect.type, "disconnect");
      assert.ok((disconnect.reasonCode ?? 0) >= 0x80);
      if (reasonCode !== undefined) assert.equal(disconnect.reasonCode, reasonCode);
    } else {
      assert.deepEqual(packets, []);
    }
    await others.stillWork("after");
    await others.close();
    await broker.close();
  });
}

test("Broker - garbage before CONNECT closes only that connection", async () => {
  const broker = new Broker();
  const others = await bystanders(broker);
  const bad = new RawClient(broker, 4);
  await bad.sendBytes([0x47, 0x45, 0x54, 0x20, 0x2f, 0x20, 0x48, 0x54, 0x54, 0x50]); // "GET / HTTP"
  assert.deepEqual(await bad.waitClosed(), []);
  await others.stillWork("after");
  await others.close();
  await broker.close();
});

test("Broker - random bytes from many clients never disturb the others", async () => {
  const broker = new Broker();
  const others = await bystanders(broker);
  let seed = 42;
  const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648;
  for (let round = 0; round < 30; round++) {
    const version = round % 2 === 0 ? 4 : 5;
    const bad = new RawClient(broker, version);
    await bad.connect(`fuzz-${round}`);
    const bytes = Array.from(
      { length: 1 + Math.floor(random() * 40) },
      () => Math.floor(random() * 256),
    );
    await bad.sendBytes(bytes);
    await bad.close();
    await bad.waitClosed();
  }
  await others.stillWork("after the fuzz");
  assert.deepEqual(
    broker.sessions().map((s) => s.clientId).sort(),
    ["bystander-pub", "bystander-sub"],
  );
  await others.close();
  await broker.close();
});

test("Broker - a connection that ends in the middle of a packet is a lost one", async () => {
  const broker = new Broker();
  const others = await bystanders(broker);
  const watcher = await connectKite(broker, { clientId: "watcher" });
  await watcher.client.subscribe("will");
  const bad = new RawClient(broker, 4);
  await bad.connect("half", {
    will: { topic: "will", payload: new TextEncoder().encode("cut"), qos: 0, retain: false },
  });
  await bad.sendBytes([0x30, 0x10, 0, 1]);
  await bad.close();
  await waitFor(() => watcher.messages.length === 1, "the will");
  await others.stillWork("after");
  await watcher.client.disconnect();
  await others.close();
  await broker.close();
});

test("Broker - a connection that never completes CONNECT is closed after connectTimeout", async () => {
  const clock = new FakeClock();
  const broker = new Broker({ clock, connectTimeout: 5_000 });
  const silent = new RawClient(broker, 4);
  const partial = new RawClient(broker, 4);
  await partial.sendBytes([0x10, 0x20, 0, 4]);
  await clock.advance(4_999);
  assert.equal(silent.closed, false);
  assert.equal(partial.closed, false);
  await clock.advance(1);
  await silent.waitClosed();
  await partial.waitClosed();
  await broker.close();
});
