/**
 * What the test helpers that start a process of their own (mosquitto, Chromium) use so that it
 * never outlives the test process: an exit handler for ordinary ends, and a watchdog shell for a
 * test process killed by a signal sent to it alone.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";

const handlers = new Set<() => void>();

/** Runs `cleanUp` when this process exits (`deno test` dispatches "unload" instead of "exit"). */
export function atExit(cleanUp: () => void): void {
  if (handlers.size === 0) {
    const runAll = () => {
      for (const handler of handlers) handler();
    };
    process.on("exit", runAll);
    globalThis.addEventListener?.("unload", runAll);
  }
  handlers.add(cleanUp);
}

/** How a watchdog ends what it watches. */
export interface WatchdogOptions {
  /** Its process name, as `ps` shows it. */
  name: string;
  /** Kill `pid`'s whole process group (the process leads one), not `pid` alone. */
  group?: boolean;
  /** Leave `dir` in place. */
  keepDir?: boolean;
  /**
   * Start the watchdog in a process group of its own, so that a Ctrl-C or a `timeout` that ends
   * this process group spares it.
   */
  detached?: boolean;
}

/**
 * Starts a shell that, once this process is gone without running its exit handlers, kills `pid`
 * with SIGKILL and removes `dir`; it ends by itself when `pid` ends first. Without a shell it
 * does nothing (the exit handlers still cover ordinary exits).
 */
export function startWatchdog(pid: number, dir: string, options: WatchdogOptions): ChildProcess {
  const script = `
    while kill -0 "$1" 2>/dev/null; do
      kill -0 "$2" 2>/dev/null || exit 0
      sleep 1
    done
    [ "$4" = 1 ] && kill -KILL "-$2" 2>/dev/null || kill -KILL "$2" 2>/dev/null
    [ "$5" = 1 ] || rm -rf "$3"`;
  const flag = (on: boolean | undefined) => on ? "1" : "0";
  const args = [
    "-c",
    script,
    options.name,
    `${process.pid}`,
    `${pid}`,
    dir,
    flag(options.group),
    flag(options.keepDir),
  ];
  const watchdog = spawn("/bin/sh", args, { stdio: "ignore", detached: options.detached });
  watchdog.on("error", () => {});
  watchdog.unref();
  return watchdog;
}
