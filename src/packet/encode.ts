/**
 * Encoding: dispatch to each packet's writer. Small packets are cut from a shared slab, as Node's
 * `Buffer.allocUnsafe` does, since a new typed array costs far more on V8 than a view.
 *
 * @module
 */

import { writeAck } from "./ack.ts";
import { SizeCounter, Writer } from "./bytes.ts";
import { writeConnack } from "./connack.ts";
import { writeConnect } from "./connect.ts";
import { writeAuth, writeDisconnect } from "./disconnect.ts";
import { exactPublishSize, writePublish } from "./publish.ts";
import { writeSuback, writeSubscribe } from "./subscribe.ts";
import { writeUnsuback, writeUnsubscribe } from "./unsubscribe.ts";
import type { Packet, ProtocolVersion } from "./types.ts";

/** Refuses properties on a connection below MQTT 5; CONNECT says its own version. */
function checkPropertiesVersion(packet: Packet, protocolVersion: ProtocolVersion): void {
  if (
    protocolVersion !== 5 && packet.type !== "connect" &&
    (packet as { properties?: unknown }).properties !== undefined
  ) {
    throw new TypeError(
      `properties need MQTT 5; this connection speaks version ${protocolVersion}`,
    );
  }
}

/**
 * Writes `packet` at the end of what `w` holds, growing its buffer as needed: the way to put
 * several packets into one buffer and send them with one write.
 *
 * @param w The writer to append to.
 * @param packet The packet.
 * @param protocolVersion The protocol version of the connection: 3, 4 (the default) or 5.
 * @throws {ProtocolError} When the packet breaks a rule a broker would enforce.
 * @throws {TypeError} When a field has the wrong type, or MQTT 5 properties are given for 3.x.
 */
export function encodeInto(w: Writer, packet: Packet, protocolVersion: ProtocolVersion = 4): void {
  checkPropertiesVersion(packet, protocolVersion);
  switch (packet.type) {
    case "publish":
      return writePublish(w, packet, protocolVersion);
    case "puback":
    case "pubrec":
    case "pubrel":
    case "pubcomp":
      return writeAck(w, packet, protocolVersion);
    case "connect":
      if (packet.protocolVersion !== 5 && (packet.properties || packet.will?.properties)) {
        throw new TypeError("properties need MQTT 5 (protocolVersion: 5)");
      }
      return writeConnect(w, packet);
    case "connack":
      return writeConnack(w, packet, protocolVersion);
    case "subscribe":
      return writeSubscribe(w, packet, protocolVersion);
    case "suback":
      return writeSuback(w, packet, protocolVersion);
    case "unsubscribe":
      return writeUnsubscribe(w, packet, protocolVersion);
    case "unsuback":
      return writeUnsuback(w, packet, protocolVersion);
    case "pingreq":
      w.header(0xc0, 0);
      return;
    case "pingresp":
      w.header(0xd0, 0);
      return;
    case "disconnect":
      return writeDisconnect(w, packet, protocolVersion);
    case "auth":
      return writeAuth(w, packet, protocolVersion);
    default:
      throw new TypeError(`unknown packet type "${(packet as { type: unknown }).type}"`);
  }
}

/**
 * Encodes one packet into a `Uint8Array` of exactly its size. A small packet's array is a view
 * into a shared 8 KiB slab that no other packet's bytes overlap: read and write it freely, but
 * do not transfer or detach its `.buffer` (copy it with `slice()` first if you must).
 *
 * @param packet The packet.
 * @param protocolVersion The protocol version of the connection: 3, 4 (the default) or 5.
 * @returns The packet's bytes.
 * @throws {ProtocolError} When the packet breaks a rule a broker would enforce.
 *
 * @example Encoding a QoS 1 PUBLISH
 * ```ts
 * import { encode } from "./encode.ts";
 *
 * const bytes = encode({
 *   type: "publish",
 *   topic: "a/b",
 *   payload: new TextEncoder().encode("hi"),
 *   qos: 1,
 *   retain: false,
 *   dup: false,
 *   packetId: 7,
 * });
 * console.log(bytes); // Uint8Array [0x32, 0x09, 0x00, 0x03, 0x61, 0x2f, 0x62, 0x00, 0x07, 0x68, 0x69]
 * ```
 */
export function encode(packet: Packet, protocolVersion: ProtocolVersion = 4): Uint8Array {
  const w = new Writer();
  encodeInto(w, packet, protocolVersion);
  return w.buf;
}

// Reused: packetSize runs to completion before anything else can use it.
const counter = new SizeCounter();

/**
 * The number of bytes {@linkcode encode} would return for a packet, after exactly the same
 * checks, without writing them: how to hold a packet against a Maximum Packet Size, or validate
 * it, without the cost of encoding it. A PUBLISH is measured in one pass over its topic and
 * properties, whatever the size of its payload.
 *
 * @param packet The packet.
 * @param protocolVersion The protocol version of the connection: 3, 4 (the default) or 5.
 * @returns The size of the encoded packet, in bytes.
 * @throws {ProtocolError} When the packet breaks a rule a broker would enforce, as `encode` does.
 * @throws {TypeError} When a field has the wrong type, or MQTT 5 properties are given for 3.x.
 *
 * @example Checking a packet against the broker's Maximum Packet Size
 * ```ts
 * import { encode, type Packet, packetSize } from "./mod.ts";
 *
 * const packet: Packet = {
 *   type: "subscribe",
 *   packetId: 1,
 *   subscriptions: [{ topicFilter: "sensors/#", qos: 1 }],
 * };
 * const size = packetSize(packet, 5);
 * console.log(size, size === encode(packet, 5).length); // 17 true
 * if (size > 1024) throw new Error("the broker accepts at most 1024 bytes");
 * ```
 */
export function packetSize(packet: Packet, protocolVersion: ProtocolVersion = 4): number {
  if (packet.type === "publish") {
    // The hot case: straight to the PUBLISH measure, without the dispatch or a counter.
    checkPropertiesVersion(packet, protocolVersion);
    return exactPublishSize(packet, protocolVersion);
  }
  counter.pos = 0;
  encodeInto(counter, packet, protocolVersion);
  return counter.pos;
}
