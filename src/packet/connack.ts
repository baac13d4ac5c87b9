/**
 * CONNACK (MQTT 3.1.1 section 3.2, MQTT 5.0 section 3.2).
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import { cite, type Reader, varintLength, type Writer } from "./bytes.ts";
import { ConnackReturnCode, reasonName } from "./constants.ts";
import { propertiesLength, readProperties, writeProperties } from "./properties.ts";
import type { ConnackPacket } from "./types.ts";

/** Reads the body of a CONNACK. */
export function readConnack(r: Reader, version: number): ConnackPacket {
  const flags = r.u8("the acknowledge flags");
  const reasonCode = r.u8("the return code");
  // MQTT 3.1 reserves the whole first byte and has no session present flag.
  const sessionPresent = version > 3 && (flags & 0x01) === 1;
  if (version > 3 && (flags & 0xfe) !== 0) {
    throw new ProtocolError(
      "reserved acknowledge flags are set",
      version === 5 ? "MQTT-3.2.2-1" : undefined,
    );
  }
  if (version === 5) {
    if (reasonName(reasonCode, "connack") === undefined) {
      throw new ProtocolError(
        `0x${reasonCode.toString(16)} is not a CONNACK reason code`,
        "MQTT-3.2.2-8",
      );
    }
  } else if (reasonCode > ConnackReturnCode.NotAuthorized) {
    throw new ProtocolError(`${reasonCode} is a reserved CONNACK return code`);
  }
  if (sessionPresent && reasonCode !== 0) {
    throw new ProtocolError(
      "session present is set on a refusing CONNACK",
      cite(version, "MQTT-3.2.2-4", "MQTT-3.2.2-6"),
    );
  }
  const packet: ConnackPacket = { type: "connack", sessionPresent, reasonCode };
  if (version === 5) {
    const properties = readProperties(r, "connack");
    if (properties) packet.properties = properties;
  }
  return packet;
}

/** Writes a CONNACK. */
export function writeConnack(w: Writer, packet: ConnackPacket, version: number): void {
  const code = packet.reasonCode;
  if (
    version === 5
      ? reasonName(code, "connack") === undefined
      : !(code >= 0 && code <= ConnackReturnCode.NotAuthorized)
  ) {
    throw new ProtocolError(`${code} is not a CONNACK code in protocol version ${version}`);
  }
  if (packet.sessionPresent && code !== 0) {
    throw new ProtocolError(
      "session present must be 0 on a refusing CONNACK",
      cite(version, "MQTT-3.2.2-4", "MQTT-3.2.2-6"),
    );
  }
  let propsLength = 0;
  let length = 2;
  if (version === 5) {
    propsLength = propertiesLength(packet.properties, "connack");
    length += varintLength(propsLength) + propsLength;
  }
  if (!w.header(0x20, length)) return;
  w.u8(version > 3 && packet.sessionPresent ? 1 : 0);
  w.u8(code);
  if (version === 5) writeProperties(w, packet.properties, propsLength);
}
