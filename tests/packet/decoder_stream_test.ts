/**
 * The stream decoder: any chunking gives the same packets, a packet inside one chunk is decoded
 * in place (zero copy), and memory follows the bytes received, never a length they claim.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  decode,
  encode,
  MqttDecoderStream,
  type Packet,
  PacketDecoder,
  ProtocolError,
  type PublishPacket,
} from "../../src/packet/mod.ts";
import { concat, hex, utf8 } from "./generate.ts";

const PINGRESP = hex(`d0 00`);
// PUBLISH to "a/b" at QoS 1, packet id 7, payload "hi" (MQTT 3.1.1).
const PUBLISH = hex(`32 09  00 03 61 2f 62  00 07  68 69`);
const PUBLISH_PACKET: Packet = {
  type: "publish",
  topic: "a/b",
  payload: utf8("hi"),
  qos: 1,
  retain: false,
  dup: false,
  packetId: 7,
};

/** Pushes `chunks` into a new decoder; returns the packets in the order they came out. */
function feed(chunks: Uint8Array[], protocolVersion: 3 | 4 | 5 = 4): Packet[] {
  const decoder = new PacketDecoder({ protocolVersion });
  const packets: Packet[] = [];
  for (const chunk of chunks) decoder.push(chunk, (packet) => packets.push(packet));
  assert.equal(decoder.pending, false, "no partial packet is left over");
  return packets;
}

/** Pipes `chunks` through a new MqttDecoderStream. */
async function pipe(chunks: Uint8Array[], protocolVersion: 3 | 4 | 5 = 4): Promise<Packet[]> {
  const packets: Packet[] = [];
  const stream = ReadableStream.from(chunks).pipeThrough(
    new MqttDecoderStream({ protocolVersion }),
  );
  for await (const packet of stream) packets.push(packet);
  return packets;
}

describe("MqttDecoderStream", () => {
  test("MqttDecoderStream - a packet split across three chunks", async () => {
    const packets = await pipe([
      PUBLISH.subarray(0, 1),
      PUBLISH.subarray(1, 6),
      PUBLISH.subarray(6),
    ]);
    assert.deepEqual(packets, [PUBLISH_PACKET]);
  });

  test("MqttDecoderStream - many packets in one chunk", async () => {
    const packets = await pipe([concat(PINGRESP, PUBLISH, PINGRESP, PUBLISH)]);
    assert.deepEqual(packets, [
      { type: "pingresp" },
      PUBLISH_PACKET,
      { type: "pingresp" },
      PUBLISH_PACKET,
    ]);
  });

  test("MqttDecoderStream - a chunk that ends one packet and starts the next", async () => {
    const bytes = concat(PUBLISH, PUBLISH, PINGRESP);
    const packets = await pipe([bytes.subarray(0, 14), bytes.subarray(14, 21), bytes.subarray(21)]);
    assert.deepEqual(packets, [PUBLISH_PACKET, PUBLISH_PACKET, { type: "pingresp" }]);
  });

  test("MqttDecoderStream - empty chunks change nothing", async () => {
    const empty = new Uint8Array(0);
    const packets = await pipe([empty, PUBLISH.subarray(0, 1), empty, PUBLISH.subarray(1), empty]);
    assert.deepEqual(packets, [PUBLISH_PACKET]);
  });

  test("MqttDecoderStream - decodes MQTT 3.1.1 unless told otherwise", async () => {
    const stream = new MqttDecoderStream();
    assert.equal(stream.protocolVersion, 4);
    assert.equal(stream.maximumPacketSize, 268_435_460);
    // A PUBACK with a reason code is MQTT 5 only: 3.1.1 rejects its third byte.
    const source = ReadableStream.from([hex(`40 03 00 01 10`)]);
    await assert.rejects(
      (async () => {
        for await (const _ of source.pipeThrough(stream)) { /* drain */ }
      })(),
      ProtocolError,
    );
  });

  test("MqttDecoderStream - its protocol version can change between packets", async () => {
    const stream = new MqttDecoderStream({ protocolVersion: 4 });
    const writer = stream.writable.getWriter();
    const reader = stream.readable.getReader();
    writer.write(hex(`40 02 00 01`));
    assert.deepEqual((await reader.read()).value, { type: "puback", packetId: 1 });
    stream.protocolVersion = 5;
    assert.equal(stream.protocolVersion, 5);
    writer.write(hex(`40 03 00 01 10`));
    assert.deepEqual((await reader.read()).value, {
      type: "puback",
      packetId: 1,
      reasonCode: 0x10,
    });
    stream.maximumPacketSize = 3;
    assert.equal(stream.maximumPacketSize, 3);
    writer.write(hex(`40 02 00 01`)).catch(() => {});
    await assert.rejects(reader.read(), ProtocolError);
  });
});

