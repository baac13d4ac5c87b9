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
 * This file holds the store itself: its phases, the `Store` methods, the flushes each fsync
 * policy makes, and compaction. The records and the live state they leave are
 * `live_state.ts`'s, the open log file `log_file.ts`'s.
 *
 * @module
 */

import * as fs from "node:fs/promises";
import { renameSync } from "node:fs";
import { join } from "node:path";
import { setImmediate } from "node:timers";
import { MqttError } from "../errors.ts";
import { Writer } from "../packet/bytes.ts";
import { Deferred } from "../_async.ts";
import type {
  OutgoingState,
  Store,
  StoreContents,
  StoredPublish,
  StoreOperation,
} from "./store.ts";
import { openLog } from "./log_format.ts";
import { LiveState } from "./live_state.ts";
import { PidLock } from "./lock.ts";
import { LogFile } from "./log_file.ts";
import { syncDirectory, writeAll, writeAllSync } from "./_fs.ts";

/**
 * When a {@linkcode FileStore} flushes its log to the disk, and when it compacts the log.
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
   * When the log is flushed to the disk with `fdatasync`, and so when the promise of a call
   * resolves. Under every policy a call writes its record to the operating system before it
   * returns, so a process that is killed (SIGKILL, a crash) loses no change a call returned
   * from: a client's `publish()` that returned is in the log. The policy is about a crash of the
   * machine or a power cut, which loses what the operating system had not yet written out:
   * - `"always"` (the default): the records are flushed in groups (the calls of one turn of the
   *   event loop, or made while a flush runs, share one), and a call's promise resolves once its
   *   record is flushed. The client waits for that before it sends the packet that depends on
   *   the record, so a power cut loses no publish whose PUBLISH went out (nor any that
   *   `client.persisted()` waited for) and sends no QoS 2 message twice; a QoS 1 message that
   *   completed just before the cut may be sent once more. The cost: a flush per round trip.
   * - `"batch"`: the log is flushed at most every 100 ms, and within 100 ms of a write; promises
   *   resolve at once. A power cut may lose the changes of the last 100 ms.
   * - `"never"`: the store never flushes the log itself (the operating system writes it out in
   *   its own time, on Linux within about 30 s); promises resolve at once.
   *
   * Compaction flushes the new log before it replaces the old one under every policy. While it
   * runs, calls go on writing at once, and their promises resolve once it has ended, so that a
   * writer that waits for them cannot outrun it.
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
// A writer whose buffer grew past this is dropped rather than kept for reuse.
const KEEP_BUFFER = 1 << 20;
// What a call returns when its record is as durable as the policy makes it once written.
const DONE: Promise<void> = Promise.resolve();

const NEW = 0;
const OPENING = 1;
const OPEN = 2;
const CLOSED = 3;

/**
 * A {@linkcode Store} that keeps the session in an append-only log on disk, so that it survives
 * a restart of the process.
 *
 * Every call writes its record to the log synchronously, in call order, before it returns: a
 * killed process loses none of them. `apply` writes the records of a whole journal at once. Its promise resolves once the record is durable as
 * {@linkcode FileStoreOptions.fsync} says; under `"always"` the calls of one turn of the event
 * loop, or made while one flush runs, share the next flush (group commit).
 *
 * When the log outgrows `compactRatio` times its live records (and `minCompactBytes`), the
 * store writes the live records into a new file and flushes it, meanwhile appending to the old
 * log as usual; then, in one synchronous step, it appends the records written meanwhile to the
 * new file and renames it over the log, and flushes the folder. A crash at any point leaves
 * either the old log or the new one, each holding every record written.
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
  #log: LogFile | undefined;
  #failure: MqttError | undefined;
  #opening: Promise<StoreContents> | undefined;
  #closing: Promise<void> | undefined;

  // The live state, as the records written so far leave it.
  #live = new LiveState();
  // A failed compaction is not retried until the log has grown past this.
  #compactFloor = 0;

  // Where a record is encoded before it is written. Emptied after each write, except while a
  // compaction runs: then it keeps the records written since the compaction's snapshot, which
  // the new log gets too.
  #writer = new Writer();
  #compacting = false;
  // Settles once the compaction that is due (or running) has ended: under "batch" and "never",
  // what the calls made meanwhile wait for, so that a writer cannot outrun compaction.
  #compaction: Deferred<void> | undefined;
  // The work done in the background, one thing at a time: flushes and compaction.
  #background: Promise<void> | undefined;

  // fsync: "always": the calls whose records the next flush covers.
  #group: Deferred<void> | undefined;

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
      this.#log = new LogFile(log.file, log.logBytes);
      this.#live = new LiveState(log.outgoing, log.outgoingBytes, log.incoming);
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

  /**
   * Adds a publish. Its record is in the log when this returns; the promise resolves once it is
   * durable as `fsync` says.
   */
  put(record: StoredPublish): Promise<void> {
    return this.#one(() => this.#live.put(this.#writer, record));
  }

  /**
   * Records a new state, and the packet id once assigned, of a stored publish (a sequence the
   * store does not hold is ignored). The record is in the log when this returns; the promise
   * resolves once it is durable.
   */
  update(sequence: number, state: OutgoingState, packetId?: number): Promise<void> {
    return this.#one(() => this.#live.update(this.#writer, sequence, state, packetId));
  }

  /**
   * Removes a publish. The record is in the log when this returns; the promise resolves once it
   * is durable.
   */
  delete(sequence: number): Promise<void> {
    return this.#one(() => this.#live.delete(this.#writer, sequence));
  }

  /** Records an incoming QoS 2 packet id, in the log when this returns; as `put` otherwise. */
  putIncoming(packetId: number): Promise<void> {
    return this.#one(() => this.#live.putIncoming(this.#writer, packetId));
  }

  /** Forgets an incoming QoS 2 packet id, in the log when this returns; as `put` otherwise. */
  deleteIncoming(packetId: number): Promise<void> {
    return this.#one(() => this.#live.deleteIncoming(this.#writer, packetId));
  }

  /** Forgets everything, in the log when this returns; the promise resolves once durable. */
  clear(): Promise<void> {
    return this.#one(() => this.#live.clear(this.#writer));
  }

  /**
   * Makes the changes of a journal, in order, as the calls one by one would, but with one write
   * for all of them: they are in the log when this returns, and the promise resolves once they
   * are durable. A change the log cannot hold (a PUBLISH that does not encode) rejects the
   * promise; the changes before it are made, none after it.
   *
   * @example
   * ```ts ignore
   * import { FileStore } from "./file_store.ts";
   *
   * const store = new FileStore("./kite-session");
   * await store.open();
   * const payload = new TextEncoder().encode("hi");
   * const packet = { type: "publish", topic: "a/b", payload, qos: 1, retain: false, dup: false } as const;
   * await store.apply([
   *   { op: "put", record: { sequence: 1, state: "queued", packet } },
   *   { op: "update", sequence: 1, state: "publish", packetId: 7 },
   * ]);
   * await store.close();
   * ```
   */
  apply(operations: readonly StoreOperation[]): Promise<void> {
    if (this.#phase !== OPEN || this.#failure !== undefined) return this.#refuse();
    const start = this.#writer.pos;
    let refused: { error: unknown } | undefined;
    for (let i = 0; i < operations.length; i++) {
      try {
        this.#live.apply(this.#writer, operations[i]);
      } catch (error) {
        refused = { error };
        break;
      }
    }
    const written = this.#writer.pos === start ? DONE : this.#write(start);
    return refused === undefined ? written : Promise.reject(refused.error);
  }

  /**
   * Finishes the flushes under way, flushes what was written (unless `fsync` is `"never"`),
   * closes the log and removes the lock. Calling it again returns the same promise; every other
   * call rejects from now on.
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
    try {
      while (this.#background !== undefined) await this.#background;
      clearTimeout(this.#syncTimer);
      this.#syncTimer = undefined;
      if (this.#dirty && this.#failure === undefined) await this.#log!.datasync();
    } finally {
      const log = this.#log!;
      this.#log = undefined;
      await log.close();
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

  /**
   * Encodes one change and makes it in the live state, or throws (and changes nothing) when the
   * log cannot hold it; then writes it. What the single-change methods share.
   */
  #one(encode: () => void): Promise<void> {
    if (this.#phase !== OPEN || this.#failure !== undefined) return this.#refuse();
    const start = this.#writer.pos;
    try {
      encode();
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#write(start);
  }

  /**
   * Writes the record encoded in the writer from `start` to the end of the log, synchronously,
   * and returns the promise of the call that made it: when it is durable under the policy.
   */
  #write(start: number): Promise<void> {
    const writer = this.#writer;
    try {
      this.#log!.append(writer.buf, start, writer.pos - start);
    } catch (error) {
      writer.pos = start;
      return Promise.reject(this.#fail(error));
    }
    if (!this.#compacting) {
      this.#resetWriter();
      if (this.#compaction === undefined) this.#checkCompaction();
    }
    if (this.#fsync === "always") {
      let group = this.#group;
      if (group === undefined) {
        group = this.#group = new Deferred<void>();
        this.#background ??= this.#work();
      }
      return group.promise;
    }
    if (this.#fsync === "batch") {
      this.#dirty = true;
      this.#scheduleSync();
    }
    return this.#compaction?.promise ?? DONE;
  }

  #resetWriter(): void {
    if (this.#writer.buf.length > KEEP_BUFFER) this.#writer = new Writer();
    else this.#writer.reset();
  }

  /** Schedules a compaction once the log has outgrown its live records. */
  #checkCompaction(): void {
    const size = this.#log!.bytes;
    if (
      size > this.#minCompactBytes && size > this.#compactFloor &&
      size > this.#compactRatio * this.#live.bytes()
    ) {
      this.#compaction = new Deferred<void>();
      this.#background ??= this.#work();
    }
  }

  /** Flushes and compacts, one thing at a time, until there is nothing left to do. */
  async #work(): Promise<void> {
    // Let the calls of this turn of the event loop join the group: the acknowledgements of one
    // read from the socket are handled in one turn, and then share one flush.
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      while (this.#failure === undefined) {
        const compaction = this.#compaction;
        if (compaction !== undefined) {
          // Also while closing: close() waits, and the log it leaves is a compact one.
          await this.#compact();
          this.#compaction = undefined;
          compaction.resolve();
          // The records written meanwhile may call for the next one already.
          this.#checkCompaction();
        } else if (this.#group !== undefined) {
          const group = this.#group;
          this.#group = undefined;
          try {
            await this.#log!.datasync();
          } catch (error) {
            this.#fail(error, group);
            return;
          }
          group.resolve();
        } else if (this.#syncDue) {
          this.#syncDue = false;
          if (this.#dirty) {
            this.#dirty = false;
            this.#lastSync = Date.now();
            try {
              await this.#log!.datasync();
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
      this.#background = undefined;
    }
  }

  #scheduleSync(): void {
    if (this.#syncTimer !== undefined) return;
    const delay = Math.max(0, this.#lastSync + BATCH_SYNC_INTERVAL - Date.now());
    this.#syncTimer = setTimeout(() => {
      this.#syncTimer = undefined;
      if (this.#phase !== OPEN || this.#failure !== undefined) return;
      this.#syncDue = true;
      this.#background ??= this.#work();
    }, delay);
  }

  /** Makes the store fail for good: every call waiting and every later call rejects. */
  #fail(error: unknown, group: Deferred<void> | undefined = undefined): MqttError {
    if (this.#failure === undefined) {
      const message = error instanceof Error ? error.message : String(error);
      this.#failure = new MqttError(
        `the session store could not write ${this.#logPath}: ${message}`,
        { cause: error },
      );
    }
    group?.reject(this.#failure);
    const pending = this.#group;
    this.#group = undefined;
    pending?.reject(this.#failure);
    const compaction = this.#compaction;
    this.#compaction = undefined;
    compaction?.reject(this.#failure);
    return this.#failure;
  }

  /**
   * Replaces the log with one that holds only the live records. The snapshot is written to a new
   * file and flushed while the calls made meanwhile go on appending to the old log (and are kept
   * in the writer); then the kept records are appended to the new file and it is renamed over the
   * log in one synchronous step, and the folder is flushed. Never throws: when it fails, the old
   * log stays in use.
   */
  async #compact(): Promise<void> {
    // The snapshot is taken synchronously, so it is exactly the state the records so far leave.
    const live = this.#live.snapshot();
    this.#compacting = true;
    const path = join(this.#directory, COMPACT_FILE);
    let file: fs.FileHandle | undefined;
    let tailBytes = 0;
    try {
      file = await fs.open(path, "w+");
      await writeAll(file, live.buf, live.pos, 0);
      await file.datasync();
      if (this.#failure !== undefined) throw this.#failure;
      // From here to the rename nothing else runs, so no record can fall between the two logs.
      const tail = this.#writer;
      tailBytes = tail.pos;
      writeAllSync(file.fd, tail.buf, 0, tailBytes, live.pos);
      renameSync(path, this.#logPath);
    } catch {
      // The old log is whole and in use; try again once it has grown much more.
      this.#compacting = false;
      this.#resetWriter();
      this.#compactFloor = this.#log!.bytes * 2;
      await file?.close().catch(() => {});
      await fs.rm(path, { force: true }).catch(() => {});
      return;
    }
    const old = this.#log!.replace(file, live.pos + tailBytes);
    this.#compacting = false;
    this.#resetWriter();
    this.#compactFloor = 0;
    // Records written meanwhile are flushed by the next group (or timed) flush of the new log.
    if (tailBytes > 0 && this.#fsync === "batch") this.#dirty = true;
    await old.close().catch(() => {});
    await syncDirectory(this.#directory);
  }
}
