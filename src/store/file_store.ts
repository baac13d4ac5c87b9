/**
 * A {@linkcode Store} on disk: an append-only log in a folder of its own, so that unfinished QoS
 * 1 and 2 publishes and the ids of incoming QoS 2 messages survive a restart of the process, a
 * crash, and (with `fsync: "always"`) a power cut.
 *
 * The folder holds:
 * - `session.log`: the log, in the format `log_format.ts` describes.
 * - `lock`: the process id of the process that has the store open (see `lock.ts`).
 * - `session.log.compact`: briefly, while compaction writes the new log.
 *
 * This file holds the store itself: its phases, group commit and compaction.
 *
 * @module
 */

import * as fs from "node:fs/promises";
import { join } from "node:path";
import { MqttError } from "../errors.ts";
import { Writer } from "../packet/bytes.ts";
import { Deferred } from "../_async.ts";
import type { OutgoingState, Store, StoreContents, StoredPublish } from "./store.ts";
import {
  appendClear,
  appendDelete,
  appendIncoming,
  appendPut,
  appendUpdate,
  DELETE_INCOMING,
  INCOMING_RECORD,
  type LivePublish,
  MAGIC,
  openLog,
  PUT_INCOMING,
  writeLog,
} from "./log_format.ts";
import { PidLock } from "./lock.ts";
import { syncDirectory, writeAll } from "./_fs.ts";

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
const BATCH_SYNC_INTERVAL = 100;
// A writer whose buffer grew past this is dropped after its batch rather than kept for reuse.
const KEEP_BUFFER = 1 << 20;

const NEW = 0;
const OPENING = 1;
const OPEN = 2;
const CLOSED = 3;

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
 * another) from opening the same folder; `PidLock` (in `lock.ts`) says when a lock left
 * behind is taken over.
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
  readonly #lock: PidLock;
  readonly #fsync: "always" | "batch" | "never";
  readonly #compactRatio: number;
  readonly #minCompactBytes: number;

  #phase = NEW;
  #file: fs.FileHandle | undefined;
  #failure: MqttError | undefined;
  #opening: Promise<StoreContents> | undefined;
  #closing: Promise<void> | undefined;

  // The live state, as the calls made so far left it (written or not).
  #outgoing = new Map<number, LivePublish>();
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
  #batch: Deferred<void> | undefined;
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
    this.#lock = new PidLock(directory);
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
      await this.#lock.acquire();
      // A compaction that did not reach its rename: the log it was replacing is whole.
      await fs.rm(join(this.#directory, COMPACT_FILE), { force: true });
      const log = await openLog(this.#directory, this.#logPath);
      this.#file = log.file;
      this.#logBytes = log.logBytes;
      this.#outgoing = log.outgoing;
      this.#outgoingBytes = log.outgoingBytes;
      this.#incoming = log.incoming;
      // When close() was called meanwhile, it shuts the store down once this returns.
      if (this.#phase === OPENING) this.#phase = OPEN;
      return log.contents;
    } catch (error) {
      // openLog closed the log if it opened it.
      this.#phase = CLOSED;
      await this.#lock.release();
      throw error;
    }
  }

  /** Adds a publish; the promise resolves once its record is durable. */
  put(record: StoredPublish): Promise<void> {
    if (this.#phase !== OPEN || this.#failure !== undefined) return this.#refuse();
    const { sequence, packet } = record;
    const packetId = packet.packetId ?? 0;
    let entry: LivePublish;
    try {
      entry = appendPut(this.#writer, sequence, record.state, packetId, packet);
    } catch (error) {
      return Promise.reject(error);
    }
    const previous = this.#outgoing.get(sequence);
    if (previous !== undefined) this.#outgoingBytes -= previous.size;
    this.#outgoing.set(sequence, entry);
    this.#outgoingBytes += entry.size;
    return this.#commitPromise();
  }

  /**
   * Records a new state, and the packet id once assigned, of a stored publish (a sequence the
   * store does not hold is ignored); the promise resolves once the record is durable.
   */
  update(sequence: number, state: OutgoingState, packetId?: number): Promise<void> {
    if (this.#phase !== OPEN || this.#failure !== undefined) return this.#refuse();
    let code: number;
    try {
      code = appendUpdate(this.#writer, sequence, state, packetId);
    } catch (error) {
      return Promise.reject(error);
    }
    const entry = this.#outgoing.get(sequence);
    if (entry !== undefined) {
      entry.state = code;
      if (packetId !== undefined) entry.packetId = packetId;
    }
    return this.#commitPromise();
  }

  /** Removes a publish; the promise resolves once its record is durable. */
  delete(sequence: number): Promise<void> {
    if (this.#phase !== OPEN || this.#failure !== undefined) return this.#refuse();
    try {
      appendDelete(this.#writer, sequence);
    } catch (error) {
      return Promise.reject(error);
    }
    const entry = this.#outgoing.get(sequence);
    if (entry !== undefined) {
      this.#outgoing.delete(sequence);
      this.#outgoingBytes -= entry.size;
    }
    return this.#commitPromise();
  }

  /** Records an incoming QoS 2 packet id; the promise resolves once it is durable. */
  putIncoming(packetId: number): Promise<void> {
    return this.#incomingRecord(PUT_INCOMING, packetId);
  }

  /** Forgets an incoming QoS 2 packet id; the promise resolves once that is durable. */
  deleteIncoming(packetId: number): Promise<void> {
    return this.#incomingRecord(DELETE_INCOMING, packetId);
  }

  /** Forgets everything; the promise resolves once that is durable. */
  clear(): Promise<void> {
    if (this.#phase !== OPEN || this.#failure !== undefined) return this.#refuse();
    appendClear(this.#writer);
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
      await this.#lock.release();
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

  #incomingRecord(kind: number, packetId: number): Promise<void> {
    if (this.#phase !== OPEN || this.#failure !== undefined) return this.#refuse();
    try {
      appendIncoming(this.#writer, kind, packetId);
    } catch (error) {
      return Promise.reject(error);
    }
    if (kind === PUT_INCOMING) this.#incoming.add(packetId);
    else this.#incoming.delete(packetId);
    return this.#commitPromise();
  }

  /** The promise of the batch the record just written belongs to; starts the writing. */
  #commitPromise(): Promise<void> {
    let batch = this.#batch;
    if (batch === undefined) {
      batch = this.#batch = new Deferred<void>();
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

  #fail(error: unknown, batch: Deferred<void> | undefined): void {
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
    const outgoingBytes = writeLog(live, this.#outgoing, this.#incoming);
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
}
