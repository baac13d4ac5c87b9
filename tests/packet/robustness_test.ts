/**
 * Robustness: seeded random bytes and random mutations of valid packets. Whatever comes in, the
 * decoder returns a packet or throws a ProtocolError: never another exception, never a hang.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  decode,
  encode,
  type Packet,
  PacketDecoder,
  ProtocolError,
  type ProtocolVersion,
} from "../../src/packet/mod.ts";
import { chunks, concat, Random, randomAnyPacket, varint } from "./generate.ts";

const VERSION_NAMES = { 3: "MQTT 3.1", 4: "MQTT 3.1.1", 5: "MQTT 5.0" } as const;
const CASES = 3000;

/** Tallies what `decode` made of each input, failing on anything but a packet or a ProtocolError. */
class Outcomes {
  decoded = 0;
  rejected = 0;

  /** Decodes `bytes`; a packet it returns must encode again or be refused cleanly. */
  decode(bytes: Uint8Array, version: ProtocolVersion): void {
    let packet: Packet;
    try {
      packet = decode(bytes, version);
    } catch (error) {
      this.#rejected(error, bytes);
      return;
    }
    this.decoded++;
    assert.equal(typeof packet.type, "string");
    // What the decoder accepts the encoder writes again, or refuses with a clear error; and
    // what the encoder writes the decoder reads.
    let again: Uint8Array;
    try {
      again = encode(packet, packet.type === "connect" ? packet.protocolVersion : version);
    } catch (error) {
      assert.ok(
        error instanceof ProtocolError || error instanceof TypeError,
        `re-encoding ${hexOf(bytes)} threw ${error}`,
      );
      return;
    }
    decode(again, version);
  }

  #rejected(error: unknown, bytes: Uint8Array): void {
    if (!(error instanceof ProtocolError)) {
      assert.fail(`decoding ${hexOf(bytes)} threw ${(error as Error)?.stack ?? error}`);
    }
    this.rejected++;
  }

  /** Feeds `bytes` to a PacketDecoder in random chunks until it ends or throws. */
  feed(random: Random, bytes: Uint8Array, version: ProtocolVersion): void {
    const decoder = new PacketDecoder({ protocolVersion: version });
    try {
      for (const chunk of chunks(random, bytes, random.pick([1, 3, 16, 256, 4096]))) {
        decoder.push(chunk, (packet) => {
          this.decoded++;
          assert.equal(typeof packet.type, "string");
        });
      }
    } catch (error) {
      this.#rejected(error, bytes);
    }
  }

  /** Asserts that the inputs were varied enough to both pass and fail. */
  check(): void {
    assert.ok(this.decoded > 0, "some inputs decode");
    assert.ok(this.rejected > 0, "some inputs are rejected");
  }
}

// The first byte of each packet type, with valid flags.
// deno-fmt-ignore
const FIRST_BYTES = [
  0x10, 0x20, 0x30, 0x32, 0x34, 0x3b, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xa2, 0xb0, 0xc0, 0xd0,
  0xe0, 0xf0,
];

/** Mostly a well-formed first byte, so that the packet readers see the bodies; now and then any. */
function randomFirstByte(random: Random): number {
  return random.chance(0.8) ? random.pick(FIRST_BYTES) : random.int(0, 255);
}

