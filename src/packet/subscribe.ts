/**
 * SUBSCRIBE and SUBACK (sections 3.8 and 3.9 of both specifications).
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
import { ReasonCode, reasonName, SubackReturnCode } from "./constants.ts";
import { propertiesLength, readProperties, writeProperties } from "./properties.ts";
import { isShared, validateTopicFilter } from "./topic.ts";
import type { QoS, SubackPacket, SubscribePacket, Subscription } from "./types.ts";

/** Reads the body of a SUBSCRIBE. */
export function readSubscribe(r: Reader, version: number): SubscribePacket {
  const packetId = readPacketId(r, "SUBSCRIBE", version);
  const packet: SubscribePacket = { type: "subscribe", packetId, subscriptions: [] };
  if (version === 5) {
    const properties = readProperties(r, "subscribe");
    if (properties) packet.properties = properties;
  }
  while (r.pos < r.end) {
    const topicFilter = r.utf8("a topic filter");
    const options = r.u8("the subscription options");
    const qos = options & 0x03;
    if (qos === 3) {
      throw new ProtocolError(
        `SUBSCRIBE asks for QoS 3 on "${topicFilter}"`,
        version === 5 ? undefined : "MQTT-3.8.3-4",
        version === 5 ? ReasonCode.ProtocolError : ReasonCode.MalformedPacket,
      );
    }
    const subscription: Subscription = { topicFilter, qos: qos as QoS };
    if (version === 5) {
      if (options & 0xc0) {
        throw new ProtocolError("reserved subscription option bits are set", "MQTT-3.8.3-5");
      }
      const retainHandling = (options >> 4) & 0x03;
      if (retainHandling === 3) {
        throw new ProtocolError("Retain Handling is 3", undefined, ReasonCode.ProtocolError);
      }
      subscription.noLocal = (options & 0x04) !== 0;
      subscription.retainAsPublished = (options & 0x08) !== 0;
      subscription.retainHandling = retainHandling as 0 | 1 | 2;
      if (subscription.noLocal && isShared(topicFilter)) {
        throw new ProtocolError(
          "No Local is set on a shared subscription",
          "MQTT-3.8.3-4",
          ReasonCode.ProtocolError,
        );
      }
    } else if (options & 0xfc) {
      throw new ProtocolError("reserved subscription option bits are set", "MQTT-3.8.3-4");
    }
    packet.subscriptions.push(subscription);
  }
  if (packet.subscriptions.length === 0) {
    throw new ProtocolError(
      "SUBSCRIBE has no topic filter",
      cite(version, "MQTT-3.8.3-3", "MQTT-3.8.3-2"),
    );
  }
  return packet;
}

/** Writes a SUBSCRIBE, validating each filter and its options. */
export function writeSubscribe(w: Writer, packet: SubscribePacket, version: number): void {
  const { subscriptions } = packet;
  checkPacketId(packet.packetId, "SUBSCRIBE", version);
  if (!Array.isArray(subscriptions) || subscriptions.length === 0) {
    throw new ProtocolError(
      "SUBSCRIBE needs at least one topic filter",
      cite(version, "MQTT-3.8.3-3", "MQTT-3.8.3-2"),
    );
  }
  let length = 2;
  let propsLength = 0;
  if (version === 5) {
    propsLength = propertiesLength(packet.properties, "subscribe");
    length += varintLength(propsLength) + propsLength;
  }
  const filterLengths: number[] = [];
  const options: number[] = [];
  for (const s of subscriptions) {
    validateTopicFilter(s.topicFilter);
    if (s.qos !== 0 && s.qos !== 1 && s.qos !== 2) {
      throw new ProtocolError(`the requested QoS must be 0, 1 or 2, not ${s.qos}`);
    }
    let option = s.qos;
    if (version === 5) {
      const retainHandling = s.retainHandling ?? 0;
      if (retainHandling !== 0 && retainHandling !== 1 && retainHandling !== 2) {
        throw new ProtocolError(`retainHandling must be 0, 1 or 2, not ${retainHandling}`);
      }
      if (s.noLocal && isShared(s.topicFilter)) {
        throw new ProtocolError(
          `noLocal cannot be set on the shared subscription "${s.topicFilter}"`,
          "MQTT-3.8.3-4",
          ReasonCode.ProtocolError,
        );
      }
      option |= (s.noLocal ? 0x04 : 0) | (s.retainAsPublished ? 0x08 : 0) |
        (retainHandling << 4);
    } else if (s.noLocal || s.retainAsPublished || s.retainHandling) {
      throw new TypeError("noLocal, retainAsPublished and retainHandling need MQTT 5");
    }
    const filterLength = utf8Length(s.topicFilter, "a topic filter");
    filterLengths.push(filterLength);
    options.push(option);
    length += 2 + filterLength + 1;
  }
  if (!w.header(0x82, length)) return;
  w.u16(packet.packetId);
  if (version === 5) writeProperties(w, packet.properties, propsLength);
  for (let i = 0; i < subscriptions.length; i++) {
    w.utf8(subscriptions[i].topicFilter, filterLengths[i]);
    w.u8(options[i]);
  }
}

/** Reads the body of a SUBACK. */
export function readSuback(r: Reader, version: number): SubackPacket {
  const packetId = readPacketId(r, "SUBACK", version);
  const packet: SubackPacket = { type: "suback", packetId, reasonCodes: [] };
  if (version === 5) {
    const properties = readProperties(r, "suback");
    if (properties) packet.properties = properties;
  }
  while (r.pos < r.end) {
    const code = r.u8("a return code");
    if (!isSubackCode(code, version)) {
      throw new ProtocolError(
        `0x${code.toString(16)} is not a SUBACK code in protocol version ${version}`,
        version === 3 ? undefined : "MQTT-3.9.3-2", // the same id in 3.1.1 and 5.0
      );
    }
    packet.reasonCodes.push(code);
  }
  if (packet.reasonCodes.length === 0) throw new ProtocolError("SUBACK has no return code");
  return packet;
}

function isSubackCode(code: number, version: number): boolean {
  if (version === 5) return reasonName(code, "suback") !== undefined;
  return code <= SubackReturnCode.GrantedQoS2 ||
    (version === 4 && code === SubackReturnCode.Failure);
}

/** Writes a SUBACK. */
export function writeSuback(w: Writer, packet: SubackPacket, version: number): void {
  checkPacketId(packet.packetId, "SUBACK", version);
  const codes = packet.reasonCodes;
  if (!Array.isArray(codes) || codes.length === 0) {
    throw new ProtocolError("SUBACK needs a return code for each filter");
  }
  for (const code of codes) {
    if (!isSubackCode(code, version)) {
      throw new ProtocolError(`0x${code.toString(16)} is not a SUBACK code`);
    }
  }
  let propsLength = 0;
  let length = 2 + codes.length;
  if (version === 5) {
    propsLength = propertiesLength(packet.properties, "suback");
    length += varintLength(propsLength) + propsLength;
  }
  if (!w.header(0x90, length)) return;
  w.u16(packet.packetId);
  if (version === 5) writeProperties(w, packet.properties, propsLength);
  for (const code of codes) w.u8(code);
}
