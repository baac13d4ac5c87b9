/**
 * The encoder refuses to write what a broker would reject: each row must throw (a ProtocolError
 * for a rule of the protocol, a TypeError for a value of the wrong kind) and write nothing.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  encode,
  encodeInto,
  type Packet,
  packetSize,
  ProtocolError,
  type ProtocolVersion,
  Writer,
} from "../../src/packet/mod.ts";
import { utf8 } from "./generate.ts";

interface Row {
  name: string;
  version: ProtocolVersion;
  packet: Packet;
  /** ProtocolError with this statement id (`undefined`: none), or TypeError. */
  expect: { statementId: string | undefined } | typeof TYPE_ERROR;
}

const publish = (fields: Partial<Extract<Packet, { type: "publish" }>>): Packet => ({
  type: "publish",
  topic: "a",
  payload: new Uint8Array(0),
  qos: 0,
  retain: false,
  dup: false,
  ...fields,
});

const connect = (
  version: ProtocolVersion,
  fields: Partial<Extract<Packet, { type: "connect" }>>,
): Packet => ({
  type: "connect",
  protocolVersion: version,
  clientId: "c",
  clean: true,
  keepalive: 0,
  ...fields,
});

const TYPE_ERROR = "TypeError" as const;
const none = { statementId: undefined };
const cite = (statementId: string) => ({ statementId });
const packetIdRule = (version: ProtocolVersion) =>
  cite(version === 5 ? "MQTT-2.2.1-3" : "MQTT-2.3.1-1");

const ROWS: Row[] = [];

