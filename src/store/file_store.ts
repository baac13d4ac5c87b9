/**
 * A {@linkcode Store} on disk: an append-only log in a folder of its own, so that unfinished QoS
 * 1 and 2 publishes and the ids of incoming QoS 2 messages survive a restart of the process, a
 * crash, and (with `fsync: "always"`) a power cut.
 *
 * The folder holds:
 * - `session.log`: the log. It starts with the 8 bytes `KITELOG\x01` (the last byte is the
 *   format version), then records back to back:
 *
 *   ```text
 *   u32 length | u32 crc | body (length bytes)                  integers big-endian
 *   crc = CRC-32 (IEEE, as zlib) of the length field followed by the body
 *   body = kind u8, then by kind:
 *     1 put             state u8, packetId u16 (0: none), sequence f64, PUBLISH (MQTT 5 bytes)
 *     2 update          state u8, packetId u16 (0: unchanged), sequence f64
 *     3 delete          sequence f64
 *     4 putIncoming     packetId u16
 *     5 deleteIncoming  packetId u16
 *     6 clear
 *   state: 0 "queued", 1 "publish", 2 "pubrel"
 *   ```
 *
 *   The PUBLISH is the packet as `encode(packet, 5)` writes it, with packet id 1 standing in
 *   when a QoS 1 or 2 publish has none yet; the record's own `packetId` field is the truth.
 * - `lock`: the process id of the process that has the store open.
 * - `session.log.compact`: briefly, while compaction writes the new log.
 *
 * A record whose length runs past the end of the file or whose CRC does not match is where the
 * log ends: a crash tore it, so `open()` drops it and everything after it.
 *
 * @module
 */

import * as fs from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { MqttError } from "../errors.ts";
import { Writer } from "../packet/bytes.ts";
import { decode } from "../packet/decode.ts";
import { encodeInto } from "../packet/encode.ts";
import type { PublishPacket } from "../packet/types.ts";
import type { OutgoingState, Store, StoreContents, StoredPublish } from "./store.ts";

/**
 * How a {@linkcode FileStore} trades durability for speed, and when to compact its log.
 *
 * @example
 * ```ts
 * import type { FileStoreOptions } from "./file_store.ts";
 *
 * const options: FileStoreOptions = { fsync: "batch", compactRatio: 8 };
 * console.log(options.fsync); // "batch"
 * ```
 */
export interface FileStoreOptions {
  /**
   * When a change is durable, that is when the promise of the call that made it resolves:
   * - `"always"` (the default): after the batch holding its record was written and flushed
   *   to the disk with `fdatasync`. It survives a crash of the process and of the machine.
   * - `"batch"`: after the batch was written to the operating system; the log is flushed to
   *   the disk at most every 100 ms, and within 100 ms of a write. It survives a crash of the
   *   process; a crash of the machine may lose the last 100 ms.
   * - `"never"`: after the batch was written to the operating system; the store never flushes
   *   the log itself (the operating system does, in its own time).
   *
   * Compaction flushes the new log before it replaces the old one under every policy.
   */
  fsync?: "always" | "batch" | "never";
  /** Compact when the log is larger than this many times its live records. Default 4. */
  compactRatio?: number;
  /** Never compact a log smaller than this many bytes. Default 1 MiB. */
  minCompactBytes?: number;
}

const LOG_FILE = "session.log";
const COMPACT_FILE = "session.log.compact";
const LOCK_FILE = "lock";
// "KITELOG" and the format version.
const MAGIC = Uint8Array.of(0x4b, 0x49, 0x54, 0x45, 0x4c, 0x4f, 0x47, 0x01);
// The frame around each body: its length and its CRC.
const FRAME = 8;
const PUT = 1;
const UPDATE = 2;
const DELETE = 3;
const PUT_INCOMING = 4;
const DELETE_INCOMING = 5;
const CLEAR = 6;
// The fixed part of a put body, before the PUBLISH: kind, state, packet id, sequence.
const PUT_FIXED = 12;
const INCOMING_RECORD = FRAME + 3;
const STATES: readonly OutgoingState[] = ["queued", "publish", "pubrel"];
const BATCH_SYNC_INTERVAL = 100;
// A writer whose buffer grew past this is dropped after its batch rather than kept for reuse.
const KEEP_BUFFER = 1 << 20;

