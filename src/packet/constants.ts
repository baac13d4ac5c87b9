/**
 * Packet type numbers and the MQTT 5 reason codes with their names.
 *
 * @module
 */

import type { PacketType } from "./types.ts";

/** The 4-bit control packet type of each packet, as the fixed header carries it. */
export const PACKET_TYPE_NUMBERS: Readonly<Record<PacketType, number>> = {
  connect: 1,
  connack: 2,
  publish: 3,
  puback: 4,
  pubrec: 5,
  pubrel: 6,
  pubcomp: 7,
  subscribe: 8,
  suback: 9,
  unsubscribe: 10,
  unsuback: 11,
  pingreq: 12,
  pingresp: 13,
  disconnect: 14,
  auth: 15,
};

/** The packet type name of each 4-bit type number; index 0 is reserved. */
export const PACKET_TYPE_NAMES: readonly (PacketType | undefined)[] = [
  undefined,
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
  "auth",
];

/** An MQTT 5 reason code: its value, its name, and the packets it may appear on. */
export interface ReasonCode {
  /** The value on the wire. */
  code: number;
  /** The name the specification gives it (on the packets it shares the value with, see `names`). */
  name: string;
  /** The packets that may carry it. */
  packets: readonly PacketType[];
}

type Row = [number, string, PacketType[]];

// MQTT 5.0 section 2.4, Table 2-6. 0x00 has three names, so it is listed by packet below.
const ROWS: Row[] = [
  [0x00, "Success", ["connack", "puback", "pubrec", "pubrel", "pubcomp", "unsuback", "auth"]],
  [0x00, "Normal disconnection", ["disconnect"]],
  [0x00, "Granted QoS 0", ["suback"]],
  [0x01, "Granted QoS 1", ["suback"]],
  [0x02, "Granted QoS 2", ["suback"]],
  [0x04, "Disconnect with Will Message", ["disconnect"]],
  [0x10, "No matching subscribers", ["puback", "pubrec"]],
  [0x11, "No subscription existed", ["unsuback"]],
  [0x18, "Continue authentication", ["auth"]],
  [0x19, "Re-authenticate", ["auth"]],
  [0x80, "Unspecified error", ["connack", "puback", "pubrec", "suback", "unsuback", "disconnect"]],
  [0x81, "Malformed Packet", ["connack", "disconnect"]],
  [0x82, "Protocol Error", ["connack", "disconnect"]],
  [0x83, "Implementation specific error", [
    "connack",
    "puback",
    "pubrec",
    "suback",
    "unsuback",
    "disconnect",
  ]],
  [0x84, "Unsupported Protocol Version", ["connack"]],
  [0x85, "Client Identifier not valid", ["connack"]],
  [0x86, "Bad User Name or Password", ["connack"]],
  [0x87, "Not authorized", ["connack", "puback", "pubrec", "suback", "unsuback", "disconnect"]],
  [0x88, "Server unavailable", ["connack"]],
  [0x89, "Server busy", ["connack", "disconnect"]],
  [0x8a, "Banned", ["connack"]],
  [0x8b, "Server shutting down", ["disconnect"]],
  [0x8c, "Bad authentication method", ["connack", "disconnect"]],
  [0x8d, "Keep Alive timeout", ["disconnect"]],
  [0x8e, "Session taken over", ["disconnect"]],
  [0x8f, "Topic Filter invalid", ["suback", "unsuback", "disconnect"]],
  [0x90, "Topic Name invalid", ["connack", "puback", "pubrec", "disconnect"]],
  [0x91, "Packet Identifier in use", ["puback", "pubrec", "suback", "unsuback"]],
  [0x92, "Packet Identifier not found", ["pubrel", "pubcomp"]],
  [0x93, "Receive Maximum exceeded", ["disconnect"]],
  [0x94, "Topic Alias invalid", ["disconnect"]],
  [0x95, "Packet too large", ["connack", "disconnect"]],
  [0x96, "Message rate too high", ["disconnect"]],
  [0x97, "Quota exceeded", ["connack", "puback", "pubrec", "suback", "disconnect"]],
  [0x98, "Administrative action", ["disconnect"]],
  [0x99, "Payload format invalid", ["connack", "puback", "pubrec", "disconnect"]],
  [0x9a, "Retain not supported", ["connack", "disconnect"]],
  [0x9b, "QoS not supported", ["connack", "disconnect"]],
  [0x9c, "Use another server", ["connack", "disconnect"]],
  [0x9d, "Server moved", ["connack", "disconnect"]],
  [0x9e, "Shared Subscriptions not supported", ["suback", "disconnect"]],
  [0x9f, "Connection rate exceeded", ["connack", "disconnect"]],
  [0xa0, "Maximum connect time", ["disconnect"]],
  [0xa1, "Subscription Identifiers not supported", ["suback", "disconnect"]],
  [0xa2, "Wildcard Subscriptions not supported", ["suback", "disconnect"]],
];

/** Every MQTT 5 reason code, in the order of the specification's table. */
export const REASON_CODES: readonly ReasonCode[] = ROWS.map(([code, name, packets]) => ({
  code,
  name,
  packets,
}));

// One flag set per packet type: BY_PACKET[type][code] is the name, or undefined when the code
// may not appear on that packet. Built once so that the decoder's check is an index.
const BY_PACKET: Record<string, (string | undefined)[]> = {};
for (const [code, name, packets] of ROWS) {
  for (const packet of packets) (BY_PACKET[packet] ??= new Array(256))[code] = name;
}

/** The MQTT 3.1 and 3.1.1 CONNACK return codes, by value. */
export const CONNACK_RETURN_CODES: readonly string[] = [
  "Connection Accepted",
  "Connection Refused, unacceptable protocol version",
  "Connection Refused, identifier rejected",
  "Connection Refused, Server unavailable",
  "Connection Refused, bad user name or password",
  "Connection Refused, not authorized",
];

/**
 * The name of an MQTT 5 reason code as it reads on the given packet, or `undefined` when the code
 * may not appear on that packet.
 *
 * @param code The reason code.
 * @param packet The packet type carrying it.
 * @returns The name, such as `"No matching subscribers"`.
 *
 * @example
 * ```ts
 * import { reasonName } from "./constants.ts";
 *
 * console.log(reasonName(0x10, "puback")); // "No matching subscribers"
 * console.log(reasonName(0x10, "suback")); // undefined
 * ```
 */
export function reasonName(code: number, packet: PacketType): string | undefined {
  return BY_PACKET[packet]?.[code];
}