describe("PacketDecoder - chunk boundaries", () => {
  // Packets whose fixed headers are 2, 3 and 4 bytes long, in MQTT 5 with properties.
  const packets: Packet[] = [
    { type: "pingreq" },
    {
      type: "connect",
      protocolVersion: 5,
      clientId: "k",
      clean: true,
      keepalive: 30,
      properties: { userProperties: [["k", "v"]], sessionExpiryInterval: 10 },
      will: { topic: "w", payload: utf8("gone"), qos: 1, retain: true },
    },
    {
      type: "publish",
      topic: "t/日本",
      payload: new Uint8Array(300).fill(7),
      qos: 2,
      retain: false,
      dup: false,
      packetId: 9,
      properties: { contentType: "x" },
    },
    {
      type: "publish",
      topic: "big",
      payload: new Uint8Array(17_000).fill(1),
      qos: 0,
      retain: true,
      dup: false,
    },
    { type: "disconnect", reasonCode: 0x04 },
  ];
  const bytes = concat(...packets.map((packet) => encode(packet, 5)));

  test("PacketDecoder - every cut of the bytes into two chunks gives the same packets", () => {
    for (let cut = 0; cut <= bytes.length; cut++) {
      assert.deepEqual(
        feed([bytes.subarray(0, cut), bytes.subarray(cut)], 5),
        packets,
        `cut at ${cut}`,
      );
    }
  });

  test("PacketDecoder - every cut of a packet into three chunks gives the same packet", () => {
    const connect = encode(packets[1], 5);
    for (let a = 0; a <= connect.length; a++) {
      for (let b = a; b <= connect.length; b++) {
        const parts = [connect.subarray(0, a), connect.subarray(a, b), connect.subarray(b)];
        assert.deepEqual(feed(parts, 5), [packets[1]], `cuts at ${a} and ${b}`);
      }
    }
  });

  test("PacketDecoder - a 4-byte Remaining Length arriving one byte at a time", () => {
    const packet: Packet = {
      type: "publish",
      topic: "a",
      payload: new Uint8Array(2_097_152),
      qos: 0,
      retain: false,
      dup: false,
    };
    const bytes = encode(packet, 4);
    assert.deepEqual(bytes.subarray(0, 5), hex(`30 83 80 80 01`)); // 2097155 in four bytes
    const parts = [...Array(6)].map((_, i) => bytes.subarray(i, i + 1));
    parts.push(bytes.subarray(6));
    assert.deepEqual(feed(parts), [packet]);
  });

  test("PacketDecoder - pending tells whether part of a packet waits for more bytes", () => {
    const decoder = new PacketDecoder();
    const emitted: Packet[] = [];
    assert.equal(decoder.pending, false);
    decoder.push(PUBLISH.subarray(0, 1), (p) => emitted.push(p));
    assert.equal(decoder.pending, true);
    decoder.push(PUBLISH.subarray(1, 8), (p) => emitted.push(p));
    assert.equal(decoder.pending, true);
    decoder.push(concat(PUBLISH.subarray(8), PINGRESP), (p) => emitted.push(p));
    assert.equal(decoder.pending, false);
    assert.deepEqual(emitted, [PUBLISH_PACKET, { type: "pingresp" }]);
  });
});

describe("PacketDecoder - zero copy", () => {
  test("PacketDecoder - a PUBLISH inside one chunk has a payload that views the chunk's buffer", () => {
    // The chunk is itself a view at offset 5 into a larger buffer, as a socket read may give.
    const backing = new Uint8Array(64);
    const content = concat(PINGRESP, PUBLISH, PINGRESP, PUBLISH);
    backing.set(content, 5);
    const chunk = backing.subarray(5, 5 + content.length);
    const publishes: PublishPacket[] = [];
    new PacketDecoder().push(chunk, (packet) => {
      if (packet.type === "publish") publishes.push(packet);
    });
    assert.equal(publishes.length, 2);
    // PINGRESP (2) + PUBLISH header and variable header (2 + 5 + 2): the payload starts at 11.
    for (const [i, start] of [[0, 11], [1, 24]]) {
      const payload = publishes[i].payload;
      assert.equal(payload.buffer, backing.buffer, "the payload is a view, not a copy");
      assert.equal(payload.byteOffset, chunk.byteOffset + start);
      assert.equal(payload.length, 2);
      assert.deepEqual(payload, utf8("hi"));
    }
  });

  test("PacketDecoder - a PUBLISH split across chunks is gathered into a buffer of its own", () => {
    const first = PUBLISH.slice(0, 4);
    const second = PUBLISH.slice(4);
    const publishes: PublishPacket[] = [];
    const decoder = new PacketDecoder();
    decoder.push(first, () => assert.fail("the packet is not complete yet"));
    decoder.push(second, (packet) => publishes.push(packet as PublishPacket));
    const payload = publishes[0].payload;
    assert.notEqual(payload.buffer, first.buffer);
    assert.notEqual(payload.buffer, second.buffer);
    assert.equal(payload.buffer.byteLength, PUBLISH.length, "exactly the packet's size");
    assert.deepEqual(payload, utf8("hi"));
  });

  test("MqttDecoderStream - a whole PUBLISH in one chunk keeps the chunk's buffer", async () => {
    const chunk = concat(PINGRESP, PUBLISH);
    const [, publish] = await pipe([chunk]);
    assert.equal((publish as PublishPacket).payload.buffer, chunk.buffer);
    assert.equal((publish as PublishPacket).payload.byteOffset, 2 + 9);
  });

  test("decode - the payload is a view into the bytes given", () => {
    const publish = decode(PUBLISH) as PublishPacket;
    assert.equal(publish.payload.buffer, PUBLISH.buffer);
    assert.equal(publish.payload.byteOffset, PUBLISH.byteOffset + 9);
  });
});