const NEW = 0;
const OPENING = 1;
const OPEN = 2;
const CLOSED = 3;

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

function readU32(buf: Uint8Array, pos: number): number {
  return buf[pos] * 0x1000000 + ((buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]);
}

function writeU32(buf: Uint8Array, pos: number, value: number): void {
  buf[pos] = value >>> 24;
  buf[pos + 1] = (value >>> 16) & 0xff;
  buf[pos + 2] = (value >>> 8) & 0xff;
  buf[pos + 3] = value & 0xff;
}

// Sequences go through one scratch float, so that writing one allocates nothing.
const scratch = new DataView(new ArrayBuffer(8));

function writeF64(buf: Uint8Array, pos: number, value: number): void {
  scratch.setFloat64(0, value);
  for (let i = 0; i < 8; i++) buf[pos + i] = scratch.getUint8(i);
}

function readF64(buf: Uint8Array, pos: number): number {
  for (let i = 0; i < 8; i++) scratch.setUint8(i, buf[pos + i]);
  return scratch.getFloat64(0);
}

function stateCode(state: OutgoingState): number {
  return state === "publish" ? 1 : state === "queued" ? 0 : state === "pubrel" ? 2 : -1;
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
  const buf = w.buf;
  const end = w.pos;
  writeU32(buf, start, end - start - FRAME);
  writeU32(buf, start + 4, recordCrc(buf, start, end));
  return end - start;
}

/**
 * Appends a put record. The PUBLISH is written with packet id 1 standing in when it needs one
 * and has none yet, and with `packetId` when that differs from the packet's own.
 */
function writePut(
  w: Writer,
  sequence: number,
  state: number,
  packetId: number,
  packet: PublishPacket,
): number {
  const start = beginRecord(w, PUT, PUT_FIXED - 1);
  const buf = w.buf;
  const pos = w.pos;
  buf[pos] = state;
  buf[pos + 1] = packetId >>> 8;
  buf[pos + 2] = packetId & 0xff;
  writeF64(buf, pos + 3, sequence);
  w.pos = pos + 11;
  const wireId = packetId === 0 ? (packet.qos > 0 ? 1 : undefined) : packetId;
  try {
    encodeInto(w, packet.packetId === wireId ? packet : { ...packet, packetId: wireId }, 5);
  } catch (error) {
    w.pos = start;
    throw error;
  }
  return endRecord(w, start);
}

