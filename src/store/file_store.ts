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
 * This file holds the store itself: its phases, the `Store` methods, which encode their records
 * into the write buffer and write it, and the background work that runs flushes and compaction
 * one at a time. The records and the live state they leave are `live_state.ts`'s, the flushes
 * each fsync policy makes `durability.ts`'s, compaction `compaction.ts`'s, the open log file
 * `log_file.ts`'s.
 *
 * @module
 */

import { fs, join, loadNodeBuiltins, setImmediate } from "./_node.ts";
import { MqttError } from "../errors.ts";
import { Writer } from "../packet/bytes.ts";
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
import { DONE, Flusher } from "./durability.ts";
import { Compactor } from "./compaction.ts";

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
// A writer whose buffer grew past this is dropped rather than kept for reuse.
const KEEP_BUFFER = 1 << 20;

const NEW = 0;
const OPENING = 1;
const OPEN = 2;
const CLOSED = 3;

/**
 * A {@linkcode Store} that keeps the session in an append-only log on disk, so that it survives
 * a restart of the process.
 *
 * Every call writes its record to the log synchronously, in call order, before it returns: a
 * killed process loses none of them. `apply` writes the records of a whole journal at once. Its
 * promise resolves once the record is durable as {@linkcode FileStoreOptions.fsync} says; under
 * `"always"` the calls of one turn of the event loop, or made while one flush runs, share the next
 * flush (group commit).
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
  // The flushes, the promises of the calls, and the failure that ends the store.
  readonly #flusher: Flusher;
  readonly #compactor: Compactor;

  #phase = NEW;
  #log: LogFile | undefined;
  #opening: Promise<StoreContents> | undefined;
  #closing: Promise<void> | undefined;

  // The live state, as the records written so far leave it.
  #live = new LiveState();

  // Where a record is encoded before it is written. Emptied after each write, except while a
  // compaction runs: then it keeps the records written since the compaction's snapshot, which
  // the new log gets too.
  #writer = new Writer();
  // The work done in the background, one thing at a time: flushes and compaction.
  #background: Promise<void> | undefined;

  /**
   * Creates a store over `directory`, which `open()` creates if needed. Nothing touches the
   * disk before `open()`.
   *
   * @param directory The folder of this session's log: one folder per client.
   * @param options The flush policy and when to compact.
   * @throws {TypeError} When `fsync` is none of the policies.
   * @throws {RangeError} When `compactRatio` is not above 1 or `minCompactBytes` is negative.
   */
  constructor(directory: string, options: FileStoreOptions = {}) {
    // The file system modules are found here, not imported: see `_node.ts`.
    loadNodeBuiltins();
    const { fsync = "always", compactRatio = 4, minCompactBytes = 1 << 20 } = options;
    this.#directory = directory;
    this.#logPath = join(directory, LOG_FILE);
    this.#lock = new PidLock(directory);
    this.#flusher = new Flusher(fsync, this.#logPath, () => this.#background ??= this.#work());
    this.#compactor = new Compactor(directory, this.#logPath, compactRatio, minCompactBytes);
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
      await this.#compactor.discardUnfinished();
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
    if (this.#phase !== OPEN || this.#flusher.failure !== undefined) return this.#refuse();
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
    if (phase === OPEN) {
      this.#flusher.stop();
      this.#closing = this.#shutDown();
    } else if (phase === OPENING) {
      this.#closing = this.#opening!.then(() => this.#shutDown(), () => {});
    } else this.#closing = Promise.resolve();
    return this.#closing;
  }

  async #shutDown(): Promise<void> {
    try {
      while (this.#background !== undefined) await this.#background;
      await this.#flusher.finish(this.#log!);
    } finally {
      const log = this.#log!;
      this.#log = undefined;
      await log.close();
      await this.#lock.release();
    }
  }

  #refuse(): Promise<never> {
    if (this.#phase === OPEN) return Promise.reject(this.#flusher.failure);
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
    if (this.#phase !== OPEN || this.#flusher.failure !== undefined) return this.#refuse();
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
      return Promise.reject(this.#flusher.fail(error));
    }
    if (!this.#compactor.running) {
      this.#resetWriter();
      if (!this.#flusher.compactionPending) this.#checkCompaction();
    }
    return this.#flusher.written();
  }

  #resetWriter(): void {
    if (this.#writer.buf.length > KEEP_BUFFER) this.#writer = new Writer();
    else this.#writer.reset();
  }

  /** Schedules a compaction once the log has outgrown its live records. */
  #checkCompaction(): void {
    if (this.#compactor.due(this.#log!.bytes, this.#live.bytes())) {
      this.#flusher.compactionDue();
      this.#background ??= this.#work();
    }
  }

  /** Flushes and compacts, one thing at a time, until there is nothing left to do. */
  async #work(): Promise<void> {
    // Let the calls of this turn of the event loop join the group: the acknowledgements of one
    // read from the socket are handled in one turn, and then share one flush.
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      while (this.#flusher.failure === undefined) {
        if (this.#flusher.compactionPending) {
          // Also while closing: close() waits, and the log it leaves is a compact one.
          await this.#compact();
          this.#flusher.compactionEnded();
          // The records written meanwhile may call for the next one already.
          this.#checkCompaction();
        } else if (this.#flusher.flushDue) {
          await this.#flusher.flushNext(this.#log!);
        } else {
          return;
        }
      }
    } finally {
      this.#background = undefined;
    }
  }

  /**
   * Replaces the log with one that holds only the live records (see `Compactor.run`); the records
   * written meanwhile are kept in the writer for the new log. Never throws: when it fails, the
   * old log stays in use.
   */
  async #compact(): Promise<void> {
    // The snapshot is taken synchronously, so it is exactly the state the records so far leave.
    const moved = await this.#compactor.run(
      this.#log!,
      this.#live.snapshot(),
      this.#writer,
      () => this.#flusher.failure !== undefined,
    );
    this.#resetWriter();
    // Records written meanwhile are flushed by the next group (or timed) flush of the new log.
    if (moved !== undefined && moved > 0) this.#flusher.moved();
  }
}
