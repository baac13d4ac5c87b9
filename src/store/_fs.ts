/**
 * File-system helpers that the session log and its lock share. Private to `src/store/`.
 *
 * @module
 */

import type { FileHandle } from "node:fs/promises";
import { fs, writeSync } from "./_node.ts";

/**
 * The `code` of a file-system error (`"ENOENT"`, `"EEXIST"` …), if it has one.
 *
 * @example
 * ```ts
 * import { errorCode } from "./_fs.ts";
 *
 * console.log(errorCode(Object.assign(new Error("gone"), { code: "ENOENT" }))); // "ENOENT"
 * console.log(errorCode(null)); // undefined
 * ```
 */
export function errorCode(error: unknown): unknown {
  return (error as { code?: unknown } | null)?.code;
}

/**
 * Writes all of `buf[0, length)` at `position`, however many writes the file system needs.
 *
 * @throws {Error} When the file system accepts no bytes.
 */
export async function writeAll(
  file: FileHandle,
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

/**
 * Writes all of `buf[offset, offset + length)` at `position`, synchronously: when it returns, the
 * bytes are in the file (the operating system's page cache), where a killed process cannot lose
 * them.
 *
 * @throws {Error} When the file system fails or accepts no bytes.
 */
export function writeAllSync(
  fd: number,
  buf: Uint8Array,
  offset: number,
  length: number,
  position: number,
): void {
  let done = 0;
  while (done < length) {
    const written = writeSync(fd, buf, offset + done, length - done, position + done);
    if (written <= 0) throw new Error("the file system accepted no bytes");
    done += written;
  }
}

/** Flushes a folder's entries (a rename, a new file) to the disk, where the platform can. */
export async function syncDirectory(directory: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await fs.open(directory, "r");
    await handle.sync();
  } catch {
    // Windows cannot open a folder as a file, and some file systems refuse fsync on one.
  } finally {
    await handle?.close().catch(() => {});
  }
}