/** A live outgoing publish, as the store keeps it in memory. */
interface Entry {
  packet: PublishPacket;
  state: number;
  /** 0 when it has none yet. */
  packetId: number;
  /** The size of its put record. */
  size: number;
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
      if (state > 2) break;
      const sequence = readF64(log, body + 4);
      const packetId = (log[body + 2] << 8) | log[body + 3];
      outgoing.set(sequence, { state, packetId, start: body + PUT_FIXED, end });
    } else if (kind === UPDATE && length === PUT_FIXED) {
      const state = log[body + 1];
      if (state > 2) break;
      const entry = outgoing.get(readF64(log, body + 4));
      if (entry !== undefined) {
        entry.state = state;
        const packetId = (log[body + 2] << 8) | log[body + 3];
        if (packetId !== 0) entry.packetId = packetId;
      }
    } else if (kind === DELETE && length === 9) {
      outgoing.delete(readF64(log, body + 1));
    } else if (kind === PUT_INCOMING && length === 3) {
      incoming.add((log[body + 1] << 8) | log[body + 2]);
    } else if (kind === DELETE_INCOMING && length === 3) {
      incoming.delete((log[body + 1] << 8) | log[body + 2]);
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

/** The calls of one group commit: they share one promise. */
interface Batch {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

function newBatch(): Batch {
  const batch = {} as Batch;
  batch.promise = new Promise<void>((resolve, reject) => {
    batch.resolve = resolve;
    batch.reject = reject;
  });
  return batch;
}

function errorCode(error: unknown): unknown {
  return (error as { code?: unknown } | null)?.code;
}

// The locks the stores of this process hold, by the real path of the lock file.
const heldLocks = new Set<string>();
// Names the files a lock is written to before it is linked into place.
let lockFiles = 0;

/** Whether a process with id `pid` exists (a process of another user counts). */
function processExists(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errorCode(error) === "EPERM";
  }
}

/** Writes all of `buf[0, length)` at `position`. */
async function writeAll(
  file: fs.FileHandle,
  buf: Uint8Array,
  length: number,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesWritten } = await file.write(buf, done, length - done, position + done);
    if (bytesWritten <= 0) throw new Error("the file system accepted no bytes");
    done += bytesWritten;
  }
}

/** Flushes a folder's entries (a rename, a new file) to the disk, where the platform can. */
async function syncDirectory(directory: string): Promise<void> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(directory, "r");
    await handle.sync();
  } catch {
    // Windows cannot open a folder as a file, and some file systems refuse fsync on one.
  } finally {
    await handle?.close().catch(() => {});
  }
}

/**
 * A {@linkcode Store} that keeps the session in an append-only log on disk, so that it survives
 * a restart of the process.
 *
 * Every call appends a record to the current batch, synchronously and in call order; the calls
 * of one tick share one `write` (and one flush to the disk under `fsync: "always"`), and each
 * call's promise resolves once its record is durable as {@linkcode FileStoreOptions.fsync}
 * says. While a batch is being written, the calls that arrive form the next one.
 *
 * When the log outgrows `compactRatio` times its live records (and `minCompactBytes`), the
 * store writes the live records into a new file, flushes it, renames it over the log and
 * flushes the folder; a crash at any point leaves either the old log or the new one.
 *
 * A file named `lock`, holding the process id, keeps a second store (in this process or
 * another) from opening the same folder; a lock left by a process that no longer exists is
 * taken over, and so is one naming this process when no store of this process holds it (a
 * restarted container's process often has the id its predecessor had). Two processes that find
 * the same stale lock at the same instant can both take it over, and a lock naming a process
 * that has reused the id of a crashed one keeps the folder locked until the file is removed.
 *
 * @example Surviving a restart
 * ```ts ignore
 * import { FileStore } from "./file_store.ts";
 *
 * const store = new FileStore("./kite-session");
 * await store.open();
 * const payload = new TextEncoder().encode("hi");
 * const packet = { type: "publish", topic: "a/b", payload, qos: 1, retain: false, dup: false } as const;
 * await store.put({ sequence: 1, state: "queued", packet });
 * await store.close();
 *
 * const again = new FileStore("./kite-session");
 * const { outgoing } = await again.open();
 * console.log(outgoing[0].packet.topic); // "a/b"
 * await again.close();
 * ```
 */
export class FileStore implements Store {
  readonly #directory: string;
  readonly #logPath: string;
  readonly #lockPath: string;
  // The real path of the lock this store holds, as `heldLocks` knows it.
  #lockKey: string | undefined;
  readonly #fsync: "always" | "batch" | "never";
  readonly #compactRatio: number;
  readonly #minCompactBytes: number;

  #phase = NEW;
  #file: fs.FileHandle | undefined;
  #failure: MqttError | undefined;
  #opening: Promise<StoreContents> | undefined;
  #closing: Promise<void> | undefined;

