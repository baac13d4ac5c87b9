/**
 * The format of a `FileStore`'s log, `session.log`: how records are framed, checked,
 * written and replayed, and how a log torn by a crash is cut back to its last whole record.
 *
 * The log starts with the 8 bytes `KITELOG\x01` (the last byte is the format version), then
 * records back to back:
 *
 * ```text
 * u32 length | u32 crc | body (length bytes)                  integers big-endian
 * crc = CRC-32 (IEEE, as zlib) of the length field followed by the body
 * body = kind u8, then by kind:
 *   1 put             state u8, packetId u16 (0: none), sequence f64, PUBLISH (MQTT 5 bytes)
 *   2 update          state u8, packetId u16 (0: unchanged), sequence f64
 *   3 delete          sequence f64
 *   4 putIncoming     packetId u16
 *   5 deleteIncoming  packetId u16
 *   6 clear
 * state: 0 "queued", 1 "publish", 2 "pubrel"
 * ```
 *
 * The PUBLISH is the packet as `encode(packet, 5)` writes it, with packet id 1 standing in when
 * a QoS 1 or 2 publish has none yet; the record's own `packetId` field is the truth.
 *
 * A record whose length runs past the end of the file or whose CRC does not match is where the
 * log ends: a crash tore it, so {@linkcode openLog} drops it and everything after it.
 *
 * @module
 */

import type { FileHandle } from "node:fs/promises";
import { MqttError } from "../errors.ts";
import type { Writer } from "../packet/bytes.ts";
import { decode } from "../packet/decode.ts";
import { encodeInto } from "../packet/encode.ts";
import type { PublishPacket } from "../packet/types.ts";
import type { OutgoingState, StoreContents, StoredPublish } from "./store.ts";
import { errorCode, syncDirectory, writeAll } from "./_fs.ts";
import { fs, loadNodeBuiltins } from "./_node.ts";

/** The first bytes of every log: "KITELOG" and the format version. */
export const MAGIC: Uint8Array = Uint8Array.of(0x4b, 0x49, 0x54, 0x45, 0x4c, 0x4f, 0x47, 0x01);
// The frame around each body: its length and its CRC.
const FRAME = 8;
/** The record kind of a put. */
export const PUT = 1;
/** The record kind of an update. */
export const UPDATE = 2;
/** The record kind of a delete. */
export const DELETE = 3;
/** The record kind of a putIncoming. */
export const PUT_INCOMING = 4;
/** The record kind of a deleteIncoming. */
export const DELETE_INCOMING = 5;
/** The record kind of a clear. */
export const CLEAR = 6;
// The fixed part of a put body, before the PUBLISH, and all of an update body: kind, state,
// packet id, sequence.
const PUT_FIXED = 12;
/** The size of a putIncoming record, frame included. */
export const INCOMING_RECORD: number = FRAME + 3;
// A state's code is its index.
const STATES: readonly OutgoingState[] = ["queued", "publish", "pubrel"];

/** A live outgoing publish, as a `FileStore` keeps it in memory. */
export interface LivePublish {
  /** The PUBLISH. */
  packet: PublishPacket;
  /** The code of its state: 0 "queued", 1 "publish", 2 "pubrel". */
  state: number;
  /** 0 when it has none yet. */
  packetId: number;
  /** The size of its put record. */
  size: number;
}

/** The code a state is written as in the log: 0, 1 or 2; -1 for what is not a state. */
function stateCode(state: OutgoingState): number {
  return STATES.indexOf(state);
}

function checkSequence(sequence: number): void {
  if (typeof sequence !== "number" || Number.isNaN(sequence)) {
    throw new TypeError(`the sequence must be a number, not ${String(sequence)}`);
  }
}

function checkState(code: number, state: OutgoingState): void {
  if (code < 0) throw new TypeError(`unknown state ${JSON.stringify(state)}`);
}

/** Checks a packet id before it is written; `undefined` (none) passes. */
function checkPacketId(packetId: number | undefined): void {
  if (
    packetId !== undefined && !(Number.isInteger(packetId) && packetId >= 1 && packetId <= 0xffff)
  ) {
    throw new RangeError(`a packet id is from 1 to 65535, not ${packetId}`);
  }
}