/** A QoS 0 PUBLISH (MQTT 3.1.1) whose topic name is the bytes `topic`, payload "hi". */
function publishTo(topic: Uint8Array): Uint8Array {
  return concat(
    hex(`30`),
    new Uint8Array([2 + topic.length + 2, 0, topic.length]),
    topic,
    utf8("hi"),
  );
}

describe("PacketDecoder - repeated topics", () => {
  test("PacketDecoder - topics of the same length that differ anywhere decode as themselves", () => {
    // The decoder may hand out the last topic again while the bytes repeat it.
    const topics = ["a/b/c", "a/b/c", "a/b/d", "b/b/d", "a/b/c", "a/x/c", "a/x/c", "a/b", "a/b/c"];
    const packets = feed([concat(...topics.map((topic) => publishTo(utf8(topic))))]);
    assert.deepEqual(packets.map((packet) => (packet as PublishPacket).topic), topics);
  });

  test("PacketDecoder - after a topic, one of the same length with a wildcard is rejected", () => {
    for (const bad of ["a/+/c", "a/b/#", "+/b/c"]) {
      const decoder = new PacketDecoder();
      const topics: string[] = [];
      assert.throws(
        () =>
          decoder.push(
            concat(publishTo(utf8("a/b/c")), publishTo(utf8(bad))),
            (packet) => topics.push((packet as PublishPacket).topic),
          ),
        (error: unknown) => error instanceof ProtocolError && /wildcard/.test(error.message),
      );
      assert.deepEqual(topics, ["a/b/c"]);
    }
  });

  test("PacketDecoder - after a topic, one of the same length with U+0000 or bad UTF-8 is rejected", () => {
    for (const bad of [hex(`61 2f 00 2f 63`), hex(`61 2f ff 2f 63`)]) {
      const decoder = new PacketDecoder();
      assert.throws(
        () => decoder.push(concat(publishTo(utf8("a/b/c")), publishTo(bad)), () => {}),
        ProtocolError,
      );
    }
  });

  test("PacketDecoder - a non-ASCII topic after an ASCII one of the same byte length", () => {
    const topics = ["a/bc", "a/é", "a/bc", "a/é"];
    const packets = feed([concat(...topics.map((topic) => publishTo(utf8(topic))))]);
    assert.deepEqual(packets.map((packet) => (packet as PublishPacket).topic), topics);
  });
});

/**
 * Runs `fn` with Uint8Array and ArrayBuffer replaced by versions that refuse to allocate more
 * than `limit` bytes, so that a decoder that sized a buffer from a claimed length would fail.
 */
function withAllocationLimit(limit: number, fn: () => void): void {
  const global = globalThis as unknown as Record<string, unknown>;
  const OriginalUint8Array = Uint8Array;
  const OriginalArrayBuffer = ArrayBuffer;
  const check = (size: unknown) => {
    if (typeof size === "number" && size > limit) {
      throw new Error(`an allocation of ${size} bytes, over the limit of ${limit}`);
    }
  };
  class LimitedUint8Array extends OriginalUint8Array {
    constructor(...args: unknown[]) {
      check(args[0]);
      super(...(args as [number]));
    }
  }
  class LimitedArrayBuffer extends OriginalArrayBuffer {
    constructor(size: number) {
      check(size);
      super(size);
    }
  }
  global.Uint8Array = LimitedUint8Array;
  global.ArrayBuffer = LimitedArrayBuffer;
  try {
    fn();
  } finally {
    global.Uint8Array = OriginalUint8Array;
    global.ArrayBuffer = OriginalArrayBuffer;
  }
}