  // The live state, as the calls made so far left it (written or not).
  #outgoing = new Map<number, Entry>();
  #incoming = new Set<number>();
  // The bytes of the put records in #outgoing.
  #outgoingBytes = 0;
  // The size of the log on disk.
  #logBytes = 0;
  // A failed compaction is not retried until the log has grown past this.
  #compactFloor = 0;

  // The records of the batch being gathered, and a spare buffer for the next one.
  #writer = new Writer();
  #spare: Writer | undefined;
  #batch: Batch | undefined;
  #draining: Promise<void> | undefined;

  // fsync: "batch": whether written bytes await a flush, and when the last flush was.
  #dirty = false;
  #syncDue = false;
  #lastSync = 0;
  #syncTimer: ReturnType<typeof setTimeout> | undefined;

  /**
   * Creates a store over `directory`, which `open()` creates if needed. Nothing touches the
   * disk before `open()`.
   *
   * @param directory The folder of this session's log: one folder per client.
   * @param options The flush policy and when to compact.
   */
  constructor(directory: string, options: FileStoreOptions = {}) {
    const { fsync = "always", compactRatio = 4, minCompactBytes = 1 << 20 } = options;
    if (fsync !== "always" && fsync !== "batch" && fsync !== "never") {
      throw new TypeError(`fsync must be "always", "batch" or "never", not ${String(fsync)}`);
    }
    if (!(compactRatio > 1)) {
      throw new RangeError(`compactRatio must be greater than 1, not ${compactRatio}`);
    }
    if (!(minCompactBytes >= 0)) {
      throw new RangeError(`minCompactBytes must be 0 or more, not ${minCompactBytes}`);
    }
    this.#directory = directory;
    this.#logPath = join(directory, LOG_FILE);
    this.#lockPath = join(directory, LOCK_FILE);
    this.#fsync = fsync;
    this.#compactRatio = compactRatio;
    this.#minCompactBytes = minCompactBytes;
  }

  /**
   * Creates the folder if needed, takes its lock, replays the log and cuts off a torn last
   * record.
   *
   * @returns The live publishes ordered by sequence, and the incoming ids in arrival order.
   * @throws {MqttError} When another store holds the folder, the log is not a Kite session log,
   *   or the store was opened before.
   */
  open(): Promise<StoreContents> {
    if (this.#phase !== NEW) {
      return Promise.reject(
        new MqttError(
          this.#phase === CLOSED ? "the store is closed" : "the store was already opened",
        ),
      );
    }
    this.#phase = OPENING;
    this.#opening = this.#open();
    return this.#opening;
  }

