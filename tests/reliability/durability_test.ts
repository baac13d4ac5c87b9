/**
 * What a killed process can rely on with a `FileStore`, checked on the log file itself at the
 * moments that matter: a `publish()` that returned is in the log; each packet is written only
 * once the state it depends on is in the log (the packet id before its PUBLISH, "pubrel" before
 * its PUBREL); a completed flow is gone from the log before its promise resolves. And a client
 * restarted on a store re-sends what it gave back within the in-flight window.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MqttClient } from "../../src/client/clients.ts";
import { PacketDecoder } from "../../src/packet/decoder_stream.ts";
import type { Packet, PublishPacket } from "../../src/packet/types.ts";
import { FileStore } from "../../src/store/file_store.ts";
import { MemoryStore } from "../../src/store/memory_store.ts";
import type { StoreContents } from "../../src/store/store.ts";
import type { Transport } from "../../src/transport/types.ts";
import { FakeBroker } from "../helpers/fake_broker.ts";
import { FakeClock, settle } from "../helpers/fake_clock.ts";

/** Runs `body` with a new temporary folder, removed afterwards. */
async function inTempDir<T>(body: (directory: string) => Promise<T>): Promise<T> {
  const directory = await mkdtemp(join(tmpdir(), "kite-durability-"));
  try {
    return await body(directory);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

/** What a store finds in a log whose bytes are `log` (copied into a folder of its own). */
function contentsOf(log: Uint8Array): Promise<StoreContents> {
  return inTempDir(async (directory) => {
    await writeFile(join(directory, "session.log"), log);
    const store = new FileStore(directory);
    try {
      return await store.open();
    } finally {
      await store.close();
    }
  });
}

/** One write of the client: the packets it carried, and the log file as it was at that moment. */
interface Write {
  packets: Packet[];
  log: Uint8Array;
}

/** The broker's transport, with every write of the client recorded along with the log. */
function watched(broker: FakeBroker, logPath: string, writes: Write[]): Transport {
  const inner = broker.transport.writable.getWriter();
  const decoder = new PacketDecoder({ protocolVersion: 4 });
  return {
    readable: broker.transport.readable,
    writable: new WritableStream<Uint8Array>({
      write(chunk) {
        // Read synchronously, as the bytes leave: nothing else has run in between.
        const log = readFileSync(logPath);
        const packets: Packet[] = [];
        decoder.push(chunk.slice(), (packet) => packets.push(packet));
        writes.push({ packets, log });
        return inner.write(chunk);
      },
      close: () => inner.close(),
      abort: (reason) => inner.abort(reason),
    }),
    close: () => broker.transport.close?.(),
  };
}

function find(contents: StoreContents, topic: string) {
  return contents.outgoing.find((record) => record.packet.topic === topic);
}

describe("durability - the log at the moments a killed process depends on", () => {
  for (const fsync of ["always", "batch", "never"] as const) {
    test(`durability - publish() returns with its record in the log; PUBLISH and PUBREL follow their records; a completed flow is gone before its promise resolves (fsync "${fsync}")`, () =>
      inTempDir(async (directory) => {
        const logPath = join(directory, "session.log");
        const broker = new FakeBroker(4);
        const writes: Write[] = [];
        const client = new MqttClient(watched(broker, logPath, writes));
        const connecting = client.connect({
          clientId: "kite",
          keepalive: 0,
          clean: false,
          store: new FileStore(directory, { fsync }),
          clock: new FakeClock(),
        });
        await broker.accept(false);
        await connecting;

        const one = client.publish("one", "1", { qos: 1 });
        const afterOne = readFileSync(logPath);
        const two = client.publish("two", "2", { qos: 2 });
        const afterTwo = readFileSync(logPath);
        let atOne: Uint8Array | undefined;
        let atTwo: Uint8Array | undefined;
        const settled = Promise.all([
          one.then(() => atOne = readFileSync(logPath)),
          two.then(() => atTwo = readFileSync(logPath)),
        ]);

        const first = await broker.expect("publish");
        const second = await broker.expect("publish");
        await broker.sendPacket({ type: "puback", packetId: first.packetId! });
        await broker.sendPacket({ type: "pubrec", packetId: second.packetId! });
        await broker.expect("pubrel");
        await broker.sendPacket({ type: "pubcomp", packetId: second.packetId! });
        await settled;
        await client.disconnect();

        const returned = await contentsOf(afterOne);
        assert.equal(find(returned, "one")?.packet.qos, 1, "publish() returned before its record");
        assert.ok(find(await contentsOf(afterTwo), "two"));

        let checked = 0;
        for (const write of writes) {
          for (const packet of write.packets) {
            if (packet.type !== "publish" && packet.type !== "pubrel") continue;
            const contents = await contentsOf(write.log);
            const record = contents.outgoing.find((record) =>
              record.packet.packetId === packet.packetId
            );
            const what = `${packet.type.toUpperCase()} ${packet.packetId}`;
            assert.ok(record, `${what} was written with no record of it in the log`);
            if (packet.type === "publish") {
              assert.equal(record.state, "publish", `${what}: its packet id was not in the log`);
              assert.equal(record.packet.topic, (packet as PublishPacket).topic);
            } else {
              assert.equal(record.state, "pubrel", `${what}: the log did not say "pubrel" yet`);
            }
            checked++;
          }
        }
        assert.equal(checked, 3);
        assert.equal(
          find(await contentsOf(atOne!), "one"),
          undefined,
          "resolved, still in the log",
        );
        assert.equal(
          find(await contentsOf(atTwo!), "two"),
          undefined,
          "resolved, still in the log",
        );
      }));
  }
});

describe("durability - a client restarted on its store", () => {
  test("durability - publish() while the store opens: the client goes on, and the publish follows what the store held, under a sequence of its own", () =>
    inTempDir(async (directory) => {
      const left = new FileStore(directory);
      await left.open();
      const packet: PublishPacket = {
        type: "publish",
        topic: "old",
        payload: new TextEncoder().encode("left"),
        qos: 1,
        retain: false,
        dup: false,
      };
      await left.put({ sequence: 1, state: "queued", packet });
      await left.close();

      const broker = new FakeBroker(4);
      const client = new MqttClient(broker.transport);
      const connecting = client.connect({
        clientId: "kite",
        keepalive: 0,
        clean: false,
        store: new FileStore(directory),
        clock: new FakeClock(),
      });
      // Before connect() resolves, and before the store is even open.
      const published = client.publish("new", "2", { qos: 1 });
      await broker.accept(false);
      await connecting;
      const first = await broker.expect("publish");
      const second = await broker.expect("publish");
      assert.deepEqual([first.topic, second.topic], ["old", "new"]);
      const log = readFileSync(join(directory, "session.log"));
      assert.deepEqual(
        (await contentsOf(log)).outgoing.map(({ sequence, packet }) => [sequence, packet.topic]),
        [[1, "old"], [2, "new"]],
      );
      await broker.sendPacket({ type: "puback", packetId: first.packetId! });
      await broker.sendPacket({ type: "puback", packetId: second.packetId! });
      await published;
      assert.equal(client.state, "connected");
      await client.disconnect();
      assert.deepEqual(
        (await contentsOf(readFileSync(join(directory, "session.log")))).outgoing,
        [],
      );
    }));

  test("durability - flows the store gave back are re-sent within the in-flight window, counting those waiting for PUBCOMP first", async () => {
    // Left by a process with a window of 20: 15 PUBLISHes unacknowledged, then 5 PUBRELs.
    const store = new MemoryStore();
    const payload = new TextEncoder().encode("left");
    for (let sequence = 1; sequence <= 20; sequence++) {
      const packet: PublishPacket = {
        type: "publish",
        topic: `t/${sequence}`,
        payload,
        qos: 2,
        retain: false,
        dup: false,
        packetId: sequence,
      };
      store.put({ sequence, state: sequence <= 15 ? "publish" : "pubrel", packet });
    }
    const broker = new FakeBroker(4);
    const client = new MqttClient(broker.transport);
    const connecting = client.connect({
      clientId: "kite",
      keepalive: 0,
      clean: false,
      store,
      inflightWindow: 10,
      clock: new FakeClock(),
    });
    await broker.accept(true);
    await connecting;
    await settle();
    const sent: Packet[] = [];
    for (let packet = broker.tryNext(); packet !== undefined; packet = broker.tryNext()) {
      sent.push(packet.packet);
    }
    const publishes = sent.filter((packet) => packet.type === "publish") as PublishPacket[];
    const pubrels = sent.filter((packet) => packet.type === "pubrel");
    // The 5 flows past PUBREC hold their place at the broker: 5 PUBLISHes fit beside them.
    assert.deepEqual(pubrels.map((packet) => packet.packetId), [16, 17, 18, 19, 20]);
    assert.deepEqual(publishes.map((packet) => packet.packetId), [1, 2, 3, 4, 5]);
    assert.ok(publishes.every((packet) => packet.dup));

    // Each completed flow makes room for the next held PUBLISH, in order.
    await broker.sendPacket({ type: "pubcomp", packetId: 16 });
    assert.equal((await broker.expect("publish")).packetId, 6);
    await broker.sendPacket({ type: "pubrec", packetId: 1 });
    assert.equal((await broker.expect("pubrel")).packetId, 1);
    await settle();
    assert.equal(broker.tryNext(), undefined, "a PUBREC frees no room: its flow is not over");
    await client.disconnect();
  });
});
