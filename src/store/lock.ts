/**
 * The lock that keeps two stores, in this process or another, from opening the same folder: a
 * file named `lock` that holds the process id of its owner.
 *
 * @module
 */

import type { FileHandle } from "node:fs/promises";
import { fs, join, loadNodeBuiltins, process } from "./_node.ts";
import { MqttError } from "../errors.ts";
import { errorCode } from "./_fs.ts";

const LOCK_FILE = "lock";

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

/**
 * The lock of a store's folder: the file `lock`, created only if absent, holding this process
 * id. A lock left by a process that no longer exists is taken over, and so is one naming this
 * process when no lock of this process holds it (a restarted container's process often has the
 * id its predecessor had). Two processes that find the same stale lock at the same instant can
 * both take it over, and a lock naming a process that has reused the id of a crashed one keeps
 * the folder locked until the file is removed.
 *
 * @example
 * ```ts
 * import { PidLock } from "./lock.ts";
 *
 * const directory = await Deno.makeTempDir();
 * const lock = new PidLock(directory);
 * await lock.acquire();
 * await new PidLock(directory).acquire().catch((error) => console.log(error.message));
 * await lock.release();
 * await Deno.remove(directory, { recursive: true });
 * ```
 */
export class PidLock {
  readonly #directory: string;
  /** The path of the lock file. */
  readonly path: string;
  // The real path of the lock file while this lock holds it, as `heldLocks` knows it.
  #key: string | undefined;

  /**
   * Creates the lock of `directory`, which must exist by the time it is acquired. Nothing
   * touches the disk before `acquire()`.
   */
  constructor(directory: string) {
    loadNodeBuiltins();
    this.#directory = directory;
    this.path = join(directory, LOCK_FILE);
  }

  /**
   * Takes the lock: a file created only if absent, holding this process id. A lock whose
   * process is gone is taken over.
   *
   * @throws {MqttError} When another process, or another lock in this process, holds it, or
   *   it keeps changing hands.
   */
  async acquire(): Promise<void> {
    // The folder's real path names the lock among this process's own.
    const key = join(await fs.realpath(this.#directory), LOCK_FILE);
    for (let attempt = 0; attempt < 5; attempt++) {
      // Write the id to a file of our own, then link it as the lock: the lock appears whole.
      const mine = `${this.path}.${process.pid}.${++lockFiles}`;
      await fs.writeFile(mine, `${process.pid}\n`);
      try {
        await fs.link(mine, this.path);
        this.#key = key;
        heldLocks.add(key);
        return;
      } catch (error) {
        if (errorCode(error) !== "EEXIST" && await this.#create()) {
          this.#key = key;
          heldLocks.add(key);
          return;
        }
      } finally {
        await fs.rm(mine, { force: true });
      }
      let text: string;
      try {
        text = await fs.readFile(this.path, "utf8");
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
          `the session store in ${this.#directory} is in use by ${who} (lock file ${this.path})`,
        );
      }
      await fs.rm(this.path, { force: true });
    }
    throw new MqttError(`could not take the lock ${this.path}: it keeps changing hands`);
  }

  /** Removes the lock file, if this lock holds it; never rejects. */
  async release(): Promise<void> {
    const key = this.#key;
    if (key === undefined) return;
    this.#key = undefined;
    await fs.rm(this.path, { force: true }).catch(() => {});
    heldLocks.delete(key);
  }

  /** Creates the lock with O_EXCL, where hard links are not to be had; false when it exists. */
  async #create(): Promise<boolean> {
    let file: FileHandle;
    try {
      file = await fs.open(this.path, "wx");
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
}
