/**
 * Malformed and illegal input: every row must make the decoder throw a ProtocolError citing the
 * statement of the version it was decoded for (MQTT 3.1 has no numbered statements, so it cites
 * MQTT 3.1.1's), or no id where the specification gives the rule no number.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  decode,
  MqttDecoderStream,
  PacketDecoder,
  ProtocolError,
  type ProtocolVersion,
} from "../../src/packet/mod.ts";
import { concat, hex, utf8 } from "./generate.ts";

const MALFORMED_PACKET = 0x81;
const PROTOCOL_ERROR = 0x82;
const UNSUPPORTED_PROTOCOL_VERSION = 0x84;
const TOPIC_ALIAS_INVALID = 0x94;
const PACKET_TOO_LARGE = 0x95;

interface Row {
  /** The kind of malformation; several rows may show one kind. */
  kind: string;
  /** What the bytes are. */
  name: string;
  version: ProtocolVersion;
  bytes: Uint8Array;
  /** The statement id the error must carry; `undefined` where the rule has no number. */
  statementId: string | undefined;
  /** The MQTT 5 reason code the error must carry, where it matters. */
  reasonCode?: number;
  /** False when the bytes are not one whole packet, so a stream would wait for more. */
  whole?: boolean;
}

/** Asserts that `fn` throws a ProtocolError with `statementId` (and `reasonCode`, if given). */
export function assertProtocolError(
  fn: () => unknown,
  statementId: string | undefined,
  reasonCode?: number,
): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${error}`);
    assert.equal(error.statementId, statementId, error.message);
    if (reasonCode !== undefined) assert.equal(error.reasonCode, reasonCode, error.message);
    return true;
  });
}

/** A v3/v4/v5 CONNECT with `flags`, keepalive 0 and client id "", and nothing after it. */
function connect(version: ProtocolVersion, flags: number, rest = ""): Uint8Array {
  const name = version === 3 ? "00 06 4d 51 49 73 64 70" : "00 04 4d 51 54 54";
  const body = hex(`${name} 0${version} ${flags.toString(16).padStart(2, "0")} 00 00
    ${version === 5 ? "00" : ""} 00 00 ${rest}`);
  return concat(new Uint8Array([0x10, body.length]), body);
}

/** A PUBLISH at QoS 0 whose topic is the raw bytes `topic`. */
function publishTopic(version: ProtocolVersion, topic: Uint8Array): Uint8Array {
  const body = concat(
    new Uint8Array([topic.length >> 8, topic.length & 0xff]),
    topic,
    version === 5 ? new Uint8Array([0]) : new Uint8Array(0),
  );
  return concat(new Uint8Array([0x30, body.length]), body);
}

const id = (version: ProtocolVersion, v311: string | undefined, v5: string | undefined) =>
  version === 5 ? v5 : v311;

const ROWS: Row[] = [];

for (const version of [3, 4, 5] as const) {
  const v5 = version === 5;
  const props = v5 ? "00" : ""; // an empty MQTT 5 property list
  const pl = v5 ? 1 : 0; // its length
  const rl = (n: number) => (n + pl).toString(16).padStart(2, "0");
  const add = (row: Omit<Row, "version">) => ROWS.push({ ...row, version });

  // ------------------------------------------------------------------------ fixed header
  add({
    kind: "Remaining Length of five bytes",
    name: "a PUBLISH whose Remaining Length runs to a fifth byte",
    bytes: hex(`30 ff ff ff ff 01`),
    statementId: undefined,
    reasonCode: MALFORMED_PACKET,
  });
  add({
    kind: "reserved packet type 0",
    name: "packet type 0",
    bytes: hex(`00 00`),
    statementId: undefined,
  });
  add({
    kind: "fixed header flags of PUBREL",
    name: "PUBREL with flags 0000",
    bytes: hex(`60 02 00 01`),
    statementId: "MQTT-3.6.1-1",
  });
  add({
    kind: "fixed header flags of SUBSCRIBE",
    name: "SUBSCRIBE with flags 0000",
    bytes: hex(`80 ${rl(6)} 00 01 ${props} 00 01 61 00`),
    statementId: "MQTT-3.8.1-1",
  });
  add({
    kind: "fixed header flags of UNSUBSCRIBE",
    name: "UNSUBSCRIBE with flags 0011",
    bytes: hex(`a3 ${rl(5)} 00 01 ${props} 00 01 61`),
    statementId: "MQTT-3.10.1-1",
  });
  add({
    kind: "fixed header flags of other packets",
    name: "PUBACK with flags 0001",
    bytes: hex(`41 02 00 01`),
    statementId: id(version, "MQTT-2.2.2-1", "MQTT-2.1.3-1"),
  });
  add({
    kind: "fixed header flags of other packets",
    name: "CONNECT with flags 1000",
    bytes: (() => {
      const bytes = connect(version, 0x02);
      bytes[0] = 0x18;
      return bytes;
    })(),
    statementId: id(version, "MQTT-2.2.2-1", "MQTT-2.1.3-1"),
  });
  add({
    kind: "fixed header flags of other packets",
    name: "CONNACK with flags 0010",
    bytes: hex(`22 ${rl(2)} 00 00 ${props}`),
    statementId: id(version, "MQTT-2.2.2-1", "MQTT-2.1.3-1"),
  });
  add({
    kind: "fixed header flags of other packets",
    name: "PUBREC with DUP",
    bytes: hex(`58 02 00 01`),
    statementId: id(version, "MQTT-2.2.2-1", "MQTT-2.1.3-1"),
  });
  add({
    kind: "fixed header flags of other packets",
    name: "PUBCOMP with flags 0010",
    bytes: hex(`72 02 00 01`),
    statementId: id(version, "MQTT-2.2.2-1", "MQTT-2.1.3-1"),
  });
  add({
    kind: "fixed header flags of other packets",
    name: "SUBACK with flags 0010",
    bytes: hex(`92 ${rl(3)} 00 01 ${props} 00`),
    statementId: id(version, "MQTT-2.2.2-1", "MQTT-2.1.3-1"),
  });
  add({
    kind: "fixed header flags of other packets",
    name: "UNSUBACK with flags 0100",
    bytes: hex(`b4 02 00 01`),
    statementId: id(version, "MQTT-2.2.2-1", "MQTT-2.1.3-1"),
  });
  add({
    kind: "fixed header flags of other packets",
    name: "PINGREQ with flags 1000",
    bytes: hex(`c8 00`),
    statementId: id(version, "MQTT-2.2.2-1", "MQTT-2.1.3-1"),
  });
  add({
    kind: "fixed header flags of other packets",
    name: "PINGRESP with flags 0001",
    bytes: hex(`d1 00`),
    statementId: id(version, "MQTT-2.2.2-1", "MQTT-2.1.3-1"),
  });
  add({
    kind: "fixed header flags of DISCONNECT",
    name: "DISCONNECT with flags 0010",
    bytes: hex(`e2 00`),
    statementId: "MQTT-3.14.1-1", // the same id in 3.1.1 and 5.0
  });
  if (version === 3) {
    // MQTT 3.1 lets PUBREL, SUBSCRIBE and UNSUBSCRIBE carry DUP, nothing else.
    add({
      kind: "fixed header flags of PUBREL",
      name: "PUBREL with RETAIN, which MQTT 3.1's DUP allowance does not cover",
      bytes: hex(`63 02 00 01`),
      statementId: "MQTT-3.6.1-1",
    });
    add({
      kind: "fixed header flags of SUBSCRIBE",
      name: "SUBSCRIBE with DUP and QoS 2, which MQTT 3.1 does not allow",
      bytes: hex(`8c 06 00 01 00 01 61 00`),
      statementId: "MQTT-3.8.1-1",
    });
  } else {
    add({
      kind: "fixed header flags of PUBREL",
      name: "PUBREL with DUP, which only MQTT 3.1 allows",
      bytes: hex(`6a 02 00 01`),
      statementId: "MQTT-3.6.1-1",
    });
    add({
      kind: "fixed header flags of SUBSCRIBE",
      name: "SUBSCRIBE with DUP, which only MQTT 3.1 allows",
      bytes: hex(`8a ${rl(6)} 00 01 ${props} 00 01 61 00`),
      statementId: "MQTT-3.8.1-1",
    });
    add({
      kind: "fixed header flags of UNSUBSCRIBE",
      name: "UNSUBSCRIBE with DUP, which only MQTT 3.1 allows",
      bytes: hex(`aa ${rl(5)} 00 01 ${props} 00 01 61`),
      statementId: "MQTT-3.10.1-1",
    });
  }
  if (v5) {
    add({
      kind: "Remaining Length not in the fewest bytes",
      name: "PINGREQ with Remaining Length 0 written in two bytes",
      bytes: hex(`c0 80 00`),
      statementId: "MQTT-1.5.5-1",
      reasonCode: MALFORMED_PACKET,
    });
    add({
      kind: "Remaining Length not in the fewest bytes",
      name: "PUBACK with Remaining Length 2 written in three bytes",
      bytes: hex(`40 82 80 00 00 01`),
      statementId: "MQTT-1.5.5-1",
    });
    add({
      kind: "fixed header flags of AUTH",
      name: "AUTH with flags 0001",
      bytes: hex(`f1 00`),
      statementId: "MQTT-3.15.1-1",
    });
  } else {
    add({
      kind: "reserved packet type 15 before MQTT 5 (AUTH)",
      name: "an AUTH, packet type 15, before MQTT 5",
      bytes: hex(`f0 00`),
      statementId: undefined,
    });
    add({
      kind: "reserved packet type 15 before MQTT 5 (AUTH)",
      name: "an AUTH with Continue authentication before MQTT 5",
      bytes: hex(`f0 02 18 00`),
      statementId: undefined,
    });
  }

  // ------------------------------------------------------------------------ PUBLISH
  add({
    kind: "PUBLISH at QoS 3",
    name: "PUBLISH with both QoS bits set",
    bytes: hex(`36 ${rl(5)} 00 01 61 00 01 ${props}`),
    statementId: "MQTT-3.3.1-4",
  });
  add({
    kind: "DUP at QoS 0",
    name: "PUBLISH with DUP at QoS 0",
    bytes: hex(`38 ${rl(3)} 00 01 61 ${props}`),
    statementId: "MQTT-3.3.1-2",
  });
  add({
    kind: "packet id 0",
    name: "PUBLISH at QoS 1 with packet id 0",
    bytes: hex(`32 ${rl(5)} 00 01 61 00 00 ${props}`),
    statementId: id(version, "MQTT-2.3.1-1", "MQTT-2.2.1-3"),
  });
  add({
    kind: "packet id 0",
    name: "PUBLISH at QoS 2 with packet id 0",
    bytes: hex(`34 ${rl(5)} 00 01 61 00 00 ${props}`),
    statementId: id(version, "MQTT-2.3.1-1", "MQTT-2.2.1-3"),
  });
  add({
    kind: "wildcard in a PUBLISH topic",
    name: "PUBLISH to a/#",
    bytes: hex(`30 ${rl(5)} 00 03 61 2f 23 ${props}`),
    statementId: "MQTT-3.3.2-2",
    reasonCode: 0x90,
  });
  add({
    kind: "wildcard in a PUBLISH topic",
    name: "PUBLISH to +/a",
    bytes: hex(`30 ${rl(5)} 00 03 2b 2f 61 ${props}`),
    statementId: "MQTT-3.3.2-2",
  });
  add({
    kind: "empty PUBLISH topic",
    name: v5 ? "PUBLISH with an empty topic and no topic alias" : "PUBLISH with an empty topic",
    bytes: hex(`30 ${rl(2)} 00 00 ${props}`),
    // MQTT 5 makes it a Protocol Error in prose, without a number.
    statementId: id(version, "MQTT-4.7.3-1", undefined),
    reasonCode: PROTOCOL_ERROR,
  });
  add({
    kind: "string length past the end",
    name: "PUBLISH whose topic length runs past the end of the packet",
    bytes: hex(`30 04 00 05 61 62`),
    statementId: undefined,
  });
  add({
    kind: "U+0000 in a string",
    name: "PUBLISH to a topic with U+0000 in it",
    bytes: publishTopic(version, hex(`61 00 62`)),
    statementId: id(version, "MQTT-1.5.3-2", "MQTT-1.5.4-2"),
  });
  add({
    kind: "U+0000 in a string",
    name: "PUBLISH to a 40-byte topic with U+0000 at its end",
    bytes: publishTopic(version, concat(utf8("a".repeat(39)), hex(`00`))),
    statementId: id(version, "MQTT-1.5.3-2", "MQTT-1.5.4-2"),
  });
  const illFormed: [string, string][] = [
    ["an overlong encoding of / (c0 af)", "61 c0 af"],
    ["an overlong encoding of U+0000 (e0 80 80)", "e0 80 80"],
    ["a 3-byte character cut short (e6 97)", "61 e6 97"],
    ["a 4-byte character cut short (f0 9f 98)", "f0 9f 98"],
    ["an encoded surrogate U+D800 (ed a0 80)", "ed a0 80"],
    ["an encoded surrogate U+DFFF (ed bf bf)", "61 ed bf bf"],
    ["a continuation byte alone (80)", "80"],
    ["a code point above U+10FFFF (f4 90 80 80)", "f4 90 80 80"],
    ["the byte ff", "ff"],
  ];
  for (const [what, topic] of illFormed) {
    add({
      kind: "malformed UTF-8",
      name: `PUBLISH to a topic with ${what}`,
      bytes: publishTopic(version, hex(topic)),
      statementId: id(version, "MQTT-1.5.3-1", "MQTT-1.5.4-1"),
    });
  }
  add({
    kind: "malformed UTF-8",
    name: "PUBLISH to a 40-byte topic with an encoded surrogate at its end",
    bytes: publishTopic(version, concat(utf8("a".repeat(37)), hex(`ed a0 80`))),
    statementId: id(version, "MQTT-1.5.3-1", "MQTT-1.5.4-1"),
  });

  // ------------------------------------------------------------------------ acks
  for (const [type, first] of [["PUBACK", "40"], ["PUBREC", "50"], ["PUBREL", "62"]] as const) {
    add({
      kind: "packet id 0",
      name: `${type} with packet id 0`,
      bytes: hex(`${first} 02 00 00`),
      statementId: id(version, "MQTT-2.3.1-1", "MQTT-2.2.1-3"),
    });
  }
  add({
    kind: "packet id 0",
    name: "PUBCOMP with packet id 0",
    bytes: hex(`70 02 00 00`),
    statementId: id(version, "MQTT-2.3.1-1", "MQTT-2.2.1-3"),
  });
  add({
    kind: "truncated packet",
    name: "PUBACK with a one-byte packet id",
    bytes: hex(`40 01 00`),
    statementId: undefined,
  });

  // ------------------------------------------------------------------------ SUBSCRIBE
  add({
    kind: "packet id 0",
    name: "SUBSCRIBE with packet id 0",
    bytes: hex(`82 ${rl(6)} 00 00 ${props} 00 01 61 00`),
    statementId: id(version, "MQTT-2.3.1-1", "MQTT-2.2.1-3"),
  });
  add({
    kind: "SUBSCRIBE without filters",
    name: "SUBSCRIBE with no topic filter",
    bytes: hex(`82 ${rl(2)} 00 01 ${props}`),
    statementId: id(version, "MQTT-3.8.3-3", "MQTT-3.8.3-2"),
  });
  add({
    kind: "QoS 3 requested",
    name: "SUBSCRIBE asking for QoS 3",
    bytes: hex(`82 ${rl(6)} 00 01 ${props} 00 01 61 03`),
    // 3.1.1: malformed [MQTT-3-8.3-4]; 5.0: a Protocol Error in prose, without a number.
    statementId: id(version, "MQTT-3.8.3-4", undefined),
    reasonCode: v5 ? PROTOCOL_ERROR : MALFORMED_PACKET,
  });
  add({
    kind: "truncated packet",
    name: "SUBSCRIBE whose last filter has no options byte",
    bytes: hex(`82 ${rl(5)} 00 01 ${props} 00 01 61`),
    statementId: undefined,
  });
  add({
    kind: "malformed UTF-8",
    name: "SUBSCRIBE to a filter with an overlong encoding",
    bytes: hex(`82 ${rl(7)} 00 01 ${props} 00 02 c0 af 00`),
    statementId: id(version, "MQTT-1.5.3-1", "MQTT-1.5.4-1"),
  });
  if (v5) {
    for (const options of ["40", "80"]) {
      add({
        kind: "reserved subscription option bits",
        name: `SUBSCRIBE with options ${options}`,
        bytes: hex(`82 07 00 01 00 00 01 61 ${options}`),
        statementId: "MQTT-3.8.3-5",
      });
    }
    add({
      kind: "retain handling 3",
      name: "SUBSCRIBE with Retain Handling 3",
      bytes: hex(`82 07 00 01 00 00 01 61 30`),
      statementId: undefined,
      reasonCode: PROTOCOL_ERROR,
    });
    add({
      kind: "No Local on a shared subscription",
      name: "SUBSCRIBE to $share/g/c with No Local",
      bytes: hex(`
        82 10  00 01  00                       // SUBSCRIBE, id 1, no properties
        00 0a 24 73 68 61 72 65 2f 67 2f 63  // "$share/g/c"
        04                                   // options: No Local
      `),
      statementId: "MQTT-3.8.3-4",
      reasonCode: PROTOCOL_ERROR,
    });
  } else {
    for (const options of ["04", "08", "10", "40", "80"]) {
      add({
        kind: "reserved subscription option bits",
        name: `SUBSCRIBE with options ${options}, bits reserved before MQTT 5`,
        bytes: hex(`82 06 00 01 00 01 61 ${options}`),
        statementId: "MQTT-3.8.3-4",
      });
    }
  }

  // ------------------------------------------------------------------------ SUBACK
  add({
    kind: "packet id 0",
    name: "SUBACK with packet id 0",
    bytes: hex(`90 ${rl(3)} 00 00 ${props} 00`),
    statementId: id(version, "MQTT-2.3.1-1", "MQTT-2.2.1-3"),
  });
  add({
    kind: "SUBACK without return codes",
    name: "SUBACK with no return code",
    bytes: hex(`90 ${rl(2)} 00 01 ${props}`),
    statementId: undefined,
  });
  add({
    kind: "reason code not valid for the packet",
    name: "SUBACK with return code 3",
    bytes: hex(`90 ${rl(3)} 00 01 ${props} 03`),
    // MQTT 3.1 defines only 0, 1 and 2, without a numbered statement.
    statementId: version === 3 ? undefined : "MQTT-3.9.3-2",
  });
  if (version === 3) {
    add({
      kind: "reason code not valid for the packet",
      name: "SUBACK with 0x80, which MQTT 3.1 does not define",
      bytes: hex(`90 03 00 01 80`),
      statementId: undefined,
    });
  }

  // ------------------------------------------------------------------------ UNSUBSCRIBE, UNSUBACK
  add({
    kind: "packet id 0",
    name: "UNSUBSCRIBE with packet id 0",
    bytes: hex(`a2 ${rl(5)} 00 00 ${props} 00 01 61`),
    statementId: id(version, "MQTT-2.3.1-1", "MQTT-2.2.1-3"),
  });
  add({
    kind: "UNSUBSCRIBE without filters",
    name: "UNSUBSCRIBE with no topic filter",
    bytes: hex(`a2 ${rl(2)} 00 01 ${props}`),
    statementId: "MQTT-3.10.3-2",
  });
  add({
    kind: "packet id 0",
    name: "UNSUBACK with packet id 0",
    bytes: v5 ? hex(`b0 04 00 00 00 00`) : hex(`b0 02 00 00`),
    statementId: id(version, "MQTT-2.3.1-1", "MQTT-2.2.1-3"),
  });

  // ------------------------------------------------------------------------ CONNECT
  add({
    kind: "CONNECT reserved flag",
    name: "CONNECT with the reserved flag set",
    bytes: connect(version, 0x03),
    statementId: "MQTT-3.1.2-3",
  });
  add({
    kind: "will QoS without will flag",
    name: "CONNECT with Will QoS 1 and no Will Flag",
    bytes: connect(version, 0x0a),
    statementId: id(version, "MQTT-3.1.2-13", "MQTT-3.1.2-11"),
  });
  add({
    kind: "will QoS without will flag",
    name: "CONNECT with Will Retain and no Will Flag",
    bytes: connect(version, 0x22),
    statementId: id(version, "MQTT-3.1.2-15", "MQTT-3.1.2-13"),
  });
  add({
    kind: "will QoS 3",
    name: "CONNECT with Will QoS 3",
    bytes: connect(version, 0x1e, "00 01 77 00 00"),
    statementId: id(version, "MQTT-3.1.2-14", "MQTT-3.1.2-12"),
  });
  add({
    kind: "truncated packet",
    name: "CONNECT with the Will Flag and no will topic",
    bytes: connect(version, 0x06),
    statementId: undefined,
  });
  add({
    kind: "truncated packet",
    name: "CONNECT with the User Name Flag and no user name",
    bytes: connect(version, 0x82),
    statementId: undefined,
  });
  add({
    kind: "string length past the end",
    name: "CONNECT whose password length runs past the end",
    bytes: connect(version, 0xc2, "00 01 75 00 09 70"),
    statementId: undefined,
  });
  add({
    kind: "malformed UTF-8",
    name: "CONNECT whose client id holds an encoded surrogate",
    bytes: (() => {
      const bytes = connect(version, 0x02, "");
      // Replace the empty client id "00 00" with one of three bytes.
      return concat(
        new Uint8Array([0x10, bytes[1] + 3]),
        bytes.subarray(2, bytes.length - 2),
        hex(`00 03 ed b0 80`),
      );
    })(),
    statementId: id(version, "MQTT-1.5.3-1", "MQTT-1.5.4-1"),
  });
  if (version !== 5) {
    add({
      kind: "password without user name (before MQTT 5)",
      name: "CONNECT with the Password Flag and no User Name Flag",
      bytes: connect(version, 0x42, "00 01 70"),
      statementId: "MQTT-3.1.2-22",
    });
  }
  add({
    kind: "unknown protocol name",
    name: 'CONNECT for the protocol "MQTX"',
    bytes: hex(`10 0c  00 04 4d 51 54 58  04  02  00 00  00 00`),
    statementId: "MQTT-3.1.2-1",
    reasonCode: UNSUPPORTED_PROTOCOL_VERSION,
  });
  add({
    kind: "unknown protocol level",
    name: 'CONNECT for "MQTT" level 6',
    bytes: hex(`10 0c  00 04 4d 51 54 54  06  02  00 00  00 00`),
    statementId: "MQTT-3.1.2-2",
    reasonCode: UNSUPPORTED_PROTOCOL_VERSION,
  });
  add({
    kind: "unknown protocol level",
    name: 'CONNECT for "MQTT" level 3, which is "MQIsdp"\'s',
    bytes: hex(`10 0c  00 04 4d 51 54 54  03  02  00 00  00 00`),
    statementId: "MQTT-3.1.2-2",
  });
  add({
    kind: "unknown protocol level",
    name: 'CONNECT for "MQIsdp" level 4',
    bytes: hex(`10 0e  00 06 4d 51 49 73 64 70  04  02  00 00  00 00`),
    statementId: "MQTT-3.1.2-2",
  });

  // ------------------------------------------------------------------------ CONNACK
  // MQTT 3.1 has no session present and no acknowledge flags: it ignores that byte (see the
  // vectors), so these two rows are for 3.1.1 and 5.0.
  if (version !== 3) {
    add({
      kind: "CONNACK session present with a refusal",
      name: "CONNACK with session present and a refusing code",
      bytes: v5 ? hex(`20 03 01 80 00`) : hex(`20 02 01 05`),
      statementId: id(version, "MQTT-3.2.2-4", "MQTT-3.2.2-6"),
    });
    add({
      kind: "CONNACK reserved flags",
      name: "CONNACK with acknowledge flag bit 1 set",
      bytes: hex(`20 ${rl(2)} 02 00 ${props}`),
      // A MUST without a number in 3.1.1; [MQTT-3.2.2-1] in 5.0.
      statementId: id(version, undefined, "MQTT-3.2.2-1"),
    });
  }
  add({
    kind: v5 ? "reason code not valid for the packet" : "CONNACK return code 6",
    name: v5 ? "CONNACK with reason code 0x01" : "CONNACK with the reserved return code 6",
    bytes: v5 ? hex(`20 03 00 01 00`) : hex(`20 02 00 06`),
    statementId: id(version, undefined, "MQTT-3.2.2-8"),
  });

  // ------------------------------------------------------------------------ trailing bytes
  add({
    kind: "trailing bytes after a packet",
    name: "PINGREQ with a one-byte body",
    bytes: hex(`c0 01 00`),
    statementId: undefined,
  });
  add({
    kind: "trailing bytes after a packet",
    name: "PINGRESP with a one-byte body",
    bytes: hex(`d0 01 00`),
    statementId: undefined,
  });
  if (!v5) {
    add({
      kind: "trailing bytes after a packet",
      name: "DISCONNECT with a body, which only MQTT 5 has",
      bytes: hex(`e0 01 00`),
      statementId: undefined,
    });
    add({
      kind: "trailing bytes after a packet",
      name: "PUBACK with a reason code, which only MQTT 5 has",
      bytes: hex(`40 03 00 01 00`),
      statementId: undefined,
    });
    add({
      kind: "trailing bytes after a packet",
      name: "UNSUBACK with a reason code, which only MQTT 5 has",
      bytes: hex(`b0 03 00 01 00`),
      statementId: undefined,
    });
    add({
      kind: "trailing bytes after a packet",
      name: "CONNACK with a property length, which only MQTT 5 has",
      bytes: hex(`20 03 00 00 00`),
      statementId: undefined,
    });
  }

  // ------------------------------------------------------------------------ decode() framing
  add({
    kind: "truncated packet",
    name: "a PUBLISH shorter than its Remaining Length",
    bytes: hex(`30 05 00 01 61`),
    statementId: undefined,
    whole: false,
  });
  add({
    kind: "truncated packet",
    name: "one byte",
    bytes: hex(`d0`),
    statementId: undefined,
    whole: false,
  });
  add({
    kind: "truncated packet",
    name: "no bytes at all",
    bytes: new Uint8Array(0),
    statementId: undefined,
    whole: false,
  });
  add({
    kind: "truncated packet",
    name: "a fixed header cut inside its Remaining Length",
    bytes: hex(`30 ff ff`),
    statementId: undefined,
    whole: false,
  });
  add({
    kind: "trailing bytes after a packet",
    name: "a PINGRESP followed by a byte, given to decode as one packet",
    bytes: hex(`d0 00 d0`),
    statementId: undefined,
    whole: false,
  });
}

// ------------------------------------------------------------------------ MQTT 5 only
const V5_ROWS: Omit<Row, "version">[] = [
  {
    kind: "Variable Byte Integer of five bytes",
    name: "SUBSCRIBE whose subscription identifier runs to a fifth byte",
    bytes: hex(`82 0d  00 01  06 0b ff ff ff ff 01  00 01 61 01`),
    statementId: undefined,
  },
  {
    kind: "Variable Byte Integer not in the fewest bytes",
    name: "PUBACK whose property identifier 0x1f is written in two bytes",
    bytes: hex(`40 06  00 01  80  02 9f 00`),
    statementId: "MQTT-1.5.5-1",
  },
  {
    kind: "Variable Byte Integer not in the fewest bytes",
    name: "PUBACK whose property length 0 is written in two bytes",
    bytes: hex(`40 05  00 01  80  80 00`),
    statementId: "MQTT-1.5.5-1",
  },
  {
    kind: "Variable Byte Integer not in the fewest bytes",
    name: "PUBLISH whose subscription identifier 1 is written in two bytes",
    bytes: hex(`30 07  00 01 61  03 0b 81 00`),
    statementId: "MQTT-1.5.5-1",
  },
  {
    kind: "property repeated",
    name: "PUBLISH with two topic aliases",
    bytes: hex(`30 0a  00 01 61  06 23 00 01 23 00 02`),
    statementId: undefined,
    reasonCode: PROTOCOL_ERROR,
  },
  {
    kind: "property repeated",
    name: "PUBACK with two reason strings",
    bytes: hex(`40 0c  00 01  80  08 1f 00 01 61 1f 00 01 62`),
    statementId: undefined,
    reasonCode: PROTOCOL_ERROR,
  },
  {
    kind: "property repeated",
    name: "SUBSCRIBE with two subscription identifiers",
    bytes: hex(`82 0b  00 01  04 0b 01 0b 02  00 01 61 00`),
    statementId: undefined,
    reasonCode: PROTOCOL_ERROR,
  },
  {
    kind: "property not allowed on the packet",
    name: "PUBACK with a topic alias",
    bytes: hex(`40 07  00 01  00  03 23 00 01`),
    statementId: undefined,
    reasonCode: MALFORMED_PACKET,
  },
  {
    kind: "property not allowed on the packet",
    name: "PUBLISH with a session expiry interval",
    bytes: hex(`30 09  00 01 61  05 11 00 00 00 01`),
    statementId: undefined,
    reasonCode: MALFORMED_PACKET,
  },
  {
    kind: "property not allowed on the packet",
    name: "CONNECT with a will delay interval among its own properties",
    bytes: hex(`10 12  00 04 4d 51 54 54  05  02  00 00  05 18 00 00 00 01  00 00`),
    statementId: undefined,
    reasonCode: MALFORMED_PACKET,
  },
  {
    kind: "property not allowed on the packet",
    name: "UNSUBSCRIBE with a subscription identifier",
    bytes: hex(`a2 08  00 01  02 0b 01  00 01 61`),
    statementId: undefined,
    reasonCode: MALFORMED_PACKET,
  },
  {
    kind: "unknown property id",
    name: "PUBACK with property 0x04",
    bytes: hex(`40 06  00 01  00  02 04 00`),
    statementId: undefined,
    reasonCode: MALFORMED_PACKET,
  },
  {
    kind: "unknown property id",
    name: "PUBACK with property 0x00",
    bytes: hex(`40 06  00 01  00  02 00 00`),
    statementId: undefined,
    reasonCode: MALFORMED_PACKET,
  },
  {
    kind: "unknown property id",
    name: "PUBACK with property 128, a two-byte identifier",
    bytes: hex(`40 07  00 01  00  03 80 01 00`),
    statementId: undefined,
    reasonCode: MALFORMED_PACKET,
  },
  {
    kind: "property value out of range",
    name: "PUBLISH with topic alias 0",
    bytes: hex(`30 07  00 01 61  03 23 00 00`),
    statementId: "MQTT-3.3.2-8",
    reasonCode: TOPIC_ALIAS_INVALID,
  },
  {
    kind: "property value out of range",
    name: "CONNACK with receive maximum 0",
    bytes: hex(`20 06  00 00  03 21 00 00`),
    statementId: undefined,
    reasonCode: PROTOCOL_ERROR,
  },
  {
    kind: "property value out of range",
    name: "CONNECT with receive maximum 0",
    bytes: hex(`10 10  00 04 4d 51 54 54  05  02  00 00  03 21 00 00  00 00`),
    statementId: undefined,
    reasonCode: PROTOCOL_ERROR,
  },
  {
    kind: "property value out of range",
    name: "CONNACK with maximum packet size 0",
    bytes: hex(`20 08  00 00  05 27 00 00 00 00`),
    statementId: undefined,
    reasonCode: PROTOCOL_ERROR,
  },
  {
    kind: "property value out of range",
    name: "CONNACK with retain available 2",
    bytes: hex(`20 05  00 00  02 25 02`),
    statementId: undefined,
    reasonCode: PROTOCOL_ERROR,
  },
  {
    kind: "property value out of range",
    name: "CONNECT with request problem information 2",
    bytes: hex(`10 0f  00 04 4d 51 54 54  05  02  00 00  02 17 02  00 00`),
    statementId: undefined,
    reasonCode: PROTOCOL_ERROR,
  },
  {
    kind: "property value out of range",
    name: "PUBLISH with payload format indicator 2",
    bytes: hex(`30 06  00 01 61  02 01 02`),
    statementId: undefined,
    reasonCode: PROTOCOL_ERROR,
  },
  {
    kind: "property value out of range",
    name: "CONNACK with maximum QoS 2",
    bytes: hex(`20 05  00 00  02 24 02`),
    statementId: undefined,
    reasonCode: PROTOCOL_ERROR,
  },
  {
    kind: "property value out of range",
    name: "SUBSCRIBE with subscription identifier 0",
    bytes: hex(`82 09  00 01  02 0b 00  00 01 61 00`),
    statementId: undefined,
    reasonCode: PROTOCOL_ERROR,
  },
  {
    kind: "property value out of range",
    name: "PUBLISH with subscription identifier 0",
    bytes: hex(`30 06  00 01 61  02 0b 00`),
    statementId: undefined,
    reasonCode: PROTOCOL_ERROR,
  },
  {
    kind: "property length past the end",
    name: "PUBACK whose property length runs past the end of the packet",
    bytes: hex(`40 04  00 01  00  05`),
    statementId: undefined,
  },
  {
    kind: "property length past the end",
    name: "CONNACK whose property length runs past the end of the packet",
    bytes: hex(`20 04  00 00  02 25`),
    statementId: undefined,
  },
  {
    kind: "property length past the end",
    name: "PUBLISH whose topic alias runs past the end of its property list",
    bytes: hex(`30 08  00 01 61  01 23 00 01  78`),
    statementId: undefined,
  },
  {
    kind: "string length past the end",
    name: "PUBACK whose reason string runs past the end of the packet",
    bytes: hex(`40 08  00 01  80  04 1f 00 05 61`),
    statementId: undefined,
  },
  {
    kind: "malformed UTF-8",
    name: "PUBLISH with a user property value that is an overlong encoding",
    bytes: hex(`30 0c  00 01 61  08 26 00 01 6b 00 02 c0 80`),
    statementId: "MQTT-1.5.4-1",
  },
  {
    kind: "U+0000 in a string",
    name: "PUBACK with a reason string holding U+0000",
    bytes: hex(`40 08  00 01  80  04 1f 00 01 00`),
    statementId: "MQTT-1.5.4-2",
  },
  {
    kind: "reason code not valid for the packet",
    name: "PUBACK with reason code 0x05",
    bytes: hex(`40 03  00 01  05`),
    statementId: "MQTT-3.4.2-1",
  },
  {
    kind: "reason code not valid for the packet",
    name: "PUBREC with Packet Identifier not found, which is PUBREL's and PUBCOMP's",
    bytes: hex(`50 03  00 01  92`),
    statementId: "MQTT-3.5.2-1",
  },
  {
    kind: "reason code not valid for the packet",
    name: "PUBREL with No matching subscribers, which is PUBACK's and PUBREC's",
    bytes: hex(`62 03  00 01  10`),
    statementId: "MQTT-3.6.2-1",
  },
  {
    kind: "reason code not valid for the packet",
    name: "PUBCOMP with Unspecified error",
    bytes: hex(`70 03  00 01  80`),
    statementId: "MQTT-3.7.2-1",
  },
  {
    kind: "reason code not valid for the packet",
    name: "SUBACK with No matching subscribers",
    bytes: hex(`90 04  00 01  00  10`),
    statementId: "MQTT-3.9.3-2",
  },
  {
    kind: "reason code not valid for the packet",
    name: "UNSUBACK with Granted QoS 1",
    bytes: hex(`b0 04  00 01  00  01`),
    statementId: "MQTT-3.11.3-2",
  },
  {
    kind: "reason code not valid for the packet",
    name: "DISCONNECT with reason code 0x05",
    bytes: hex(`e0 01  05`),
    statementId: "MQTT-3.14.2-1",
  },
  {
    kind: "reason code not valid for the packet",
    name: "DISCONNECT with Client Identifier not valid, which only CONNACK carries",
    bytes: hex(`e0 01  85`),
    statementId: "MQTT-3.14.2-1",
  },
  {
    kind: "reason code not valid for the packet",
    name: "AUTH with reason code 0x01",
    bytes: hex(`f0 01  01`),
    statementId: "MQTT-3.15.2-1",
  },
  {
    kind: "UNSUBACK without reason codes",
    name: "UNSUBACK with no reason code",
    bytes: hex(`b0 03  00 01  00`),
    statementId: undefined,
  },
];
for (const row of V5_ROWS) ROWS.push({ ...row, version: 5 });

const VERSION_NAMES = { 3: "MQTT 3.1", 4: "MQTT 3.1.1", 5: "MQTT 5.0" } as const;

describe("decode - malformed input", () => {
  test("decode - the table covers at least 30 kinds of malformed input", () => {
    assert.ok(new Set(ROWS.map((row) => row.kind)).size >= 30);
  });

  for (const row of ROWS) {
    const { name, version, bytes, statementId, reasonCode } = row;
    const cited = statementId ?? "no statement id";
    test(`decode - ${VERSION_NAMES[version]} - ${name} is rejected (${cited})`, () => {
      assertProtocolError(() => decode(bytes, version), statementId, reasonCode);
    });
    if (row.whole === false) continue;
    test(`PacketDecoder - ${VERSION_NAMES[version]} - ${name} is rejected byte by byte`, () => {
      const decoder = new PacketDecoder({ protocolVersion: version });
      const emitted: unknown[] = [];
      assertProtocolError(
        () => {
          for (let i = 0; i < bytes.length; i++) {
            decoder.push(bytes.subarray(i, i + 1), (packet) => emitted.push(packet));
          }
        },
        statementId,
        reasonCode,
      );
      assert.deepEqual(emitted, []);
    });
  }
});

describe("MqttDecoderStream - malformed input", () => {
  /** Pipes `chunks` through a decoder stream; returns what it emitted and how it ended. */
  async function run(
    chunks: Uint8Array[],
    options: ConstructorParameters<typeof MqttDecoderStream>[0],
  ): Promise<{ packets: unknown[]; error: unknown }> {
    const packets: unknown[] = [];
    try {
      for await (
        const packet of ReadableStream.from(chunks).pipeThrough(new MqttDecoderStream(options))
      ) {
        packets.push(packet);
      }
    } catch (error) {
      return { packets, error };
    }
    return { packets, error: undefined };
  }

  /** Pipes `chunks` through a decoder stream and reads it slowly; returns packets and `truncated`. */
  async function runSlowly(
    chunks: Uint8Array[],
  ): Promise<{ packets: unknown[]; error: unknown; truncated: boolean }> {
    const stream = new MqttDecoderStream({ protocolVersion: 4 });
    const packets: unknown[] = [];
    try {
      for await (const packet of ReadableStream.from(chunks).pipeThrough(stream)) {
        // A consumer that takes a moment per packet: the stream has ended long before it is done.
        for (let i = 0; i < 50; i++) await Promise.resolve();
        packets.push(packet);
      }
    } catch (error) {
      return { packets, error, truncated: stream.truncated };
    }
    return { packets, error: undefined, truncated: stream.truncated };
  }

  // Bytes that stop inside a packet are a lost connection, not a malformed packet: the stream
  // ends after every whole packet before them, and says it was truncated.
  test("MqttDecoderStream - the stream ending in the middle of a packet ends it, truncated, after the whole packets", async () => {
    const { packets, error, truncated } = await runSlowly([
      hex(`d0 00  d0 00  d0 00  30 05 00 01`),
    ]);
    assert.deepEqual(packets, [{ type: "pingresp" }, { type: "pingresp" }, { type: "pingresp" }]);
    assert.equal(error, undefined);
    assert.equal(truncated, true);
  });

  test("MqttDecoderStream - the stream ending inside a fixed header is truncated", async () => {
    const { packets, error, truncated } = await runSlowly([hex(`d0 00`), hex(`30 ff`)]);
    assert.deepEqual(packets, [{ type: "pingresp" }]);
    assert.equal(error, undefined);
    assert.equal(truncated, true);
  });

  test("MqttDecoderStream - the stream ending after a packet's first byte is truncated", async () => {
    const { truncated } = await runSlowly([hex(`d0`)]);
    assert.equal(truncated, true);
  });

  test("MqttDecoderStream - a stream ending between packets is not truncated", async () => {
    const { truncated } = await runSlowly([hex(`d0 00`), hex(`d0 00`)]);
    assert.equal(truncated, false);
  });

  test("MqttDecoderStream - a stream ending between packets is not an error", async () => {
    const { packets, error } = await run([hex(`d0 00`), hex(`d0`), hex(`00`)], {});
    assert.deepEqual(packets, [{ type: "pingresp" }, { type: "pingresp" }]);
    assert.equal(error, undefined);
  });

  test("MqttDecoderStream - a malformed packet errors the stream after the packets before it", async () => {
    const { packets, error } = await run(
      [hex(`d0 00  40 02 00 00  d0 00`)], // PINGRESP, PUBACK with packet id 0, PINGRESP
      { protocolVersion: 4 },
    );
    assert.deepEqual(packets, [{ type: "pingresp" }]);
    assert.ok(error instanceof ProtocolError);
    assert.equal(error.statementId, "MQTT-2.3.1-1");
  });

  for (const version of [4, 5] as const) {
    test(`MqttDecoderStream - ${VERSION_NAMES[version]} - a packet larger than maximumPacketSize is rejected from the first 5 bytes`, async () => {
      // A PUBLISH claiming 268435455 bytes: only its fixed header is ever written.
      const stream = new MqttDecoderStream({ protocolVersion: version, maximumPacketSize: 1024 });
      const writer = stream.writable.getWriter();
      const reader = stream.readable.getReader();
      writer.write(hex(`30 ff ff ff 7f`)).catch(() => {});
      await assert.rejects(reader.read(), (error: unknown) => {
        assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${error}`);
        assert.equal(error.statementId, version === 5 ? "MQTT-3.1.2-24" : undefined);
        assert.equal(error.reasonCode, PACKET_TOO_LARGE);
        return true;
      });
    });
  }

  test("PacketDecoder - a packet larger than maximumPacketSize throws on the chunk that completes its fixed header", () => {
    const decoder = new PacketDecoder({ protocolVersion: 5, maximumPacketSize: 1024 });
    const ignore = () => assert.fail("no packet may be emitted");
    decoder.push(hex(`30`), ignore);
    decoder.push(hex(`ff ff`), ignore);
    assertProtocolError(
      () => decoder.push(hex(`ff 7f`), ignore),
      "MQTT-3.1.2-24",
      PACKET_TOO_LARGE,
    );
  });

  test("PacketDecoder - a packet of exactly maximumPacketSize is accepted, one byte more is not", () => {
    // PUBLISH to "a" at QoS 0 with a 2-byte payload: 2 + 5 = 7 bytes.
    const packet = hex(`30 05 00 01 61 68 69`);
    const packets: unknown[] = [];
    new PacketDecoder({ protocolVersion: 4, maximumPacketSize: 7 }).push(
      packet,
      (p) => packets.push(p),
    );
    assert.equal(packets.length, 1);
    const smaller = new PacketDecoder({ protocolVersion: 4, maximumPacketSize: 6 });
    assertProtocolError(() => smaller.push(packet, () => {}), undefined, PACKET_TOO_LARGE);
  });

  test("PacketDecoder - lowering maximumPacketSize applies to the next packet", () => {
    const decoder = new PacketDecoder({ protocolVersion: 5 });
    const packets: unknown[] = [];
    decoder.push(hex(`30 06 00 01 61 00 68 69`), (p) => packets.push(p));
    decoder.maximumPacketSize = 7;
    assert.equal(decoder.maximumPacketSize, 7);
    assertProtocolError(
      () => decoder.push(hex(`30 06 00 01 61 00 68 69`), (p) => packets.push(p)),
      "MQTT-3.1.2-24",
      PACKET_TOO_LARGE,
    );
    assert.equal(packets.length, 1);
  });
});
