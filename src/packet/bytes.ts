/**
 * Byte-level reading and writing of the MQTT data representations (section 1.5 of both
 * specifications): integers, Variable Byte Integers, UTF-8 strings and binary data.
 *
 * Both classes are written for the hot path: plain loops over indexes, no per-call allocation
 * besides the values they return, and every bound checked against the end of the packet so that
 * no claimed length can read past it or make them allocate.
 *
 * @module
 */

import { MAX_VARINT } from "./constants.ts";
import { ProtocolError } from "./errors.ts";
import { wildcardInTopicName } from "./topic.ts";

const fatalDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();
// The default buffer of a new Writer: on V8 every typed array costs a backing store allocation.
const EMPTY = new Uint8Array(0);

/** Reads the fields of one packet from `buf[pos, end)`. */
export class Reader {
  /** The bytes; the packet lies in `[pos, end)`. */
  buf: Uint8Array;
  /** The next byte to read. */
  pos: number;
  /** One past the last byte of the packet. */
  end: number;
  /** The protocol version, which decides the statement ids errors cite. */
  version: number;
  // The last topic name read through the fast path of `topicName`.
  #topic = "";

  /** Creates a reader over `buf[pos, end)`. */
  constructor(buf: Uint8Array, pos: number, end: number, version: number) {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
    this.version = version;
  }

  /** Throws unless `n` more bytes remain. */
  need(n: number, what: string): void {
    if (this.pos + n > this.end) {
      throw new ProtocolError(`${what} runs past the end of the packet`);
    }
  }

  /** Reads one byte. */
  u8(what: string): number {
    if (this.pos >= this.end) throw new ProtocolError(`${what} runs past the end of the packet`);
    return this.buf[this.pos++];
  }

  /** Reads a Two Byte Integer. */
  u16(what: string): number {
    const pos = this.pos;
    if (pos + 2 > this.end) throw new ProtocolError(`${what} runs past the end of the packet`);
    this.pos = pos + 2;
    return (this.buf[pos] << 8) | this.buf[pos + 1];
  }

  /** Reads a Four Byte Integer. */
  u32(what: string): number {
    const pos = this.pos;
    if (pos + 4 > this.end) throw new ProtocolError(`${what} runs past the end of the packet`);
    this.pos = pos + 4;
    const b = this.buf;
    return b[pos] * 0x1000000 + ((b[pos + 1] << 16) | (b[pos + 2] << 8) | b[pos + 3]);
  }

  /** Reads a Variable Byte Integer: at most four bytes, in the fewest bytes [MQTT-1.5.5-1]. */
  varint(what: string): number {
    let value = 0;
    let multiplier = 1;
    for (let i = 0; i < 4; i++) {
      const byte = this.u8(what);
      value += (byte & 0x7f) * multiplier;
      if ((byte & 0x80) === 0) {
        if (byte === 0 && i > 0) {
          throw new ProtocolError(`${what} is not encoded in the fewest bytes`, "MQTT-1.5.5-1");
        }
        return value;
      }
      multiplier *= 128;
    }
    throw new ProtocolError(`${what} is longer than four bytes`);
  }

  /**
   * Reads a UTF-8 Encoded String: well-formed UTF-8 without surrogates [MQTT-1.5.4-1] and
   * without U+0000 [MQTT-1.5.4-2] (3.1.1: [MQTT-1.5.3-1], [MQTT-1.5.3-2]).
   */
  utf8(what: string): string {
    const end = this.#stringEnd(what);
    const start = this.pos;
    this.pos = end;
    const buf = this.buf;
    // Ids and names are short and ASCII nearly always: build those without a decoder call.
    // Anything else takes the slow path, which checks it all.
    if (end - start <= MAX_SHORT && plainAscii(buf, start, end)) return ascii(buf, start, end);
    return decodeUtf8(buf, start, end, what, this.version);
  }