const CRC_TABLE = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/** Continues a CRC-32 (before its final inversion) over `buf[start, end)`. */
function crcUpdate(crc: number, buf: Uint8Array, start: number, end: number): number {
  for (let i = start; i < end; i++) crc = CRC_TABLE[(crc ^ buf[i]) & 0xff] ^ (crc >>> 8);
  return crc;
}

/** The CRC of the record framed at `start` whose body ends at `end`: length field, then body. */
function recordCrc(buf: Uint8Array, start: number, end: number): number {
  return ~crcUpdate(crcUpdate(-1, buf, start, start + 4), buf, start + FRAME, end) >>> 0;
}

function readU16(buf: Uint8Array, pos: number): number {
  return (buf[pos] << 8) | buf[pos + 1];
}

function readU32(buf: Uint8Array, pos: number): number {
  return buf[pos] * 0x1000000 + ((buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]);
}

// Sequences go through one scratch float, so that writing one allocates nothing.
const scratch = new DataView(new ArrayBuffer(8));

function writeF64(w: Writer, value: number): void {
  scratch.setFloat64(0, value);
  const buf = w.buf;
  const pos = w.pos;
  for (let i = 0; i < 8; i++) buf[pos + i] = scratch.getUint8(i);
  w.pos = pos + 8;
}

function readF64(buf: Uint8Array, pos: number): number {
  for (let i = 0; i < 8; i++) scratch.setUint8(i, buf[pos + i]);
  return scratch.getFloat64(0);
}

/** Starts a record of `kind` with room for `room` more body bytes; returns where it starts. */
function beginRecord(w: Writer, kind: number, room: number): number {
  w.reserve(FRAME + 1 + room);
  const start = w.pos;
  w.buf[start + FRAME] = kind;
  w.pos = start + FRAME + 1;
  return start;
}

/** Fills in the length and CRC of the record that starts at `start`; returns its size. */
function endRecord(w: Writer, start: number): number {
  const end = w.pos;
  w.pos = start;
  w.u32(end - start - FRAME);
  w.u32(recordCrc(w.buf, start, end));
  w.pos = end;
  return end - start;
}

/** Writes what a put and an update body share after the kind: state, packet id, sequence. */
function writeFixed(w: Writer, state: number, packetId: number, sequence: number): void {
  w.u8(state);
  w.u16(packetId);
  writeF64(w, sequence);
}

/**
 * Appends a put record. The PUBLISH is written with packet id 1 standing in when it needs one
 * and has none yet, and with `packetId` when that differs from the packet's own. A PUBLISH that
 * does not encode leaves `w` as it was. Returns the size of the record.
 */
function writePut(
  w: Writer,
  sequence: number,
  state: number,
  packetId: number,
  packet: PublishPacket,
): number {
  const start = beginRecord(w, PUT, PUT_FIXED - 1);
  writeFixed(w, state, packetId, sequence);
  const wireId = packetId === 0 ? (packet.qos > 0 ? 1 : undefined) : packetId;
  try {
    encodeInto(w, packet.packetId === wireId ? packet : { ...packet, packetId: wireId }, 5);
  } catch (error) {
    w.pos = start;
    throw error;
  }
  return endRecord(w, start);
}

function writeIncoming(w: Writer, kind: number, packetId: number): void {
  const start = beginRecord(w, kind, 2);
  w.u16(packetId);
  endRecord(w, start);
}

// The append functions check what they are given against the format first: nothing is written
// when it does not fit. They throw a TypeError for a sequence that is not a number or an
// unknown state, and a RangeError for a packet id out of range.

/**
 * Appends a put record.
 *
 * @param packetId The packet's id; 0 for none.
 * @returns The publish as a store keeps it live.
 */
export function appendPut(
  w: Writer,
  sequence: number,
  state: OutgoingState,
  packetId: number,
  packet: PublishPacket,
): LivePublish {
  const code = stateCode(state);
  checkSequence(sequence);
  checkState(code, state);
  checkPacketId(packetId === 0 ? undefined : packetId);
  const size = writePut(w, sequence, code, packetId, packet);
  return { packet, state: code, packetId, size };
}

