/**
 * Back-pressure for producers, against a byte-scripted fake broker: `ready()` resolves when the
 * bytes waiting to be sent drop below `queue.highWaterMark` (on the acknowledgement or the write
 * that makes room, never by polling) and rejects when the client closes; `writable()` is a
 * `WritableStream` whose `desiredSize` and `ready` follow those bytes, that errors on a failed
 * publish, whose `close()` waits for every acknowledgement and whose `abort()` stops it.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MqttClient } from "../../src/client/clients.ts";
import type { Dialer } from "../../src/client/reconnect.ts";
import type { OutgoingMessage } from "../../src/client/types.ts";
import { ConnectionClosedError, LimitError, StateError } from "../../src/errors.ts";
import { PublishError } from "../../src/session/session.ts";
import {
  assertQuiet,
  connected,
  FakeBroker,
  FakeClock,
  nextEvent,
  settle,
  UnhandledGuard,
  watch,
} from "./harness.ts";

const decoder = new TextDecoder();

/** Reads the next PUBLISH and acknowledges it (QoS 1); returns its payload. */
async function ackNext(broker: FakeBroker): Promise<string> {
  const publish = await broker.expect("publish");
  await broker.sendPacket({ type: "puback", packetId: publish.packetId! });
  return decoder.decode(publish.payload);
}