for (const version of [3, 4, 5] as const) {
  const add = (name: string, packet: Packet, expect: Row["expect"]) =>
    ROWS.push({ name, version, packet, expect });
  const utf8Rule = (v311: string, v5: string) => cite(version === 5 ? v5 : v311);

  // PUBLISH
  add("PUBLISH to a/#", publish({ topic: "a/#" }), cite("MQTT-3.3.2-2"));
  add("PUBLISH to +", publish({ topic: "+" }), cite("MQTT-3.3.2-2"));
  add("PUBLISH at QoS 3", publish({ qos: 3 as 0 }), cite("MQTT-3.3.1-4"));
  add("PUBLISH at QoS 1 without a packet id", publish({ qos: 1 }), packetIdRule(version));
  add("PUBLISH at QoS 2 with packet id 0", publish({ qos: 2, packetId: 0 }), packetIdRule(version));
  add(
    "PUBLISH at QoS 1 with packet id 65536",
    publish({ qos: 1, packetId: 65536 }),
    packetIdRule(version),
  );
  add(
    "PUBLISH at QoS 1 with packet id 1.5",
    publish({ qos: 1, packetId: 1.5 }),
    packetIdRule(version),
  );
  add(
    "PUBLISH at QoS 2 with packet id NaN",
    publish({ qos: 2, packetId: NaN }),
    packetIdRule(version),
  );
  add("PUBLISH with DUP at QoS 0", publish({ dup: true }), cite("MQTT-3.3.1-2"));
  add(
    "PUBLISH to a topic with a lone high surrogate",
    publish({ topic: "a\uD800" }),
    utf8Rule("MQTT-1.5.3-1", "MQTT-1.5.4-1"),
  );
  add(
    "PUBLISH to a topic with a lone low surrogate",
    publish({ topic: "\uDC00a" }),
    utf8Rule("MQTT-1.5.3-1", "MQTT-1.5.4-1"),
  );
  add(
    "PUBLISH to a topic with U+0000",
    publish({ topic: "a\0b" }),
    utf8Rule("MQTT-1.5.3-2", "MQTT-1.5.4-2"),
  );
  add("PUBLISH to a topic of 65536 bytes", publish({ topic: "é".repeat(32768) }), none);
  add(
    "PUBLISH with a string payload",
    publish({ payload: "hi" as unknown as Uint8Array }),
    TYPE_ERROR,
  );
  if (version === 5) {
    add("PUBLISH to an empty topic without a topic alias", publish({ topic: "" }), none);
  } else {
    add("PUBLISH to an empty topic", publish({ topic: "" }), cite("MQTT-4.7.3-1"));
    add(
      "PUBLISH with properties before MQTT 5",
      publish({ properties: { contentType: "text/plain" } }),
      TYPE_ERROR,
    );
  }

  // Acknowledgements
  for (const type of ["puback", "pubrec", "pubrel", "pubcomp"] as const) {
    add(`${type.toUpperCase()} with packet id 0`, { type, packetId: 0 }, packetIdRule(version));
    add(
      `${type.toUpperCase()} with packet id 65536`,
      { type, packetId: 65536 },
      packetIdRule(version),
    );
    add(`${type.toUpperCase()} with packet id 1.5`, { type, packetId: 1.5 }, packetIdRule(version));
    add(`${type.toUpperCase()} with packet id NaN`, { type, packetId: NaN }, packetIdRule(version));
  }
  add(
    "PUBACK without a packet id",
    { type: "puback" } as unknown as Packet,
    packetIdRule(version),
  );

  // SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK
  const sub = (subscriptions: unknown[], packetId = 1): Packet =>
    ({ type: "subscribe", packetId, subscriptions }) as Packet;
  add("SUBSCRIBE with packet id 0", sub([{ topicFilter: "a", qos: 0 }], 0), packetIdRule(version));
  add(
    "SUBSCRIBE with packet id 65536",
    sub([{ topicFilter: "a", qos: 0 }], 65536),
    packetIdRule(version),
  );
  add(
    "SUBSCRIBE with no filter",
    sub([]),
    cite(version === 5 ? "MQTT-3.8.3-2" : "MQTT-3.8.3-3"),
  );
  // Topic filter rules cite MQTT 3.1.1's ids (see src/packet/topic.ts).
  add("SUBSCRIBE to a/#/b", sub([{ topicFilter: "a/#/b", qos: 0 }]), cite("MQTT-4.7.1-2"));
  add("SUBSCRIBE to a#", sub([{ topicFilter: "a#", qos: 0 }]), cite("MQTT-4.7.1-2"));
  add("SUBSCRIBE to a+", sub([{ topicFilter: "a+", qos: 0 }]), cite("MQTT-4.7.1-3"));
  add("SUBSCRIBE to an empty filter", sub([{ topicFilter: "", qos: 0 }]), cite("MQTT-4.7.3-1"));
  add(
    "SUBSCRIBE to a valid and an invalid filter",
    sub([{ topicFilter: "a/+", qos: 0 }, { topicFilter: "b/#/", qos: 1 }]),
    cite("MQTT-4.7.1-2"),
  );
  add("SUBSCRIBE asking for QoS 3", sub([{ topicFilter: "a", qos: 3 }]), none);
  add(
    "SUBACK with packet id 0",
    { type: "suback", packetId: 0, reasonCodes: [0] },
    packetIdRule(version),
  );
  add("SUBACK with no return code", { type: "suback", packetId: 1, reasonCodes: [] }, none);
  add(
    "UNSUBSCRIBE with packet id 0",
    { type: "unsubscribe", packetId: 0, topicFilters: ["a"] },
    packetIdRule(version),
  );
  add(
    "UNSUBSCRIBE with no filter",
    { type: "unsubscribe", packetId: 1, topicFilters: [] },
    cite("MQTT-3.10.3-2"),
  );
  add(
    "UNSUBSCRIBE from a/#/b",
    { type: "unsubscribe", packetId: 1, topicFilters: ["a", "a/#/b"] },
    cite("MQTT-4.7.1-2"),
  );
  add(
    "UNSUBSCRIBE from an empty filter",
    { type: "unsubscribe", packetId: 1, topicFilters: [""] },
    cite("MQTT-4.7.3-1"),
  );
  add("UNSUBACK with packet id 0", { type: "unsuback", packetId: 0 }, packetIdRule(version));
  add(
    "SUBSCRIBE with packet id 1.5",
    sub([{ topicFilter: "a", qos: 0 }], 1.5),
    packetIdRule(version),
  );
  add(
    "SUBACK with packet id 1.5",
    { type: "suback", packetId: 1.5, reasonCodes: [0] },
    packetIdRule(version),
  );
  add(
    "UNSUBSCRIBE with packet id 1.5",
    { type: "unsubscribe", packetId: 1.5, topicFilters: ["a"] },
    packetIdRule(version),
  );
  add("UNSUBACK with packet id 1.5", { type: "unsuback", packetId: 1.5 }, packetIdRule(version));

  // CONNECT
  if (version !== 5) {
    add(
      "CONNECT with a password and no user name",
      connect(version, { password: utf8("p") }),
      cite("MQTT-3.1.2-22"),
    );
  }
  add(
    "CONNECT with a client id holding a lone surrogate",
    connect(version, { clientId: "c\uDBFF" }),
    utf8Rule("MQTT-1.5.3-1", "MQTT-1.5.4-1"),
  );
  add(
    "CONNECT with a user name holding U+0000",
    connect(version, { username: "u\0" }),
    utf8Rule("MQTT-1.5.3-2", "MQTT-1.5.4-2"),
  );
  add(
    "CONNECT with a will topic holding a lone surrogate",
    connect(version, { will: { topic: "w\uDC00", payload: utf8("x"), qos: 0, retain: false } }),
    utf8Rule("MQTT-1.5.3-1", "MQTT-1.5.4-1"),
  );
  add(
    "CONNECT with a will to a wildcard topic",
    connect(version, { will: { topic: "w/#", payload: utf8("x"), qos: 0, retain: false } }),
    cite("MQTT-3.3.2-2"),
  );
  add(
    "CONNECT with a will to an empty topic",
    connect(version, { will: { topic: "", payload: utf8("x"), qos: 0, retain: false } }),
    cite("MQTT-4.7.3-1"),
  );
  add(
    "CONNECT with a will at QoS 3",
    connect(version, { will: { topic: "w", payload: utf8("x"), qos: 3 as 0, retain: false } }),
    none,
  );
  add("CONNECT with keepalive 65536", connect(version, { keepalive: 65536 }), TYPE_ERROR);
  add("CONNECT with keepalive -1", connect(version, { keepalive: -1 }), TYPE_ERROR);
  add(
    "CONNECT with a string password",
    connect(version, { username: "u", password: "p" as unknown as Uint8Array }),
    TYPE_ERROR,
  );
  if (version === 3) {
    add(
      "CONNECT with a 24-character client id",
      connect(3, { clientId: "abcdefghijklmnopqrstuvwx" }),
      none,
    );
    add("CONNECT with an empty client id", connect(3, { clientId: "" }), none);
  }
  if (version === 4) {
    add(
      "CONNECT with an empty client id and no clean session",
      connect(4, { clientId: "", clean: false }),
      cite("MQTT-3.1.3-7"),
    );
  }
  if (version !== 5) {
    add(
      "CONNECT with properties before MQTT 5",
      connect(version, { properties: { sessionExpiryInterval: 10 } }),
      TYPE_ERROR,
    );
    add(
      "CONNECT with will properties before MQTT 5",
      connect(version, {
        will: {
          topic: "w",
          payload: utf8("x"),
          qos: 0,
          retain: false,
          properties: { willDelayInterval: 1 },
        },
      }),
      TYPE_ERROR,
    );
  }

  // CONNACK, DISCONNECT, AUTH
  add(
    "CONNACK with session present on a refusal",
    { type: "connack", sessionPresent: true, reasonCode: version === 5 ? 0x87 : 5 },
    cite(version === 5 ? "MQTT-3.2.2-6" : "MQTT-3.2.2-4"),
  );
  if (version === 5) {
    add(
      "CONNACK with reason code 0x01",
      { type: "connack", sessionPresent: false, reasonCode: 1 },
      none,
    );
  } else {
    add(
      "CONNACK with return code 6",
      { type: "connack", sessionPresent: false, reasonCode: 6 },
      none,
    );
    add("AUTH before MQTT 5", { type: "auth", reasonCode: 0x18 }, none);
    add(
      "PUBACK with properties before MQTT 5",
      { type: "puback", packetId: 1, properties: { reasonString: "x" } },
      TYPE_ERROR,
    );
    add(
      "DISCONNECT with properties before MQTT 5",
      { type: "disconnect", properties: { reasonString: "x" } },
      TYPE_ERROR,
    );
  }
  if (version === 3) {
    add("SUBACK with 0x80, which MQTT 3.1 does not define", {
      type: "suback",
      packetId: 1,
      reasonCodes: [0x80],
    }, none);
  }
}