/**
 * Appends an update record.
 *
 * @param packetId The id once assigned; `undefined` leaves it unchanged.
 * @returns The code of the state.
 */
export function appendUpdate(
  w: Writer,
  sequence: number,
  state: OutgoingState,
  packetId: number | undefined,
): number {
  const code = stateCode(state);
  checkSequence(sequence);
  checkState(code, state);
  checkPacketId(packetId);
  const start = beginRecord(w, UPDATE, PUT_FIXED - 1);
  writeFixed(w, code, packetId ?? 0, sequence);
  endRecord(w, start);
  return code;
}

/** Appends a delete record. */
export function appendDelete(w: Writer, sequence: number): void {
  checkSequence(sequence);
  const start = beginRecord(w, DELETE, 8);
  writeF64(w, sequence);
  endRecord(w, start);
}

/** Appends a putIncoming or a deleteIncoming record (`kind`). */
export function appendIncoming(w: Writer, kind: number, packetId: number): void {
  checkPacketId(packetId);
  if (packetId === undefined) throw new RangeError("a packet id is needed");
  writeIncoming(w, kind, packetId);
}

/** Appends a clear record. */
export function appendClear(w: Writer): void {
  endRecord(w, beginRecord(w, CLEAR, 0));
}

/**
 * Writes a whole log that holds exactly the live state: the header, a put record for each
 * outgoing publish in the order of their sequences (updating each one's `size`), then a
 * putIncoming record for each incoming packet id.
 *
 * @returns The bytes of the put records.
 */
export function writeLog(
  w: Writer,
  outgoing: Map<number, LivePublish>,
  incoming: Set<number>,
): number {
  w.reserve(MAGIC.length);
  w.raw(MAGIC);
  let outgoingBytes = 0;
  const sequences = [...outgoing.keys()].sort((a, b) => a - b);
  for (const sequence of sequences) {
    const entry = outgoing.get(sequence)!;
    entry.size = writePut(w, sequence, entry.state, entry.packetId, entry.packet);
    outgoingBytes += entry.size;
  }
  for (const packetId of incoming) writeIncoming(w, PUT_INCOMING, packetId);
  return outgoingBytes;
}

/** A live outgoing publish found while replaying: where its PUBLISH lies in the log. */
interface ReplayedEntry {
  state: number;
  packetId: number;
  start: number;
  end: number;
}

/** What replaying a log found: the live state, and where the intact records end. */
interface Replay {
  outgoing: Map<number, ReplayedEntry>;
  incoming: Set<number>;
  validLength: number;
}

/** Replays the records of `log` (which starts with {@linkcode MAGIC}), up to the first bad one. */
function replay(log: Uint8Array): Replay {
  const outgoing = new Map<number, ReplayedEntry>();
  const incoming = new Set<number>();
  const n = log.length;
  let pos = MAGIC.length;
  while (pos + FRAME < n) {
    const length = readU32(log, pos);
    const body = pos + FRAME;
    const end = body + length;
    if (length === 0 || end > n || readU32(log, pos + 4) !== recordCrc(log, pos, end)) break;
    const kind = log[body];
    if (kind === PUT && length > PUT_FIXED) {
      const state = log[body + 1];
      if (state >= STATES.length) break;
      const sequence = readF64(log, body + 4);
      const packetId = readU16(log, body + 2);
      outgoing.set(sequence, { state, packetId, start: body + PUT_FIXED, end });
    } else if (kind === UPDATE && length === PUT_FIXED) {
      const state = log[body + 1];
      if (state >= STATES.length) break;
      const entry = outgoing.get(readF64(log, body + 4));
      if (entry !== undefined) {
        entry.state = state;
        const packetId = readU16(log, body + 2);
        if (packetId !== 0) entry.packetId = packetId;
      }
    } else if (kind === DELETE && length === 9) {
      outgoing.delete(readF64(log, body + 1));
    } else if (kind === PUT_INCOMING && length === 3) {
      incoming.add(readU16(log, body + 1));
    } else if (kind === DELETE_INCOMING && length === 3) {
      incoming.delete(readU16(log, body + 1));
    } else if (kind === CLEAR && length === 1) {
      outgoing.clear();
      incoming.clear();
    } else {
      break;
    }
    pos = end;
  }
  return { outgoing, incoming, validLength: pos };
}

