/**
 * DISCONNECT (section 3.14 of both specifications) and AUTH (MQTT 5.0 section 3.15): a reason
 * code and properties on MQTT 5, both optional; an empty body before MQTT 5.
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import { type Reader, varintLength, type Writer } from "./bytes.ts";
import { reasonName } from "./constants.ts";
import { propertiesLength, readProperties, writeProperties } from "./properties.ts";
import type { AuthPacket, DisconnectPacket } from "./types.ts";

/** Reads the body of a DISCONNECT. */
export function readDisconnect(r: Reader, version: number): DisconnectPacket {
  const packet: DisconnectPacket = { type: "disconnect" };
  // MQTT 5: no body means Normal disconnection; one byte is a reason code alone.
  if (version === 5 && r.pos < r.end) {
    packet.reasonCode = readReasonCode(r, "disconnect");
    if (r.pos < r.end) {
      const properties = readProperties(r, "disconnect");
      if (properties) packet.properties = properties;
    }
  }
  return packet;
}

/** Writes a DISCONNECT. */
export function writeDisconnect(w: Writer, packet: DisconnectPacket, version: number): void {
  if (version !== 5) {
    w.header(0xe0, 0);
    return;
  }
  writeReasonAndProperties(w, 0xe0, "disconnect", packet.reasonCode ?? 0, packet.properties);
}

/** Reads the body of an AUTH; it exists only in MQTT 5. */
export function readAuth(r: Reader): AuthPacket {
  const packet: AuthPacket = { type: "auth", reasonCode: 0 };
  if (r.pos < r.end) {
    packet.reasonCode = readReasonCode(r, "auth");
    if (r.pos < r.end) {
      const properties = readProperties(r, "auth");
      if (properties) packet.properties = properties;
    }
  }
  return packet;
}

/** Writes an AUTH. */
export function writeAuth(w: Writer, packet: AuthPacket, version: number): void {
  if (version !== 5) throw new ProtocolError("AUTH exists only in MQTT 5");
  writeReasonAndProperties(w, 0xf0, "auth", packet.reasonCode ?? 0, packet.properties);
}

function readReasonCode(r: Reader, type: "disconnect" | "auth"): number {
  const code = r.u8("the reason code");
  if (reasonName(code, type) === undefined) {
    throw new ProtocolError(
      `0x${code.toString(16)} is not a ${type.toUpperCase()} reason code`,
      type === "disconnect" ? "MQTT-3.14.2-1" : "MQTT-3.15.2-1",
    );
  }
  return code;
}

function writeReasonAndProperties(
  w: Writer,
  firstByte: number,
  type: "disconnect" | "auth",
  reasonCode: number,
  properties: DisconnectPacket["properties"],
): void {
  if (reasonName(reasonCode, type) === undefined) {
    throw new ProtocolError(`0x${reasonCode.toString(16)} is not a ${type.toUpperCase()} code`);
  }
  const propsLength = propertiesLength(properties, type);
  if (propsLength === 0) {
    // The shortest form: nothing for 0x00, the code alone otherwise.
    if (w.header(firstByte, reasonCode === 0 ? 0 : 1) && reasonCode !== 0) w.u8(reasonCode);
    return;
  }
  if (!w.header(firstByte, 1 + varintLength(propsLength) + propsLength)) return;
  w.u8(reasonCode);
  writeProperties(w, properties, propsLength);
}
