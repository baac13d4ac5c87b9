/**
 * Test helpers for the codec: a seeded PRNG, hex literals with comments, the MQTT 5 property
 * table written out again from the specification (so that the tests do not trust the codec's own
 * table), and generators of random valid packets in the exact shape the decoder returns.
 *
 * @module
 */

import type {
  Packet,
  PacketType,
  Properties,
  ProtocolVersion,
  QoS,
  Subscription,
} from "../../src/packet/mod.ts";

/** A seeded PRNG (mulberry32): the same seed gives the same numbers on every run and runtime. */
export class Random {
  #state: number;

  /** Creates a generator from a 32-bit seed. */
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max], both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** True with probability `p`. */
  chance(p = 0.5): boolean {
    return this.next() < p;
  }

  /** One element of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  /** `length` random bytes. */
  bytes(length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = Math.floor(this.next() * 256);
    return out;
  }

  /** An integer whose size in bits is itself random, so that every encoded length shows up. */
  spread(max: number): number {
    const bits = this.int(0, Math.ceil(Math.log2(max + 1)));
    return Math.min(max, this.int(0, 2 ** bits - 1));
  }
}

/**
 * Parses bytes written as hex pairs, with `//` comments and any whitespace:
 *
 * ```ts
 * hex(`
 *   c0  // PINGREQ
 *   00  // Remaining Length 0
 * `);
 * ```
 */
export function hex(text: string): Uint8Array {
  const digits = text.replace(/\/\/[^\n]*/g, "").replace(/\s+/g, "");
  if (digits.length % 2 !== 0 || /[^0-9a-fA-F]/.test(digits)) {
    throw new Error(`not a sequence of hex bytes: ${JSON.stringify(digits)}`);
  }
  const out = new Uint8Array(digits.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** The UTF-8 bytes of `text`. */
export function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/** The bytes of all `parts`, one after the other. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** A Variable Byte Integer, written out independently of the codec. */
export function varint(value: number): Uint8Array {
  const out: number[] = [];
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    out.push(byte);
  } while (value > 0);
  return new Uint8Array(out);
}

/** Splits `bytes` into chunks of random sizes from 1 to `max` bytes. */
export function chunks(random: Random, bytes: Uint8Array, max: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let pos = 0; pos < bytes.length;) {
    const size = random.int(1, max);
    out.push(bytes.subarray(pos, pos + size));
    pos += size;
  }
  return out;
}

/** Where a property may stand: a packet type, or "will" for the Will Properties. */
export type Context = PacketType | "will";

/** A property as MQTT 5.0 Table 2-4 lists it. */
export interface SpecProperty {
  id: number;
  key: keyof Properties;
  type: "byte" | "boolean" | "u16" | "u32" | "varint" | "string" | "binary" | "pair";
  contexts: Context[];
}

const ACKS: Context[] = ["puback", "pubrec", "pubrel", "pubcomp"];

/**
 * MQTT 5.0 Table 2-4, copied by hand from /work/spec/notes.md. "Byte" properties whose only
 * values are 0 and 1 are booleans in Kite; Subscription Identifier on PUBLISH is the list
 * `subscriptionIdentifiers`.
 */
