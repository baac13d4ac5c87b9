/**
 * MQTT 5 properties (section 2.2.2): each property on each packet, both directions, with bytes
 * built here from MQTT 5.0 Table 2-4 rather than by the codec; repeats, unknown identifiers and
 * value ranges.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  decode,
  encode,
  type Packet,
  PROPERTIES,
  type Properties,
  ProtocolError,
} from "../../src/packet/mod.ts";
import {
  concat,
  type Context,
  CONTEXTS,
  hex,
  SPEC_PROPERTIES,
  type SpecProperty,
  varint,
} from "./generate.ts";

const MALFORMED_PACKET = 0x81;
const PROTOCOL_ERROR = 0x82;
const TOPIC_ALIAS_INVALID = 0x94;

/** The bytes of a v5 packet of `context` whose property list is `properties` (raw bytes). */
function withProperties(context: Context, properties: Uint8Array): Uint8Array {
  const list = concat(varint(properties.length), properties);
  const [first, body] = ((): [number, Uint8Array] => {
    switch (context) {
      case "connect": // "MQTT" 5, clean start, keepalive 0, properties, client id ""
        return [0x10, concat(hex(`00 04 4d 51 54 54 05 02 00 00`), list, hex(`00 00`))];
      case "will": // the same with a will: no CONNECT properties, will properties, "w", no payload
        return [
          0x10,
          concat(hex(`00 04 4d 51 54 54 05 06 00 00 00 00 00`), list, hex(`00 01 77 00 00`)),
        ];
      case "connack": // no session, Success
        return [0x20, concat(hex(`00 00`), list)];
      case "publish": // topic "a", QoS 0, no payload
        return [0x30, concat(hex(`00 01 61`), list)];
      case "puback":
        return [0x40, concat(hex(`00 01 00`), list)]; // packet id 1, Success
      case "pubrec":
        return [0x50, concat(hex(`00 01 00`), list)];
      case "pubrel":
        return [0x62, concat(hex(`00 01 00`), list)];
      case "pubcomp":
        return [0x70, concat(hex(`00 01 00`), list)];
      case "subscribe": // packet id 1, properties, "a" with options 0
        return [0x82, concat(hex(`00 01`), list, hex(`00 01 61 00`))];
      case "suback": // packet id 1, properties, Granted QoS 0
        return [0x90, concat(hex(`00 01`), list, hex(`00`))];
      case "unsubscribe": // packet id 1, properties, "a"
        return [0xa2, concat(hex(`00 01`), list, hex(`00 01 61`))];
      case "unsuback": // packet id 1, properties, Success
        return [0xb0, concat(hex(`00 01`), list, hex(`00`))];
      case "disconnect": // Normal disconnection
        return [0xe0, concat(hex(`00`), list)];
      case "auth": // Success
        return [0xf0, concat(hex(`00`), list)];
      default:
        throw new Error(`no properties on ${context}`);
    }
  })();
  return concat(new Uint8Array([first]), varint(body.length), body);
}

/** The packet {@linkcode withProperties} builds, as the decoder returns it. */
function packetWith(context: Context, properties: Properties): Packet {
  switch (context) {
    case "connect":
      return {
        type: "connect",
        protocolVersion: 5,
        clientId: "",
        clean: true,
        keepalive: 0,
        properties,
      };
    case "will":
      return {
        type: "connect",
        protocolVersion: 5,
        clientId: "",
        clean: true,
        keepalive: 0,
        will: { topic: "w", payload: new Uint8Array(0), qos: 0, retain: false, properties },
      };
    case "connack":
      return { type: "connack", sessionPresent: false, reasonCode: 0, properties };
    case "publish":
      return {
        type: "publish",
        topic: "a",
        payload: new Uint8Array(0),
        qos: 0,
        retain: false,
        dup: false,
        properties,
      };
    case "puback":
    case "pubrec":
    case "pubrel":
    case "pubcomp":
      return { type: context, packetId: 1, reasonCode: 0, properties };
    case "subscribe":
      return {
        type: "subscribe",
        packetId: 1,
        properties,
        subscriptions: [{
          topicFilter: "a",
          qos: 0,
          noLocal: false,
          retainAsPublished: false,
          retainHandling: 0,
        }],
      };
    case "suback":
      return { type: "suback", packetId: 1, properties, reasonCodes: [0] };
    case "unsubscribe":
      return { type: "unsubscribe", packetId: 1, properties, topicFilters: ["a"] };
    case "unsuback":
      return { type: "unsuback", packetId: 1, properties, reasonCodes: [0] };
    case "disconnect":
      return { type: "disconnect", reasonCode: 0, properties };
    case "auth":
      return { type: "auth", reasonCode: 0, properties };
    default:
      throw new Error(`no properties on ${context}`);
  }
}

/** A sample value of each type, and its bytes. */
const SAMPLES: Record<SpecProperty["type"], [unknown, string]> = {
  boolean: [true, "01"],
  byte: [1, "01"],
  u16: [258, "01 02"],
  u32: [16909060, "01 02 03 04"],
  varint: [300, "ac 02"],
  string: ["é", "00 02 c3 a9"],
  binary: [new Uint8Array([0x00, 0xff]), "00 02 00 ff"],
  pair: [[["k", "v"]], "00 01 6b 00 01 76"],
};

