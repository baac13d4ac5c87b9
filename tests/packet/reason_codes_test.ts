/**
 * Reason codes and return codes: every value from 0 to 255 on every packet that carries one is
 * accepted exactly when MQTT 5.0 Table 2-6 (or the 3.1.1 and 3.1 tables) lists it for that packet.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  CONNACK_RETURN_CODES,
  connackReasonName,
  ConnackReturnCode,
  decode,
  encode,
  type Packet,
  ProtocolError,
  type ProtocolVersion,
  REASON_CODES,
  ReasonCode,
  reasonName,
  SubackReturnCode,
} from "../../src/packet/mod.ts";
import { SPEC_REASON_CODES } from "./generate.ts";

/** Per packet: the bytes carrying `code`, the packet they decode to, the statement a bad code breaks. */
const CARRIERS: Record<
  string,
  { bytes: (code: number) => Uint8Array; packet: (code: number) => Packet; statementId: string }
> = {
  connack: {
    bytes: (code) => new Uint8Array([0x20, 3, 0, code, 0]),
    packet: (code) => ({ type: "connack", sessionPresent: false, reasonCode: code }),
    statementId: "MQTT-3.2.2-8",
  },
  puback: {
    bytes: (code) => new Uint8Array([0x40, 3, 0, 1, code]),
    packet: (code) => ({ type: "puback", packetId: 1, reasonCode: code }),
    statementId: "MQTT-3.4.2-1",
  },
  pubrec: {
    bytes: (code) => new Uint8Array([0x50, 3, 0, 1, code]),
    packet: (code) => ({ type: "pubrec", packetId: 1, reasonCode: code }),
    statementId: "MQTT-3.5.2-1",
  },
  pubrel: {
    bytes: (code) => new Uint8Array([0x62, 3, 0, 1, code]),
    packet: (code) => ({ type: "pubrel", packetId: 1, reasonCode: code }),
    statementId: "MQTT-3.6.2-1",
  },
  pubcomp: {
    bytes: (code) => new Uint8Array([0x70, 3, 0, 1, code]),
    packet: (code) => ({ type: "pubcomp", packetId: 1, reasonCode: code }),
    statementId: "MQTT-3.7.2-1",
  },
  suback: {
    bytes: (code) => new Uint8Array([0x90, 4, 0, 1, 0, code]),
    packet: (code) => ({ type: "suback", packetId: 1, reasonCodes: [code] }),
    statementId: "MQTT-3.9.3-2",
  },
  unsuback: {
    bytes: (code) => new Uint8Array([0xb0, 4, 0, 1, 0, code]),
    packet: (code) => ({ type: "unsuback", packetId: 1, reasonCodes: [code] }),
    statementId: "MQTT-3.11.3-2",
  },
  disconnect: {
    bytes: (code) => new Uint8Array([0xe0, 1, code]),
    packet: (code) => ({ type: "disconnect", reasonCode: code }),
    statementId: "MQTT-3.14.2-1",
  },
  auth: {
    bytes: (code) => new Uint8Array([0xf0, 1, code]),
    packet: (code) => ({ type: "auth", reasonCode: code }),
    statementId: "MQTT-3.15.2-1",
  },
};

describe("REASON_CODES", () => {
  test("REASON_CODES - the codec's table is MQTT 5.0 Table 2-6, packet by packet", () => {
    for (const [type, codes] of Object.entries(SPEC_REASON_CODES)) {
      const listed = REASON_CODES.filter((row) => row.packets.includes(type as Packet["type"]))
        .map((row) => row.code)
        .sort((a, b) => a - b);
      assert.deepEqual(listed, [...codes], type);
    }
  });

  test("reasonName - names a code as it reads on each packet", () => {
    assert.equal(reasonName(0x00, "disconnect"), "Normal disconnection");
    assert.equal(reasonName(0x00, "suback"), "Granted QoS 0");
    assert.equal(reasonName(0x00, "puback"), "Success");
    assert.equal(reasonName(0x10, "puback"), "No matching subscribers");
    assert.equal(reasonName(0x10, "suback"), undefined);
    assert.equal(reasonName(0x92, "pubcomp"), "Packet Identifier not found");
    assert.equal(reasonName(0xa2, "disconnect"), "Wildcard Subscriptions not supported");
  });

  test("CONNACK_RETURN_CODES - the six codes of MQTT 3.1.1 Table 3.1", () => {
    assert.equal(CONNACK_RETURN_CODES.length, 6);
    assert.equal(CONNACK_RETURN_CODES[0], "Connection Accepted");
    assert.equal(CONNACK_RETURN_CODES[5], "Connection Refused, not authorized");
  });

  test("ReasonCode - one constant per row of Table 2-6, with the row's value", () => {
    const constants = Object.entries(ReasonCode);
    assert.equal(constants.length, REASON_CODES.length);
    assert.deepEqual(
      constants.map(([, code]) => code),
      REASON_CODES.map((row) => row.code),
    );
    assert.equal(ReasonCode.NoMatchingSubscribers, 0x10);
    assert.equal(ReasonCode.WildcardSubscriptionsNotSupported, 0xa2);
  });

  test("ConnackReturnCode and SubackReturnCode - the MQTT 3.1.1 return codes by name", () => {
    assert.deepEqual(Object.values(ConnackReturnCode), [0, 1, 2, 3, 4, 5]);
    assert.equal(CONNACK_RETURN_CODES.length, Object.keys(ConnackReturnCode).length);
    assert.deepEqual(Object.values(SubackReturnCode), [0, 1, 2, 0x80]);
  });

  test("connackReasonName - the short 3.x names and the MQTT 5 names", () => {
    assert.equal(connackReasonName(ConnackReturnCode.NotAuthorized, 4), "Not Authorized");
    assert.equal(
      connackReasonName(ConnackReturnCode.BadUserNameOrPassword, 3),
      "Bad User Name or Password",
    );
    assert.equal(connackReasonName(6, 4), "Unknown Return Code");
    assert.equal(connackReasonName(ReasonCode.NotAuthorized, 5), "Not authorized");
    assert.equal(connackReasonName(ReasonCode.NoMatchingSubscribers, 5), "Unknown Reason Code");
  });
});

