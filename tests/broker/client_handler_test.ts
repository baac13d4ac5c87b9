/**
 * One client of the broker without any stream: a `ClientHandler` fed bytes on a fake clock, answering
 * through a recording link.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { ClientHandler } from "../../src/broker/client_handler.ts";
import { BrokerCore } from "../../src/broker/registry.ts";
import { PacketDecoder } from "../../src/packet/decoder_stream.ts";
import { encode } from "../../src/packet/encode.ts";
import type { Packet, ProtocolVersion } from "../../src/packet/types.ts";
import { FakeClock, text } from "./helpers.ts";

/** A handler and everything it sent, decoded. */
function handler(core: BrokerCore, version: ProtocolVersion = 5) {
  const sent: Packet[] = [];
  const decoder = new PacketDecoder({ protocolVersion: version });
  let ended: boolean | undefined;
  const client = new ClientHandler(core, {
    write: (bytes) => decoder.push(bytes, (packet) => sent.push(packet)),
    end: (graceful) => ended = graceful,
  });
  return {
    client,
    sent,
    get ended() {
      return ended;
    },
    send(packet: Packet) {
      client.receive(encode(packet, version));
    },
  };
}

test("ClientHandler - CONNECT, SUBSCRIBE and PUBLISH without any stream", () => {
  const core = new BrokerCore({ clock: new FakeClock() });
  const sub = handler(core);
  sub.send({ type: "connect", protocolVersion: 5, clientId: "s", clean: true, keepalive: 0 });
  sub.send({ type: "subscribe", packetId: 1, subscriptions: [{ topicFilter: "a/+", qos: 1 }] });
  const pub = handler(core);
  pub.send({ type: "connect", protocolVersion: 5, clientId: "p", clean: true, keepalive: 0 });
  pub.send({
    type: "publish",
    topic: "a/b",
    payload: text("hi"),
    qos: 1,
    retain: false,
    dup: false,
    packetId: 5,
  });
  assert.deepEqual(sub.sent.map((p) => p.type), ["connack", "suback", "publish"]);
  assert.deepEqual(pub.sent.map((p) => p.type), ["connack", "puback"]);
  const delivered = sub.sent[2] as Packet & { type: "publish" };
  assert.equal(delivered.topic, "a/b");
  assert.equal(delivered.qos, 1);
  assert.equal(delivered.packetId, 1);
});

test("ClientHandler - keepalive deadline on the injected clock", async () => {
  const clock = new FakeClock();
  const core = new BrokerCore({ clock });
  const c = handler(core);
  c.send({ type: "connect", protocolVersion: 5, clientId: "k", clean: true, keepalive: 4 });
  await clock.advance(5_999);
  assert.equal(c.ended, undefined);
  await clock.advance(1);
  assert.equal(c.ended, true);
  assert.deepEqual(c.sent.at(-1), { type: "disconnect", reasonCode: 0x8d });
  assert.equal(clock.pending, 0);
});

test("ClientHandler - bytes split anywhere decode the same", () => {
  const core = new BrokerCore({ clock: new FakeClock() });
  const c = handler(core, 4);
  const bytes = new Uint8Array([
    ...encode({ type: "connect", protocolVersion: 4, clientId: "x", clean: true, keepalive: 0 }),
    ...encode({ type: "pingreq" }),
    ...encode({ type: "pingreq" }),
  ]);
  for (const byte of bytes) c.client.receive(new Uint8Array([byte]));
  assert.deepEqual(c.sent.map((p) => p.type), ["connack", "pingresp", "pingresp"]);
});

test("ClientHandler - receive() never throws, whatever the bytes", () => {
  const core = new BrokerCore({ clock: new FakeClock() });
  let seed = 7;
  const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648;
  for (let round = 0; round < 200; round++) {
    const c = handler(core, round % 2 ? 5 : 4);
    c.send({
      type: "connect",
      protocolVersion: round % 2 ? 5 : 4,
      clientId: `f${round}`,
      clean: true,
      keepalive: 0,
    });
    const bytes = Uint8Array.from(
      { length: 1 + Math.floor(random() * 64) },
      () => Math.floor(random() * 256),
    );
    assert.doesNotThrow(() => c.client.receive(bytes));
    c.client.lost();
  }
  assert.equal(core.sessions.size, 0);
  assert.equal(core.handlers.size, 0);
});
