/**
 * The open log of a `FileStore`: its file, its size, the synchronous appends that put a record
 * in the operating system before a call returns, and the swap to the file compaction wrote.
 *
 * @module
 */

import type { FileHandle } from "node:fs/promises";
import { writeAllSync } from "./_fs.ts";

/**
 * The log file a store appends to. Compaction may {@linkcode LogFile.replace replace} the file
 * underneath; whoever holds the `LogFile` goes on appending to (and flushing) the new one.
 *
 * @example
 * ```ts ignore
 * import { openLog } from "./log_format.ts";
 * import { LogFile } from "./log_file.ts";
 *
 * const opened = await openLog("./kite-session", "./kite-session/session.log");
 * const log = new LogFile(opened.file, opened.logBytes);
 * log.append(new Uint8Array(11), 0, 11);
 * await log.datasync();
 * await log.close();
 * ```
 */
export class LogFile {
  #file: FileHandle;
  // The file's descriptor, for the synchronous writes.
  #fd: number;
  #bytes: number;

  /**
   * Takes over an open log.
   *
   * @param file The log, open for reading and writing.
   * @param bytes Its size: where the next record goes.
   */
  constructor(file: FileHandle, bytes: number) {
    this.#file = file;
    this.#fd = file.fd;
    this.#bytes = bytes;
  }

  /** The size of the log. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Appends `buf[offset, offset + length)` synchronously: the bytes are in the operating system
   * when this returns. On failure the log's size is unchanged.
   *
   * @throws {Error} When the file system fails or accepts no bytes.
   */
  append(buf: Uint8Array, offset: number, length: number): void {
    writeAllSync(this.#fd, buf, offset, length, this.#bytes);
    this.#bytes += length;
  }

  /** Flushes the log's data to the disk. */
  datasync(): Promise<void> {
    return this.#file.datasync();
  }

  /**
   * Appends to `file` from now on: the file that has just been renamed over the log, `bytes`
   * long. Synchronous, so that no append falls between the rename and the swap.
   *
   * @returns The file appended to until now, for the caller to close.
   */
  replace(file: FileHandle, bytes: number): FileHandle {
    const old = this.#file;
    this.#file = file;
    this.#fd = file.fd;
    this.#bytes = bytes;
    return old;
  }

  /** Closes the file; never throws. */
  async close(): Promise<void> {
    this.#fd = -1;
    await this.#file.close().catch(() => {});
  }
}