  async #open(): Promise<StoreContents> {
    try {
      await fs.mkdir(this.#directory, { recursive: true });
      await this.#lock();
      // A compaction that did not reach its rename: the log it was replacing is whole.
      await fs.rm(join(this.#directory, COMPACT_FILE), { force: true });
      const contents = await this.#load();
      // When close() was called meanwhile, it shuts the store down once this returns.
      if (this.#phase === OPENING) this.#phase = OPEN;
      return contents;
    } catch (error) {
      this.#phase = CLOSED;
      await this.#file?.close().catch(() => {});
      this.#file = undefined;
      await this.#unlock();
      throw error;
    }
  }

  /**
   * Adds a publish.
   *
   * @param record The publish, its sequence and its state.
   * @returns A promise that resolves once the record is durable.
   */
  put(record: StoredPublish): Promise<void> {
    if (this.#phase !== OPEN || this.#failure !== undefined) return this.#refuse();
    const { sequence, packet } = record;
    const state = stateCode(record.state);
    const packetId = packet.packetId ?? 0;
    let size: number;
    try {
      this.#checkSequence(sequence);
      if (state < 0) throw new TypeError(`unknown state ${JSON.stringify(record.state)}`);
      this.#checkPacketId(packetId === 0 ? undefined : packetId);
      size = writePut(this.#writer, sequence, state, packetId, packet);
    } catch (error) {
      return Promise.reject(error);
    }
    const previous = this.#outgoing.get(sequence);
    if (previous !== undefined) this.#outgoingBytes -= previous.size;
    this.#outgoing.set(sequence, { packet, state, packetId, size });
    this.#outgoingBytes += size;
    return this.#commitPromise();
  }

  /**
   * Records a new state, and the packet id once assigned, of a stored publish. A sequence the
   * store does not hold is ignored.
   *
   * @returns A promise that resolves once the record is durable.
   */
  update(sequence: number, state: OutgoingState, packetId?: number): Promise<void> {
    if (this.#phase !== OPEN || this.#failure !== undefined) return this.#refuse();
    const code = stateCode(state);
    try {
      this.#checkSequence(sequence);
      if (code < 0) throw new TypeError(`unknown state ${JSON.stringify(state)}`);
      this.#checkPacketId(packetId);
    } catch (error) {
      return Promise.reject(error);
    }
    const w = this.#writer;
    const start = beginRecord(w, UPDATE, PUT_FIXED - 1);
    const buf = w.buf;
    const pos = w.pos;
    const id = packetId ?? 0;
    buf[pos] = code;
    buf[pos + 1] = id >>> 8;
    buf[pos + 2] = id & 0xff;
    writeF64(buf, pos + 3, sequence);
    w.pos = pos + 11;
    endRecord(w, start);
    const entry = this.#outgoing.get(sequence);
    if (entry !== undefined) {
      entry.state = code;
      if (id !== 0) entry.packetId = id;
    }
    return this.#commitPromise();
  }

  /**
   * Removes a publish.
   *
   * @returns A promise that resolves once the record is durable.
   */
  delete(sequence: number): Promise<void> {
    if (this.#phase !== OPEN || this.#failure !== undefined) return this.#refuse();
    try {
      this.#checkSequence(sequence);
    } catch (error) {
      return Promise.reject(error);
    }
    const w = this.#writer;
    const start = beginRecord(w, DELETE, 8);
    writeF64(w.buf, w.pos, sequence);
    w.pos += 8;
    endRecord(w, start);
    const entry = this.#outgoing.get(sequence);
    if (entry !== undefined) {
      this.#outgoing.delete(sequence);
      this.#outgoingBytes -= entry.size;
    }
    return this.#commitPromise();
  }

  /**
   * Records an incoming QoS 2 packet id.
   *
   * @returns A promise that resolves once the record is durable.
   */
  putIncoming(packetId: number): Promise<void> {
    return this.#incomingRecord(PUT_INCOMING, packetId);
  }

  /**
   * Forgets an incoming QoS 2 packet id.
   *
   * @returns A promise that resolves once the record is durable.
   */
  deleteIncoming(packetId: number): Promise<void> {
    return this.#incomingRecord(DELETE_INCOMING, packetId);
  }

  /**
   * Forgets everything.
   *
   * @returns A promise that resolves once the record is durable.
   */
  clear(): Promise<void> {
    if (this.#phase !== OPEN || this.#failure !== undefined) return this.#refuse();
    const w = this.#writer;
    endRecord(w, beginRecord(w, CLEAR, 0));
    this.#outgoing.clear();
    this.#incoming.clear();
    this.#outgoingBytes = 0;
    return this.#commitPromise();
  }

  /**
   * Writes what is pending, flushes it (unless `fsync` is `"never"`), closes the log and
   * removes the lock. Calling it again returns the same promise; every other call rejects
   * from now on.
   */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    const phase = this.#phase;
    this.#phase = CLOSED;
    if (phase === OPEN) this.#closing = this.#shutDown();
    else if (phase === OPENING) {
      this.#closing = this.#opening!.then(() => this.#shutDown(), () => {});
    } else this.#closing = Promise.resolve();
    return this.#closing;
  }

  async #shutDown(): Promise<void> {
    const file = this.#file!;
    try {
      while (this.#draining !== undefined) await this.#draining;
      clearTimeout(this.#syncTimer);
      this.#syncTimer = undefined;
      if (this.#dirty && this.#failure === undefined) await file.datasync();
    } finally {
      this.#file = undefined;
      await file.close().catch(() => {});
      await this.#unlock();
    }
  }

  #refuse(): Promise<never> {
    if (this.#phase === OPEN) return Promise.reject(this.#failure);
    return Promise.reject(
      new MqttError(
        this.#phase === CLOSED
          ? "the store is closed"
          : "the store is not open: call open() and wait for it first",
      ),
    );
  }

  #checkSequence(sequence: number): void {
    if (typeof sequence !== "number" || Number.isNaN(sequence)) {
      throw new TypeError(`the sequence must be a number, not ${String(sequence)}`);
    }
  }

  #checkPacketId(packetId: number | undefined): void {
    if (
      packetId !== undefined && !(Number.isInteger(packetId) && packetId >= 1 && packetId <= 0xffff)
    ) {
      throw new RangeError(`a packet id is from 1 to 65535, not ${packetId}`);
    }
  }

  #incomingRecord(kind: number, packetId: number): Promise<void> {
    if (this.#phase !== OPEN || this.#failure !== undefined) return this.#refuse();
    try {
      this.#checkPacketId(packetId);
      if (packetId === undefined) throw new RangeError("a packet id is needed");
    } catch (error) {
      return Promise.reject(error);
    }
    const w = this.#writer;
    const start = beginRecord(w, kind, 2);
    w.buf[w.pos] = packetId >>> 8;
    w.buf[w.pos + 1] = packetId & 0xff;
    w.pos += 2;
    endRecord(w, start);
    if (kind === PUT_INCOMING) this.#incoming.add(packetId);
    else this.#incoming.delete(packetId);
    return this.#commitPromise();
  }

  /** The promise of the batch the record just written belongs to; starts the writing. */
  #commitPromise(): Promise<void> {
    let batch = this.#batch;
    if (batch === undefined) {
      batch = this.#batch = newBatch();
      this.#draining ??= this.#drain();
    }
    return batch.promise;
  }

  /** The size of a log that holds exactly the live records. */
  #liveBytes(): number {
    return MAGIC.length + this.#outgoingBytes + this.#incoming.size * INCOMING_RECORD;
  }

  /** Writes batches, and flushes under `fsync: "batch"`, until there is nothing left to do. */
  async #drain(): Promise<void> {
    // Let the rest of this tick's calls join the batch.
    await undefined;
    try {
      while (true) {
        const batch = this.#batch;
        if (batch !== undefined) {
          const writer = this.#writer;
          this.#batch = undefined;
          this.#writer = this.#spare ?? new Writer();
          this.#spare = undefined;
          try {
            await this.#commit(writer);
          } catch (error) {
            this.#fail(error, batch);
            return;
          }
          writer.reset();
          if (writer.buf.length <= KEEP_BUFFER) this.#spare = writer;
          batch.resolve();
        } else if (this.#syncDue) {
          this.#syncDue = false;
          if (this.#dirty) {
            this.#dirty = false;
            this.#lastSync = Date.now();
            try {
              await this.#file!.datasync();
            } catch (error) {
              this.#fail(error, undefined);
              return;
            }
          }
        } else {
          return;
        }
      }
    } finally {
      this.#draining = undefined;
    }
  }

  /** Makes the records in `writer` durable: appended to the log, or folded into a compaction. */
  async #commit(writer: Writer): Promise<void> {
    const length = writer.pos;
    const grown = this.#logBytes + length;
    if (
      grown > this.#minCompactBytes && grown > this.#compactFloor &&
      grown > this.#compactRatio * this.#liveBytes()
    ) {
      try {
        // The live state already holds this batch's changes: the new log makes them durable.
        await this.#compact();
        return;
      } catch {
        // The old log is still whole and in use; write the batch to it and retry later.
        this.#compactFloor = grown * 2;
      }
    }
    if (length === 0) return;
    const file = this.#file!;
    await writeAll(file, writer.buf, length, this.#logBytes);
    this.#logBytes = grown;
    if (this.#fsync === "always") {
      await file.datasync();
    } else if (this.#fsync === "batch") {
      this.#dirty = true;
      this.#scheduleSync();
    }
  }

  #scheduleSync(): void {
    if (this.#syncTimer !== undefined) return;
    const delay = Math.max(0, this.#lastSync + BATCH_SYNC_INTERVAL - Date.now());
    this.#syncTimer = setTimeout(() => {
      this.#syncTimer = undefined;
      if (this.#phase !== OPEN || this.#failure !== undefined) return;
      this.#syncDue = true;
      this.#draining ??= this.#drain();
    }, delay);
  }

  #fail(error: unknown, batch: Batch | undefined): void {
    const message = error instanceof Error ? error.message : String(error);
    this.#failure = new MqttError(
      `the session store could not write ${this.#logPath}: ${message}`,
      { cause: error },
    );
    batch?.reject(this.#failure);
    const pending = this.#batch;
    this.#batch = undefined;
    pending?.reject(this.#failure);
  }

  /**
   * Replaces the log with one that holds only the live records: written to a new file,
   * flushed, renamed over the log, then the folder flushed. Calls made meanwhile gather in the
   * next batch, which goes to the new log.
   */
  async #compact(): Promise<void> {
    // The snapshot is taken synchronously, so it is exactly the state the calls so far made.
    const live = new Writer(new Uint8Array(this.#liveBytes()));
    live.raw(MAGIC);
    let outgoingBytes = 0;
    const sequences = [...this.#outgoing.keys()].sort((a, b) => a - b);
    for (const sequence of sequences) {
      const entry = this.#outgoing.get(sequence)!;
      entry.size = writePut(live, sequence, entry.state, entry.packetId, entry.packet);
      outgoingBytes += entry.size;
    }
    for (const packetId of this.#incoming) {
      const start = beginRecord(live, PUT_INCOMING, 2);
      live.u16(packetId);
      endRecord(live, start);
    }
    const path = join(this.#directory, COMPACT_FILE);
    const file = await fs.open(path, "w+");
    try {
      await writeAll(file, live.buf, live.pos, 0);
      await file.datasync();
      await fs.rename(path, this.#logPath);
    } catch (error) {
      await file.close().catch(() => {});
      await fs.rm(path, { force: true }).catch(() => {});
      throw error;
    }
    const old = this.#file!;
    this.#file = file;
    this.#logBytes = live.pos;
    this.#outgoingBytes = outgoingBytes;
    this.#compactFloor = 0;
    this.#dirty = false;
    this.#lastSync = Date.now();
    await old.close().catch(() => {});
    await syncDirectory(this.#directory);
  }

  /**
   * Takes the folder's lock: a file created only if absent, holding this process id. A lock
   * whose process is gone is taken over.
   */
  async #lock(): Promise<void> {
    // The folder's real path names the lock among this process's own.
    const key = join(await fs.realpath(this.#directory), LOCK_FILE);
    for (let attempt = 0; attempt < 5; attempt++) {
      // Write the id to a file of our own, then link it as the lock: the lock appears whole.
      const mine = `${this.#lockPath}.${process.pid}.${++lockFiles}`;
      await fs.writeFile(mine, `${process.pid}\n`);
      try {
        await fs.link(mine, this.#lockPath);
        this.#lockKey = key;
        heldLocks.add(key);
        return;
      } catch (error) {
        if (errorCode(error) !== "EEXIST" && await this.#createLock()) {
          this.#lockKey = key;
          heldLocks.add(key);
          return;
        }
      } finally {
        await fs.rm(mine, { force: true });
      }
      let text: string;
      try {
        text = await fs.readFile(this.#lockPath, "utf8");
      } catch (error) {
        if (errorCode(error) === "ENOENT") continue; // released meanwhile
        throw error;
      }
      const pid = Number.parseInt(text, 10);
      // A lock naming this process that no store here holds was left by an earlier process
      // with the same id: a restarted container's first process, say.
      if (pid === process.pid ? heldLocks.has(key) : processExists(pid)) {
        const who = pid === process.pid ? "another store in this process" : `process ${pid}`;
        throw new MqttError(
          `the session store in ${this.#directory} is in use by ${who} (lock file ${this.#lockPath})`,
        );
      }
      await fs.rm(this.#lockPath, { force: true });
    }
    throw new MqttError(`could not take the lock ${this.#lockPath}: it keeps changing hands`);
  }

  /** Removes the lock file, if this store holds it. */
  async #unlock(): Promise<void> {
    const key = this.#lockKey;
    if (key === undefined) return;
    this.#lockKey = undefined;
    await fs.rm(this.#lockPath, { force: true }).catch(() => {});
    heldLocks.delete(key);
  }

  /** Creates the lock with O_EXCL, where hard links are not to be had; false when it exists. */
  async #createLock(): Promise<boolean> {
    let file: fs.FileHandle;
    try {
      file = await fs.open(this.#lockPath, "wx");
    } catch (error) {
      if (errorCode(error) === "EEXIST") return false;
      throw error;
    }
    try {
      await file.writeFile(`${process.pid}\n`);
    } finally {
      await file.close();
    }
    return true;
  }

  /** Opens the log (creating it if needed), replays it and cuts off what a crash tore. */
  async #load(): Promise<StoreContents> {
    let log: Uint8Array;
    let exists = true;
    try {
      const buffer = await fs.readFile(this.#logPath);
      log = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    } catch (error) {
      if (errorCode(error) !== "ENOENT") throw error;
      log = new Uint8Array(0);
      exists = false;
    }
    const headerLength = Math.min(log.length, MAGIC.length);
    for (let i = 0; i < headerLength; i++) {
      if (log[i] !== MAGIC[i]) {
        throw new MqttError(`${this.#logPath} is not a Kite session log; it was left untouched`);
      }
    }
    const file = this.#file = await fs.open(this.#logPath, exists ? "r+" : "w+");
    if (log.length < MAGIC.length) {
      // New, or torn while it was being created.
      await writeAll(file, MAGIC, MAGIC.length, 0);
      await file.truncate(MAGIC.length);
      await file.sync();
      if (!exists) await syncDirectory(this.#directory);
      this.#logBytes = MAGIC.length;
      return { outgoing: [], incoming: [] };
    }
    const { outgoing, incoming, validLength } = replay(log);
    if (validLength < log.length) {
      await file.truncate(validLength);
      await file.sync();
    }
    this.#logBytes = validLength;
    this.#incoming = incoming;
    const sequences = [...outgoing.keys()].sort((a, b) => a - b);
    const records: StoredPublish[] = [];
    for (const sequence of sequences) {
      const { state, packetId, start, end } = outgoing.get(sequence)!;
      // A copy of its own, so that the payload does not hold on to the whole log.
      let packet: PublishPacket;
      try {
        const decoded = decode(log.slice(start, end), 5);
        if (decoded.type !== "publish") throw new TypeError(`a ${decoded.type} packet`);
        packet = decoded;
      } catch (error) {
        throw new MqttError(
          `${this.#logPath} holds a publish (sequence ${sequence}) that does not decode`,
          { cause: error },
        );
      }
      if (packetId === 0) delete packet.packetId;
      else packet.packetId = packetId;
      const size = FRAME + end - start + PUT_FIXED;
      this.#outgoing.set(sequence, { packet, state, packetId, size });
      this.#outgoingBytes += size;
      records.push({ sequence, packet, state: STATES[state] });
    }
    return { outgoing: records, incoming: [...incoming] };
  }
}
