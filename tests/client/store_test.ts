/**
 * The client and its store: nothing goes on the wire before the store has made durable what it
 * depends on, and a client opened on a store completes what an earlier one left.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MqttClient } from "../../src/client/clients.ts";
import type { ClientOptions } from "../../src/client/types.ts";
import { MemoryStore } from "../../src/store/memory_store.ts";
import type { OutgoingState, Store, StoreContents, StoredPublish } from "../../src/store/store.ts";
import { ConnectionClosedError, LimitError, StoreError } from "../../src/errors.ts";
import { FakeBroker, FakeClock, nextEvent, settle, UnhandledGuard, watch } from "./harness.ts";

/** A store whose every write waits until the test releases it, and that logs what it did. */
class GatedStore implements Store {
  readonly log: string[] = [];
  readonly memory = new MemoryStore();
  #gates: (() => void)[] = [];

  /** How many writes wait. */
  get waiting(): number {
    return this.#gates.length;
  }

  /** Makes every waiting write durable. */
  release(): void {
    for (const gate of this.#gates.splice(0)) gate();
  }

  #write(entry: string, apply: () => void): Promise<void> {
    return new Promise((resolve) => {
      this.#gates.push(() => {
        apply();
        this.log.push(entry);
        resolve();
      });
    });
  }

  open(): StoreContents {
    return this.memory.open();
  }
  put(record: StoredPublish): Promise<void> {
    return this.#write(`put ${record.sequence} ${record.state}`, () => this.memory.put(record));
  }
  update(sequence: number, state: OutgoingState, packetId?: number): Promise<void> {
    return this.#write(
      `update ${sequence} ${state} ${packetId ?? "-"}`,
      () => this.memory.update(sequence, state, packetId),
    );
  }
  delete(sequence: number): Promise<void> {
    return this.#write(`delete ${sequence}`, () => this.memory.delete(sequence));
  }
  putIncoming(packetId: number): Promise<void> {
    return this.#write(`putIncoming ${packetId}`, () => this.memory.putIncoming(packetId));
  }
  deleteIncoming(packetId: number): Promise<void> {
    return this.#write(`deleteIncoming ${packetId}`, () => this.memory.deleteIncoming(packetId));
  }
  clear(): void {
    this.memory.clear();
  }
  close(): void {}
}

async function connectedWith(
  store: Store,
  broker = new FakeBroker(4),
  options: ClientOptions = {},
): Promise<MqttClient> {
  const client = new MqttClient(broker.transport);
  const connecting = client.connect({
    clientId: "kite",
    keepalive: 0,
    clean: false,
    store,
    clock: new FakeClock(),
    ...options,
  });
  await broker.accept(true);
  await connecting;
  return client;
}