/** The property as it is named and valued in `context` (Subscription Identifier is a list on PUBLISH). */
function sample(
  property: SpecProperty,
  context: Context,
): { key: string; value: unknown; bytes: Uint8Array } {
  const [value, bytes] = SAMPLES[property.type];
  const listed = property.id === 0x0b && context === "publish";
  return {
    key: listed ? "subscriptionIdentifiers" : property.key,
    value: listed ? [value] : value,
    bytes: concat(new Uint8Array([property.id]), hex(bytes)),
  };
}

// One entry per identifier: Subscription Identifier's two shapes are one property on the wire.
const BY_ID = SPEC_PROPERTIES.filter((p) => p.key !== "subscriptionIdentifiers").map((p) =>
  p.id === 0x0b ? { ...p, contexts: [...p.contexts, "publish" as const] } : p
);

/** Asserts that decoding `bytes` throws a ProtocolError with `reasonCode` and no statement id. */
function assertRejected(bytes: Uint8Array, reasonCode: number, statementId?: string): void {
  assert.throws(() => decode(bytes, 5), (error: unknown) => {
    assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${error}`);
    assert.equal(error.reasonCode, reasonCode, error.message);
    assert.equal(error.statementId, statementId, error.message);
    return true;
  });
}

describe("PROPERTIES", () => {
  test("PROPERTIES - the codec's table is MQTT 5.0 Table 2-4", () => {
    const spec = SPEC_PROPERTIES.filter((p) => p.key !== "subscriptionIdentifiers");
    const sorted = (contexts: readonly string[]) => [...contexts].sort();
    assert.deepEqual(
      PROPERTIES.map((p) => ({ id: p.id, key: p.key, type: p.type, contexts: sorted(p.contexts) })),
      spec.map((p) => ({ id: p.id, key: p.key, type: p.type, contexts: sorted(p.contexts) })),
    );
  });

  for (const property of BY_ID) {
    const allowed = CONTEXTS.filter((c) => property.contexts.includes(c));
    const refused = CONTEXTS.filter((c) => !property.contexts.includes(c));
    const name = `${property.key} (0x${property.id.toString(16).padStart(2, "0")})`;
    test(`PROPERTIES - ${name} is read and written on ${allowed.join(", ")}`, () => {
      for (const context of allowed) {
        const { key, value, bytes } = sample(property, context);
        const wire = withProperties(context, bytes);
        const packet = packetWith(context, { [key]: value } as Properties);
        assert.deepEqual(decode(wire, 5), packet, context);
        assert.deepEqual(encode(packet, 5), wire, context);
      }
    });
    test(`PROPERTIES - ${name} is refused on the ${refused.length} other packets`, () => {
      for (const context of refused) {
        const { key, value, bytes } = sample(property, context);
        // The decoder: an identifier not valid for the packet is a Malformed Packet.
        assertRejected(withProperties(context, bytes), MALFORMED_PACKET);
        // The encoder refuses to write it.
        assert.throws(
          () => encode(packetWith(context, { [key]: value } as Properties), 5),
          ProtocolError,
          context,
        );
      }
    });
  }
});

describe("PROPERTIES - repeats and order", () => {
  for (const property of BY_ID) {
    if (property.type === "pair") continue;
    const context = property.contexts[0];
    test(`PROPERTIES - ${property.key} twice on ${context.toUpperCase()} is a Protocol Error`, () => {
      const { bytes } = sample(property, context);
      assertRejected(withProperties(context, concat(bytes, bytes)), PROTOCOL_ERROR);
    });
  }

  test("PROPERTIES - Subscription Identifier may repeat on PUBLISH, in order", () => {
    const wire = withProperties("publish", hex(`0b 05  0b 01  0b ff ff ff 7f  0b 05`));
    assert.deepEqual(
      decode(wire, 5),
      packetWith("publish", { subscriptionIdentifiers: [5, 1, 268435455, 5] }),
    );
  });

  for (const context of CONTEXTS) {
    test(`PROPERTIES - User Properties on ${context.toUpperCase()} keep their order and repeats`, () => {
      const pairs: [string, string][] = [["b", "1"], ["a", "2"], ["b", "1"], ["", ""], ["b", "3"]];
      const wire = withProperties(
        context,
        concat(
          ...pairs.map(([name, value]) =>
            concat(
              hex(`26 00`),
              new Uint8Array([name.length]),
              new TextEncoder().encode(name),
              hex(`00`),
              new Uint8Array([value.length]),
              new TextEncoder().encode(value),
            )
          ),
        ),
      );
      const packet = packetWith(context, { userProperties: pairs });
      assert.deepEqual(decode(wire, 5), packet);
      assert.deepEqual(encode(packet, 5), wire);
    });
  }

  test("PROPERTIES - properties in any order are read alike", () => {
    const a = hex(`01 01`); // payload format indicator 1
    const b = hex(`23 00 07`); // topic alias 7
    const c = hex(`26 00 01 6b 00 01 76`); // user property k = v
    const expected = packetWith("publish", {
      payloadFormatIndicator: true,
      topicAlias: 7,
      userProperties: [["k", "v"]],
    });
    for (const order of [[a, b, c], [c, b, a], [b, c, a], [c, a, b]]) {
      assert.deepEqual(decode(withProperties("publish", concat(...order)), 5), expected);
    }
  });

  test("PROPERTIES - an empty property list leaves the properties out", () => {
    for (const properties of [{}, { contentType: undefined }, { userProperties: [] }]) {
      const bytes = encode(packetWith("publish", properties as Properties), 5);
      assert.deepEqual(bytes, hex(`30 04  00 01 61  00`));
      const decoded = decode(bytes, 5);
      assert.equal("properties" in decoded, false);
    }
  });
});

describe("PROPERTIES - identifiers and values", () => {
  const known = new Set(BY_ID.map((p) => p.id));
  test("PROPERTIES - every unassigned identifier from 0 to 127 is a Malformed Packet", () => {
    let count = 0;
    for (let id = 0; id < 128; id++) {
      if (known.has(id)) continue;
      assertRejected(withProperties("puback", new Uint8Array([id, 0, 0])), MALFORMED_PACKET);
      count++;
    }
    assert.equal(count, 128 - 27);
  });

  test("PROPERTIES - identifiers of two and more bytes are unknown", () => {
    for (const id of [128, 0x1f + 128 * 1, 16383, 268435455]) {
      assertRejected(withProperties("puback", concat(varint(id), hex(`00 00`))), MALFORMED_PACKET);
    }
  });

  const booleans = BY_ID.filter((p) => p.type === "boolean");
  for (const property of booleans) {
    test(`PROPERTIES - ${property.key} is 0 or 1, nothing else`, () => {
      const context = property.contexts[0];
      for (let value = 0; value < 256; value++) {
        const wire = withProperties(context, new Uint8Array([property.id, value]));
        if (value <= 1) {
          assert.deepEqual(
            decode(wire, 5),
            packetWith(context, { [property.key]: value === 1 } as Properties),
          );
        } else {
          assertRejected(wire, PROTOCOL_ERROR);
        }
      }
    });
  }

  const ranges: [string, Context, string, unknown, string | undefined][] = [
    // property, packet, value bytes, value or "error", statement id of the error
    ["maximumQoS", "connack", "24 00", 0, undefined],
    ["maximumQoS", "connack", "24 01", 1, undefined],
    ["maximumQoS", "connack", "24 02", "error", undefined],
    ["maximumQoS", "connack", "24 ff", "error", undefined],
    ["receiveMaximum", "connect", "21 00 00", "error", undefined],
    ["receiveMaximum", "connack", "21 00 01", 1, undefined],
    ["receiveMaximum", "connack", "21 ff ff", 65535, undefined],
    ["topicAlias", "publish", "23 00 00", "error", "MQTT-3.3.2-8"],
    ["topicAlias", "publish", "23 ff ff", 65535, undefined],
    ["topicAliasMaximum", "connack", "22 00 00", 0, undefined],
    ["serverKeepAlive", "connack", "13 00 00", 0, undefined],
    ["maximumPacketSize", "connack", "27 00 00 00 00", "error", undefined],
    ["maximumPacketSize", "connect", "27 00 00 00 01", 1, undefined],
    ["maximumPacketSize", "connect", "27 ff ff ff ff", 4294967295, undefined],
    ["sessionExpiryInterval", "connect", "11 00 00 00 00", 0, undefined],
    ["sessionExpiryInterval", "disconnect", "11 ff ff ff ff", 4294967295, undefined],
    ["messageExpiryInterval", "publish", "02 80 00 00 00", 2147483648, undefined],
    ["subscriptionIdentifier", "subscribe", "0b 00", "error", undefined],
    ["subscriptionIdentifier", "subscribe", "0b 01", 1, undefined],
    ["subscriptionIdentifier", "subscribe", "0b ff ff ff 7f", 268435455, undefined],
    ["subscriptionIdentifiers", "publish", "0b 00", "error", undefined],
  ];
  for (const [key, context, bytes, value, statementId] of ranges) {
    const verdict = value === "error" ? "is refused" : `is ${value}`;
    test(`PROPERTIES - ${key} ${bytes} on ${context.toUpperCase()} ${verdict}`, () => {
      const wire = withProperties(context, hex(bytes));
      if (value === "error") {
        // A receiver closes over Topic Alias 0 with 0x94 Topic Alias invalid.
        assertRejected(
          wire,
          key === "topicAlias" ? TOPIC_ALIAS_INVALID : PROTOCOL_ERROR,
          statementId,
        );
        return;
      }
      const packet = packetWith(context, { [key]: value } as Properties);
      assert.deepEqual(decode(wire, 5), packet);
      assert.deepEqual(encode(packet, 5), wire);
    });
  }
});