  /**
   * Reads a PUBLISH topic name like {@linkcode utf8}, and throws when it holds a wildcard
   * [MQTT-3.3.2-2], checked on the bytes as they are read.
   */
  topicName(what: string): string {
    const end = this.#stringEnd(what);
    const start = this.pos;
    this.pos = end;
    const buf = this.buf;
    const length = end - start;
    if (length <= MAX_SHORT) {
      // Short ASCII without wildcards, checked while comparing it with the last topic read: a
      // repeated topic is returned again without building a string (on JavaScriptCore every
      // new string is garbage that costs far more than the compare).
      const last = this.#topic;
      let same = last.length === length;
      let i = start;
      for (; i < end; i++) {
        const c = buf[i];
        if (c === 0 || c > 0x7f || c === 0x2b || c === 0x23) break;
        if (same && c !== last.charCodeAt(i - start)) same = false;
      }
      if (i === end) return same ? last : (this.#topic = ascii(buf, start, end));
    }
    return checkTopic(decodeUtf8(buf, start, end, what, this.version));
  }

  /** Reads a string's two-byte length; returns where the string ends, within the packet. */
  #stringEnd(what: string): number {
    const length = this.u16(what);
    const end = this.pos + length;
    if (end > this.end) throw new ProtocolError(`${what} runs past the end of the packet`);
    return end;
  }

  /** Reads Binary Data as a view into the packet's bytes. */
  binary(what: string): Uint8Array {
    const length = this.u16(what);
    const start = this.pos;
    if (start + length > this.end) {
      throw new ProtocolError(`${what} runs past the end of the packet`);
    }
    this.pos = start + length;
    return this.buf.subarray(start, start + length);
  }
}

// The longest string `utf8` and `topicName` build from ASCII bytes themselves.
const MAX_SHORT = 32;
// Reused argument lists for String.fromCharCode, one per length: one flat string per call,
// where concatenating characters one by one makes a rope on JavaScriptCore (and a string per
// character on V8).
const CODES: number[][] = [];
for (let n = 0; n <= MAX_SHORT; n++) CODES.push(new Array<number>(n).fill(0));

/** Whether `buf[start, end)` is ASCII without U+0000. */
function plainAscii(buf: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = buf[i];
    if (c === 0 || c > 0x7f) return false;
  }
  return true;
}

/** The string of the ASCII bytes `buf[start, end)`, at most `MAX_SHORT` of them. */
function ascii(buf: Uint8Array, start: number, end: number): string {
  const codes = CODES[end - start];
  for (let i = 0; i < codes.length; i++) codes[i] = buf[start + i];
  return String.fromCharCode.apply(null, codes);
}

function checkTopic(topic: string): string {
  if (topic.includes("+") || topic.includes("#")) {
    throw wildcardInTopicName("PUBLISH topic name", topic);
  }
  return topic;
}

function decodeUtf8(
  buf: Uint8Array,
  start: number,
  end: number,
  what: string,
  version: number,
): string {
  let text: string;
  try {
    text = fatalDecoder.decode(buf.subarray(start, end));
  } catch {
    throw new ProtocolError(
      `${what} is not well-formed UTF-8`,
      cite(version, "MQTT-1.5.3-1", "MQTT-1.5.4-1"),
    );
  }
  if (text.includes("\0")) {
    throw new ProtocolError(
      `${what} contains the null character U+0000`,
      cite(version, "MQTT-1.5.3-2", "MQTT-1.5.4-2"),
    );
  }
  return text;
}

/**
 * The number of bytes `text` takes as UTF-8. Throws when it holds a lone surrogate (which has no
 * UTF-8 encoding [MQTT-1.5.4-1]) or U+0000 [MQTT-1.5.4-2], or is longer than 65,535 bytes.
 * `version` picks the statement ids errors cite (3.1.1: [MQTT-1.5.3-1], [MQTT-1.5.3-2]).
 */
