/**
 * Turning a byte stream into packets: {@linkcode PacketDecoder}, pure and synchronous, and
 * {@linkcode MqttDecoderStream}, the same as a web `TransformStream`.
 *
 * @module
 */

import { MAXIMUM_PACKET_SIZE, ReasonCode } from "./constants.ts";
import { ProtocolError } from "./errors.ts";
import { Reader } from "./bytes.ts";
import { decodeBody, readRemainingLength } from "./decode.ts";
import type { Packet, ProtocolVersion } from "./types.ts";

/** Options of {@linkcode PacketDecoder} and {@linkcode MqttDecoderStream}. */
export interface DecoderOptions {
  /** The protocol version of the connection: 3, 4 (the default) or 5. */
  protocolVersion?: ProtocolVersion;
  /**
   * The largest whole packet, in bytes, to accept; a larger one is rejected as soon as its fixed
   * header is read, before any of it is buffered. Default: the protocol's limit,
   * {@linkcode MAXIMUM_PACKET_SIZE} (268,435,460).
   */
  maximumPacketSize?: number;
}

const NO_BYTES = new Uint8Array(0);

// Scratch state every decoder shares: each is used within one synchronous step (a header read,
// a packet decoded) and holds nothing after it, so a decoder of an idle connection owns neither.
// `emit` runs only once the packet is decoded, so a decoder pushed to from inside it is safe.
const READER = new Reader(NO_BYTES, 0, 0, 4);
const HEADER = { size: 0 };

// Parts smaller than this are copied into a shared tail buffer of up to TAIL_SIZE bytes.
const SMALL_PART = 1024;
const TAIL_SIZE = 16 * 1024;

/**
 * Splits bytes into packets, whatever the chunking: a packet over many chunks, many packets in
 * one chunk. Pure and synchronous: `push` returns after handing every whole packet to `emit`.
 *
 * A packet that lies inside one chunk is decoded in place, so its payload is a view into that
 * chunk. A packet split across chunks is gathered into one buffer of its exact size, allocated
 * only once all of its bytes have arrived, so memory follows the bytes received, never a length
 * the bytes merely claim.
 *
 * @example
 * ```ts
 * import { PacketDecoder } from "./decoder_stream.ts";
 *
 * const decoder = new PacketDecoder({ protocolVersion: 4 });
 * decoder.push(new Uint8Array([0xd0]), console.log); // nothing yet
 * decoder.push(new Uint8Array([0x00, 0xd0, 0x00]), console.log); // two PINGRESPs
 * ```
 */
export class PacketDecoder {
  #version: ProtocolVersion;
  #maximum: number;
  // The bytes of a packet split across chunks (made for the first), and how many there are.
  #parts: Uint8Array[] | undefined;
  #partsLength = 0;
  // Small parts are copied together into this buffer, the last of #parts, rather than kept one
  // view each: a packet trickled in a byte at a time costs its bytes, not a view per byte.
  #tail: Uint8Array | undefined;
  #tailUsed = 0;
  // The whole size of that packet once its fixed header is known, -1 before.
  #packetSize = -1;

  /** Creates a decoder. */
  constructor(options: DecoderOptions = {}) {
    this.#version = options.protocolVersion ?? 4;
    this.#maximum = options.maximumPacketSize ?? MAXIMUM_PACKET_SIZE;
  }

  /** The protocol version packets are decoded for; a broker sets it after reading CONNECT. */
  get protocolVersion(): ProtocolVersion {
    return this.#version;
  }
  set protocolVersion(version: ProtocolVersion) {
    this.#version = version;
  }

  /** The largest packet accepted, in bytes. */
  get maximumPacketSize(): number {
    return this.#maximum;
  }
  set maximumPacketSize(size: number) {
    this.#maximum = size;
  }

  /** Whether a partial packet is waiting for more bytes. */
  get pending(): boolean {
    return this.#partsLength > 0;
  }

  /**
   * Feeds bytes in and hands every packet they complete to `emit`, in order.
   *
   * @throws {ProtocolError} On the first malformed or illegal packet; the decoder must not be
   * used after that.
   */
  push(chunk: Uint8Array, emit: (packet: Packet) => void): void {
    let pos = 0;
    if (this.#partsLength > 0) {
      pos = this.#continue(chunk, emit);
      if (pos < 0) return;
    }
    const end = chunk.length;
    const header = HEADER;
    // Whole packets inside this chunk: decoded in place, no copy.
    while (end - pos >= 2) {
      const remainingLength = readRemainingLength(chunk, pos + 1, end, header, this.#version);
      if (remainingLength < 0) break;
      const size = header.size + remainingLength;
      this.#checkSize(size);
      if (pos + size > end) break;
      emit(this.#decode(chunk, pos, header.size, size));
      pos += size;
    }
    if (pos < end) {
      const rest = chunk.subarray(pos);
      this.#packetSize = this.#sizeOf(rest);
      this.#append(rest);
    }
    // Let go of the chunk: a packet's payload may keep it, the decoder does not.
    READER.buf = NO_BYTES;
  }

  /** Keeps `part` of the split packet: a large one as it is, a small one copied into the tail. */
  #append(part: Uint8Array): void {
    const parts = this.#parts ??= [];
    const missing = this.#packetSize < 0 ? 5 : this.#packetSize - this.#partsLength;
    this.#partsLength += part.length;
    if (part.length >= SMALL_PART) {
      parts.push(part);
      this.#tail = undefined;
      return;
    }
    let tail = this.#tail;
    if (tail === undefined || tail.length - this.#tailUsed < part.length) {
      // Never larger than what is missing: a claimed length alone allocates nothing.
      tail = this.#tail = new Uint8Array(Math.max(part.length, Math.min(TAIL_SIZE, missing)));
      this.#tailUsed = 0;
      parts.push(tail);
    }
    tail.set(part, this.#tailUsed);
    this.#tailUsed += part.length;
    parts[parts.length - 1] = tail.subarray(0, this.#tailUsed);
  }

  /** Decodes the packet at `buf[pos, pos + size)` whose fixed header is `headerSize` bytes. */
  #decode(buf: Uint8Array, pos: number, headerSize: number, size: number): Packet {
    const reader = READER;
    reader.buf = buf;
    reader.pos = pos + headerSize;
    reader.end = pos + size;
    reader.version = this.#version;
    return decodeBody(reader, buf[pos]);
  }

  /** The whole size of the packet `head` starts, or -1 while its fixed header is incomplete. */
  #sizeOf(head: Uint8Array): number {
    if (head.length < 2) return -1;
    const remainingLength = readRemainingLength(
      head,
      1,
      head.length,
      HEADER,
      this.#version,
    );
    if (remainingLength < 0) return -1;
    const size = HEADER.size + remainingLength;
    this.#checkSize(size);
    return size;
  }

  #checkSize(size: number): void {
    if (size > this.#maximum) {
      throw new ProtocolError(
        `a ${size}-byte packet exceeds the maximum packet size of ${this.#maximum} bytes`,
        this.#version === 5 ? "MQTT-3.1.2-24" : undefined,
        ReasonCode.PacketTooLarge,
      );
    }
  }

