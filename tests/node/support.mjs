/**
 * What the Node tests share. These files run only under `node --test`, against the built package
 * (`deno task build:npm --tests` copies them into `dist/node-test/tests/node/`, where
 * `@kite/mqtt` is the installed package and `../helpers/*.js` the compiled test helpers).
 *
 * @module
 */

import { spawn } from "node:child_process";
import * as path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { within } from "../helpers/wait.js";

/** The folder of these tests in `dist/node-test/`. */
export const HERE = path.dirname(fileURLToPath(import.meta.url));

/** The `kite` command npm linked when it installed the package. */
export const KITE_BIN = path.join(HERE, "..", "..", "node_modules", ".bin", "kite");

/** How long any one wait of these tests may take. */
export const WAIT_MS = 10_000;

/**
 * Takes `count` messages matching `filter` from the client, each within `WAIT_MS`.
 *
 * @param {import("@kite/mqtt").MqttClient} client
 * @param {string} filter
 * @param {number} count
 * @returns {Promise<import("@kite/mqtt").Message[]>}
 */
export async function take(client, filter, count) {
  const iterator = client.messages(filter)[Symbol.asyncIterator]();
  const messages = [];
  try {
    while (messages.length < count) {
      const next = await within(
        iterator.next(),
        WAIT_MS,
        `message ${messages.length + 1} of ${count} on ${filter}`,
      );
      if (next.done) throw new Error(`the client closed after ${messages.length} messages`);
      messages.push(next.value);
    }
  } finally {
    await iterator.return?.();
  }
  return messages;
}

/** A payload as text. */
export function text(message) {
  return new TextDecoder().decode(message.payload);
}

/**
 * A child process whose output is kept, with a way to wait for a line of it.
 *
 * @param {string} command
 * @param {string[]} args
 * @param {{ env?: Record<string, string>, stdin?: "ignore" | "pipe" }} [options]
 */
export function child(command, args, options = {}) {
  const process_ = spawn(command, args, {
    stdio: [options.stdin ?? "ignore", "pipe", "pipe"],
    env: { ...process.env, ...options.env },
  });
  let stdout = "";
  let stderr = "";
  const watchers = new Set();
  const look = () => {
    for (const watcher of watchers) {
      if (watcher.pattern.test(watcher.stream === "stdout" ? stdout : stderr)) {
        watchers.delete(watcher);
        watcher.resolve();
      }
    }
  };
  process_.stdout.setEncoding("utf8").on("data", (chunk) => {
    stdout += chunk;
    look();
  });
  process_.stderr.setEncoding("utf8").on("data", (chunk) => {
    stderr += chunk;
    look();
  });
  const exited = new Promise((resolve) => {
    process_.once("close", (code, signal) => resolve({ code, signal }));
  });
  return {
    process: process_,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    /** The child's exit, within `WAIT_MS`: `{ code, signal }`. */
    exited: () => within(exited, WAIT_MS, `${path.basename(command)} ${args.join(" ")} to exit`),
    /**
     * Resolves once stdout (or stderr) matches `pattern`; rejects, with what the child printed,
     * when it exits first or `WAIT_MS` pass.
     */
    sees(pattern, stream = "stdout") {
      const name = `${path.basename(command)} ${args[0] ?? ""}`;
      const printed = () => `stdout: ${JSON.stringify(stdout)}, stderr: ${JSON.stringify(stderr)}`;
      let timer;
      return new Promise((resolve, reject) => {
        const watcher = { pattern, stream, resolve };
        watchers.add(watcher);
        look();
        exited.then(({ code, signal }) => {
          if (!watchers.delete(watcher)) return;
          reject(new Error(`${name} exited (${signal ?? code}) before printing ${pattern}; ${printed()}`));
        });
        timer = setTimeout(() => {
          watchers.delete(watcher);
          reject(new Error(`${name} did not print ${pattern} within ${WAIT_MS} ms; ${printed()}`));
        }, WAIT_MS);
      }).finally(() => clearTimeout(timer));
    },
    /** Kills it if it still runs. */
    kill() {
      if (process_.exitCode === null && process_.signalCode === null) process_.kill("SIGKILL");
    },
  };
}
