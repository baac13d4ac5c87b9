/**
 * Packet type numbers, the MQTT 5 reason codes and the MQTT 3.x return codes, by name, and
 * the one table of their names.
 *
 * @module
 */

import type { PacketType, ProtocolVersion } from "./types.ts";

/**
 * The largest value a Variable Byte Integer holds (section 1.5.5 of both specifications), and so
 * the largest Remaining Length.
 */
export const MAX_VARINT = 268_435_455;

/**
 * The largest packet MQTT can express: the first byte, a Remaining Length in its longest form
 * (four bytes) and {@linkcode MAX_VARINT} bytes after it. The Maximum Packet Size to assume when
 * the peer states none (MQTT 5.0 section 3.1.2.11.4), and the decoder's default limit.
 *
 * @example
 * ```ts
 * import { MAXIMUM_PACKET_SIZE } from "./mod.ts";
 *
 * console.log(MAXIMUM_PACKET_SIZE); // 268435460
 * ```
 */
export const MAXIMUM_PACKET_SIZE: number = 1 + 4 + MAX_VARINT;

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

/**
 * The MQTT 5 reason codes (MQTT 5.0 section 2.4, Table 2-6) by name, so that code reads
 * `ReasonCode.NoMatchingSubscribers` instead of `0x10`. A value of 0x80 or more means failure.
 * Three names share 0x00 and the granted QoS values share theirs, as in the specification.
 * {@linkcode reasonName} gives the specification's wording of a code on a given packet, and the
 * {@linkcode ReasonCode} interface (the same name, as a type) describes a row of
 * {@linkcode REASON_CODES}.
 *
 * @example
 * ```ts
 * import { encode, ReasonCode } from "./mod.ts";
 *
 * const bytes = encode({ type: "puback", packetId: 1, reasonCode: ReasonCode.QuotaExceeded }, 5);
 * console.log(bytes); // Uint8Array [64, 3, 0, 1, 151]
 * ```
 */
export const ReasonCode = {
  Success: 0x00,
  NormalDisconnection: 0x00,
  GrantedQoS0: 0x00,
  GrantedQoS1: 0x01,
  GrantedQoS2: 0x02,
  DisconnectWithWillMessage: 0x04,
  NoMatchingSubscribers: 0x10,
  NoSubscriptionExisted: 0x11,
  ContinueAuthentication: 0x18,
  ReAuthenticate: 0x19,
  UnspecifiedError: 0x80,
  MalformedPacket: 0x81,
  ProtocolError: 0x82,
  ImplementationSpecificError: 0x83,
  UnsupportedProtocolVersion: 0x84,
  ClientIdentifierNotValid: 0x85,
  BadUserNameOrPassword: 0x86,
  NotAuthorized: 0x87,
  ServerUnavailable: 0x88,
  ServerBusy: 0x89,
  Banned: 0x8a,
  ServerShuttingDown: 0x8b,
  BadAuthenticationMethod: 0x8c,
  KeepAliveTimeout: 0x8d,
  SessionTakenOver: 0x8e,
  TopicFilterInvalid: 0x8f,
  TopicNameInvalid: 0x90,
  PacketIdentifierInUse: 0x91,
  PacketIdentifierNotFound: 0x92,
  ReceiveMaximumExceeded: 0x93,
  TopicAliasInvalid: 0x94,
  PacketTooLarge: 0x95,
  MessageRateTooHigh: 0x96,
  QuotaExceeded: 0x97,
  AdministrativeAction: 0x98,
  PayloadFormatInvalid: 0x99,
  RetainNotSupported: 0x9a,
  QoSNotSupported: 0x9b,
  UseAnotherServer: 0x9c,
  ServerMoved: 0x9d,
  SharedSubscriptionsNotSupported: 0x9e,
  ConnectionRateExceeded: 0x9f,
  MaximumConnectTime: 0xa0,
  SubscriptionIdentifiersNotSupported: 0xa1,
  WildcardSubscriptionsNotSupported: 0xa2,
} as const;