/** A log opened by {@linkcode openLog}, and the live state its records left. */
export interface OpenedLog {
  /** The log, open for reading and writing. */
  file: FileHandle;
  /** Its size: the length of its intact records. */
  logBytes: number;
  /** The live outgoing publishes, by sequence. */
  outgoing: Map<number, LivePublish>;
  /** The bytes of their put records. */
  outgoingBytes: number;
  /** The live incoming QoS 2 packet ids, in arrival order. */
  incoming: Set<number>;
  /** What the store holds, as `open()` returns it. */
  contents: StoreContents;
}

/**
 * Opens the log at `logPath` (creating it if needed), replays it and cuts off what a crash
 * tore. The log is closed again when this fails.
 *
 * @param directory The log's folder, flushed when the log is new.
 * @throws {MqttError} When the file is not a Kite session log (it is left untouched), or a
 *   publish in it does not decode.
 */
export async function openLog(directory: string, logPath: string): Promise<OpenedLog> {
  loadNodeBuiltins();
  let log: Uint8Array;
  let exists = true;
  try {
    const buffer = await fs.readFile(logPath);
    log = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  } catch (error) {
    if (errorCode(error) !== "ENOENT") throw error;
    log = new Uint8Array(0);
    exists = false;
  }
  const headerLength = Math.min(log.length, MAGIC.length);
  for (let i = 0; i < headerLength; i++) {
    if (log[i] !== MAGIC[i]) {
      throw new MqttError(`${logPath} is not a Kite session log; it was left untouched`);
    }
  }
  const file = await fs.open(logPath, exists ? "r+" : "w+");
  try {
    return await repair(file, log, exists, directory, logPath);
  } catch (error) {
    await file.close().catch(() => {});
    throw error;
  }
}

/** Makes `file`, whose bytes are `log`, a whole log, and reads its live state. */
async function repair(
  file: FileHandle,
  log: Uint8Array,
  exists: boolean,
  directory: string,
  logPath: string,
): Promise<OpenedLog> {
  const outgoing = new Map<number, LivePublish>();
  let outgoingBytes = 0;
  if (log.length < MAGIC.length) {
    // New, or torn while it was being created.
    await writeAll(file, MAGIC, MAGIC.length, 0);
    await file.truncate(MAGIC.length);
    await file.sync();
    if (!exists) await syncDirectory(directory);
    const contents = { outgoing: [], incoming: [] };
    return { file, logBytes: MAGIC.length, outgoing, outgoingBytes, incoming: new Set(), contents };
  }
  const replayed = replay(log);
  const { incoming, validLength } = replayed;
  if (validLength < log.length) {
    await file.truncate(validLength);
    await file.sync();
  }
  const sequences = [...replayed.outgoing.keys()].sort((a, b) => a - b);
  const records: StoredPublish[] = [];
  for (const sequence of sequences) {
    const { state, packetId, start, end } = replayed.outgoing.get(sequence)!;
    // A copy of its own, so that the payload does not hold on to the whole log.
    let packet: PublishPacket;
    try {
      const decoded = decode(log.slice(start, end), 5);
      if (decoded.type !== "publish") throw new TypeError(`a ${decoded.type} packet`);
      packet = decoded;
    } catch (error) {
      throw new MqttError(
        `${logPath} holds a publish (sequence ${sequence}) that does not decode`,
        { cause: error },
      );
    }
    if (packetId === 0) delete packet.packetId;
    else packet.packetId = packetId;
    const size = FRAME + end - start + PUT_FIXED;
    outgoing.set(sequence, { packet, state, packetId, size });
    outgoingBytes += size;
    records.push({ sequence, packet, state: STATES[state] });
  }
  const contents = { outgoing: records, incoming: [...incoming] };
  return { file, logBytes: validLength, outgoing, outgoingBytes, incoming, contents };
}