export const SPEC_PROPERTIES: readonly SpecProperty[] = [
  { id: 0x01, key: "payloadFormatIndicator", type: "boolean", contexts: ["publish", "will"] },
  { id: 0x02, key: "messageExpiryInterval", type: "u32", contexts: ["publish", "will"] },
  { id: 0x03, key: "contentType", type: "string", contexts: ["publish", "will"] },
  { id: 0x08, key: "responseTopic", type: "string", contexts: ["publish", "will"] },
  { id: 0x09, key: "correlationData", type: "binary", contexts: ["publish", "will"] },
  { id: 0x0b, key: "subscriptionIdentifier", type: "varint", contexts: ["subscribe"] },
  { id: 0x0b, key: "subscriptionIdentifiers", type: "varint", contexts: ["publish"] },
  {
    id: 0x11,
    key: "sessionExpiryInterval",
    type: "u32",
    contexts: ["connect", "connack", "disconnect"],
  },
  { id: 0x12, key: "assignedClientIdentifier", type: "string", contexts: ["connack"] },
  { id: 0x13, key: "serverKeepAlive", type: "u16", contexts: ["connack"] },
  {
    id: 0x15,
    key: "authenticationMethod",
    type: "string",
    contexts: ["connect", "connack", "auth"],
  },
  { id: 0x16, key: "authenticationData", type: "binary", contexts: ["connect", "connack", "auth"] },
  { id: 0x17, key: "requestProblemInformation", type: "boolean", contexts: ["connect"] },
  { id: 0x18, key: "willDelayInterval", type: "u32", contexts: ["will"] },
  { id: 0x19, key: "requestResponseInformation", type: "boolean", contexts: ["connect"] },
  { id: 0x1a, key: "responseInformation", type: "string", contexts: ["connack"] },
  { id: 0x1c, key: "serverReference", type: "string", contexts: ["connack", "disconnect"] },
  {
    id: 0x1f,
    key: "reasonString",
    type: "string",
    contexts: ["connack", ...ACKS, "suback", "unsuback", "disconnect", "auth"],
  },
  { id: 0x21, key: "receiveMaximum", type: "u16", contexts: ["connect", "connack"] },
  { id: 0x22, key: "topicAliasMaximum", type: "u16", contexts: ["connect", "connack"] },
  { id: 0x23, key: "topicAlias", type: "u16", contexts: ["publish"] },
  { id: 0x24, key: "maximumQoS", type: "byte", contexts: ["connack"] },
  { id: 0x25, key: "retainAvailable", type: "boolean", contexts: ["connack"] },
  {
    id: 0x26,
    key: "userProperties",
    type: "pair",
    contexts: [
      "connect",
      "connack",
      "publish",
      "will",
      ...ACKS,
      "subscribe",
      "suback",
      "unsubscribe",
      "unsuback",
      "disconnect",
      "auth",
    ],
  },
  { id: 0x27, key: "maximumPacketSize", type: "u32", contexts: ["connect", "connack"] },
  { id: 0x28, key: "wildcardSubscriptionAvailable", type: "boolean", contexts: ["connack"] },
  { id: 0x29, key: "subscriptionIdentifierAvailable", type: "boolean", contexts: ["connack"] },
  { id: 0x2a, key: "sharedSubscriptionAvailable", type: "boolean", contexts: ["connack"] },
];

/** Every context properties can stand in. */
export const CONTEXTS: readonly Context[] = [
  "connect",
  "will",
  "connack",
  "publish",
  "puback",
  "pubrec",
  "pubrel",
  "pubcomp",
  "subscribe",
  "suback",
  "unsubscribe",
  "unsuback",
  "disconnect",
  "auth",
];

/** MQTT 5.0 Table 2-6 by packet, copied by hand from /work/spec/notes.md. */
export const SPEC_REASON_CODES: Readonly<Record<string, readonly number[]>> = {
  connack: [
    0x00,
    0x80,
    0x81,
    0x82,
    0x83,
    0x84,
    0x85,
    0x86,
    0x87,
    0x88,
    0x89,
    0x8a,
    0x8c,
    0x90,
    0x95,
    0x97,
    0x99,
    0x9a,
    0x9b,
    0x9c,
    0x9d,
    0x9f,
  ],
  puback: [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99],
  pubrec: [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99],
  pubrel: [0x00, 0x92],
  pubcomp: [0x00, 0x92],
  suback: [0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2],
  unsuback: [0x00, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91],
  disconnect: [
    0x00,
    0x04,
    0x80,
    0x81,
    0x82,
    0x83,
    0x87,
    0x89,
    0x8b,
    0x8c,
    0x8d,
    0x8e,
    0x8f,
    0x90,
    0x93,
    0x94,
    0x95,
    0x96,
    0x97,
    0x98,
    0x99,
    0x9a,
    0x9b,
    0x9c,
    0x9d,
    0x9e,
    0x9f,
    0xa0,
    0xa1,
    0xa2,
  ],
  auth: [0x00, 0x18, 0x19],
};