export function utf8Length(text: string, what: string, version = 5): number {
  const n = text.length;
  let bytes = n;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) {
      if (c === 0) {
        throw new ProtocolError(
          `${what} contains the null character U+0000`,
          cite(version, "MQTT-1.5.3-2", "MQTT-1.5.4-2"),
        );
      }
    } else if (c < 0x800) {
      bytes += 1;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      const next = text.charCodeAt(i + 1);
      if (c > 0xdbff || !(next >= 0xdc00 && next <= 0xdfff)) {
        throw new ProtocolError(
          `${what} contains a lone surrogate, which has no UTF-8 encoding`,
          cite(version, "MQTT-1.5.3-1", "MQTT-1.5.4-1"),
        );
      }
      bytes += 2; // the pair is 2 UTF-16 units and 4 bytes
      i++;
    } else {
      bytes += 2;
    }
  }
  if (bytes > 0xffff) {
    throw new ProtocolError(`${what} is ${bytes} bytes long; the limit is 65535`);
  }
  return bytes;
}

/**
 * Reads a packet identifier, which must not be 0 (3.1.1 [MQTT-2.3.1-1], v5 [MQTT-2.2.1-3]).
 * `what` names the packet in the error.
 */
export function readPacketId(r: Reader, what: string, version: number): number {
  const packetId = r.u16("the packet identifier");
  if (packetId === 0) {
    throw new ProtocolError(
      `${what} has packet identifier 0`,
      cite(version, "MQTT-2.3.1-1", "MQTT-2.2.1-3"),
    );
  }
  return packetId;
}

/**
 * Checks a packet identifier about to be written: a whole number from 1 to 65,535 (3.1.1
 * [MQTT-2.3.1-1], v5 [MQTT-2.2.1-3]). Every packet that carries one is checked here, so that no
 * fraction or out-of-range value is silently truncated to 16 bits.
 */
export function checkPacketId(packetId: number | undefined, what: string, version: number): void {
  if (packetId === undefined || !Number.isInteger(packetId) || packetId < 1 || packetId > 0xffff) {
    throw new ProtocolError(
      `${what} needs a packet identifier from 1 to 65535, not ${packetId}`,
      cite(version, "MQTT-2.3.1-1", "MQTT-2.2.1-3"),
    );
  }
}

/**
 * The statement id that applies to `version`: MQTT 3.1 has no numbered statements, so 3 and 4
 * cite MQTT 3.1.1's, and 5 cites MQTT 5.0's.
 */
export function cite(version: number, v311: string, v5: string): string {
  return version === 5 ? v5 : v311;
}

/** The number of bytes a Variable Byte Integer takes. */
export function varintLength(value: number): number {
  return value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x200000 ? 3 : 4;
}

// Small buffers are cut from a shared slab, as Node's Buffer.allocUnsafe does: on Deno (V8)
// each new typed array costs ~0.45 µs for its backing store, a view into a slab ~0.03 µs.
const SLAB_SIZE = 8192;
let slab = new Uint8Array(SLAB_SIZE);
let slabUsed = 0;

/** A zeroed buffer of `size` bytes: a view into a shared slab when small, else its own. */
export function allocate(size: number): Uint8Array {
  if (size > SLAB_SIZE >>> 2) return new Uint8Array(size);
  if (slabUsed + size > SLAB_SIZE) {
    slab = new Uint8Array(SLAB_SIZE);
    slabUsed = 0;
  }
  const start = slabUsed;
  slabUsed = start + size;
  return slab.subarray(start, slabUsed);
}

/**
 * The size of a whole packet whose Remaining Length is `remainingLength`: the first byte, the
 * Remaining Length itself and what it counts. Throws when no Variable Byte Integer holds it.
 */
export function packetLength(remainingLength: number): number {
  if (remainingLength > MAX_VARINT) {
    throw new ProtocolError(
      `the packet would be ${remainingLength} bytes long; MQTT allows at most ${MAX_VARINT}`,
    );
  }
  return 1 + varintLength(remainingLength) + remainingLength;
}

