/**
 * Hostile frames: what a broker that lies, breaks or attacks could send a client. Each frame is
 * made from a seeded {@linkcode Random}, so a seed and a frame number name it for good.
 *
 * Frames come in four families: random bytes; a valid packet of the version, mutated (bits
 * flipped, cut short, a wrong Remaining Length, an overlong or oversize Variable Byte Integer,
 * wrong fixed header flags or type, a bad or misplaced property, a string that is not UTF-8 or
 * holds U+0000, a surrogate or a wildcard); a valid packet of any type, those a server never
 * sends among them; and a valid packet in the wrong state for a client with a QoS 1 and a QoS 2
 * publish, a subscription and an unsubscription in flight (acks for ids it never used or of the
 * wrong kind, a second CONNACK, a SUBACK with the wrong count, a PUBREL for a message it never
 * received).
 *
 * @module
 */

import { encode, type Packet, type ProtocolVersion } from "../../src/packet/mod.ts";
import {
  concat,
  packetTypes,
  Random,
  randomAnyPacket,
  randomPacket,
  SPEC_PROPERTIES,
  varint,
} from "../packet/generate.ts";

/** One frame: its bytes, the version it was made for, and the recipe that made it. */
export interface Frame {
  /** What made it: `random`, `valid`, `state:…` or the mutator's name, such as `flip`. */
  kind: string;
  /** The protocol version the frame was made for. */
  version: ProtocolVersion;
  /** The bytes. */
  bytes: Uint8Array;
}

/** The packet ids a client has in flight, which the wrong-state frames aim at (or just miss). */
export interface InFlight {
  /** The packet id of a QoS 1 publish waiting for PUBACK. */
  qos1: number;
  /** The packet id of a QoS 2 publish waiting for PUBREC. */
  qos2: number;
  /** The packet id of a SUBSCRIBE of two filters waiting for SUBACK. */
  subscribe: number;
  /** The packet id of an UNSUBSCRIBE of one filter waiting for UNSUBACK. */
  unsubscribe: number;
}

/** The ids a freshly connected client gives its first four requests. */
export const FIRST_IDS: InFlight = { qos1: 1, qos2: 2, subscribe: 3, unsubscribe: 4 };

// Sequences that are not well-formed UTF-8 or that MQTT forbids in a string: a broken two-byte
// sequence, surrogates U+D800 and U+DFFF, U+0000, overlong encodings of "/" and of U+0000, a
// code point above U+10FFFF, bytes that never occur, a lone continuation byte, a five-byte form.
const BAD_UTF8: readonly number[][] = [
  [0xc3, 0x28],
  [0xed, 0xa0, 0x80],
  [0xed, 0xbf, 0xbf],
  [0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80], // a surrogate pair written as two three-byte forms
  [0x00],
  [0xc0, 0xaf],
  [0xc0, 0x80],
  [0xe0, 0x80, 0xaf],
  [0xf4, 0x90, 0x80, 0x80],
  [0xff],
  [0xfe],
  [0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xe6, 0x97], // cut short
  [0x2b], // "+": a wildcard in a topic name
  [0x23], // "#"
];

// Property identifiers MQTT 5 does not define, and ones written as overlong or oversize
// Variable Byte Integers.
const UNKNOWN_PROPERTY_IDS: readonly number[][] = [
  [0x00],
  [0x04],
  [0x07],
  [0x0a],
  [0x0c],
  [0x10],
  [0x14],
  [0x1b],
  [0x1d],
  [0x20],
  [0x2b],
  [0x7f],
  [0x80, 0x01], // 128
  [0x81, 0x00], // 1, overlong
  [0xa6, 0x00], // 0x26 (User Property), overlong
  [0xff, 0xff, 0xff, 0x7f],
  [0xff, 0xff, 0xff, 0xff, 0x0f], // five bytes
];

/** A mutation of a valid packet's bytes into hostile ones. */
type Mutator = (random: Random, bytes: Uint8Array, version: ProtocolVersion) => Uint8Array;