describe("PacketDecoder - memory follows the bytes received", () => {
  test("PacketDecoder - the allocation guard of this test catches a large allocation", () => {
    assert.throws(
      () => withAllocationLimit(1 << 20, () => new Uint8Array(2 << 20)),
      /over the limit/,
    );
    // It sees the decoder's own allocations too: gathering a split 300-byte packet needs 300.
    const packet = encode({
      type: "publish",
      topic: "a",
      payload: new Uint8Array(295),
      qos: 0,
      retain: false,
      dup: false,
    });
    const decoder = new PacketDecoder();
    decoder.push(packet.subarray(0, 100), () => {});
    assert.throws(
      () => withAllocationLimit(200, () => decoder.push(packet.subarray(100), () => {})),
      /over the limit/,
    );
  });

  test("PacketDecoder - a 100 KB PUBLISH trickled in byte by byte, and in mixed small and large chunks, decodes whole", () => {
    const payload = new Uint8Array(100_000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + (i >> 8)) & 0xff;
    const packet: PublishPacket = {
      type: "publish",
      topic: "trickle/t",
      payload,
      qos: 1,
      retain: false,
      dup: false,
      packetId: 9,
    };
    const bytes = encode(packet, 5);
    // One byte at a time, then sizes around the small-part bound, each with a PINGRESP after.
    for (const sizes of [[1], [1, 3, 1023, 1024, 1025, 2, 5000, 7, 16384, 16385]]) {
      const decoder = new PacketDecoder({ protocolVersion: 5 });
      const got: Packet[] = [];
      for (let pos = 0, i = 0; pos < bytes.length; i++) {
        const size = sizes[i % sizes.length];
        decoder.push(bytes.slice(pos, pos + size), (p) => got.push(p));
        pos += size;
      }
      decoder.push(PINGRESP, (p) => got.push(p));
      assert.equal(got.length, 2);
      assert.deepEqual(got[0], packet);
      assert.deepEqual(got[1], { type: "pingresp" });
      assert.equal(decoder.pending, false);
    }
  });

  test("PacketDecoder - small parts of a split packet are copied, not kept: one reused 1-byte buffer trickles a packet in", () => {
    // Kept as views, every part would be the same byte, and a packet trickled in a byte per read
    // would hold a whole buffer per byte (1 MB in this way took 480 MB of RSS on Deno before).
    const bytes = encode({
      type: "publish",
      topic: "a/b",
      payload: utf8("every byte in its place"),
      qos: 0,
      retain: false,
      dup: false,
    });
    const decoder = new PacketDecoder();
    const scratch = new Uint8Array(1);
    const got: Packet[] = [];
    for (const byte of bytes) {
      scratch[0] = byte;
      decoder.push(scratch, (p) => got.push(p));
    }
    assert.equal(got.length, 1);
    assert.equal(
      new TextDecoder().decode((got[0] as PublishPacket).payload),
      "every byte in its place",
    );
  });

  test("PacketDecoder - a claimed Remaining Length of 268435455 allocates nothing near it", () => {
    // PUBLISH claiming the largest Remaining Length, then 10 bytes of it, in small chunks.
    const bytes = hex(`30 ff ff ff 7f  00 01 61  68 69 68 69 68 69 68`);
    const decoder = new PacketDecoder({ protocolVersion: 4 });
    const more = new Uint8Array(4096);
    withAllocationLimit(1 << 16, () => {
      for (let i = 0; i < bytes.length; i += 3) {
        decoder.push(bytes.subarray(i, i + 3), () => assert.fail("no packet can be complete"));
      }
      // Another megabyte of payload, 4 KiB at a time: still only what arrived is held.
      for (let i = 0; i < 256; i++) decoder.push(more, () => assert.fail("not complete"));
    });
    assert.equal(decoder.pending, true);
  });

  test("MqttDecoderStream - a huge claimed packet that never arrives ends the stream, truncated, only at the end", async () => {
    const stream = new MqttDecoderStream({ protocolVersion: 5 });
    const writer = stream.writable.getWriter();
    const reader = stream.readable.getReader();
    // A pending read lets the writes through; it settles with the first packet or the end.
    const reading = reader.read();
    let settled = false;
    reading.then(() => settled = true, () => settled = true);
    await writer.write(hex(`30 ff ff ff 7f`));
    for (let i = 0; i < 10; i++) await writer.write(new Uint8Array(1000));
    assert.equal(settled, false, "no packet and no end while the bytes keep coming");
    assert.equal(stream.truncated, false);
    await writer.close();
    assert.deepEqual(await reading, { value: undefined, done: true });
    assert.equal(stream.truncated, true);
  });
});
