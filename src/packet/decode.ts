/**
 * Decoding: the fixed header (section 2 of both specifications), and dispatch to each packet's
 * reader. Everything here is pure: bytes in, packets out.
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import { readAck } from "./ack.ts";
import { cite, Reader } from "./bytes.ts";
import { readConnack } from "./connack.ts";
import { readConnect } from "./connect.ts";
import { readAuth, readDisconnect } from "./disconnect.ts";
import { readPublish } from "./publish.ts";
import { readSuback, readSubscribe } from "./subscribe.ts";
import { readUnsuback, readUnsubscribe } from "./unsubscribe.ts";
import type { Packet, ProtocolVersion } from "./types.ts";

// The flags each packet type must carry in the low nibble of its first byte; -1 for PUBLISH,
// whose flags carry DUP, QoS and RETAIN.
const REQUIRED_FLAGS = [0, 0, 0, -1, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0];
const FLAG_STATEMENTS: Record<number, string> = {
  6: "MQTT-3.6.1-1",
  8: "MQTT-3.8.1-1",
  10: "MQTT-3.10.1-1",
  14: "MQTT-3.14.1-1",
  15: "MQTT-3.15.1-1",
};

/**
 * Decodes the packet that starts with `first` and whose body is `r.buf[r.pos, r.end)`.
 * Throws a {@linkcode ProtocolError} for anything a receiver must reject.
 */
export function decodeBody(r: Reader, first: number): Packet {
  const type = first >> 4;
  const flags = first & 0x0f;
  const version = r.version;
  const required = REQUIRED_FLAGS[type];
  if (type === 0 || (type === 15 && version !== 5)) {
    // Table 2.1 marks the type reserved; no numbered statement covers it.
    throw new ProtocolError(`packet type ${type} is reserved`);
  }
  // MQTT 3.1 let PUBREL, SUBSCRIBE and UNSUBSCRIBE carry DUP when re-sent.
  if (
    required >= 0 && flags !== required &&
    !(version === 3 && flags === (required | 8) && required === 2)
  ) {
    throw new ProtocolError(
      `packet type ${type} has fixed header flags 0x${flags.toString(16)}; they must be 0x${
        required.toString(16)
      }`,
      FLAG_STATEMENTS[type] ?? cite(version, "MQTT-2.2.2-1", "MQTT-2.1.3-1"),
    );
  }
  let packet: Packet;
  switch (type) {
    case 3:
      packet = readPublish(r, flags, version);
      break;
    case 4:
      packet = readAck(r, "puback", version);
      break;
    case 5:
      packet = readAck(r, "pubrec", version);
      break;
    case 6:
      packet = readAck(r, "pubrel", version);
      break;
    case 7:
      packet = readAck(r, "pubcomp", version);
      break;
    case 1:
      packet = readConnect(r);
      break;
    case 2:
      packet = readConnack(r, version);
      break;
    case 8:
      packet = readSubscribe(r, version);
      break;
    case 9:
      packet = readSuback(r, version);
      break;
    case 10:
      packet = readUnsubscribe(r, version);
      break;
    case 11:
      packet = readUnsuback(r, version);
      break;
    case 12:
      packet = { type: "pingreq" };
      break;
    case 13:
      packet = { type: "pingresp" };
      break;
    case 14:
      packet = readDisconnect(r, version);
      break;
    default:
      packet = readAuth(r);
  }
  if (r.pos !== r.end) {
    throw new ProtocolError(
      `${packet.type.toUpperCase()} has ${r.end - r.pos} bytes after its last field`,
    );
  }
  return packet;
}

/**
 * Reads a fixed header's Remaining Length from `buf` at `pos` (the byte after the first). Returns
 * the length and stores the header's size in `header.size`, or returns -1 when `buf` ends before
 * the Remaining Length does. Throws when it is longer than four bytes.
 */
export function readRemainingLength(
  buf: Uint8Array,
  pos: number,
  end: number,
  header: { size: number },
  version: number,
): number {
  let value = 0;
  let multiplier = 1;
  for (let i = 0; i < 4; i++) {
    if (pos + i >= end) return -1;
    const byte = buf[pos + i];
    value += (byte & 0x7f) * multiplier;
    if (byte < 0x80) {
      if (byte === 0 && i > 0 && version === 5) {
        throw new ProtocolError("the Remaining Length is not in the fewest bytes", "MQTT-1.5.5-1");
      }
      header.size = 2 + i;
      return value;
    }
    multiplier *= 128;
  }
  // "The maximum number of bytes in the Variable Byte Integer field is four" has no statement
  // id; [MQTT-1.5.5-1] is the fewest-bytes rule.
  throw new ProtocolError("the Remaining Length is longer than four bytes");
}

const header = { size: 0 };

/**
 * Decodes exactly one whole packet.
 *
 * @param bytes The packet's bytes, from its first byte to its last, and nothing more.
 * @param protocolVersion The protocol version of the connection: 3, 4 (the default) or 5.
 * @returns The packet. A PUBLISH's payload is a view into `bytes`.
 * @throws {ProtocolError} When the bytes are not one well-formed, legal packet.
 *
 * @example Decoding a PUBLISH
 * ```ts
 * import { decode } from "./decode.ts";
 *
 * const packet = decode(new Uint8Array([0x30, 0x05, 0x00, 0x01, 0x61, 0x68, 0x69]));
 * console.log(packet); // { type: "publish", topic: "a", payload: Uint8Array [104, 105], ... }
 * ```
 */
export function decode(bytes: Uint8Array, protocolVersion: ProtocolVersion = 4): Packet {
  if (bytes.length < 2) throw new ProtocolError("a packet is at least two bytes long");
  const remainingLength = readRemainingLength(bytes, 1, bytes.length, header, protocolVersion);
  if (remainingLength < 0) throw new ProtocolError("the packet ends inside its fixed header");
  const size = header.size + remainingLength;
  if (size > bytes.length) {
    throw new ProtocolError(
      `the packet is ${bytes.length} bytes, but its Remaining Length says ${size}`,
    );
  }
  if (size < bytes.length) {
    throw new ProtocolError(`${bytes.length - size} bytes follow the end of the packet`);
  }
  return decodeBody(new Reader(bytes, header.size, size, protocolVersion), bytes[0]);
}
