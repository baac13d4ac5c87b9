/**
 * Closing: `disconnect()` from every state, what it sends, that it always settles (also over a
 * broker that never reads), `await using`, and what happens to everything pending when the
 * client or the broker ends the connection.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MqttClient } from "../../src/client/clients.ts";
import type { Message } from "../../src/client/types.ts";
import { ConnectionClosedError, MqttError, StateError } from "../../src/errors.ts";
import {
  assertQuiet,
  connected,
  FakeBroker,
  FakeClock,
  nextEvent,
  recordEvents,
  settle,
  versionName,
  VERSIONS,
  watch,
} from "./harness.ts";

describe("disconnect from every state", () => {
  test("disconnect when idle: resolves, the client is closed, nothing is written", async () => {
    const broker = new FakeBroker(4);
    const client = new MqttClient(broker.transport);
    const events = recordEvents(client, ["error", "disconnect"]);
    await client.disconnect();
    assert.equal(client.state, "closed");
    assert.deepEqual(events.map(([type]) => type), ["disconnect"]);
    await assertQuiet(broker);
    await assert.rejects(client.connect({ clock: new FakeClock() }), StateError);
    await client.disconnect();
  });

  test("disconnect while connecting: no DISCONNECT, connect() rejects with ConnectionClosedError, the transport is closed", async () => {
    const broker = new FakeBroker(4);
    const client = new MqttClient(broker.transport);
    const connecting = watch(client.connect({ clientId: "k", clock: new FakeClock() }));
    await broker.expect("connect");
    await client.disconnect();
    await assert.rejects(connecting.promise, ConnectionClosedError);
    assert.deepEqual(await broker.closed(), []);
    assert.equal(broker.transport.closed, true);
    assert.equal(client.state, "closed");
  });

  for (const version of VERSIONS) {
    test(`disconnect when connected ${versionName(version)}: DISCONNECT, then the transport closes; no error event`, async () => {
      const { client, broker } = await connected(version);
      const events = recordEvents(client, ["error", "disconnect"]);
      await client.disconnect();
      assert.equal(client.state, "closed");
      assert.deepEqual((await broker.closed()).map((sent) => sent.hex), ["e0 00"]);
      assert.equal(broker.transport.closed, true);
      assert.deepEqual(events.map(([type]) => type), ["disconnect"]);
      assert.equal((events[0][1] as { error?: unknown }).error, undefined);
    });
  }

  test("disconnect v5 with a reason code and properties: DISCONNECT 0x04 with Session Expiry Interval 0", async () => {
    const { client, broker } = await connected(5, {
      options: { properties: { sessionExpiryInterval: 60 } },
    });
    await client.disconnect({ reasonCode: 0x04, properties: { sessionExpiryInterval: 0 } });
    // Reason 0x04 (Disconnect with Will Message); Session Expiry Interval (0x11) 0.
    assert.deepEqual((await broker.closed()).map((sent) => sent.hex), [
      "e0 07 04 05 11 00 00 00 00",
    ]);
  });

  test("disconnect v3.1.1 with a reason code: there is none in 3.1.1, DISCONNECT stays empty", async () => {
    const { client, broker } = await connected(4);
    await client.disconnect({ reasonCode: 0x04 });
    assert.deepEqual((await broker.closed()).map((sent) => sent.hex), ["e0 00"]);
  });

  test("disconnect v5 with an invalid reason code throws, and the client stays connected", async () => {
    const { client, broker } = await connected(5);
    await assert.rejects(client.disconnect({ reasonCode: 0x05 }));
    assert.equal(client.state, "connected");
    await assertQuiet(broker);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("disconnect while disconnecting, and when closed: the same end, one DISCONNECT", async () => {
    const { client, broker } = await connected(4);
    const first = client.disconnect();
    assert.equal(client.state, "disconnecting");
    const second = client.disconnect();
    await Promise.all([first, second]);
    assert.equal(client.state, "closed");
    await client.disconnect();
    assert.deepEqual((await broker.closed()).map((sent) => sent.hex), ["e0 00"]);
  });

  test("disconnect after the broker hung up: resolves at once", async () => {
    const { client, broker } = await connected(4);
    const disconnected = nextEvent(client, "disconnect");
    await broker.hangUp();
    await disconnected;
    await client.disconnect();
    assert.equal(client.state, "closed");
  });

  test("disconnect sends what was queued first: PUBLISH, then DISCONNECT", async () => {
    const { client, broker } = await connected(4);
    const publish = client.publish("t", "x");
    await client.disconnect();
    await publish;
    assert.deepEqual((await broker.closed()).map((sent) => sent.hex), [
      "30 04 00 01 74 78",
      "e0 00",
    ]);
  });

  test("await using: leaving the scope sends DISCONNECT and closes the client", async () => {
    const broker = new FakeBroker(4);
    let outside: MqttClient | undefined;
    {
      await using client = new MqttClient(broker.transport);
      outside = client;
      const connecting = client.connect({ clientId: "k", keepalive: 0, clock: new FakeClock() });
      await broker.accept();
      await connecting;
    }
    assert.equal(outside.state, "closed");
    assert.deepEqual((await broker.closed()).map((sent) => sent.hex), ["e0 00"]);
  });
});

describe("disconnect always settles", () => {
  test("disconnect over a broker that never reads: settles when the 1 s grace ends, not before", async () => {
    const { client, broker, clock } = await connected(4, { blockWrites: true });
    // The broker reads nothing more: this write never completes.
    const stuck = watch(client.publish("t", "x"));
    await settle();
    const disconnecting = watch(client.disconnect());
    await clock.advance(999);
    assert.equal(disconnecting.settled, false);
    await clock.advance(1);
    const settledInTime = disconnecting.settled;
    // Let it end anyway, so that a failure here leaves nothing running.
    await clock.advance(60_000);
    assert.ok(settledInTime, "disconnect() was still waiting when the 1 s grace ended");
    await disconnecting.promise;
    assert.equal(client.state, "closed");
    assert.equal(broker.transport.closed, true);
    await assert.rejects(stuck.promise, ConnectionClosedError);
  });

  test("disconnect over a broker that never reads, with a QoS 1 publish in flight: it rejects with ConnectionClosedError", async () => {
    const { client, broker, clock } = await connected(5, { blockWrites: true });
    const inflight = watch(client.publish("t", "x", { qos: 1 }));
    await settle();
    const disconnecting = watch(client.disconnect());
    await clock.advance(1000);
    const settledInTime = disconnecting.settled;
    await clock.advance(60_000);
    assert.ok(settledInTime, "disconnect() was still waiting when the 1 s grace ended");
    await disconnecting.promise;
    await assert.rejects(inflight.promise, ConnectionClosedError);
    assert.equal(broker.transport.closed, true);
  });
});

describe("a write that fails", () => {
  test("a write that fails closes the client; the QoS 0 publish waiting on it rejects with ConnectionClosedError", async () => {
    const toClient = new TransformStream<Uint8Array, Uint8Array>();
    const broker = toClient.writable.getWriter();
    let writes = 0;
    const transport = {
      readable: toClient.readable,
      writable: new WritableStream<Uint8Array>({
        write() {
          // CONNECT goes through; the socket is broken after it.
          if (writes++ > 0) throw new Error("broken pipe");
        },
      }),
    };
    const client = new MqttClient(transport);
    const events = recordEvents(client, ["error", "disconnect"]);
    const disconnected = nextEvent(client, "disconnect");
    const connecting = client.connect({ clientId: "k", keepalive: 0, clock: new FakeClock() });
    await broker.write(new Uint8Array([0x20, 0x02, 0x00, 0x00]));
    await connecting;
    const publish = watch(client.publish("t", "x"));
    await disconnected;
    await assert.rejects(publish.promise, ConnectionClosedError);
    assert.deepEqual(events.map(([type]) => type), ["error", "disconnect"]);
    assert.ok(events[0][1] instanceof ConnectionClosedError);
    assert.equal(client.state, "closed");
  });
});

describe("what is pending when the connection ends", () => {
  test("disconnect: publishes in flight and waiting, QoS 2 past PUBREC, subscribe and unsubscribe reject with ConnectionClosedError", async () => {
    const { client, broker } = await connected(4, { options: { inflightWindow: 2 } });
    const qos2 = watch(client.publish("t", "2", { qos: 2 }));
    const qos1 = watch(client.publish("t", "1", { qos: 1 }));
    const waiting = watch(client.publish("t", "w", { qos: 1 }));
    const subscribed = watch(client.subscribe("s"));
    const unsubscribed = watch(client.unsubscribe("u"));
    await broker.expect("publish");
    await broker.expect("publish");
    await broker.expect("subscribe");
    await broker.expect("unsubscribe");
    await broker.send("50 02 00 01");
    await broker.expect("pubrel");
    await client.disconnect();
    for (const pending of [qos2, qos1, waiting, subscribed, unsubscribed]) {
      await assert.rejects(pending.promise, ConnectionClosedError);
    }
    assert.deepEqual(client.pending, { inflight: 0, waiting: 0 });
    assert.deepEqual((await broker.closed()).map((sent) => sent.hex), ["e0 00"]);
  });

  test("disconnect while connecting: a publish and a subscribe queued for the connection reject with ConnectionClosedError", async () => {
    const broker = new FakeBroker(4);
    const client = new MqttClient(broker.transport);
    const connecting = watch(client.connect({ clientId: "k", clock: new FakeClock() }));
    await broker.expect("connect");
    const qos0 = watch(client.publish("t", "0"));
    const qos1 = watch(client.publish("t", "1", { qos: 1 }));
    const subscribed = watch(client.subscribe("s"));
    await client.disconnect();
    for (const pending of [connecting, qos0, qos1, subscribed]) {
      await assert.rejects(pending.promise, ConnectionClosedError);
    }
    assert.deepEqual(await broker.closed(), []);
  });

  for (const [how, end] of [["hangs up", "hangUp"], ["resets the connection", "reset"]] as const) {
    test(`the broker ${how}: everything pending rejects with ConnectionClosedError; error and disconnect events; closed`, async () => {
      const { client, broker } = await connected(4);
      const events = recordEvents(client, ["error", "disconnect"]);
      const disconnected = nextEvent(client, "disconnect");
      const qos1 = watch(client.publish("t", "1", { qos: 1 }));
      const subscribed = watch(client.subscribe("s"));
      await broker.expect("publish");
      await broker.expect("subscribe");
      await broker[end]();
      await disconnected;
      for (const pending of [qos1, subscribed]) {
        await assert.rejects(pending.promise, ConnectionClosedError);
      }
      assert.equal(client.state, "closed");
      assert.deepEqual(events.map(([type]) => type), ["error", "disconnect"]);
      assert.ok(events[0][1] instanceof ConnectionClosedError);
      assert.equal((events[1][1] as { error: MqttError }).error, events[0][1]);
      assert.deepEqual(await broker.closed(), []);
      assert.equal(broker.transport.closed, true);
      await assert.rejects(client.publish("t", "x"), StateError);
    });
  }

  test("the broker hangs up before CONNACK: connect() rejects with ConnectionClosedError", async () => {
    const broker = new FakeBroker(5);
    const client = new MqttClient(broker.transport);
    const connecting = watch(client.connect({ clientId: "k", clock: new FakeClock() }));
    await broker.expect("connect");
    await broker.hangUp();
    await assert.rejects(connecting.promise, ConnectionClosedError);
    await broker.closed();
  });

  test("the broker hangs up in the middle of a packet: the client closes", async () => {
    const { client, broker } = await connected(4);
    const error = nextEvent<MqttError>(client, "error");
    await broker.send("32 09 00 03 61");
    await broker.hangUp();
    assert.ok((await error).detail instanceof MqttError);
    await broker.closed();
  });

  for (
    const [form, bytes, packet] of [
      ["with no body", "e0 00", { type: "disconnect" }],
      ["with the code", "e0 01 00", { type: "disconnect", reasonCode: 0 }],
    ] as const
  ) {
    test(`v5 broker DISCONNECT 0x00 (Normal disconnection) ${form}: a disconnect event carrying it, no error event`, async () => {
      const { client, broker } = await connected(5);
      const events = recordEvents(client, ["error", "disconnect"]);
      const disconnected = nextEvent(client, "disconnect");
      await broker.send(bytes);
      await disconnected;
      assert.deepEqual(events.map(([type]) => type), ["disconnect"]);
      assert.deepEqual((events[0][1] as { packet: unknown }).packet, packet);
      assert.deepEqual(await broker.closed(), []);
      assert.equal(client.state, "closed");
    });
  }

  test("v5 broker DISCONNECT 0x8b (Server shutting down): error event, pending operations reject", async () => {
    const { client, broker } = await connected(5);
    const events = recordEvents(client, ["error", "disconnect"]);
    const disconnected = nextEvent(client, "disconnect");
    const qos1 = watch(client.publish("t", "1", { qos: 1 }));
    await broker.expect("publish");
    await broker.send("e0 01 8b");
    await disconnected;
    await assert.rejects(qos1.promise, ConnectionClosedError);
    assert.deepEqual(events.map(([type]) => type), ["error", "disconnect"]);
    assert.match((events[0][1] as Error).message, /0x8b/);
    assert.deepEqual((events[1][1] as { packet: unknown }).packet, {
      type: "disconnect",
      reasonCode: 0x8b,
    });
  });
});

describe("iterators when the client closes", () => {
  test("messages(): a waiting next() ends when the client disconnects; a for await loop finishes", async () => {
    const { client, broker } = await connected(4);
    const waiting = client.messages("x/#").next();
    const seen: Message[] = [];
    const loop = (async () => {
      for await (const message of client.messages("a/#")) seen.push(message);
    })();
    await broker.send("30 05 00 03 61 2f 62");
    await client.disconnect();
    assert.deepEqual(await waiting, { value: undefined, done: true });
    await loop;
    assert.deepEqual(seen.map((m) => m.topic), ["a/b"]);
    await broker.closed();
  });

  test("messages(): what was queued can still be read after the broker hangs up, then the iterator ends", async () => {
    const { client, broker } = await connected(4);
    const iterator = client.messages();
    const disconnected = nextEvent(client, "disconnect");
    await broker.send("30 05 00 03 61 2f 62");
    await broker.hangUp();
    await disconnected;
    assert.equal((await iterator.next()).value?.topic, "a/b");
    assert.deepEqual(await iterator.next(), { value: undefined, done: true });
  });

  test("messages() on a closed client is done at once", async () => {
    const { client, broker } = await connected(4);
    await Promise.all([client.disconnect(), broker.closed()]);
    assert.deepEqual(await client.messages().next(), { value: undefined, done: true });
  });
});
