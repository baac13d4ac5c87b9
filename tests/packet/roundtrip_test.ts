/**
 * Round trips of thousands of seeded random packets: every type of every version, random valid
 * fields and every property each packet allows, through encode and decode, and through the
 * stream decoder in random chunkings.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  decode,
  encode,
  encodeInto,
  MqttDecoderStream,
  type Packet,
  PacketDecoder,
  packetSize,
  type ProtocolVersion,
  type PublishPacket,
  Writer,
} from "../../src/packet/mod.ts";
import { sentPublishSize } from "../../src/packet/publish.ts";
import { chunks, packetTypes, Random, randomAnyPacket, randomPacket } from "./generate.ts";

const VERSION_NAMES = { 3: "MQTT 3.1", 4: "MQTT 3.1.1", 5: "MQTT 5.0" } as const;
const PER_TYPE = 250;

/** Shows a packet in a failure message: payloads as hex, cut short. */
function show(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v) =>
      v instanceof Uint8Array
        ? [...v.subarray(0, 32)].map((b) => b.toString(16).padStart(2, "0")).join(" ")
        : v,
  );
}

/** `count` random packets of every type of `version`, and their bytes one after the other. */
function stream(seed: number, version: ProtocolVersion, count: number) {
  const random = new Random(seed);
  const packets: Packet[] = [];
  const writer = new Writer();
  for (let i = 0; i < count; i++) {
    const packet = randomAnyPacket(random, version);
    packets.push(packet);
    encodeInto(writer, packet, version);
  }
  return { random, packets, bytes: writer.bytes() };
}

for (const version of [3, 4, 5] as const) {
  describe(`encode and decode - ${VERSION_NAMES[version]} random round trips`, () => {
    for (const type of packetTypes(version)) {
      test(`${PER_TYPE} random ${type.toUpperCase()} packets survive encode and decode unchanged`, () => {
        const random = new Random(0x5eed0000 + version * 100 + packetTypes(5).indexOf(type));
        for (let i = 0; i < PER_TYPE; i++) {
          const packet = randomPacket(random, type, version);
          const bytes = encode(packet, version);
          const decoded = decode(bytes, version);
          assert.deepEqual(decoded, packet, show(packet));
          // The decoded packet encodes to the same bytes: the shortest encoding is canonical.
          assert.deepEqual(encode(decoded, version), bytes, show(packet));
        }
      });
    }
  });

  describe(`PacketDecoder - ${VERSION_NAMES[version]} random chunkings`, () => {
    const { random, packets, bytes } = stream(0xc0ffee + version, version, 1500);
    const chunkings: [string, number][] = [
      ["one byte at a time", 1],
      ["chunks of 1 to 7 bytes", 7],
      ["chunks of 1 to 100 bytes", 100],
      ["chunks of 1 to 5000 bytes, many packets per chunk", 5000],
      ["one chunk holding all the packets", bytes.length],
    ];
    for (const [name, max] of chunkings) {
      test(`PacketDecoder - 1500 random packets fed in ${name} come out unchanged`, () => {
        const decoder = new PacketDecoder({ protocolVersion: version });
        const emitted: Packet[] = [];
        for (const chunk of chunks(random, bytes, max)) {
          decoder.push(chunk, (packet) => emitted.push(packet));
        }
        assert.equal(decoder.pending, false);
        assert.equal(emitted.length, packets.length);
        for (let i = 0; i < packets.length; i++) {
          assert.deepEqual(emitted[i], packets[i], `packet ${i}: ${show(packets[i])}`);
        }
      });
    }

    test(`MqttDecoderStream - 1500 random packets piped in random chunks come out unchanged`, async () => {
      const source = ReadableStream.from(chunks(random, bytes, 300));
      const emitted: Packet[] = [];
      for await (
        const packet of source.pipeThrough(new MqttDecoderStream({ protocolVersion: version }))
      ) {
        emitted.push(packet);
      }
      assert.deepEqual(emitted, packets);
    });
  });
}

describe("sentPublishSize", () => {
  test("sentPublishSize - is the length encode writes, for random PUBLISH packets of every version", () => {
    const random = new Random(0x517e);
    for (const version of [3, 4, 5] as const) {
      for (let i = 0; i < 300; i++) {
        const packet = randomPacket(random, "publish", version) as PublishPacket;
        assert.equal(sentPublishSize(packet, version), encode(packet, version).length);
        if (packet.qos > 0) {
          // Measured before a packet id is assigned, as if it had one.
          const { packetId: _, ...withoutId } = packet;
          assert.equal(sentPublishSize(withoutId, version), encode(packet, version).length);
        }
      }
    }
  });
});

describe("packetSize", () => {
  for (const version of [3, 4, 5] as const) {
    test(`packetSize - ${VERSION_NAMES[version]} - is the length encode writes, for random packets of every type`, () => {
      for (const type of packetTypes(version)) {
        const random = new Random(0x512e0000 + version * 100 + packetTypes(5).indexOf(type));
        for (let i = 0; i < 100; i++) {
          const packet = randomPacket(random, type, version);
          assert.equal(packetSize(packet, version), encode(packet, version).length, show(packet));
        }
      }
    });
  }
});

describe("PacketDecoder - a connection that changes version", () => {
  test("PacketDecoder - a broker reads CONNECT, then switches to the version it asked for", () => {
    // CONNECT carries its own protocol level, so a broker reads it with any version and then
    // sets the decoder to what the client asked for.
    const random = new Random(99);
    for (const version of [3, 4, 5] as const) {
      const connect = randomPacket(random, "connect", version);
      const rest = Array.from({ length: 50 }, () => randomAnyPacket(random, version));
      const writer = new Writer();
      encodeInto(writer, connect, version);
      for (const packet of rest) encodeInto(writer, packet, version);
      const decoder = new PacketDecoder({ protocolVersion: 4 });
      const emitted: Packet[] = [];
      for (const chunk of chunks(random, writer.bytes(), 64)) {
        decoder.push(chunk, (packet) => {
          if (packet.type === "connect") decoder.protocolVersion = packet.protocolVersion;
          emitted.push(packet);
        });
      }
      assert.equal(decoder.protocolVersion, version);
      assert.deepEqual(emitted, [connect, ...rest]);
    }
  });
});