/** The mutators, by name. */
export const MUTATORS: Readonly<Record<string, Mutator>> = {
  /** One to four bits flipped, half the time within the first five bytes. */
  flip(random, bytes) {
    const out = bytes.slice();
    for (let n = random.int(1, 4); n > 0; n--) {
      const i = random.chance() ? random.int(0, Math.min(4, out.length - 1)) : random.int(
        0,
        out.length - 1,
      );
      out[i] ^= 1 << random.int(0, 7);
    }
    return out;
  },
  /** Cut short anywhere after the first byte. */
  truncate(random, bytes) {
    return bytes.subarray(0, random.int(1, bytes.length - 1));
  },
  /** The body kept, the Remaining Length changed: a little, a lot, or to nothing. */
  remainingLength(random, bytes) {
    const { first, body } = split(bytes);
    const length = random.pick([
      0,
      Math.max(0, body.length - random.int(1, 4)),
      body.length + random.int(1, 4),
      random.spread(0x0fffffff),
    ]);
    return concat(new Uint8Array([first]), varint(length), body);
  },
  /** The Remaining Length in more bytes than it needs, or in five. */
  varint(random, bytes) {
    const { first, body } = split(bytes);
    const length = varint(body.length);
    let field: Uint8Array;
    switch (random.int(0, 3)) {
      case 0: // overlong: a continuation, then a zero byte [MQTT-1.5.5-1]
        field = concat(length.map((b) => b | 0x80), new Uint8Array([0x00]));
        break;
      case 1: // five bytes
        field = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x7f]);
        break;
      case 2: // the largest four-byte value: 268,435,455
        field = new Uint8Array([0xff, 0xff, 0xff, 0x7f]);
        break;
      default: // continuation bits that never end within the frame
        field = new Uint8Array(random.int(1, 4)).fill(0x80);
        return concat(new Uint8Array([first]), field);
    }
    return concat(new Uint8Array([first]), field, body);
  },
  /** The low nibble of the first byte changed: flags no packet of the type carries. */
  flags(random, bytes) {
    const out = bytes.slice();
    out[0] = (out[0] & 0xf0) | random.int(0, 15);
    return out;
  },
  /** The body of one packet behind the type of another. */
  type(random, bytes) {
    const out = bytes.slice();
    const type = random.int(0, 15);
    // The flags each type requires, so that the body is what gets read.
    out[0] = (type << 4) | (type === 6 || type === 8 || type === 10 ? 2 : 0);
    return out;
  },
  /** A bad MQTT 5 property inserted: unknown, misplaced, repeated, out of range or cut short. */
  property(random, bytes, version) {
    if (version !== 5) return MUTATORS.flip(random, bytes, version);
    const at = propertiesAt(bytes);
    if (at === undefined) return MUTATORS.flip(random, bytes, version);
    return insertProperty(at, badProperty(random));
  },
  /** A string that is not well-formed UTF-8, holds U+0000 or a surrogate, or a wildcard. */
  string(random, bytes, version) {
    const bad = random.pick(BAD_UTF8);
    const type = bytes[0] >> 4;
    if (type === 3 && bytes.length > 4 && random.chance()) {
      // Into the topic name of a PUBLISH, its length fixed to match.
      const { first, body } = split(bytes);
      const length = Math.min((body[0] << 8) | body[1], body.length - 2);
      const cut = random.int(0, length);
      const topic = concat(
        body.subarray(2, 2 + cut),
        new Uint8Array(bad),
        body.subarray(2 + cut, 2 + length),
      );
      const rest = concat(lengthPrefixed(topic), body.subarray(2 + length));
      return concat(new Uint8Array([first]), varint(rest.length), rest);
    }
    if (version === 5) {
      const at = propertiesAt(bytes);
      if (at !== undefined) {
        const text = concat(utf8Of(random, 3), new Uint8Array(bad), utf8Of(random, 3));
        const property = random.chance()
          ? concat(new Uint8Array([0x1f]), lengthPrefixed(text)) // Reason String
          : random.chance()
          ? concat(new Uint8Array([0x26]), lengthPrefixed(text), lengthPrefixed(utf8Of(random, 2)))
          : concat(new Uint8Array([0x26]), lengthPrefixed(utf8Of(random, 2)), lengthPrefixed(text));
        return insertProperty(at, property);
      }
    }
    // Anywhere: the bad bytes over whatever was there.
    const out = bytes.slice();
    const start = random.int(Math.min(2, out.length - 1), out.length - 1);
    for (let i = 0; i < bad.length && start + i < out.length; i++) out[start + i] = bad[i];
    return out;
  },
  /** A two-byte length inside the body (a string's, a packet id, a property's) set at random. */
  fieldLength(random, bytes) {
    const out = bytes.slice();
    const { headerSize } = split(bytes);
    if (out.length < headerSize + 2) return out;
    const i = random.chance() ? headerSize : random.int(headerSize, out.length - 2);
    const value = random.pick([0, 0xffff, random.int(0, 0xffff), random.int(1, 8)]);
    out[i] = value >> 8;
    out[i + 1] = value & 0xff;
    return out;
  },
  /** The property length of an MQTT 5 packet overlong, in five bytes, or past the end. */
  propertyLength(random, bytes, version) {
    if (version !== 5) return MUTATORS.remainingLength(random, bytes, version);
    const at = propertiesAt(bytes);
    if (at === undefined) return MUTATORS.remainingLength(random, bytes, version);
    const { first, body, offset, length, size } = at;
    const field = random.pick([
      concat(varint(length).map((b) => b | 0x80), new Uint8Array([0x00])),
      new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x7f]),
      varint(length + random.int(1, 300)),
      new Uint8Array([0x80, 0x80, 0x80]),
    ]);
    const rest = concat(body.subarray(0, offset), field, body.subarray(offset + size));
    return concat(new Uint8Array([first]), varint(rest.length), rest);
  },
  /** A second packet, or garbage, straight behind the first. */
  append(random, bytes, version) {
    const tail = random.chance()
      ? encode(randomAnyPacket(random, version), version)
      : random.bytes(random.int(1, 8));
    return concat(bytes, tail);
  },
};