/**
 * Writes packets into a buffer. `reserve(n)` makes room for `n` more bytes: a writer that starts
 * empty allocates exactly that (one packet, one allocation); one that already holds bytes grows
 * geometrically, so that many packets can be written back to back and sent in one write.
 */
export class Writer {
  /** The buffer; bytes `[0, pos)` are written. */
  buf: Uint8Array;
  /** The next byte to write. */
  pos: number;

  /** Creates a writer, optionally over a buffer to reuse. */
  constructor(buf: Uint8Array = EMPTY) {
    this.buf = buf;
    this.pos = 0;
  }

  /** Makes room for `n` more bytes. */
  reserve(n: number): void {
    const needed = this.pos + n;
    if (needed <= this.buf.length) return;
    const grown = this.pos === 0
      ? allocate(needed)
      : new Uint8Array(Math.max(needed, this.buf.length * 2));
    if (this.pos > 0) grown.set(this.buf.subarray(0, this.pos));
    this.buf = grown;
  }

  /** The bytes written so far, as a view. */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }

  /** Forgets what was written, keeping the buffer. */
  reset(): void {
    this.pos = 0;
  }

  /**
   * Reserves room for a whole packet and writes its fixed header: the type and flags byte, then
   * the Remaining Length. Returns whether the rest of the packet is to be written: always `true`
   * here; a writer that only measures packets returns `false`, and the packet writers, which
   * make every check before the header, stop there.
   */
  header(firstByte: number, remainingLength: number): boolean {
    this.reserve(packetLength(remainingLength));
    this.buf[this.pos++] = firstByte;
    this.varint(remainingLength);
    return true;
  }

  /** Writes one byte. */
  u8(value: number): void {
    this.buf[this.pos++] = value;
  }

  /** Writes a Two Byte Integer. */
  u16(value: number): void {
    const buf = this.buf;
    buf[this.pos++] = value >>> 8;
    buf[this.pos++] = value & 0xff;
  }

  /** Writes a Four Byte Integer. */
  u32(value: number): void {
    const buf = this.buf;
    buf[this.pos++] = value >>> 24;
    buf[this.pos++] = (value >>> 16) & 0xff;
    buf[this.pos++] = (value >>> 8) & 0xff;
    buf[this.pos++] = value & 0xff;
  }

  /** Writes a Variable Byte Integer. */
  varint(value: number): void {
    const buf = this.buf;
    do {
      let byte = value % 128;
      value = Math.floor(value / 128);
      if (value > 0) byte |= 0x80;
      buf[this.pos++] = byte;
    } while (value > 0);
  }

  /** Writes a UTF-8 string whose byte length `utf8Length` has already measured. */
  utf8(text: string, byteLength: number): void {
    const buf = this.buf;
    let pos = this.pos;
    buf[pos++] = byteLength >>> 8;
    buf[pos++] = byteLength & 0xff;
    if (byteLength === text.length) {
      // ASCII: one byte per code unit, no encoder call.
      for (let i = 0; i < byteLength; i++) buf[pos + i] = text.charCodeAt(i);
    } else {
      encoder.encodeInto(text, buf.subarray(pos, pos + byteLength));
    }
    this.pos = pos + byteLength;
  }

  /** Writes Binary Data with its two-byte length. */
  binary(data: Uint8Array): void {
    this.u16(data.length);
    this.buf.set(data, this.pos);
    this.pos += data.length;
  }

  /** Writes raw bytes. */
  raw(data: Uint8Array): void {
    this.buf.set(data, this.pos);
    this.pos += data.length;
  }
}

/**
 * A {@linkcode Writer} that measures instead of writing: `header` adds the whole packet's size to
 * `pos` and returns `false`, so a packet writer makes all its checks and writes nothing. The
 * buffer stays empty.
 */
export class SizeCounter extends Writer {
  /** Counts the packet whose Remaining Length is `remainingLength`; writes nothing. */
  override header(_firstByte: number, remainingLength: number): boolean {
    this.pos += packetLength(remainingLength);
    return false;
  }
}