  /**
   * Adds `chunk` to the split packet. Returns where in `chunk` the bytes after that packet begin,
   * or -1 when the packet is still incomplete.
   */
  #continue(chunk: Uint8Array, emit: (packet: Packet) => void): number {
    const parts = this.#parts!;
    if (this.#packetSize < 0) {
      // The fixed header itself was split: it is at most 5 bytes, so join what there is.
      const head = new Uint8Array(Math.min(this.#partsLength + chunk.length, 5));
      head.set(parts[0].subarray(0, head.length));
      head.set(chunk.subarray(0, head.length - this.#partsLength), this.#partsLength);
      this.#packetSize = this.#sizeOf(head);
      if (this.#packetSize < 0) {
        parts[0] = head;
        this.#partsLength = head.length;
        this.#tail = undefined;
        return -1;
      }
    }
    const missing = this.#packetSize - this.#partsLength;
    if (chunk.length < missing) {
      this.#append(chunk);
      return -1;
    }
    const packet = new Uint8Array(this.#packetSize);
    let offset = 0;
    for (const part of parts) {
      packet.set(part, offset);
      offset += part.length;
    }
    packet.set(chunk.subarray(0, missing), offset);
    this.#parts = undefined;
    this.#partsLength = 0;
    this.#tail = undefined;
    this.#packetSize = -1;
    const headerSize = this.#sizeOfHeader(packet);
    emit(this.#decode(packet, 0, headerSize, packet.length));
    return missing;
  }

  #sizeOfHeader(packet: Uint8Array): number {
    readRemainingLength(packet, 1, packet.length, HEADER, this.#version);
    return HEADER.size;
  }
}

/**
 * A `TransformStream` from bytes to MQTT packets: pipe a connection's readable through it.
 * Accepts any chunking. The stream errors with a {@linkcode ProtocolError} on the first malformed
 * or illegal packet and on a packet larger than `maximumPacketSize` (as soon as its fixed header
 * is read). When the bytes end inside a packet (a cut connection) it ends after every whole
 * packet before them, and `truncated` says so.
 *
 * @example Decoding a byte stream
 * ```ts
 * import { MqttDecoderStream } from "./decoder_stream.ts";
 *
 * const bytes = ReadableStream.from([
 *   new Uint8Array([0x20, 0x02, 0x00]), // CONNACK, split...
 *   new Uint8Array([0x00, 0xd0, 0x00]), // ...and a PINGRESP in the same chunk
 * ]);
 * for await (const packet of bytes.pipeThrough(new MqttDecoderStream())) {
 *   console.log(packet.type); // "connack", then "pingresp"
 * }
 * ```
 */
export class MqttDecoderStream extends TransformStream<Uint8Array, Packet> {
  #decoder: PacketDecoder;
  #ended: { truncated: boolean };

  /** Creates the stream. */
  constructor(options: DecoderOptions = {}) {
    const decoder = new PacketDecoder(options);
    const ended = { truncated: false };
    super({
      transform(chunk, controller) {
        decoder.push(chunk, (packet) => controller.enqueue(packet));
      },
      flush() {
        // Bytes that stop inside a packet are a lost connection, not a malformed packet. The
        // stream still ends cleanly: erroring it would throw away the whole packets decoded
        // before them that the reader has not taken yet.
        ended.truncated = decoder.pending;
      },
    });
    this.#decoder = decoder;
    this.#ended = ended;
  }

  /**
   * Whether the bytes ended inside a packet: true once the stream has ended with an incomplete
   * packet left over (the connection was cut), false otherwise.
   */
  get truncated(): boolean {
    return this.#ended.truncated;
  }

  /** The protocol version packets are decoded for; a broker sets it after reading CONNECT. */
  get protocolVersion(): ProtocolVersion {
    return this.#decoder.protocolVersion;
  }
  set protocolVersion(version: ProtocolVersion) {
    this.#decoder.protocolVersion = version;
  }

  /** The largest packet accepted, in bytes; the client lowers it to what it told the broker. */
  get maximumPacketSize(): number {
    return this.#decoder.maximumPacketSize;
  }
  set maximumPacketSize(size: number) {
    this.#decoder.maximumPacketSize = size;
  }
}
