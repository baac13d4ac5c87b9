/**
 * Compaction of a `FileStore`'s log: when the log has outgrown its live records, and how it is
 * replaced by one that holds only them — the snapshot written to `session.log.compact` and
 * flushed, then, in one synchronous step, the records appended meanwhile moved over and the file
 * renamed over the log, then the folder flushed.
 *
 * @module
 */

import type { FileHandle } from "node:fs/promises";
import { fs, join, loadNodeBuiltins, renameSync } from "./_node.ts";
import type { Writer } from "../packet/bytes.ts";
import type { LogFile } from "./log_file.ts";
import { syncDirectory, writeAll, writeAllSync } from "./_fs.ts";

// The file compaction writes the new log to, in the store's folder.
const COMPACT_FILE = "session.log.compact";

/**
 * When a log is compacted, and the compaction itself. One compaction runs at a time; while it
 * {@linkcode Compactor.running runs}, the store keeps the records it writes in the buffer it
 * passed as the tail, so that the new log gets them too.
 *
 * @example
 * ```ts
 * import { Compactor } from "./compaction.ts";
 *
 * const compactor = new Compactor("./kite-session", "./kite-session/session.log", 4, 1 << 20);
 * console.log(compactor.due(8 << 20, 1 << 20)); // true
 * console.log(compactor.due(2 << 20, 1 << 20)); // false
 * ```
 */
export class Compactor {
  readonly #directory: string;
  readonly #logPath: string;
  readonly #ratio: number;
  readonly #minBytes: number;
  // A failed compaction is not retried until the log has grown past this.
  #floor = 0;
  #running = false;

  /**
   * @param directory The store's folder.
   * @param logPath The log in it.
   * @param ratio Compact when the log is larger than this many times its live records.
   * @param minBytes Never compact a log smaller than this many bytes.
   * @throws {RangeError} When `ratio` is not above 1 or `minBytes` is negative.
   */
  constructor(directory: string, logPath: string, ratio: number, minBytes: number) {
    loadNodeBuiltins();
    if (!(ratio > 1)) {
      throw new RangeError(`compactRatio must be greater than 1, not ${ratio}`);
    }
    if (!(minBytes >= 0)) {
      throw new RangeError(`minCompactBytes must be 0 or more, not ${minBytes}`);
    }
    this.#directory = directory;
    this.#logPath = logPath;
    this.#ratio = ratio;
    this.#minBytes = minBytes;
  }

  /** Whether a compaction runs: from its snapshot until the new log replaced the old or it failed. */
  get running(): boolean {
    return this.#running;
  }

  /**
   * Removes what a compaction that did not reach its rename left behind: the log it was
   * replacing is whole. For opening, before the log is read.
   */
  async discardUnfinished(): Promise<void> {
    await fs.rm(join(this.#directory, COMPACT_FILE), { force: true });
  }

  /** Whether a log of `logBytes` bytes whose live records take `liveBytes` should be compacted. */
  due(logBytes: number, liveBytes: number): boolean {
    return logBytes > this.#minBytes && logBytes > this.#floor &&
      logBytes > this.#ratio * liveBytes;
  }

  /**
   * Replaces `log` with `snapshot`, the live records as the records so far leave them. The
   * snapshot is written to a new file and flushed while the store goes on appending to the old
   * log, keeping the records in `tail`; then the tail is appended to the new file, the file is
   * renamed over the log and `log` switched to it, in one synchronous step; then the old file is
   * closed and the folder flushed. Never throws: when it fails, or `failed()` says the store has
   * failed meanwhile, the old log stays in use and the next compaction waits for the log to
   * double.
   *
   * Call it synchronously after taking the snapshot: it is {@linkcode Compactor.running running}
   * from the call on.
   *
   * @returns The bytes of the tail moved to the new log, or `undefined` when it failed.
   */
  async run(
    log: LogFile,
    snapshot: Writer,
    tail: Writer,
    failed: () => boolean,
  ): Promise<number | undefined> {
    this.#running = true;
    const path = join(this.#directory, COMPACT_FILE);
    let file: FileHandle | undefined;
    let tailBytes = 0;
    try {
      file = await fs.open(path, "w+");
      await writeAll(file, snapshot.buf, snapshot.pos, 0);
      await file.datasync();
      if (failed()) throw new Error("the store failed");
      // From here to the swap nothing else runs, so no record can fall between the two logs.
      tailBytes = tail.pos;
      writeAllSync(file.fd, tail.buf, 0, tailBytes, snapshot.pos);
      renameSync(path, this.#logPath);
    } catch {
      // The old log is whole and in use; try again once it has grown much more.
      this.#running = false;
      this.#floor = log.bytes * 2;
      await file?.close().catch(() => {});
      await fs.rm(path, { force: true }).catch(() => {});
      return undefined;
    }
    const old = log.replace(file, snapshot.pos + tailBytes);
    this.#running = false;
    this.#floor = 0;
    await old.close().catch(() => {});
    await syncDirectory(this.#directory);
    return tailBytes;
  }
}