/**
 * An MQTT 5 reason code: its value, its name, and the packets it may appear on; a row of
 * {@linkcode REASON_CODES}. The constant of the same name, {@linkcode ReasonCode}, names the
 * values.
 */
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
  [ReasonCode.Success, "Success", [
    "connack",
    "puback",
    "pubrec",
    "pubrel",
    "pubcomp",
    "unsuback",
    "auth",
  ]],
  [ReasonCode.NormalDisconnection, "Normal disconnection", ["disconnect"]],
  [ReasonCode.GrantedQoS0, "Granted QoS 0", ["suback"]],
  [ReasonCode.GrantedQoS1, "Granted QoS 1", ["suback"]],
  [ReasonCode.GrantedQoS2, "Granted QoS 2", ["suback"]],
  [ReasonCode.DisconnectWithWillMessage, "Disconnect with Will Message", ["disconnect"]],
  [ReasonCode.NoMatchingSubscribers, "No matching subscribers", ["puback", "pubrec"]],
  [ReasonCode.NoSubscriptionExisted, "No subscription existed", ["unsuback"]],
  [ReasonCode.ContinueAuthentication, "Continue authentication", ["auth"]],
  [ReasonCode.ReAuthenticate, "Re-authenticate", ["auth"]],
  [ReasonCode.UnspecifiedError, "Unspecified error", [
    "connack",
    "puback",
    "pubrec",
    "suback",
    "unsuback",
    "disconnect",
  ]],
  [ReasonCode.MalformedPacket, "Malformed Packet", ["connack", "disconnect"]],
  [ReasonCode.ProtocolError, "Protocol Error", ["connack", "disconnect"]],
  [ReasonCode.ImplementationSpecificError, "Implementation specific error", [
    "connack",
    "puback",
    "pubrec",
    "suback",
    "unsuback",
    "disconnect",
  ]],
  [ReasonCode.UnsupportedProtocolVersion, "Unsupported Protocol Version", ["connack"]],
  [ReasonCode.ClientIdentifierNotValid, "Client Identifier not valid", ["connack"]],
  [ReasonCode.BadUserNameOrPassword, "Bad User Name or Password", ["connack"]],
  [ReasonCode.NotAuthorized, "Not authorized", [
    "connack",
    "puback",
    "pubrec",
    "suback",
    "unsuback",
    "disconnect",
  ]],
  [ReasonCode.ServerUnavailable, "Server unavailable", ["connack"]],
  [ReasonCode.ServerBusy, "Server busy", ["connack", "disconnect"]],
  [ReasonCode.Banned, "Banned", ["connack"]],
  [ReasonCode.ServerShuttingDown, "Server shutting down", ["disconnect"]],
  [ReasonCode.BadAuthenticationMethod, "Bad authentication method", ["connack", "disconnect"]],
  [ReasonCode.KeepAliveTimeout, "Keep Alive timeout", ["disconnect"]],
  [ReasonCode.SessionTakenOver, "Session taken over", ["disconnect"]],
  [ReasonCode.TopicFilterInvalid, "Topic Filter invalid", ["suback", "unsuback", "disconnect"]],
  [ReasonCode.TopicNameInvalid, "Topic Name invalid", [
    "connack",
    "puback",
    "pubrec",
    "disconnect",
  ]],
  [ReasonCode.PacketIdentifierInUse, "Packet Identifier in use", [
    "puback",
    "pubrec",
    "suback",
    "unsuback",
  ]],
  [ReasonCode.PacketIdentifierNotFound, "Packet Identifier not found", ["pubrel", "pubcomp"]],
  [ReasonCode.ReceiveMaximumExceeded, "Receive Maximum exceeded", ["disconnect"]],
  [ReasonCode.TopicAliasInvalid, "Topic Alias invalid", ["disconnect"]],
  [ReasonCode.PacketTooLarge, "Packet too large", ["connack", "disconnect"]],
  [ReasonCode.MessageRateTooHigh, "Message rate too high", ["disconnect"]],
  [ReasonCode.QuotaExceeded, "Quota exceeded", [
    "connack",
    "puback",
    "pubrec",
    "suback",
    "disconnect",
  ]],
  [ReasonCode.AdministrativeAction, "Administrative action", ["disconnect"]],
  [ReasonCode.PayloadFormatInvalid, "Payload format invalid", [
    "connack",
    "puback",
    "pubrec",
    "disconnect",
  ]],
  [ReasonCode.RetainNotSupported, "Retain not supported", ["connack", "disconnect"]],
  [ReasonCode.QoSNotSupported, "QoS not supported", ["connack", "disconnect"]],
  [ReasonCode.UseAnotherServer, "Use another server", ["connack", "disconnect"]],
  [ReasonCode.ServerMoved, "Server moved", ["connack", "disconnect"]],
  [ReasonCode.SharedSubscriptionsNotSupported, "Shared Subscriptions not supported", [
    "suback",
    "disconnect",
  ]],
  [ReasonCode.ConnectionRateExceeded, "Connection rate exceeded", ["connack", "disconnect"]],
  [ReasonCode.MaximumConnectTime, "Maximum connect time", ["disconnect"]],
  [ReasonCode.SubscriptionIdentifiersNotSupported, "Subscription Identifiers not supported", [
    "suback",
    "disconnect",
  ]],
  [ReasonCode.WildcardSubscriptionsNotSupported, "Wildcard Subscriptions not supported", [
    "suback",
    "disconnect",
  ]],
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

