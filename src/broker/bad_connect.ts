/**
 * The answer to a first packet the broker could not read as a CONNECT: the CONNACK that says why,
 * in the version the protocol level read so far names, where the specification asks for one.
 *
 * @module
 */

import type { ProtocolError } from "../errors.ts";
import { ConnackReturnCode, ReasonCode } from "../packet/constants.ts";
import { encode } from "../packet/encode.ts";

/**
 * The CONNACK that answers a CONNECT refused with `error` before it was read, from its first
 * bytes `head`; `undefined` when the connection just closes.
 */
export function badConnectAnswer(head: Uint8Array[], error: ProtocolError): Uint8Array | undefined {
  // An unsupported protocol level is answered with CONNACK before closing ([MQTT-3.1.2-2]);
  // so is any other bad CONNECT that says it is MQTT 5 (v5 section 3.2.2.2).
  const level = requestedLevel(head);
  if (level === undefined) return undefined;
  const unsupported = error.reasonCode === ReasonCode.UnsupportedProtocolVersion;
  const v5 = level >= 5;
  if (!unsupported && level !== 5) return undefined;
  const reasonCode = unsupported
    ? (v5 ? ReasonCode.UnsupportedProtocolVersion : ConnackReturnCode.UnacceptableProtocolVersion)
    : error.reasonCode;
  return encode({ type: "connack", sessionPresent: false, reasonCode }, v5 ? 5 : 4);
}

/** The protocol level byte of the CONNECT read so far, if its name is MQTT or MQIsdp. */
function requestedLevel(head: Uint8Array[]): number | undefined {
  let size = 0;
  for (const part of head) size += part.length;
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const part of head) {
    bytes.set(part, offset);
    offset += part.length;
  }
  let pos = 1;
  while (pos < bytes.length && bytes[pos] & 0x80) pos++;
  pos++;
  if (pos + 2 > bytes.length) return undefined;
  const nameLength = (bytes[pos] << 8) | bytes[pos + 1];
  const name = new TextDecoder().decode(bytes.subarray(pos + 2, pos + 2 + nameLength));
  const levelAt = pos + 2 + nameLength;
  if ((name !== "MQTT" && name !== "MQIsdp") || levelAt >= bytes.length) return undefined;
  return bytes[levelAt];
}