describe("client and store", () => {
  test("a QoS 2 PUBLISH is written only once its record and packet id are durable; PUBREL only once its state is", async () => {
    const store = new GatedStore();
    const broker = new FakeBroker(4);
    const client = await connectedWith(store, broker);
    const published = client.publish("a", "x", { qos: 2 });
    await settle();
    assert.equal(broker.tryNext(), undefined, "nothing written before the store answered");
    assert.equal(store.waiting, 2);
    store.release();
    const publish = await broker.expect("publish");
    assert.deepEqual(store.log, ["put 1 queued", `update 1 publish ${publish.packetId}`]);

    await broker.sendPacket({ type: "pubrec", packetId: publish.packetId! });
    await settle();
    assert.equal(broker.tryNext(), undefined, "no PUBREL before its state is durable");
    store.release();
    await broker.expect("pubrel");
    assert.equal(store.log.at(-1), `update 1 pubrel ${publish.packetId}`);
    await broker.sendPacket({ type: "pubcomp", packetId: publish.packetId! });
    await published;
    const closing = client.disconnect();
    await settle();
    store.release();
    await closing;
    assert.equal(store.log.at(-1), "delete 1");
    assert.deepEqual(store.memory.open().outgoing, []);
  });

  test("an incoming QoS 2 id is durable before PUBREC, and forgotten before PUBCOMP", async () => {
    const store = new GatedStore();
    const broker = new FakeBroker(4);
    const client = await connectedWith(store, broker);
    client.setPublishHandler(() => {});
    await broker.send("34 06 00 01 74 00 09 7a"); // PUBLISH QoS 2 to "t", id 9
    await settle();
    assert.equal(broker.tryNext(), undefined, "no PUBREC before the id is durable");
    store.release();
    assert.equal((await broker.expect("pubrec")).packetId, 9);
    assert.deepEqual(store.memory.open().incoming, [9]);
    await broker.send("62 02 00 09");
    await settle();
    assert.equal(broker.tryNext(), undefined, "no PUBCOMP before the id is forgotten");
    store.release();
    assert.equal((await broker.expect("pubcomp")).packetId, 9);
    assert.deepEqual(store.memory.open().incoming, []);
    const closing = client.disconnect();
    await settle();
    store.release();
    await closing;
  });

  test("a client opened on a store re-sends what an earlier one left in flight, with its packet id and DUP", async () => {
    const store = new MemoryStore();
    const payload = new TextEncoder().encode("left");
    store.put({
      sequence: 4,
      state: "publish",
      packet: {
        type: "publish",
        topic: "a",
        payload,
        qos: 1,
        retain: false,
        dup: false,
        packetId: 12,
      },
    });
    store.put({
      sequence: 5,
      state: "queued",
      packet: { type: "publish", topic: "b", payload, qos: 2, retain: false, dup: false },
    });
    const broker = new FakeBroker(4);
    const client = await connectedWith(store, broker);
    const resent = await broker.expect("publish");
    assert.equal(resent.packetId, 12);
    assert.equal(resent.dup, true);
    const queued = await broker.expect("publish");
    assert.equal(queued.topic, "b");
    assert.equal(queued.dup, false);
    assert.notEqual(queued.packetId, 12);
    await broker.sendPacket({ type: "puback", packetId: 12 });
    await broker.sendPacket({ type: "pubrec", packetId: queued.packetId! });
    await broker.expect("pubrel");
    await broker.sendPacket({ type: "pubcomp", packetId: queued.packetId! });
    await settle();
    assert.deepEqual(client.pending, { inflight: 0, waiting: 0 });
    assert.deepEqual(store.open().outgoing, []);
    await client.disconnect();
  });

  test("publishes a store held queued count against queue.maxBytes until they are sent, and only until then", async () => {
    const store = new MemoryStore();
    store.put({
      sequence: 1,
      packet: {
        type: "publish",
        topic: "q",
        payload: new TextEncoder().encode("12345678"),
        qos: 1,
        retain: false,
        dup: false,
      },
      state: "queued",
    });
    const broker = new FakeBroker(4);
    const client = new MqttClient(broker.transport);
    const connecting = client.connect({
      clientId: "kite",
      keepalive: 0,
      clean: false,
      store,
      clock: new FakeClock(),
      inflightWindow: 1,
      queue: { maxBytes: 10 },
    });
    await broker.expect("connect");
    // Before CONNACK the 8 restored bytes wait: 4 more would make 12.
    assert.deepEqual(client.pending, { inflight: 0, waiting: 1 });
    const refused = watch(client.publish("q", "abcd", { qos: 1 }));
    await settle();
    assert.ok(refused.reason instanceof LimitError, "12 bytes were accepted with a bound of 10");
    const fits = client.publish("q", "ab", { qos: 1 });
    await broker.sendPacket({ type: "connack", sessionPresent: true, reasonCode: 0 });
    await connecting;
    for (const payload of ["12345678", "ab"]) {
      const publish = await broker.expect("publish");
      assert.equal(new TextDecoder().decode(publish.payload), payload);
      await broker.sendPacket({ type: "puback", packetId: publish.packetId! });
    }
    await fits;
    // Sent, they no longer count, nor count against: with the window full, 10 bytes may wait.
    const inflight = client.publish("q", "x", { qos: 1 });
    const waiting = client.publish("q", "1234567890", { qos: 1 });
    const over = watch(client.publish("q", "y", { qos: 1 }));
    await settle();
    assert.ok(over.reason instanceof LimitError, "11 bytes were accepted with a bound of 10");
    assert.deepEqual(client.pending, { inflight: 1, waiting: 1 });
    for (const payload of ["x", "1234567890"]) {
      const publish = await broker.expect("publish");
      assert.equal(new TextDecoder().decode(publish.payload), payload);
      await broker.sendPacket({ type: "puback", packetId: publish.packetId! });
    }
    await Promise.all([inflight, waiting]);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("disconnect() with publishes unfinished: they reject saying they stay in the store, and a client opened on it sends them", async () => {
    const store = new MemoryStore();
    const broker = new FakeBroker(4);
    const client = await connectedWith(store, broker);
    const inflight = watch(client.publish("t", "in flight", { qos: 1 }));
    await broker.expect("publish");
    const qos0 = watch(client.publish("t", "qos 0"));
    await Promise.all([client.disconnect(), broker.closed()]);
    await assert.rejects(inflight.promise, (error: Error) => {
      assert.ok(error instanceof ConnectionClosedError);
      assert.match(error.message, /stays in the store/);
      return true;
    });
    if (qos0.rejected) assert.doesNotMatch((qos0.reason as Error).message, /store/);
    assert.deepEqual(
      store.open().outgoing.map((record) => new TextDecoder().decode(record.packet.payload)),
      ["in flight"],
    );

    const next = new FakeBroker(4);
    const again = new MqttClient(next.transport);
    const reconnecting = again.connect({ clientId: "kite", clean: false, keepalive: 0, store });
    await next.accept(true);
    await reconnecting;
    const resent = await next.expect("publish");
    assert.equal(new TextDecoder().decode(resent.payload), "in flight");
    assert.equal(resent.dup, true);
    await next.sendPacket({ type: "puback", packetId: resent.packetId! });
    await settle();
    assert.deepEqual(store.open().outgoing, []);
    await Promise.all([again.disconnect(), next.closed()]);
  });

  test("disconnect() with a store that does not answer: after the grace only DISCONNECT is written; the PUBLISH waits in the store", async () => {
    const store = new GatedStore();
    const broker = new FakeBroker(4);
    const clock = new FakeClock();
    const client = await connectedWith(store, broker, { clock });
    const published = watch(client.publish("a", "x", { qos: 1 }));
    await settle();
    const closing = client.disconnect();
    await clock.advance(1000);
    assert.deepEqual((await broker.closed()).map((sent) => sent.packet.type), ["disconnect"]);
    await closing;
    await assert.rejects(published.promise, /stays in the store/);
    store.release();
  });

  test("persisted() resolves once every accepted publish is in the store", async () => {
    const store = new GatedStore();
    const client = await connectedWith(store);
    client.publish("a", "x", { qos: 1 });
    let persisted = false;
    const waiting = client.persisted().then(() => persisted = true);
    await settle();
    assert.equal(persisted, false);
    store.release();
    await settle();
    store.release();
    await waiting;
    assert.equal(store.memory.open().outgoing.length, 1);
    const closing = client.disconnect();
    await settle();
    store.release();
    await closing;
  });

  test("a store that fails closes the client with a StoreError, and the publish rejects; nothing is unhandled", async () => {
    const guard = new UnhandledGuard();
    class FailingStore extends MemoryStore {
      override put(): Promise<void> {
        return Promise.reject(new Error("disk full"));
      }
    }
    const broker = new FakeBroker(4);
    const client = await connectedWith(new FailingStore(), broker);
    const error = nextEvent(client, "error");
    const published = client.publish("a", "x", { qos: 1 });
    assert.ok((await error).detail instanceof StoreError);
    await assert.rejects(published, (error: Error) => {
      assert.ok(error instanceof ConnectionClosedError);
      assert.doesNotMatch(error.message, /stays in the store/, "the store is what failed");
      return true;
    });
    assert.equal(client.state, "closed");
    await guard.check();
  });
});