/** The packet types of each protocol version: AUTH exists only in MQTT 5. */
export function packetTypes(version: ProtocolVersion): PacketType[] {
  const types: PacketType[] = [
    "connect",
    "connack",
    "publish",
    "puback",
    "pubrec",
    "pubrel",
    "pubcomp",
    "subscribe",
    "suback",
    "unsubscribe",
    "unsuback",
    "pingreq",
    "pingresp",
    "disconnect",
  ];
  return version === 5 ? [...types, "auth"] : types;
}

// Characters of 1, 2, 3 and 4 UTF-8 bytes, and U+FEFF, which a receiver must keep [MQTT-1.5.4-3].
const CHARACTERS = [..."abcxyzABC019 -_.$", "é", "ß", "日", "本", "€", "😀", "𝄞", "\uFEFF"];
const LEVEL_CHARACTERS = CHARACTERS.filter((c) => c !== "/" && c !== "$");

/** A random string of well-formed UTF-8 without U+0000; it may be empty. */
export function randomString(random: Random, maxCharacters = 12): string {
  let text = "";
  const n = random.int(0, maxCharacters);
  for (let i = 0; i < n; i++) text += random.pick(CHARACTERS);
  return text;
}

function randomLevel(random: Random): string {
  let level = "";
  const n = random.int(0, 5);
  for (let i = 0; i < n; i++) level += random.pick(LEVEL_CHARACTERS);
  return level;
}

/** A random valid topic name: at least one character, no wildcards. */
export function randomTopicName(random: Random): string {
  const levels: string[] = [];
  const n = random.int(1, 4);
  for (let i = 0; i < n; i++) levels.push(randomLevel(random));
  const topic = levels.join("/");
  return topic === "" ? "t" : topic;
}

/** A random valid topic filter, shared (`$share/...`) only when `shared` allows it. */
export function randomTopicFilter(random: Random, shared: boolean): string {
  const levels: string[] = [];
  const n = random.int(1, 4);
  for (let i = 0; i < n; i++) {
    const roll = random.next();
    levels.push(roll < 0.2 ? "+" : roll < 0.3 && i === n - 1 ? "#" : randomLevel(random));
  }
  let filter = levels.join("/");
  if (filter === "") filter = "f";
  if (shared && random.chance(0.2)) {
    filter = `$share/${random.pick(["g", "group", "日"])}/${filter}`;
  }
  return filter;
}

function randomU16(random: Random, min: number): number {
  return Math.max(min, random.spread(0xffff));
}

function randomU32(random: Random, min: number): number {
  return random.chance(0.1) ? 0xffffffff : Math.max(min, random.spread(0xffffffff));
}

function randomVarint(random: Random): number {
  return random.chance(0.1) ? 268_435_455 : Math.max(1, random.spread(268_435_455));
}

function randomPairs(random: Random): [string, string][] {
  const pairs: [string, string][] = [];
  const n = random.int(1, 4);
  for (let i = 0; i < n; i++) {
    // Names repeat now and then: the order of the pairs must survive, repeats included.
    const name = i > 0 && random.chance(0.3) ? pairs[0][0] : randomString(random, 6);
    pairs.push([name, randomString(random, 8)]);
  }
  return pairs;
}

/** A random value of a property, within what the specification allows for it. */
export function randomPropertyValue(random: Random, property: SpecProperty): unknown {
  switch (property.key) {
    case "maximumQoS":
      return random.int(0, 1);
    case "receiveMaximum":
    case "topicAlias":
      return randomU16(random, 1);
    case "maximumPacketSize":
      return randomU32(random, 1);
    case "subscriptionIdentifiers": {
      const ids: number[] = [];
      const n = random.int(1, 3);
      for (let i = 0; i < n; i++) ids.push(randomVarint(random));
      return ids;
    }
  }
  switch (property.type) {
    case "boolean":
      return random.chance();
    case "byte":
      return random.int(0, 255);
    case "u16":
      return randomU16(random, 0);
    case "u32":
      return randomU32(random, 0);
    case "varint":
      return randomVarint(random);
    case "string":
      return randomString(random);
    case "binary":
      return random.bytes(random.int(0, 12));
    case "pair":
      return randomPairs(random);
  }
}