const MUTATOR_NAMES = Object.keys(MUTATORS);

/** The first byte, the body and the size of the fixed header of a whole packet. */
function split(bytes: Uint8Array): { first: number; body: Uint8Array; headerSize: number } {
  let i = 1;
  while (i < bytes.length && bytes[i] & 0x80) i++;
  const headerSize = Math.min(i + 1, bytes.length);
  return { first: bytes[0], body: bytes.subarray(headerSize), headerSize };
}

/** Where the properties of a valid MQTT 5 packet stand. */
interface PropertiesAt {
  first: number;
  /** The body, with a properties section added where its shortest form had none. */
  body: Uint8Array;
  /** Where the property length starts in the body. */
  offset: number;
  /** The property length. */
  length: number;
  /** How many bytes the property length takes. */
  size: number;
}

/** Finds the properties of a valid MQTT 5 packet; `undefined` for PINGREQ and PINGRESP. */
function propertiesAt(bytes: Uint8Array): PropertiesAt | undefined {
  let { first, body } = split(bytes);
  const type = first >> 4;
  let offset: number;
  switch (type) {
    case 1: // CONNECT: protocol name, level, flags, keepalive
      offset = 2 + ((body[0] << 8) | body[1]) + 4;
      break;
    case 2: // CONNACK: flags, reason code
      offset = 2;
      break;
    case 3: // PUBLISH: topic, packet id at QoS > 0
      offset = 2 + ((body[0] << 8) | body[1]) + (first & 0x06 ? 2 : 0);
      break;
    case 4:
    case 5:
    case 6:
    case 7: // the acks: packet id, then reason code and properties unless left out
      if (body.length === 2) body = concat(body, new Uint8Array([0x00, 0x00]));
      else if (body.length === 3) body = concat(body, new Uint8Array([0x00]));
      offset = 3;
      break;
    case 8:
    case 9:
    case 10:
    case 11: // packet id
      offset = 2;
      break;
    case 14:
    case 15: // reason code and properties unless left out
      if (body.length === 0) body = new Uint8Array([0x00, 0x00]);
      else if (body.length === 1) body = concat(body, new Uint8Array([0x00]));
      offset = 1;
      break;
    default:
      return undefined;
  }
  // Only a valid packet's: one already mutated may hold anything here.
  let length = 0;
  let multiplier = 1;
  for (let size = 1; size <= 4 && offset + size <= body.length; size++) {
    const byte = body[offset + size - 1];
    length += (byte & 0x7f) * multiplier;
    multiplier *= 128;
    if (byte < 0x80) return { first, body, offset, length, size };
  }
  return undefined;
}

/** The packet with `property` added first in its properties, every length fixed to match. */
function insertProperty(at: PropertiesAt, property: Uint8Array): Uint8Array {
  const { first, body, offset, length, size } = at;
  const rest = concat(
    body.subarray(0, offset),
    varint(length + property.length),
    property,
    body.subarray(offset + size),
  );
  return concat(new Uint8Array([first]), varint(rest.length), rest);
}

