/**
 * PUBACK, PUBREC, PUBREL and PUBCOMP (sections 3.4 to 3.7 of both specifications): one layout,
 * a packet identifier and, on MQTT 5, an optional reason code and properties.
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import { checkPacketId, type Reader, readPacketId, varintLength, type Writer } from "./bytes.ts";
import { reasonName } from "./constants.ts";
import { propertiesLength, readProperties, writeProperties } from "./properties.ts";
import type { PublishAckPacket } from "./types.ts";

/** The four acknowledgement packet types. */
export type AckType = "puback" | "pubrec" | "pubrel" | "pubcomp";

// The statement "The Client or Server sending the ... packet MUST use one of the ... Reason Codes".
const REASON_STATEMENT: Record<AckType, string> = {
  puback: "MQTT-3.4.2-1",
  pubrec: "MQTT-3.5.2-1",
  pubrel: "MQTT-3.6.2-1",
  pubcomp: "MQTT-3.7.2-1",
};

const FIRST_BYTE: Record<AckType, number> = {
  puback: 0x40,
  pubrec: 0x50,
  pubrel: 0x62,
  pubcomp: 0x70,
};

/** Reads the body of an acknowledgement. */
export function readAck<T extends AckType>(
  r: Reader,
  type: T,
  version: number,
): PublishAckPacket<T> {
  const packetId = readPacketId(r, type.toUpperCase(), version);
  const packet: PublishAckPacket<T> = { type, packetId };
  // MQTT 5: a Remaining Length of 2 means Success and no properties, 3 a reason code alone.
  if (version === 5 && r.pos < r.end) {
    const reasonCode = r.u8("the reason code");
    if (reasonName(reasonCode, type) === undefined) {
      throw new ProtocolError(
        `0x${reasonCode.toString(16)} is not a ${type.toUpperCase()} reason code`,
        REASON_STATEMENT[type],
      );
    }
    packet.reasonCode = reasonCode;
    if (r.pos < r.end) {
      const properties = readProperties(r, type);
      if (properties) packet.properties = properties;
    }
  }
  return packet;
}

/** Writes an acknowledgement in the shortest form that carries what it holds. */
export function writeAck(w: Writer, packet: PublishAckPacket<AckType>, version: number): void {
  const { type, packetId } = packet;
  checkPacketId(packetId, type.toUpperCase(), version);
  if (version !== 5) {
    if (!w.header(FIRST_BYTE[type], 2)) return;
    w.u16(packetId);
    return;
  }
  const reasonCode = packet.reasonCode ?? 0;
  if (reasonName(reasonCode, type) === undefined) {
    throw new ProtocolError(`0x${reasonCode.toString(16)} is not a ${type.toUpperCase()} code`);
  }
  const propsLength = propertiesLength(packet.properties, type);
  if (propsLength === 0) {
    const withCode = reasonCode !== 0;
    if (!w.header(FIRST_BYTE[type], withCode ? 3 : 2)) return;
    w.u16(packetId);
    if (withCode) w.u8(reasonCode);
    return;
  }
  if (!w.header(FIRST_BYTE[type], 3 + varintLength(propsLength) + propsLength)) return;
  w.u16(packetId);
  w.u8(reasonCode);
  writeProperties(w, packet.properties, propsLength);
}
