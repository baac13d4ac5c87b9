/**
 * UNSUBSCRIBE and UNSUBACK (sections 3.10 and 3.11 of both specifications).
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import {
  checkPacketId,
  cite,
  type Reader,
  readPacketId,
  utf8Length,
  varintLength,
  type Writer,
} from "./bytes.ts";
import { reasonName } from "./constants.ts";
import { propertiesLength, readProperties, writeProperties } from "./properties.ts";
import { validateTopicFilter } from "./topic.ts";
import type { UnsubackPacket, UnsubscribePacket } from "./types.ts";

/** Reads the body of an UNSUBSCRIBE. */
export function readUnsubscribe(r: Reader, version: number): UnsubscribePacket {
  const packetId = readPacketId(r, "UNSUBSCRIBE", version);
  const packet: UnsubscribePacket = { type: "unsubscribe", packetId, topicFilters: [] };
  if (version === 5) {
    const properties = readProperties(r, "unsubscribe");
    if (properties) packet.properties = properties;
  }
  while (r.pos < r.end) packet.topicFilters.push(r.utf8("a topic filter"));
  if (packet.topicFilters.length === 0) {
    throw new ProtocolError(
      "UNSUBSCRIBE has no topic filter",
      cite(version, "MQTT-3.10.3-2", "MQTT-3.10.3-2"),
    );
  }
  return packet;
}

/** Writes an UNSUBSCRIBE, validating each filter. */
export function writeUnsubscribe(w: Writer, packet: UnsubscribePacket, version: number): void {
  checkPacketId(packet.packetId, "UNSUBSCRIBE", version);
  const filters = packet.topicFilters;
  if (!Array.isArray(filters) || filters.length === 0) {
    throw new ProtocolError("UNSUBSCRIBE needs at least one topic filter", "MQTT-3.10.3-2");
  }
  let length = 2;
  let propsLength = 0;
  if (version === 5) {
    propsLength = propertiesLength(packet.properties, "unsubscribe");
    length += varintLength(propsLength) + propsLength;
  }
  const lengths = filters.map((filter) => {
    validateTopicFilter(filter);
    const n = utf8Length(filter, "a topic filter");
    length += 2 + n;
    return n;
  });
  if (!w.header(0xa2, length)) return;
  w.u16(packet.packetId);
  if (version === 5) writeProperties(w, packet.properties, propsLength);
  for (let i = 0; i < filters.length; i++) w.utf8(filters[i], lengths[i]);
}

/** Reads the body of an UNSUBACK: only a packet identifier before MQTT 5. */
export function readUnsuback(r: Reader, version: number): UnsubackPacket {
  const packetId = readPacketId(r, "UNSUBACK", version);
  const packet: UnsubackPacket = { type: "unsuback", packetId };
  if (version === 5) {
    const properties = readProperties(r, "unsuback");
    if (properties) packet.properties = properties;
    const reasonCodes: number[] = [];
    while (r.pos < r.end) {
      const code = r.u8("a reason code");
      if (reasonName(code, "unsuback") === undefined) {
        throw new ProtocolError(
          `0x${code.toString(16)} is not an UNSUBACK reason code`,
          "MQTT-3.11.3-2",
        );
      }
      reasonCodes.push(code);
    }
    if (reasonCodes.length === 0) throw new ProtocolError("UNSUBACK has no reason code");
    packet.reasonCodes = reasonCodes;
  }
  return packet;
}

/** Writes an UNSUBACK. */
export function writeUnsuback(w: Writer, packet: UnsubackPacket, version: number): void {
  checkPacketId(packet.packetId, "UNSUBACK", version);
  if (version !== 5) {
    if (w.header(0xb0, 2)) w.u16(packet.packetId);
    return;
  }
  const codes = packet.reasonCodes ?? [];
  if (codes.length === 0) throw new ProtocolError("UNSUBACK needs a reason code for each filter");
  for (const code of codes) {
    if (reasonName(code, "unsuback") === undefined) {
      throw new ProtocolError(`0x${code.toString(16)} is not an UNSUBACK reason code`);
    }
  }
  const propsLength = propertiesLength(packet.properties, "unsuback");
  if (!w.header(0xb0, 2 + varintLength(propsLength) + propsLength + codes.length)) return;
  w.u16(packet.packetId);
  writeProperties(w, packet.properties, propsLength);
  for (const code of codes) w.u8(code);
}