// ------------------------------------------------------------------------ MQTT 5 options on 3.x
for (const version of [3, 4] as const) {
  for (
    const [option, value] of [
      ["noLocal", true],
      ["retainAsPublished", true],
      ["retainHandling", 1],
      ["retainHandling", 2],
    ] as const
  ) {
    ROWS.push({
      name: `SUBSCRIBE with ${option} ${value}, an MQTT 5 option`,
      version,
      packet: {
        type: "subscribe",
        packetId: 1,
        subscriptions: [{ topicFilter: "a", qos: 1, [option]: value }],
      },
      expect: TYPE_ERROR,
    });
  }
}

// ------------------------------------------------------------------------ MQTT 5 only
const V5: [string, Packet, Row["expect"]][] = [
  [
    "SUBSCRIBE to $share/g/a with No Local",
    {
      type: "subscribe",
      packetId: 1,
      subscriptions: [{ topicFilter: "$share/g/a", qos: 0, noLocal: true }],
    },
    cite("MQTT-3.8.3-4"),
  ],
  [
    "SUBSCRIBE with Retain Handling 3",
    {
      type: "subscribe",
      packetId: 1,
      subscriptions: [{ topicFilter: "a", qos: 0, retainHandling: 3 as 0 }],
    },
    none,
  ],
  [
    "SUBSCRIBE to a shared subscription with an empty ShareName",
    { type: "subscribe", packetId: 1, subscriptions: [{ topicFilter: "$share//a", qos: 0 }] },
    cite("MQTT-4.8.2-1"),
  ],
  [
    "PUBACK with a topic alias",
    { type: "puback", packetId: 1, properties: { topicAlias: 1 } },
    none,
  ],
  [
    "PUBLISH with a session expiry interval",
    publish({ properties: { sessionExpiryInterval: 1 } }),
    none,
  ],
  ["PUBLISH with a reason string", publish({ properties: { reasonString: "r" } }), none],
  [
    "CONNECT with a will delay interval among its own properties",
    connect(5, { properties: { willDelayInterval: 1 } }),
    none,
  ],
  [
    "CONNECT with a session expiry interval among the will properties",
    connect(5, {
      will: {
        topic: "w",
        payload: utf8("x"),
        qos: 0,
        retain: false,
        properties: { sessionExpiryInterval: 1 },
      },
    }),
    none,
  ],
  [
    "SUBSCRIBE with the PUBLISH form subscriptionIdentifiers",
    {
      type: "subscribe",
      packetId: 1,
      subscriptions: [{ topicFilter: "a", qos: 0 }],
      properties: { subscriptionIdentifiers: [1] },
    },
    none,
  ],
  [
    "AUTH with a topic alias",
    { type: "auth", reasonCode: 0x18, properties: { topicAlias: 1 } },
    none,
  ],
  [
    "DISCONNECT with an unknown property",
    { type: "disconnect", properties: { colour: "red" } as unknown as Record<string, never> },
    TYPE_ERROR,
  ],
  ["PUBLISH with topic alias 0", publish({ properties: { topicAlias: 0 } }), cite("MQTT-3.3.2-8")],
  ["PUBLISH with topic alias 65536", publish({ properties: { topicAlias: 65536 } }), TYPE_ERROR],
  ["CONNECT with receive maximum 0", connect(5, { properties: { receiveMaximum: 0 } }), none],
  [
    "CONNECT with maximum packet size 0",
    connect(5, { properties: { maximumPacketSize: 0 } }),
    none,
  ],
  [
    "CONNACK with maximum QoS 2",
    { type: "connack", sessionPresent: false, reasonCode: 0, properties: { maximumQoS: 2 as 0 } },
    none,
  ],
  [
    "SUBSCRIBE with subscription identifier 0",
    {
      type: "subscribe",
      packetId: 1,
      subscriptions: [{ topicFilter: "a", qos: 0 }],
      properties: { subscriptionIdentifier: 0 },
    },
    none,
  ],
  [
    "SUBSCRIBE with subscription identifier 268435456",
    {
      type: "subscribe",
      packetId: 1,
      subscriptions: [{ topicFilter: "a", qos: 0 }],
      properties: { subscriptionIdentifier: 268435456 },
    },
    TYPE_ERROR,
  ],
  [
    "PUBLISH with message expiry interval 2^32",
    publish({ properties: { messageExpiryInterval: 2 ** 32 } }),
    TYPE_ERROR,
  ],
  [
    "PUBLISH with payload format indicator 1 instead of true",
    publish({ properties: { payloadFormatIndicator: 1 as unknown as boolean } }),
    TYPE_ERROR,
  ],
  [
    "PUBLISH with a user property value holding a lone surrogate",
    publish({ properties: { userProperties: [["k", "\uD83D"]] } }),
    cite("MQTT-1.5.4-1"),
  ],
  [
    "PUBACK with a reason string holding U+0000",
    { type: "puback", packetId: 1, properties: { reasonString: "\0" } },
    cite("MQTT-1.5.4-2"),
  ],
  [
    "PUBLISH with user properties that are not pairs",
    publish({ properties: { userProperties: [["k"]] as unknown as [string, string][] } }),
    TYPE_ERROR,
  ],
  [
    "PUBLISH with correlation data as a string",
    publish({ properties: { correlationData: "x" as unknown as Uint8Array } }),
    TYPE_ERROR,
  ],
  ["PUBACK with reason code 0x05", { type: "puback", packetId: 1, reasonCode: 0x05 }, none],
  ["PUBREL with reason code 0x10", { type: "pubrel", packetId: 1, reasonCode: 0x10 }, none],
  ["SUBACK with reason code 0x10", { type: "suback", packetId: 1, reasonCodes: [0x10] }, none],
  ["UNSUBACK without reason codes", { type: "unsuback", packetId: 1 }, none],
  ["UNSUBACK with reason code 0x01", { type: "unsuback", packetId: 1, reasonCodes: [1] }, none],
  ["DISCONNECT with reason code 0x85", { type: "disconnect", reasonCode: 0x85 }, none],
  ["AUTH with reason code 0x01", { type: "auth", reasonCode: 0x01 }, none],
];
for (const [name, packet, expect] of V5) ROWS.push({ name, version: 5, packet, expect });

