/**
 * PUBLISH (MQTT 3.1.1 section 3.3, MQTT 5.0 section 3.3): the hot path of the codec, in both
 * directions.
 *
 * @module
 */

import { ReasonCode } from "./constants.ts";
import { ProtocolError } from "./errors.ts";
import { wildcardInTopicName } from "./topic.ts";
import {
  checkPacketId,
  packetLength,
  type Reader,
  readPacketId,
  utf8Length,
  varintLength,
  type Writer,
} from "./bytes.ts";
import { propertiesLength, readProperties, writeProperties } from "./properties.ts";
import type { PublishPacket, QoS } from "./types.ts";

/** Reads the body of a PUBLISH whose fixed header carried `flags`. */
export function readPublish(r: Reader, flags: number, version: number): PublishPacket {
  const qos = (flags >> 1) & 0x03;
  if (qos === 3) throw new ProtocolError("PUBLISH has QoS 3", "MQTT-3.3.1-4");
  const dup = (flags & 0x08) !== 0;
  if (dup && qos === 0) {
    throw new ProtocolError("PUBLISH has DUP set at QoS 0", "MQTT-3.3.1-2");
  }
  const topic = r.topicName("the topic name");
  let packetId: number | undefined;
  if (qos > 0) {
    packetId = readPacketId(r, "PUBLISH at QoS > 0", version);
  }
  const properties = version === 5 ? readProperties(r, "publish") : undefined;
  if (topic === "" && properties?.topicAlias === undefined) {
    throw new ProtocolError(
      "PUBLISH has an empty topic name",
      version === 5 ? undefined : "MQTT-4.7.3-1",
      ReasonCode.ProtocolError,
    );
  }
  // The payload is a view into the bytes read, never a copy.
  const payload = r.buf.subarray(r.pos, r.end);
  r.pos = r.end;
  const retain = (flags & 0x01) !== 0;
  // One literal per shape: a packetId added afterwards would not fit in the object.
  const packet: PublishPacket = packetId === undefined
    ? { type: "publish", topic, payload, qos: qos as QoS, retain, dup }
    : { type: "publish", topic, payload, qos: qos as QoS, retain, dup, packetId };
  if (properties !== undefined) packet.properties = properties;
  return packet;
}

// What measuring a PUBLISH found, for the write that follows it.
const sizes = { topicLength: 0, propertiesLength: 0, remainingLength: 0 };

/** `utf8Length` of a topic name, which must hold no wildcard [MQTT-3.3.2-2]: one pass if ASCII. */
function topicNameLength(topic: string, version: number): number {
  const n = topic.length;
  for (let i = 0; i < n; i++) {
    const c = topic.charCodeAt(i);
    if (c === 0x2b || c === 0x23) {
      throw wildcardInTopicName("PUBLISH topic name", topic);
    }
    if (c === 0 || c > 0x7f) return utf8Length(topic, "the topic name", version);
  }
  return n > 0xffff ? utf8Length(topic, "the topic name", version) : n;
}

/**
 * Checks a PUBLISH against what a broker would refuse, and measures its parts into `sizes`.
 * With `idToCome`, a QoS 1 or 2 PUBLISH may still lack its packet id (it gets one when sent).
 */
function measure(packet: PublishPacket, version: number, idToCome = false): void {
  const { topic, payload, qos } = packet;
  if (qos !== 0 && qos !== 1 && qos !== 2) {
    throw new ProtocolError(`QoS must be 0, 1 or 2, not ${qos}`, "MQTT-3.3.1-4");
  }
  if (!(payload instanceof Uint8Array)) throw new TypeError("the payload must be a Uint8Array");
  if (typeof topic !== "string") throw new TypeError("the topic must be a string");
  const topicLength = topicNameLength(topic, version);
  let length = 2 + topicLength + payload.length;
  if (qos > 0) {
    if (!idToCome || packet.packetId !== undefined) {
      checkPacketId(packet.packetId, `PUBLISH at QoS ${qos}`, version);
    }
    length += 2;
  }
  if (packet.dup && qos === 0) throw new ProtocolError("DUP must be 0 at QoS 0", "MQTT-3.3.1-2");
  let propsLength = 0;
  if (version === 5) {
    const properties = packet.properties;
    if (properties !== undefined) propsLength = propertiesLength(properties, "publish");
    length += varintLength(propsLength) + propsLength;
    if (topicLength === 0 && properties?.topicAlias === undefined) {
      throw new ProtocolError(
        "an empty topic needs a topic alias",
        undefined,
        ReasonCode.ProtocolError,
      );
    }
  } else if (topicLength === 0) {
    throw new ProtocolError("the topic name is empty", "MQTT-4.7.3-1", ReasonCode.TopicNameInvalid);
  }
  sizes.topicLength = topicLength;
  sizes.propertiesLength = propsLength;
  sizes.remainingLength = length;
}

/**
 * The number of bytes a PUBLISH will take on the wire once sent, after the same checks as
 * `encode`, without writing it: how a client holds a publish against the broker's Maximum Packet
 * Size before it has a packet id. A QoS 1 or 2 PUBLISH without a packet id yet is measured as if it
 * had one, and a size beyond the protocol's limit is returned rather than refused:
 * {@linkcode exactPublishSize} measures the packet exactly as it is now.
 */
export function sentPublishSize(packet: PublishPacket, version: number): number {
  measure(packet, version, true);
  return 1 + varintLength(sizes.remainingLength) + sizes.remainingLength;
}

/** The size {@linkcode writePublish} gives a PUBLISH as it is now, after exactly its checks. */
export function exactPublishSize(packet: PublishPacket, version: number): number {
  measure(packet, version);
  return packetLength(sizes.remainingLength);
}

/** Writes a PUBLISH, checking what a broker would refuse. */
export function writePublish(w: Writer, packet: PublishPacket, version: number): void {
  measure(packet, version);
  const { topicLength, propertiesLength: propsLength, remainingLength } = sizes;
  const qos = packet.qos;
  let flags = 0x30 | (qos << 1);
  if (packet.retain) flags |= 0x01;
  if (packet.dup) flags |= 0x08;
  if (!w.header(flags, remainingLength)) return;
  w.utf8(packet.topic, topicLength);
  if (qos > 0) w.u16(packet.packetId!);
  if (version === 5) writeProperties(w, packet.properties, propsLength);
  w.raw(packet.payload);
}