/** A random set of the properties allowed in `context`, or `undefined` (never `{}`). */
export function randomProperties(random: Random, context: Context): Properties | undefined {
  if (random.chance(0.3)) return undefined;
  const properties: Record<string, unknown> = {};
  for (const property of SPEC_PROPERTIES) {
    if (!property.contexts.includes(context) || random.chance(0.6)) continue;
    properties[property.key] = randomPropertyValue(random, property);
  }
  return Object.keys(properties).length === 0 ? undefined : properties as Properties;
}

interface ReasonAndProperties {
  reasonCode?: number;
  properties?: Properties;
}

const ID_CHARACTERS = [..."0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-"];

function randomQoS(random: Random): QoS {
  return random.int(0, 2) as QoS;
}

function randomPacketId(random: Random): number {
  return random.chance(0.1) ? random.pick([1, 0xffff]) : random.int(1, 0xffff);
}

/**
 * A random valid packet of `type` for `version`, in the shape {@linkcode decode} returns it:
 * optional fields are left out rather than set to `undefined`, MQTT 5 reason codes are present
 * exactly when the shortest encoding carries them, and empty property lists are left out.
 */
export function randomPacket(random: Random, type: PacketType, version: ProtocolVersion): Packet {
  const v5 = version === 5;
  switch (type) {
    case "connect": {
      const clean = random.chance();
      let clientId = randomString(random, 23);
      if (version === 3) {
        // MQTT 3.1: 1 to 23 characters.
        clientId = "";
        for (let i = random.int(1, 23); i > 0; i--) clientId += random.pick(ID_CHARACTERS);
      } else if (version === 4 && clientId === "" && !clean) {
        clientId = "c"; // [MQTT-3.1.3-7]
      }
      const packet: Packet = {
        type,
        protocolVersion: version,
        clientId,
        clean,
        keepalive: random.spread(0xffff),
      };
      if (random.chance()) {
        packet.will = {
          topic: randomTopicName(random),
          payload: random.bytes(random.spread(40)),
          qos: randomQoS(random),
          retain: random.chance(),
        };
        const properties = v5 ? randomProperties(random, "will") : undefined;
        if (properties) packet.will.properties = properties;
      }
      const username = random.chance() ? randomString(random) : undefined;
      if (username !== undefined) packet.username = username;
      // A password needs a user name before MQTT 5 [MQTT-3.1.2-22].
      if ((username !== undefined || v5) && random.chance()) {
        packet.password = random.bytes(random.int(0, 16));
      }
      const properties = v5 ? randomProperties(random, "connect") : undefined;
      if (properties) packet.properties = properties;
      return packet;
    }
    case "connack": {
      const reasonCode = v5
        ? (random.chance() ? 0 : random.pick(SPEC_REASON_CODES.connack))
        : random.int(0, 5);
      // MQTT 3.1 has no session present flag; a refusal never has it [MQTT-3.2.2-4].
      const sessionPresent = version > 3 && reasonCode === 0 && random.chance();
      const packet: Packet = { type, sessionPresent, reasonCode };
      const properties = v5 ? randomProperties(random, "connack") : undefined;
      if (properties) packet.properties = properties;
      return packet;
    }
    case "publish": {
      const qos = randomQoS(random);
      const packet: Packet = {
        type,
        topic: randomTopicName(random),
        payload: random.bytes(random.chance(0.05) ? random.int(0, 20_000) : random.spread(200)),
        qos,
        retain: random.chance(),
        dup: qos > 0 && random.chance(),
      };
      if (qos > 0) packet.packetId = randomPacketId(random);
      const properties = v5 ? randomProperties(random, "publish") : undefined;
      if (properties) packet.properties = properties;
      // MQTT 5: a topic alias may stand for the topic.
      if (properties?.topicAlias !== undefined && random.chance()) packet.topic = "";
      return packet;
    }
    case "puback":
    case "pubrec":
    case "pubrel":
    case "pubcomp":
    case "disconnect": {
      const packet: { type: typeof type; packetId?: number } & ReasonAndProperties = { type };
      if (type !== "disconnect") packet.packetId = randomPacketId(random);
      if (v5) {
        const reasonCode = random.chance() ? 0 : random.pick(SPEC_REASON_CODES[type]);
        const properties = randomProperties(random, type);
        // The shortest form leaves out a 0x00 reason code when there are no properties.
        if (reasonCode !== 0 || properties) packet.reasonCode = reasonCode;
        if (properties) packet.properties = properties;
      }
      return packet as Packet;
    }
    case "subscribe": {
      const subscriptions: Subscription[] = [];
      const n = random.int(1, 5);
      for (let i = 0; i < n; i++) {
        const topicFilter = randomTopicFilter(random, v5);
        const subscription: Subscription = { topicFilter, qos: randomQoS(random) };
        if (v5) {
          // No Local on a shared subscription is a Protocol Error [MQTT-3.8.3-4].
          subscription.noLocal = !topicFilter.startsWith("$share/") && random.chance();
          subscription.retainAsPublished = random.chance();
          subscription.retainHandling = random.int(0, 2) as 0 | 1 | 2;
        }
        subscriptions.push(subscription);
      }
      const packet: Packet = { type, packetId: randomPacketId(random), subscriptions };
      const properties = v5 ? randomProperties(random, "subscribe") : undefined;
      if (properties) packet.properties = properties;
      return packet;
    }
    case "suback": {
      const codes = v5
        ? SPEC_REASON_CODES.suback
        : version === 4
        ? [0x00, 0x01, 0x02, 0x80]
        : [0x00, 0x01, 0x02];
      const reasonCodes: number[] = [];
      const n = random.int(1, 5);
      for (let i = 0; i < n; i++) reasonCodes.push(random.pick(codes));
      const packet: Packet = { type, packetId: randomPacketId(random), reasonCodes };
      const properties = v5 ? randomProperties(random, "suback") : undefined;
      if (properties) packet.properties = properties;
      return packet;
    }
    case "unsubscribe": {
      const topicFilters: string[] = [];
      const n = random.int(1, 5);
      for (let i = 0; i < n; i++) topicFilters.push(randomTopicFilter(random, v5));
      const packet: Packet = { type, packetId: randomPacketId(random), topicFilters };
      const properties = v5 ? randomProperties(random, "unsubscribe") : undefined;
      if (properties) packet.properties = properties;
      return packet;
    }
    case "unsuback": {
      const packet: Packet = { type, packetId: randomPacketId(random) };
      if (!v5) return packet;
      const reasonCodes: number[] = [];
      const n = random.int(1, 5);
      for (let i = 0; i < n; i++) reasonCodes.push(random.pick(SPEC_REASON_CODES.unsuback));
      packet.reasonCodes = reasonCodes;
      const properties = randomProperties(random, "unsuback");
      if (properties) packet.properties = properties;
      return packet;
    }
    case "pingreq":
    case "pingresp":
      return { type };
    case "auth": {
      const packet: Packet = {
        type,
        reasonCode: random.chance(0.3) ? 0 : random.pick(SPEC_REASON_CODES.auth),
      };
      const properties = randomProperties(random, "auth");
      if (properties) packet.properties = properties;
      return packet;
    }
  }
}

/** A random valid packet of any type of `version`. */
export function randomAnyPacket(random: Random, version: ProtocolVersion): Packet {
  return randomPacket(random, random.pick(packetTypes(version)), version);
}