/** A property that no receiver may accept where it is, or at all. */
function badProperty(random: Random): Uint8Array {
  switch (random.int(0, 5)) {
    case 0: // an identifier MQTT 5 does not define
      return concat(
        new Uint8Array(random.pick(UNKNOWN_PROPERTY_IDS)),
        random.bytes(random.int(0, 4)),
      );
    case 1: { // a defined property, with a random value of its type, wherever it is
      const property = random.pick(SPEC_PROPERTIES);
      return concat(new Uint8Array([property.id]), valueBytes(random, property.type));
    }
    case 2: { // a value outside what the specification allows
      return new Uint8Array(random.pick([
        [0x21, 0x00, 0x00], // Receive Maximum 0
        [0x27, 0x00, 0x00, 0x00, 0x00], // Maximum Packet Size 0
        [0x24, 0x02], // Maximum QoS 2
        [0x25, 0x02], // Retain Available 2
        [0x01, 0xff], // Payload Format Indicator 255
        [0x23, 0x00, 0x00], // Topic Alias 0
        [0x0b, 0x00], // Subscription Identifier 0
        [0x0b, 0x80, 0x00], // Subscription Identifier, overlong
        [0x0b, 0xff, 0xff, 0xff, 0xff, 0x7f], // Subscription Identifier in five bytes
      ]));
    }
    case 3: { // a property cut short: its identifier, part of its value
      const property = random.pick(SPEC_PROPERTIES);
      const value = valueBytes(random, property.type);
      return concat(new Uint8Array([property.id]), value.subarray(0, random.int(0, value.length)));
    }
    case 4: { // the same property twice
      const property = random.pick(SPEC_PROPERTIES);
      const one = concat(new Uint8Array([property.id]), valueBytes(random, property.type));
      return concat(one, one);
    }
    default: // a string property whose length runs past the end
      return new Uint8Array([0x1f, 0xff, 0xf0, 0x61]);
  }
}

/** Random bytes of a value of a property type, any value of it. */
function valueBytes(random: Random, type: string): Uint8Array {
  switch (type) {
    case "byte":
    case "boolean":
      return new Uint8Array([random.chance() ? random.int(0, 1) : random.int(0, 255)]);
    case "u16":
      return random.bytes(2);
    case "u32":
      return random.bytes(4);
    case "varint":
      return varint(random.spread(0x0fffffff));
    case "string":
    case "binary":
      return lengthPrefixed(utf8Of(random, 4));
    default:
      return concat(lengthPrefixed(utf8Of(random, 3)), lengthPrefixed(utf8Of(random, 3)));
  }
}

function utf8Of(random: Random, max: number): Uint8Array {
  const out = new Uint8Array(random.int(0, max));
  for (let i = 0; i < out.length; i++) out[i] = random.int(0x61, 0x7a);
  return out;
}

function lengthPrefixed(bytes: Uint8Array): Uint8Array {
  return concat(new Uint8Array([bytes.length >> 8, bytes.length & 0xff]), bytes);
}

/**
 * A valid packet that is wrong where it arrives: for a client with `ids` in flight and
 * connected already. Its `kind` says which mistake it makes.
 */