describe("decode and encode - MQTT 5.0 reason codes", () => {
  for (const [type, carrier] of Object.entries(CARRIERS)) {
    const valid = new Set(SPEC_REASON_CODES[type]);
    test(`${type.toUpperCase()} - the ${valid.size} codes of Table 2-6 and no other byte value`, () => {
      for (let code = 0; code < 256; code++) {
        const bytes = carrier.bytes(code);
        if (valid.has(code)) {
          assert.deepEqual(decode(bytes, 5), carrier.packet(code), `0x${code.toString(16)}`);
          assert.ok(encode(carrier.packet(code), 5).length > 0);
          continue;
        }
        assert.throws(() => decode(bytes, 5), (error: unknown) => {
          assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${error}`);
          assert.equal(error.statementId, carrier.statementId);
          return true;
        }, `0x${code.toString(16)}`);
        assert.throws(() => encode(carrier.packet(code), 5), ProtocolError);
      }
    });
  }
});

describe("decode and encode - MQTT 3.x return codes", () => {
  const cases: [
    string,
    ProtocolVersion,
    number[],
    (code: number) => Uint8Array,
    (code: number) => Packet,
    string | undefined,
  ][] = [
    [
      "CONNACK - MQTT 3.1.1 return codes are 0 to 5",
      4,
      [0, 1, 2, 3, 4, 5],
      (code) => new Uint8Array([0x20, 2, 0, code]),
      (code) => ({ type: "connack", sessionPresent: false, reasonCode: code }),
      undefined,
    ],
    [
      "CONNACK - MQTT 3.1 return codes are 0 to 5",
      3,
      [0, 1, 2, 3, 4, 5],
      (code) => new Uint8Array([0x20, 2, 0, code]),
      (code) => ({ type: "connack", sessionPresent: false, reasonCode: code }),
      undefined,
    ],
    [
      "SUBACK - MQTT 3.1.1 return codes are 0, 1, 2 and 0x80",
      4,
      [0, 1, 2, 0x80],
      (code) => new Uint8Array([0x90, 3, 0, 1, code]),
      (code) => ({ type: "suback", packetId: 1, reasonCodes: [code] }),
      "MQTT-3.9.3-2",
    ],
    [
      "SUBACK - MQTT 3.1 return codes are the granted QoS 0, 1 and 2",
      3,
      [0, 1, 2],
      (code) => new Uint8Array([0x90, 3, 0, 1, code]),
      (code) => ({ type: "suback", packetId: 1, reasonCodes: [code] }),
      undefined,
    ],
  ];
  for (const [name, version, codes, bytes, packet, statementId] of cases) {
    test(`${name}, no other byte value`, () => {
      for (let code = 0; code < 256; code++) {
        if (codes.includes(code)) {
          assert.deepEqual(decode(bytes(code), version), packet(code));
          assert.deepEqual(encode(packet(code), version), bytes(code));
          continue;
        }
        assert.throws(() => decode(bytes(code), version), (error: unknown) => {
          assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${error}`);
          assert.equal(error.statementId, statementId);
          return true;
        }, `0x${code.toString(16)}`);
        assert.throws(() => encode(packet(code), version), ProtocolError);
      }
    });
  }
});