/**
 * The MQTT 3.1 and 3.1.1 CONNACK return codes (MQTT 3.1.1 section 3.2.2.3, Table 3.1) by name.
 * MQTT 5 replaces them with reason codes: see {@linkcode ReasonCode}.
 *
 * @example
 * ```ts
 * import { ConnackReturnCode, decode } from "./mod.ts";
 *
 * const connack = decode(new Uint8Array([0x20, 2, 0, 5]), 4);
 * if (connack.type === "connack" && connack.reasonCode === ConnackReturnCode.NotAuthorized) {
 *   console.log("refused: not authorized");
 * }
 * ```
 */
export const ConnackReturnCode = {
  ConnectionAccepted: 0,
  UnacceptableProtocolVersion: 1,
  IdentifierRejected: 2,
  ServerUnavailable: 3,
  BadUserNameOrPassword: 4,
  NotAuthorized: 5,
} as const;

/**
 * The MQTT 3.1 and 3.1.1 SUBACK return codes (MQTT 3.1.1 section 3.9.3) by name: the granted
 * QoS, or Failure, which MQTT 3.1 does not have. MQTT 5 replaces them with reason codes: see
 * {@linkcode ReasonCode}.
 *
 * @example
 * ```ts
 * import { encode, SubackReturnCode } from "./mod.ts";
 *
 * const reasonCodes = [SubackReturnCode.GrantedQoS1, SubackReturnCode.Failure];
 * const bytes = encode({ type: "suback", packetId: 1, reasonCodes }, 4);
 * console.log(bytes); // Uint8Array [144, 4, 0, 1, 1, 128]
 * ```
 */
export const SubackReturnCode = {
  GrantedQoS0: 0x00,
  GrantedQoS1: 0x01,
  GrantedQoS2: 0x02,
  Failure: 0x80,
} as const;

// MQTT 3.1.1 Table 3.1, by value: the short name errors give, then the table's own words.
const CONNACK_311: readonly (readonly [name: string, text: string])[] = [
  ["Connection Accepted", "Connection Accepted"],
  ["Unacceptable Protocol Version", "Connection Refused, unacceptable protocol version"],
  ["Identifier Rejected", "Connection Refused, identifier rejected"],
  ["Server Unavailable", "Connection Refused, Server unavailable"],
  ["Bad User Name or Password", "Connection Refused, bad user name or password"],
  ["Not Authorized", "Connection Refused, not authorized"],
];

/** The MQTT 3.1 and 3.1.1 CONNACK return codes, by value, in the words of the specification. */
export const CONNACK_RETURN_CODES: readonly string[] = CONNACK_311.map(([, text]) => text);

/**
 * The name of a CONNACK code: for MQTT 3.1 and 3.1.1 the short name of the return code, for
 * MQTT 5 the reason code's name as {@linkcode reasonName} gives it on a CONNACK. This is the
 * name a refused connection reports.
 *
 * @param code The return code (3.x) or reason code (5) of the CONNACK.
 * @param protocolVersion The protocol version the code belongs to.
 * @returns The name, or `"Unknown Return Code"` / `"Unknown Reason Code"` for a code the
 * specification does not list.
 *
 * @example
 * ```ts
 * import { connackReasonName } from "./constants.ts";
 *
 * console.log(connackReasonName(5, 4)); // "Not Authorized"
 * console.log(connackReasonName(0x87, 5)); // "Not authorized"
 * ```
 */
export function connackReasonName(code: number, protocolVersion: ProtocolVersion): string {
  if (protocolVersion < 5) return CONNACK_311[code]?.[0] ?? "Unknown Return Code";
  return reasonName(code, "connack") ?? "Unknown Reason Code";
}

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