function wrongState(random: Random, version: ProtocolVersion, ids: InFlight): [string, Packet] {
  const v5 = version === 5;
  const unknownId = (): number => {
    let id: number;
    do id = random.int(1, 0xffff); while (
      id === ids.qos1 || id === ids.qos2 || id === ids.subscribe || id === ids.unsubscribe
    );
    return id;
  };
  const suback = (packetId: number, count: number): Packet => ({
    type: "suback",
    packetId,
    reasonCodes: Array.from({ length: count }, () => random.pick(v5 ? [0, 1, 2, 0x80] : [0, 1])),
  });
  const unsuback = (packetId: number): Packet =>
    v5 ? { type: "unsuback", packetId, reasonCodes: [0] } : { type: "unsuback", packetId };
  switch (random.int(0, 15)) {
    case 0:
      return ["state:connack-again", randomPacket(random, "connack", version)];
    case 1:
      return ["state:puback-unknown", { type: "puback", packetId: unknownId() }];
    case 2:
      return ["state:pubrec-unknown", { type: "pubrec", packetId: unknownId() }];
    case 3:
      return ["state:pubcomp-unknown", { type: "pubcomp", packetId: unknownId() }];
    case 4:
      // For a message never received, or one of those `state:publish` sends.
      return ["state:pubrel", {
        type: "pubrel",
        packetId: random.chance() ? unknownId() : random.int(1, 4),
      }];
    case 5:
      return ["state:puback-for-qos2", { type: "puback", packetId: ids.qos2 }];
    case 6:
      return ["state:pubrec-for-qos1", { type: "pubrec", packetId: ids.qos1 }];
    case 7:
      return ["state:pubcomp-before-pubrec", { type: "pubcomp", packetId: ids.qos2 }];
    case 8:
      return [
        "state:suback-wrong-count",
        suback(ids.subscribe, random.pick([1, 3, random.int(4, 40)])),
      ];
    case 9:
      return ["state:suback-for-unsubscribe", suback(ids.unsubscribe, 1)];
    case 10:
      return v5 && random.chance()
        ? ["state:unsuback-wrong-count", {
          type: "unsuback",
          packetId: ids.unsubscribe,
          reasonCodes: [0, random.pick([0, 0x11])],
        }]
        : ["state:unsuback-for-subscribe", unsuback(ids.subscribe)];
    case 11:
      return ["state:suback-unknown", suback(unknownId(), 2)];
    case 12: // the acks the client waits for, so that flows also complete
      return [
        "state:right-ack",
        random.pick<Packet>([
          { type: "puback", packetId: ids.qos1 },
          { type: "pubrec", packetId: ids.qos2 },
          { type: "pubcomp", packetId: ids.qos2 },
          suback(ids.subscribe, 2),
          unsuback(ids.unsubscribe),
          { type: "pingresp" },
        ]),
      ];
    case 13: {
      // A valid PUBLISH, its packet id and topic alias from a few, so that copies of a QoS 2
      // message, PUBRELs for it and aliases set then used all happen; wrong with an alias
      // above what the client allowed, or beyond its Receive Maximum.
      const publish = randomPacket(random, "publish", version) as Packet & { type: "publish" };
      if (publish.packetId !== undefined) publish.packetId = random.int(1, 4);
      if (publish.properties?.topicAlias !== undefined) {
        publish.properties.topicAlias = random.int(1, 5);
      }
      return ["state:publish", publish];
    }
    case 14:
      return [
        "state:server-never",
        randomPacket(
          random,
          random.pick(["connect", "subscribe", "unsubscribe", "pingreq"] as const),
          version,
        ),
      ];
    default:
      return [
        "state:disconnect-or-auth",
        randomPacket(
          random,
          v5 && random.chance() ? "auth" : "disconnect",
          version,
        ),
      ];
  }
}

/**
 * Makes hostile frames from a seed. The same seed gives the same frames, in the same order, on
 * every runtime, given the same `ids` for each.
 */
export class FrameGenerator {
  /** The seeded source of every choice. */
  readonly random: Random;

  /** Creates a generator from a 32-bit seed. */
  constructor(seed: number) {
    this.random = new Random(seed);
  }

  /**
   * A frame for a client still waiting for CONNACK: half the time a valid packet of any type
   * (anything but a CONNACK is a PUBLISH, an ack… before CONNACK), else any frame.
   */
  early(version: ProtocolVersion): Frame {
    const random = this.random;
    if (random.chance()) return this.next(version);
    const packet = randomAnyPacket(random, version);
    return { kind: `early:${packet.type}`, version, bytes: encode(packet, version) };
  }

  /** The next frame for a client of `version` with `ids` in flight. */
  next(version: ProtocolVersion, ids: InFlight = FIRST_IDS): Frame {
    const random = this.random;
    const roll = random.next();
    if (roll < 0.08) {
      // Random bytes, half of them behind a first byte of a real packet type.
      const bytes = random.bytes(random.int(1, random.chance(0.9) ? 16 : 300));
      if (random.chance()) bytes[0] = random.int(1, 15) << 4;
      return { kind: "random", version, bytes };
    }
    if (roll < 0.16) {
      const packet = randomAnyPacket(random, version);
      return { kind: `valid:${packet.type}`, version, bytes: encode(packet, version) };
    }
    if (roll < 0.36) {
      const [kind, packet] = wrongState(random, version, ids);
      return { kind, version, bytes: encode(packet, version) };
    }
    const type = random.pick(packetTypes(version));
    const valid = encode(randomPacket(random, type, version), version);
    const name = random.pick(MUTATOR_NAMES);
    let bytes = MUTATORS[name](random, valid, version);
    // Now and then a second mutation on top of the first.
    if (random.chance(0.15)) bytes = MUTATORS[random.pick(MUTATOR_NAMES)](random, bytes, version);
    return { kind: name, version, bytes: bytes.length === 0 ? valid.subarray(0, 1) : bytes };
  }
}