describe("ready()", () => {
  test("ready() resolves at once below queue.highWaterMark, waits at it, and resolves on the PUBACK that makes room", async () => {
    const { client, broker } = await connected(4, {
      options: { inflightWindow: 1, queue: { highWaterMark: 4 } },
    });
    await client.ready();
    const a = client.publish("t", "aaaa", { qos: 1 }); // in flight: not waiting
    assert.equal(client.bufferedAmount, 0);
    await client.ready();
    const b = client.publish("t", "bbb", { qos: 1 }); // waits for the window
    assert.equal(client.bufferedAmount, 3);
    await client.ready();
    const c = client.publish("t", "c", { qos: 1 });
    assert.equal(client.bufferedAmount, 4);
    const ready = watch(client.ready());
    const again = watch(client.ready());
    await settle();
    assert.equal(ready.settled, false);
    assert.equal(await ackNext(broker), "aaaa"); // bbb goes out: 1 byte waits
    await ready.promise;
    await again.promise;
    assert.equal(client.bufferedAmount, 1);
    assert.equal(await ackNext(broker), "bbb");
    assert.equal(await ackNext(broker), "c");
    await Promise.all([a, b, c]);
    assert.equal(client.bufferedAmount, 0);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("ready() counts QoS 0 bytes until they are written", async () => {
    const { client, broker } = await connected(4, {
      blockWrites: true,
      options: { queue: { highWaterMark: 8 } },
    });
    const publish = watch(client.publish("t", "0123456789"));
    assert.equal(client.bufferedAmount, 10);
    const ready = watch(client.ready());
    await settle();
    assert.equal(ready.settled, false);
    await broker.expect("publish"); // the broker reads it: the write completes
    await ready.promise;
    await publish.promise;
    assert.equal(client.bufferedAmount, 0);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("ready() rejects with ConnectionClosedError when the client closes while it waits, and with StateError when no publish is allowed", async () => {
    await assert.rejects(new MqttClient().ready(), StateError);
    const { client, broker } = await connected(4, {
      options: { inflightWindow: 1, queue: { highWaterMark: 1 } },
    });
    const inFlight = watch(client.publish("t", "a", { qos: 1 }));
    const waiting = watch(client.publish("t", "b", { qos: 1 }));
    const ready = watch(client.ready());
    await settle();
    assert.equal(ready.settled, false);
    await Promise.all([client.disconnect(), broker.closed()]);
    await assert.rejects(ready.promise, ConnectionClosedError);
    await assert.rejects(inFlight.promise, ConnectionClosedError);
    await assert.rejects(waiting.promise, ConnectionClosedError);
    await assert.rejects(client.ready(), StateError);
  });

  test("ready() waits through a reconnection, and resolves once what waited while disconnected has gone out", async () => {
    const clock = new FakeClock();
    const brokers: FakeBroker[] = [];
    const dialed: ((broker: FakeBroker) => void)[] = [];
    const dial: Dialer = () => {
      const broker = new FakeBroker(4);
      brokers.push(broker);
      dialed.shift()?.(broker);
      return Promise.resolve(broker.transport);
    };
    const nextBroker = () => new Promise<FakeBroker>((resolve) => dialed.push(resolve));
    const client = new MqttClient(dial);
    const first = nextBroker();
    const connecting = client.connect({
      clientId: "kite",
      keepalive: 0,
      clean: false,
      clock,
      reconnect: { minDelay: 100, maxDelay: 100, random: () => 0 },
      queue: { highWaterMark: 4 },
    });
    await (await first).accept();
    await connecting;
    const scheduled = nextEvent(client, "reconnect");
    await brokers[0].hangUp();
    await scheduled;
    const publish = watch(client.publish("t", "abcd", { qos: 1 }));
    const ready = watch(client.ready());
    await settle();
    assert.equal(ready.settled, false);
    const second = nextBroker();
    await clock.advance(clock.nextAt - clock.now());
    const broker = await second;
    await broker.accept(true);
    await ready.promise;
    assert.equal(client.bufferedAmount, 0);
    assert.equal(await ackNext(broker), "abcd");
    await publish.promise;
    await Promise.all([client.disconnect(), broker.closed()]);
  });
  test("QoS 0 publishes that waited for a reconnection count in bufferedAmount until the write that takes them completes", async () => {
    const clock = new FakeClock();
    const brokers: FakeBroker[] = [];
    const dial: Dialer = () => {
      // The second connection's writes complete only once the broker reads them.
      const broker = new FakeBroker(4, { blockWrites: brokers.length > 0 });
      brokers.push(broker);
      return Promise.resolve(broker.transport);
    };
    const client = new MqttClient(dial);
    const connecting = client.connect({
      clientId: "kite",
      keepalive: 0,
      clean: false,
      clock,
      reconnect: { minDelay: 100, maxDelay: 100, random: () => 0 },
    });
    await settle();
    await brokers[0].accept();
    await connecting;
    const scheduled = nextEvent(client, "reconnect");
    await brokers[0].hangUp();
    await scheduled;
    const publish = watch(client.publish("t", "0123456789")); // QoS 0, waits for a connection
    assert.equal(client.bufferedAmount, 10);
    await clock.advance(clock.nextAt - clock.now());
    await settle();
    const broker = brokers[1];
    await broker.accept(true);
    await settle();
    // Out of the session's queue, in a write the broker has not read: still buffered.
    assert.equal(publish.settled, false);
    assert.equal(client.bufferedAmount, 10);
    const sent = await broker.expect("publish");
    assert.equal(decoder.decode(sent.payload), "0123456789");
    await publish.promise;
    assert.equal(client.bufferedAmount, 0);
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});

describe("writable()", () => {
  test("writable(): desiredSize and ready follow the bytes waiting; close() resolves once every message is acknowledged", async () => {
    const { client, broker } = await connected(4, {
      options: { inflightWindow: 1, queue: { highWaterMark: 4 } },
    });
    const writer = client.writable({ qos: 1 }).getWriter();
    assert.equal(writer.desiredSize, 4);
    const writes = ["aa", "bbbb", "cc", "dd"].map((payload) =>
      writer.write({ topic: "t", payload })
    );
    await settle();
    // aa in flight, bbbb waiting (the mark), cc held by the sink, dd in the stream's queue.
    assert.equal(client.bufferedAmount, 4);
    assert.equal(writer.desiredSize, 0);
    const ready = watch(writer.ready);
    await settle();
    assert.equal(ready.settled, false);
    assert.equal(await ackNext(broker), "aa");
    await ready.promise;
    await settle();
    // bbbb in flight, cc and dd waiting: 4 bytes, the stream's queue empty.
    assert.equal(client.bufferedAmount, 4);
    assert.equal(writer.desiredSize, 4);
    await Promise.all(writes);
    const closed = watch(writer.close());
    for (const payload of ["bbbb", "cc"]) {
      assert.equal(await ackNext(broker), payload);
    }
    const last = await broker.expect("publish");
    await settle();
    assert.equal(closed.settled, false, "close() waits for the last PUBACK");
    await broker.sendPacket({ type: "puback", packetId: last.packetId! });
    await closed.promise;
    assert.equal(decoder.decode(last.payload), "dd");
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("writable(): each message takes the stream's QoS, retain flag and properties unless it has its own", async () => {
    const { client, broker } = await connected(5);
    const writer = client.writable({
      qos: 1,
      retain: true,
      properties: { contentType: "text/plain" },
    }).getWriter();
    await writer.write({ topic: "a", payload: "1" });
    await writer.write({
      topic: "b",
      payload: "2",
      retain: false,
      properties: { contentType: "x" },
    });
    const closed = writer.close();
    const first = await broker.expect("publish");
    const second = await broker.expect("publish");
    assert.deepEqual(
      [first, second].map((
        p,
      ) => [p.topic, p.qos, p.retain, p.properties?.contentType]),
      [["a", 1, true, "text/plain"], ["b", 1, false, "x"]],
    );
    for (const p of [first, second]) {
      await broker.sendPacket({ type: "puback", packetId: p.packetId! });
    }
    await closed;
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("writable(): a publish the broker refuses errors the stream with its PublishError", async () => {
    const { client, broker } = await connected(5);
    const stream = client.writable({ qos: 1 });
    const writer = stream.getWriter();
    await writer.write({ topic: "t", payload: "refused" });
    const publish = await broker.expect("publish");
    await broker.sendPacket({
      type: "puback",
      packetId: publish.packetId!,
      reasonCode: 0x87,
    });
    await assert.rejects(writer.closed, PublishError);
    await assert.rejects(
      writer.write({ topic: "t", payload: "next" }),
      PublishError,
    );
    await assertQuiet(broker);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("writable(): a message past queue.maxBytes errors the stream with a LimitError naming queue.maxBytes", async () => {
    const { client, broker } = await connected(4, {
      options: { inflightWindow: 1, queue: { maxBytes: 4 } },
    });
    const writer = client.writable({ qos: 1 }).getWriter();
    await writer.write({ topic: "t", payload: "in flight" });
    // It would wait for the window, and it can never fit: refused, not held.
    await writer.write({ topic: "t", payload: "12345" }).catch(() => {});
    await assert.rejects(
      writer.closed,
      (error: unknown) =>
        error instanceof LimitError &&
        /queue\.maxBytes \(4\)/.test(error.message),
    );
    assert.equal(await ackNext(broker), "in flight");
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("writable(): abort() stops a write that waits for room; what was published completes", async () => {
    const { client, broker } = await connected(4, {
      options: { inflightWindow: 1, queue: { highWaterMark: 1 } },
    });
    const writer = client.writable({ qos: 1 }).getWriter();
    await writer.write({ topic: "t", payload: "a" }); // in flight
    await writer.write({ topic: "t", payload: "b" }); // waits for the window: the mark
    const held = writer.write({ topic: "t", payload: "c" }).catch((error) => error);
    await settle();
    await writer.abort(new Error("stop"));
    assert.equal((await held as Error).message, "stop");
    assert.equal(await ackNext(broker), "a");
    assert.equal(await ackNext(broker), "b");
    await assertQuiet(broker);
    assert.deepEqual(client.pending, { inflight: 0, waiting: 0 });
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("writable(): the stream errors with ConnectionClosedError when the client closes while it waits for room", async () => {
    const { client, broker } = await connected(4, {
      options: { inflightWindow: 1, queue: { highWaterMark: 1 } },
    });
    const writer = client.writable({ qos: 1 }).getWriter();
    await writer.write({ topic: "t", payload: "a" });
    await writer.write({ topic: "t", payload: "b" });
    writer.write({ topic: "t", payload: "c" }).catch(() => {});
    await settle();
    await Promise.all([client.disconnect(), broker.closed()]);
    await assert.rejects(writer.closed, ConnectionClosedError);
    assert.throws(() => client.writable(), StateError);
  });

  test("pipeTo(client.writable()): when the client closes, the pipe rejects with ConnectionClosedError and cancels the source; nothing is left unhandled", async () => {
    const guard = new UnhandledGuard();
    const { client, broker } = await connected(4, {
      options: { inflightWindow: 1, queue: { highWaterMark: 4 } },
    });
    let cancelled: unknown;
    const source = new ReadableStream<OutgoingMessage>({
      pull(controller) {
        controller.enqueue({ topic: "t", payload: "abcd" });
      },
      cancel(reason) {
        cancelled = reason;
      },
    }, { highWaterMark: 0 });
    const piped = watch(source.pipeTo(client.writable({ qos: 1 })));
    await broker.expect("publish");
    await settle();
    assert.equal(piped.settled, false);
    await Promise.all([client.disconnect(), broker.closed()]);
    await assert.rejects(piped.promise, ConnectionClosedError);
    assert.ok(cancelled instanceof ConnectionClosedError);
    await guard.check();
  });

  test("pipeTo(client.writable()): the source is read only as fast as the broker acknowledges", async () => {
    const { client, broker } = await connected(4, {
      options: { inflightWindow: 2, queue: { highWaterMark: 16 } },
    });
    const total = 1000;
    let pulled = 0;
    let peak = 0;
    const source = new ReadableStream<OutgoingMessage>({
      pull(controller) {
        peak = Math.max(peak, client.bufferedAmount);
        controller.enqueue({
          topic: "t",
          payload: String(pulled % 10_000).padStart(4, "0"),
        });
        if (++pulled === total) controller.close();
      },
    }, { highWaterMark: 0 });
    const piped = watch(source.pipeTo(client.writable({ qos: 1 })));
    await settle();
    // 2 in flight, 4 of 4 bytes waiting (the mark), 1 held by the sink, 4 in the stream's queue
    // (its 16 bytes), and the one the pipe has read.
    assert.ok(
      pulled <= 12,
      `${pulled} messages read while the broker acknowledged none`,
    );
    assert.equal(piped.settled, false);
    const payloads: string[] = [];
    while (payloads.length < total) payloads.push(await ackNext(broker));
    await piped.promise;
    assert.deepEqual(
      payloads,
      Array.from({ length: total }, (_, i) => String(i).padStart(4, "0")),
    );
    assert.ok(
      peak <= 16 + 4,
      `at most the mark and one message waited; ${peak} bytes did`,
    );
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});
