/**
 * One behavioural suite, run against every {@linkcode Store}: what goes in comes out of
 * `open()` the same, whether the store keeps it in memory or on disk.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PublishPacket } from "../../src/packet/types.ts";
import { FileStore } from "../../src/store/file_store.ts";
import { MemoryStore } from "../../src/store/memory_store.ts";
import type { Store, StoreContents } from "../../src/store/store.ts";

/** A store under test, and how to read back what it holds as a fresh `open()` would. */
interface Subject {
  store: Store;
  /** What the store holds now, as `open()` of a new process would return it. */
  contents(): Promise<StoreContents>;
  dispose(): Promise<void>;
}

interface Kind {
  name: string;
  create(): Promise<Subject>;
}

const kinds: Kind[] = [
  {
    name: "MemoryStore",
    create(): Promise<Subject> {
      const store = new MemoryStore();
      store.open();
      return Promise.resolve({
        store,
        contents: () => Promise.resolve(structuredClone(store.open())),
        dispose: () => Promise.resolve(),
      });
    },
  },
  {
    name: "FileStore",
    async create(): Promise<Subject> {
      const directory = await mkdtemp(join(tmpdir(), "kite-store-"));
      const subject: Subject = {
        store: new FileStore(directory),
        async contents(): Promise<StoreContents> {
          // What is on disk is the truth: close, and read it with a new store.
          await subject.store.close();
          subject.store = new FileStore(directory);
          return await subject.store.open();
        },
        async dispose(): Promise<void> {
          await subject.store.close();
          await rm(directory, { recursive: true, force: true });
        },
      };
      await subject.store.open();
      return subject;
    },
  },
];

function publish(topic: string, fields: Partial<PublishPacket> = {}): PublishPacket {
  return {
    type: "publish",
    topic,
    payload: new TextEncoder().encode(topic),
    qos: 1,
    retain: false,
    dup: false,
    ...fields,
  };
}

/** Runs `body` against a fresh subject of `kind`, and disposes of it afterwards. */
async function using(kind: Kind, body: (subject: Subject) => Promise<void>): Promise<void> {
  const subject = await kind.create();
  try {
    await body(subject);
  } finally {
    await subject.dispose();
  }
}