function hexOf(bytes: Uint8Array): string {
  return [...bytes.subarray(0, 64)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
}

/** One random change to `bytes`: flipped bits, cuts, insertions, a changed length. */
function mutate(random: Random, bytes: Uint8Array): Uint8Array {
  const out = bytes.slice();
  switch (random.int(0, 7)) {
    case 0: // flip one to three bits anywhere
      for (let n = random.int(1, 3); n > 0; n--) {
        out[random.int(0, out.length - 1)] ^= 1 << random.int(0, 7);
      }
      return out;
    case 1: // flip a bit in the first 12 bytes, where the headers and lengths are
      out[random.int(0, Math.min(11, out.length - 1))] ^= 1 << random.int(0, 7);
      return out;
    case 2: // cut the end off
      return out.subarray(0, random.int(0, out.length - 1));
    case 3: // append bytes
      return concat(out, random.bytes(random.int(1, 8)));
    case 4: { // insert or delete a byte in the middle
      const at = random.int(1, out.length - 1);
      return random.chance()
        ? concat(out.subarray(0, at), random.bytes(1), out.subarray(at))
        : concat(out.subarray(0, at), out.subarray(at + 1));
    }
    case 5: // set a byte to a value that means something: 0, ff, 80, 7f
      out[random.int(0, out.length - 1)] = random.pick([0x00, 0xff, 0x80, 0x7f]);
      return out;
    case 6: { // change the Remaining Length, keeping the body
      let headerEnd = 1;
      while (headerEnd < out.length && out[headerEnd] & 0x80) headerEnd++;
      const body = out.subarray(headerEnd + 1);
      const length = Math.max(0, body.length + random.int(-4, 4));
      return concat(out.subarray(0, 1), varint(length), body);
    }
    default: { // change a length field: the byte after a 00, as in 00 nn string lengths
      const zeros = [...out.keys()].filter((i) => out[i] === 0 && i + 1 < out.length);
      if (zeros.length > 0) out[random.pick(zeros) + 1] = random.int(0, 255);
      return out;
    }
  }
}

for (const version of [3, 4, 5] as const) {
  describe(`decode - ${VERSION_NAMES[version]} robustness`, () => {
    test(`decode - ${CASES} random byte strings give a packet or a ProtocolError`, () => {
      const random = new Random(0xbad0 + version);
      const outcomes = new Outcomes();
      for (let i = 0; i < CASES; i++) outcomes.decode(random.bytes(random.int(0, 40)), version);
      assert.ok(outcomes.rejected > 0);
    });

    test(`decode - ${CASES} random bodies behind a correct fixed header give a packet or a ProtocolError`, () => {
      const random = new Random(0xbad1 + version);
      const outcomes = new Outcomes();
      for (let i = 0; i < CASES; i++) {
        const body = random.bytes(random.spread(80));
        const first = randomFirstByte(random);
        outcomes.decode(concat(new Uint8Array([first]), varint(body.length), body), version);
      }
      outcomes.check();
    });

    test(`decode - ${CASES} mutations of valid packets give a packet or a ProtocolError`, () => {
      const random = new Random(0xbad2 + version);
      const outcomes = new Outcomes();
      for (let i = 0; i < CASES; i++) {
        let bytes = encode(randomAnyPacket(random, version), version);
        for (let n = random.int(1, 2); n > 0; n--) bytes = mutate(random, bytes);
        outcomes.decode(bytes, version);
      }
      outcomes.check();
    });

    test(`PacketDecoder - ${CASES / 10} streams of mutated packets in random chunks give packets or a ProtocolError`, () => {
      const random = new Random(0xbad3 + version);
      const outcomes = new Outcomes();
      for (let i = 0; i < CASES / 10; i++) {
        const parts: Uint8Array[] = [];
        for (let n = random.int(1, 12); n > 0; n--) {
          const bytes = encode(randomAnyPacket(random, version), version);
          parts.push(random.chance(0.2) ? mutate(random, bytes) : bytes);
        }
        outcomes.feed(random, concat(...parts), version);
      }
      outcomes.check();
    });

    test(`PacketDecoder - ${CASES / 10} streams of random bytes give packets or a ProtocolError`, () => {
      const random = new Random(0xbad4 + version);
      const outcomes = new Outcomes();
      for (let i = 0; i < CASES / 10; i++) {
        // Headers that claim lengths, followed by random bytes: fuel for the split-packet path.
        const parts: Uint8Array[] = [];
        for (let n = random.int(1, 8); n > 0; n--) {
          const first = randomFirstByte(random);
          const body = first >= 0xc0 && random.chance()
            ? new Uint8Array(0)
            : random.bytes(random.spread(100));
          parts.push(
            concat(new Uint8Array([first]), varint(body.length), body),
            random.chance(0.2) ? random.bytes(random.int(1, 5)) : new Uint8Array(0),
          );
        }
        outcomes.feed(random, concat(...parts), version);
      }
      outcomes.check();
    });
  });
}