const VERSION_NAMES = { 3: "MQTT 3.1", 4: "MQTT 3.1.1", 5: "MQTT 5.0" } as const;

describe("encode - refuses packets a broker would reject", () => {
  for (const { name, version, packet, expect } of ROWS) {
    const what = expect === TYPE_ERROR
      ? "a TypeError"
      : `a ProtocolError (${expect.statementId ?? "no statement id"})`;
    test(`encode - ${VERSION_NAMES[version]} - ${name} throws ${what}`, () => {
      assert.throws(() => encode(packet, version), (error: unknown) => {
        if (expect === TYPE_ERROR) {
          assert.ok(error instanceof TypeError, `expected a TypeError, got ${error}`);
        } else {
          assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${error}`);
          assert.equal(error.statementId, expect.statementId, error.message);
        }
        return true;
      });
    });
  }

  test("encodeInto - a refused packet leaves what the writer already holds untouched", () => {
    const writer = new Writer();
    encodeInto(writer, { type: "pingreq" }, 4);
    assert.throws(() => encodeInto(writer, publish({ topic: "a/+" }), 4), ProtocolError);
    encodeInto(writer, { type: "pingresp" }, 4);
    assert.deepEqual(writer.bytes(), new Uint8Array([0xc0, 0x00, 0xd0, 0x00]));
  });
});

describe("packetSize - refuses what encode refuses, with the same error", () => {
  for (const { name, version, packet } of ROWS) {
    test(`packetSize - ${VERSION_NAMES[version]} - ${name} throws as encode does`, () => {
      let expected: unknown;
      try {
        encode(packet, version);
      } catch (error) {
        expected = error;
      }
      assert.ok(expected instanceof Error, "encode threw");
      assert.throws(() => packetSize(packet, version), (error: unknown) => {
        assert.ok(error instanceof Error, `expected an Error, got ${error}`);
        assert.equal(error.constructor, expected.constructor);
        assert.equal(error.message, expected.message);
        if (error instanceof ProtocolError && expected instanceof ProtocolError) {
          assert.equal(error.statementId, expected.statementId);
          assert.equal(error.reasonCode, expected.reasonCode);
        }
        return true;
      });
    });
  }

  test("packetSize - a PUBLISH beyond the largest Remaining Length throws as encode does", () => {
    // A payload that claims 268435456 bytes without holding them.
    class HugePayload extends Uint8Array {
      override get length(): number {
        return 268_435_456;
      }
    }
    const packet = publish({ payload: new HugePayload(0) });
    assert.throws(() => encode(packet, 4), /MQTT allows at most 268435455/);
    assert.throws(() => packetSize(packet, 4), /MQTT allows at most 268435455/);
  });
});

describe("encode - accepts the edges of what is allowed", () => {
  const accepted: [string, ProtocolVersion, Packet][] = [
    [
      "an MQTT 3.1 client id of 23 characters",
      3,
      connect(3, { clientId: "abcdefghijklmnopqrstuvw" }),
    ],
    ["an empty client id with a clean session", 4, connect(4, { clientId: "" })],
    ["an empty client id without clean start", 5, connect(5, { clientId: "", clean: false })],
    ["a password without a user name", 5, connect(5, { password: utf8("p") })],
    ["packet id 1 and 65535", 4, publish({ qos: 1, packetId: 65535 })],
    ["a topic of 65535 bytes", 4, publish({ topic: "a".repeat(65535) })],
    ["an empty topic with a topic alias", 5, publish({ topic: "", properties: { topicAlias: 1 } })],
    ["No Local on a filter that is not shared", 5, {
      type: "subscribe",
      packetId: 1,
      subscriptions: [{ topicFilter: "share/g/a", qos: 0, noLocal: true }],
    }],
    ["MQTT 5 options left at their defaults on MQTT 3.1.1", 4, {
      type: "subscribe",
      packetId: 1,
      subscriptions: [{
        topicFilter: "a",
        qos: 0,
        noLocal: false,
        retainAsPublished: false,
        retainHandling: 0,
      }],
    }],
    ["subscription identifier 268435455", 5, {
      type: "subscribe",
      packetId: 1,
      subscriptions: [{ topicFilter: "a", qos: 0 }],
      properties: { subscriptionIdentifier: 268435455 },
    }],
  ];
  for (const [name, version, packet] of accepted) {
    test(`encode - ${VERSION_NAMES[version]} - ${name} is accepted`, () => {
      assert.ok(encode(packet, version).length >= 2);
    });
    test(`packetSize - ${VERSION_NAMES[version]} - ${name} measures as encode writes`, () => {
      assert.equal(packetSize(packet, version), encode(packet, version).length);
    });
  }
});
