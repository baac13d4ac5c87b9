/**
 * What the Node tests share.
 *
 * The files of `tests/node/` run only under `node --test`, against the built package:
 * `deno task build:npm --tests` compiles them into `dist/node-test/tests/node/`, where
 * `@kite/mqtt` is the package npm installed from `dist/npm/`. Here in the checkout, deno.json's
 * import map points `@kite/mqtt` at the sources, so `deno check` checks them against the same
 * API. Their names (`*.node.ts`) are not ones `deno test` or `bun test` pick up.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import * as path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { Message, MqttClient } from "@kite/mqtt";
import { within } from "../helpers/wait.ts";

/** The folder of these tests. */
export const HERE: string = path.dirname(fileURLToPath(import.meta.url));

/** The `kite` command npm linked when it installed the package in `dist/node-test/`. */
export const KITE_BIN: string = path.join(HERE, "..", "..", "node_modules", ".bin", "kite");

/** How long any one wait of these tests may take. */
export const WAIT_MS = 10_000;

/** Takes `count` messages matching `filter` from the client, each within `WAIT_MS`. */
export async function take(client: MqttClient, filter: string, count: number): Promise<Message[]> {
  const iterator = client.messages(filter)[Symbol.asyncIterator]();
  const messages: Message[] = [];
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

/** A message's payload as text. */
export function text(message: Message): string {
  return new TextDecoder().decode(message.payload);
}

/** How a child process ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A child process whose output is kept, with ways to wait for a line of it and for its end. */
export interface Child {
  process: ChildProcess;
  readonly stdout: string;
  readonly stderr: string;
  /** Its end, within `WAIT_MS`. */
  exited(): Promise<Exit>;
  /**
   * Resolves once stdout (or stderr) matches `pattern`; rejects, with what the child printed,
   * when it exits first or `WAIT_MS` pass.
   */
  sees(pattern: RegExp, stream?: "stdout" | "stderr"): Promise<void>;
  /** SIGKILL, if it still runs. */
  kill(): void;
}

/**
 * Starts `command` with `args`; with `stdin: "pipe"`, the test writes its stdin. `env` is added
 * to this process's environment.
 */
export function child(
  command: string,
  args: string[],
  options: { stdin?: "ignore" | "pipe"; cwd?: string; env?: Record<string, string> } = {},
): Child {
  const running = spawn(command, args, {
    stdio: [options.stdin ?? "ignore", "pipe", "pipe"],
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
  });
  const name = `${path.basename(command)} ${args[0] ?? ""}`;
  const output = { stdout: "", stderr: "" };
  const watchers = new Set<{ pattern: RegExp; stream: "stdout" | "stderr"; resolve(): void }>();
  const look = () => {
    for (const watcher of watchers) {
      if (watcher.pattern.test(output[watcher.stream])) {
        watchers.delete(watcher);
        watcher.resolve();
      }
    }
  };
  for (const stream of ["stdout", "stderr"] as const) {
    running[stream]!.setEncoding("utf8").on("data", (chunk: string) => {
      output[stream] += chunk;
      look();
    });
  }
  const exited = new Promise<Exit>((resolve) => {
    running.once("close", (code, signal) => resolve({ code, signal }));
  });
  const printed = () =>
    `stdout: ${JSON.stringify(output.stdout)}, stderr: ${JSON.stringify(output.stderr)}`;
  return {
    process: running,
    get stdout() {
      return output.stdout;
    },
    get stderr() {
      return output.stderr;
    },
    exited: () => within(exited, WAIT_MS, `${name} to exit; ${printed()}`),
    sees(pattern, stream = "stdout") {
      let timer: ReturnType<typeof setTimeout> | undefined;
      return new Promise<void>((resolve, reject) => {
        const watcher = { pattern, stream, resolve };
        watchers.add(watcher);
        look();
        exited.then(({ code, signal }) => {
          if (!watchers.delete(watcher)) return;
          reject(
            new Error(
              `${name} exited (${signal ?? code}) before printing ${pattern}; ${printed()}`,
            ),
          );
        });
        timer = setTimeout(() => {
          watchers.delete(watcher);
          reject(new Error(`${name} did not print ${pattern} within ${WAIT_MS} ms; ${printed()}`));
        }, WAIT_MS);
      }).finally(() => clearTimeout(timer));
    },
    kill() {
      if (running.exitCode === null && running.signalCode === null) running.kill("SIGKILL");
    },
  };
}

/** `process.execPath`: the Node that runs the tests, for child processes of their own. */
export const NODE: string = process.execPath;