for (const kind of kinds) {
  describe(`${kind.name} - the Store contract`, () => {
    test(`${kind.name} - a new store is empty`, () =>
      using(kind, async (subject) => {
        assert.deepEqual(await subject.contents(), { outgoing: [], incoming: [] });
      }));

    test(`${kind.name} - publishes come back ordered by sequence`, () =>
      using(kind, async ({ store, contents }) => {
        await store.put({ sequence: 30, state: "queued", packet: publish("c") });
        await store.put({ sequence: 10, state: "publish", packet: publish("a", { packetId: 1 }) });
        await store.put({ sequence: 20, state: "queued", packet: publish("b") });
        const { outgoing } = await contents();
        assert.deepEqual(outgoing.map((r) => r.sequence), [10, 20, 30]);
        assert.deepEqual(outgoing.map((r) => r.packet.topic), ["a", "b", "c"]);
        assert.deepEqual(outgoing.map((r) => r.state), ["publish", "queued", "queued"]);
      }));

    test(`${kind.name} - a queued publish without a packet id comes back without one`, () =>
      using(kind, async ({ store, contents }) => {
        await store.put({ sequence: 1, state: "queued", packet: publish("a", { qos: 2 }) });
        const { outgoing } = await contents();
        assert.deepEqual(outgoing, [
          { sequence: 1, state: "queued", packet: publish("a", { qos: 2 }) },
        ]);
        assert.ok(!("packetId" in outgoing[0].packet));
      }));

    test(`${kind.name} - update records the state and the packet id once assigned`, () =>
      using(kind, async ({ store, contents }) => {
        await store.put({ sequence: 1, state: "queued", packet: publish("a", { qos: 2 }) });
        await store.put({ sequence: 2, state: "queued", packet: publish("b", { qos: 2 }) });
        await store.update(1, "publish", 7);
        await store.update(1, "pubrel");
        await store.update(2, "publish", 65535);
        const { outgoing } = await contents();
        assert.deepEqual(outgoing, [
          { sequence: 1, state: "pubrel", packet: publish("a", { qos: 2, packetId: 7 }) },
          { sequence: 2, state: "publish", packet: publish("b", { qos: 2, packetId: 65535 }) },
        ]);
      }));

    test(`${kind.name} - update and delete of an unknown sequence change nothing`, () =>
      using(kind, async ({ store, contents }) => {
        await store.put({ sequence: 1, state: "queued", packet: publish("a") });
        await store.update(99, "publish", 3);
        await store.delete(98);
        assert.deepEqual(await contents(), {
          outgoing: [{ sequence: 1, state: "queued", packet: publish("a") }],
          incoming: [],
        });
      }));

    test(`${kind.name} - delete removes a publish and keeps the others`, () =>
      using(kind, async ({ store, contents }) => {
        for (let sequence = 1; sequence <= 5; sequence++) {
          await store.put({ sequence, state: "queued", packet: publish(`t/${sequence}`) });
        }
        await store.delete(2);
        await store.delete(4);
        const { outgoing } = await contents();
        assert.deepEqual(outgoing.map((r) => r.packet.topic), ["t/1", "t/3", "t/5"]);
      }));

    test(`${kind.name} - a second put of a sequence replaces the first`, () =>
      using(kind, async ({ store, contents }) => {
        await store.put({ sequence: 1, state: "queued", packet: publish("old") });
        await store.put({ sequence: 1, state: "publish", packet: publish("new", { packetId: 4 }) });
        assert.deepEqual((await contents()).outgoing, [
          { sequence: 1, state: "publish", packet: publish("new", { packetId: 4 }) },
        ]);
      }));

    test(`${kind.name} - incoming ids come back in arrival order`, () =>
      using(kind, async ({ store, contents }) => {
        for (const packetId of [500, 3, 65535, 1, 42]) await store.putIncoming(packetId);
        await store.deleteIncoming(3);
        await store.deleteIncoming(42);
        await store.deleteIncoming(9); // never stored
        await store.putIncoming(7);
        assert.deepEqual((await contents()).incoming, [500, 65535, 1, 7]);
      }));

    test(`${kind.name} - clear forgets everything, and what follows it is kept`, () =>
      using(kind, async ({ store, contents }) => {
        await store.put({ sequence: 1, state: "queued", packet: publish("a") });
        await store.putIncoming(1);
        await store.clear();
        await store.put({ sequence: 2, state: "queued", packet: publish("b") });
        await store.putIncoming(2);
        assert.deepEqual(await contents(), {
          outgoing: [{ sequence: 2, state: "queued", packet: publish("b") }],
          incoming: [2],
        });
      }));

    test(`${kind.name} - payload bytes, flags and MQTT 5 properties are kept exactly`, () =>
      using(kind, async ({ store, contents }) => {
        const payload = new Uint8Array(70_000);
        for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + (i >> 8)) & 0xff;
        const packet = publish("sensors/\u00e9t\u00e9/\u{1f321}", {
          payload,
          qos: 2,
          retain: true,
          dup: true,
          packetId: 513,
          properties: {
            payloadFormatIndicator: false,
            messageExpiryInterval: 4_000_000_000,
            contentType: "application/octet-stream",
            responseTopic: "replies/1",
            correlationData: Uint8Array.of(0, 1, 2, 0xfe, 0xff),
            userProperties: [["k", "v1"], ["k", "v2"], ["\u00fc", ""]],
          },
        });
        const empty = publish("empty", { payload: new Uint8Array(0), qos: 1 });
        await store.put({ sequence: 1, state: "publish", packet });
        await store.put({ sequence: 2, state: "queued", packet: empty });
        const { outgoing } = await contents();
        assert.deepEqual(outgoing, [
          { sequence: 1, state: "publish", packet: structuredClone(packet) },
          {
            sequence: 2,
            state: "queued",
            packet: publish("empty", { payload: new Uint8Array(0) }),
          },
        ]);
        assert.ok(outgoing[0].packet.payload instanceof Uint8Array);
      }));

    test(`${kind.name} - sequences need not be small integers`, () =>
      using(kind, async ({ store, contents }) => {
        const sequences = [Number.MAX_SAFE_INTEGER, 0, -5, 2 ** 40 + 1];
        for (const sequence of sequences) {
          await store.put({ sequence, state: "queued", packet: publish(`s${sequence}`) });
        }
        const { outgoing } = await contents();
        assert.deepEqual(
          outgoing.map((r) => r.sequence),
          [...sequences].sort((a, b) => a - b),
        );
      }));

    test(`${kind.name} - calls made without waiting keep their order`, () =>
      using(kind, async ({ store, contents }) => {
        const calls: (void | Promise<void>)[] = [];
        for (let sequence = 1; sequence <= 200; sequence++) {
          calls.push(store.put({ sequence, state: "queued", packet: publish(`t/${sequence}`) }));
          if (sequence % 2 === 0) calls.push(store.delete(sequence - 1));
          if (sequence % 5 === 0) calls.push(store.update(sequence, "publish", sequence));
        }
        calls.push(store.putIncoming(1), store.deleteIncoming(1), store.putIncoming(2));
        await Promise.all(calls);
        const { outgoing, incoming } = await contents();
        assert.equal(outgoing.length, 100);
        for (const record of outgoing) {
          assert.equal(record.sequence % 2, 0);
          assert.equal(record.state, record.sequence % 5 === 0 ? "publish" : "queued");
          assert.equal(
            record.packet.packetId,
            record.sequence % 5 === 0 ? record.sequence : undefined,
          );
        }
        assert.deepEqual(incoming, [2]);
      }));
  });
}
