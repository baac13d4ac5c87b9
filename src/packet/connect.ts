/**
 * CONNECT (MQTT 3.1.1 section 3.1, MQTT 5.0 section 3.1; MQTT 3.1 names the protocol `MQIsdp`).
 *
 * @module
 */

import { ReasonCode } from "./constants.ts";
import { ProtocolError } from "./errors.ts";
import { wildcardInTopicName } from "./topic.ts";
import { cite, type Reader, utf8Length, type Writer } from "./bytes.ts";
import { propertiesLength, readProperties, writeProperties } from "./properties.ts";
import { varintLength } from "./bytes.ts";
import type { ConnectPacket, ProtocolVersion, QoS, Will } from "./types.ts";

const MQTT = "MQTT";
const MQISDP = "MQIsdp";

/** Reads the body of a CONNECT. Its own protocol level decides the version, not `version`. */
export function readConnect(r: Reader): ConnectPacket {
  const name = r.utf8("the protocol name");
  const level = r.u8("the protocol level");
  if (!((name === MQTT && (level === 4 || level === 5)) || (name === MQISDP && level === 3))) {
    if (name !== MQTT && name !== MQISDP) {
      throw new ProtocolError(
        `unknown protocol name "${name}"`,
        "MQTT-3.1.2-1",
        ReasonCode.UnsupportedProtocolVersion,
      );
    }
    throw new ProtocolError(
      `unsupported protocol level ${level} for "${name}"`,
      "MQTT-3.1.2-2",
      ReasonCode.UnsupportedProtocolVersion,
    );
  }
  const version = level as ProtocolVersion;
  r.version = version;
  const flags = r.u8("the connect flags");
  if (flags & 0x01) {
    throw new ProtocolError("the reserved connect flag is set", "MQTT-3.1.2-3");
  }
  const willFlag = (flags & 0x04) !== 0;
  const willQoS = (flags >> 3) & 0x03;
  const willRetain = (flags & 0x20) !== 0;
  const hasPassword = (flags & 0x40) !== 0;
  const hasUsername = (flags & 0x80) !== 0;
  if (!willFlag && willQoS !== 0) {
    throw new ProtocolError(
      "Will QoS is set without the Will Flag",
      cite(version, "MQTT-3.1.2-13", "MQTT-3.1.2-11"),
    );
  }
  if (willQoS === 3) {
    throw new ProtocolError("Will QoS is 3", cite(version, "MQTT-3.1.2-14", "MQTT-3.1.2-12"));
  }
  if (!willFlag && willRetain) {
    throw new ProtocolError(
      "Will Retain is set without the Will Flag",
      cite(version, "MQTT-3.1.2-15", "MQTT-3.1.2-13"),
    );
  }
  if (version < 5 && hasPassword && !hasUsername) {
    throw new ProtocolError("a password is sent without a user name", "MQTT-3.1.2-22");
  }
  const keepalive = r.u16("the keepalive");
  const properties = version === 5 ? readProperties(r, "connect") : undefined;
  const clientId = r.utf8("the client identifier");
  const packet: ConnectPacket = {
    type: "connect",
    protocolVersion: version,
    clientId,
    clean: (flags & 0x02) !== 0,
    keepalive,
  };
  if (willFlag) {
    const willProperties = version === 5 ? readProperties(r, "will") : undefined;
    const topic = r.utf8("the will topic");
    const payload = r.binary("the will payload");
    const will: Will = { topic, payload, qos: willQoS as QoS, retain: willRetain };
    if (willProperties) will.properties = willProperties;
    packet.will = will;
  }
  if (hasUsername) packet.username = r.utf8("the user name");
  if (hasPassword) packet.password = r.binary("the password");
  if (properties) packet.properties = properties;
  return packet;
}

/** Writes a CONNECT, checking what a broker would refuse. */
export function writeConnect(w: Writer, packet: ConnectPacket): void {
  const version = packet.protocolVersion ?? 4;
  if (version !== 3 && version !== 4 && version !== 5) {
    throw new TypeError(`protocolVersion must be 3, 4 or 5, not ${version}`);
  }
  const { clientId, keepalive, username, password, will } = packet;
  if (typeof clientId !== "string") throw new TypeError("clientId must be a string");
  if (version === 3 && (clientId.length < 1 || clientId.length > 23)) {
    throw new ProtocolError(
      `MQTT 3.1 client identifiers are 1 to 23 characters; "${clientId}" has ${clientId.length}`,
    );
  }
  if (version === 4 && clientId === "" && !packet.clean) {
    throw new ProtocolError(
      "an empty client identifier needs a clean session (clean: true)",
      "MQTT-3.1.3-7",
    );
  }
  if (!Number.isInteger(keepalive) || keepalive < 0 || keepalive > 0xffff) {
    throw new TypeError(`keepalive must be an integer from 0 to 65535 seconds, not ${keepalive}`);
  }
  if (version < 5 && password !== undefined && username === undefined) {
    throw new ProtocolError("a password needs a user name before MQTT 5", "MQTT-3.1.2-22");
  }
  const name = version === 3 ? MQISDP : MQTT;
  let length = 2 + name.length + 1 + 1 + 2;
  let propsLength = 0;
  if (version === 5) {
    propsLength = propertiesLength(packet.properties, "connect");
    length += varintLength(propsLength) + propsLength;
  }
  const clientIdLength = utf8Length(clientId, "the client identifier", version);
  length += 2 + clientIdLength;
  let flags = packet.clean ? 0x02 : 0;
  let willPropsLength = 0;
  let willTopicLength = 0;
  if (will) {
    if (will.qos !== 0 && will.qos !== 1 && will.qos !== 2) {
      throw new ProtocolError(`will QoS must be 0, 1 or 2, not ${will.qos}`);
    }
    checkWillTopic(will.topic);
    if (!(will.payload instanceof Uint8Array)) {
      throw new TypeError("the will payload must be a Uint8Array");
    }
    if (will.payload.length > 0xffff) {
      throw new ProtocolError(`the will payload is ${will.payload.length} bytes; at most 65535`);
    }
    flags |= 0x04 | (will.qos << 3) | (will.retain ? 0x20 : 0);
    if (version === 5) {
      willPropsLength = propertiesLength(will.properties, "will");
      length += varintLength(willPropsLength) + willPropsLength;
    }
    willTopicLength = utf8Length(will.topic, "the will topic", version);
    length += 2 + willTopicLength + 2 + will.payload.length;
  }
  let usernameLength = 0;
  if (username !== undefined) {
    flags |= 0x80;
    usernameLength = utf8Length(username, "the user name", version);
    length += 2 + usernameLength;
  }
  if (password !== undefined) {
    if (!(password instanceof Uint8Array) || password.length > 0xffff) {
      throw new TypeError("the password must be a Uint8Array of at most 65535 bytes");
    }
    flags |= 0x40;
    length += 2 + password.length;
  }
  if (!w.header(0x10, length)) return;
  w.utf8(name, name.length);
  w.u8(version);
  w.u8(flags);
  w.u16(keepalive);
  if (version === 5) writeProperties(w, packet.properties, propsLength);
  w.utf8(clientId, clientIdLength);
  if (will) {
    if (version === 5) writeProperties(w, will.properties, willPropsLength);
    w.utf8(will.topic, willTopicLength);
    w.binary(will.payload);
  }
  if (username !== undefined) w.utf8(username, usernameLength);
  if (password !== undefined) w.binary(password);
}

function checkWillTopic(topic: string): void {
  if (typeof topic !== "string" || topic === "") {
    throw new ProtocolError(
      "the will topic must be a non-empty string",
      "MQTT-4.7.3-1",
      ReasonCode.TopicNameInvalid,
    );
  }
  if (topic.includes("+") || topic.includes("#")) {
    throw wildcardInTopicName("will topic", topic);
  }
}
