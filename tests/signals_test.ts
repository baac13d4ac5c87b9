/**
 * Ctrl-C and SIGTERM stop every program that runs until interrupted: the examples
 * (publisher.ts and pubsub.ts during their 5-second wait, subscriber.ts while it waits for
 * messages, the web demo while it serves its page and its devices publish) and the long-running
 * commands of the CLI (`kite sub`, `kite pub -l`, `kite broker`,
 * `kite bench`).
 *
 * Each runs as a child process of the runtime running this file (`deno run -A` under
 * `deno test`, `bun run` under `bun test`), against a mosquitto of the suite's own (`kite broker`
 * needs none). Once it says on its output that it is running, it gets SIGINT (and, in another
 * test, SIGTERM) and must exit with status 0 within 2 seconds: the exit status that `kite sub`
 * and the examples document for an interrupt. A program that leaves a top-level `await`
 * unsettled fails here: Deno idles, and Bun spins and ignores SIGTERM.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { type Mosquitto, mosquittoSkipReason, sharedMosquitto } from "./helpers/mosquitto.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
/** How long a program may take to exit after the signal. */
const EXIT_WITHIN_MS = 2000;
const SIGNALS = ["SIGINT", "SIGTERM"] as const;

/** A program that runs until interrupted, and the output that says it is running. */
interface LongRunner {
  name: string;
  /** The script, relative to the repository. */
  script: string;
  args(broker: Mosquitto | undefined): string[];
  ready: { stream: "stdout" | "stderr"; pattern: RegExp };
  /** Keep stdin open (`kite pub -l` reads it until interrupted). */
  stdinOpen?: boolean;
  /** What it prints once it has disconnected cleanly, where it says so. */
  goodbye?: RegExp;
  needsMosquitto: boolean;
}

const at = (broker: Mosquitto | undefined) => ["-h", broker!.host, "-p", `${broker!.port}`];

const PROGRAMS: LongRunner[] = [
  {
    name: "examples/publisher.ts, during its 5-second wait",
    script: "examples/publisher.ts",
    args: (broker) => [broker!.url],
    ready: { stream: "stdout", pattern: /published QoS 2 message 1/ },
    goodbye: /disconnected/,
    needsMosquitto: true,
  },
  {
    name: "examples/pubsub.ts, during its 5-second wait",
    script: "examples/pubsub.ts",
    args: (broker) => [broker!.url],
    ready: { stream: "stdout", pattern: /published QoS 2 message 1/ },
    goodbye: /disconnected/,
    needsMosquitto: true,
  },
  {
    name: "examples/subscriber.ts, waiting for messages",
    script: "examples/subscriber.ts",
    args: (broker) => [broker!.url],
    ready: { stream: "stdout", pattern: /subscribed/ },
    goodbye: /disconnected/,
    needsMosquitto: true,
  },
  {
    name: "examples/web/serve.ts (deno task demo:web), serving its page",
    script: "examples/web/serve.ts",
    args: () => [],
    ready: { stream: "stdout", pattern: /Ctrl-C stops/ },
    goodbye: /stopped/,
    needsMosquitto: false,
  },
  {
    name: "kite sub",
    script: "src/cli/mod.ts",
    args: (broker) => ["sub", ...at(broker), "-t", "signals/#", "-d"],
    ready: { stream: "stderr", pattern: /subscribed to/ },
    needsMosquitto: true,
  },
  {
    name: "kite pub -l, reading stdin",
    script: "src/cli/mod.ts",
    args: (broker) => ["pub", ...at(broker), "-t", "signals/lines", "-l", "-d"],
    ready: { stream: "stderr", pattern: /connected to/ },
    stdinOpen: true,
    needsMosquitto: true,
  },
  {
    name: "kite bench conn, holding its connections",
    script: "src/cli/mod.ts",
    args: (broker) => ["bench", "conn", ...at(broker), "-c", "3"],
    ready: { stream: "stdout", pattern: /3 of 3 connected/ },
    goodbye: /^connections +3 up at most, 3 at the end, 0 failed, 0 lost$/m,
    needsMosquitto: true,
  },
  {
    name: "kite bench sub, waiting for messages",
    script: "src/cli/mod.ts",
    args: (broker) => ["bench", "sub", ...at(broker), "-c", "2", "-t", "signals/bench/#", "--json"],
    ready: { stream: "stderr", pattern: /2 of 2 connected and subscribed/ },
    goodbye: /"mode":"sub"/,
    needsMosquitto: true,
  },
  {
    name: "kite broker -p 0",
    script: "src/cli/mod.ts",
    args: () => ["broker", "-p", "0"],
    ready: { stream: "stdout", pattern: /listening on mqtt:/ },
    needsMosquitto: false,
  },
];

/** The runtime running this test, running `script`. */
function runtimeCommand(script: string, args: string[]): [string, string[]] {
  const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
  if (deno !== undefined) return [deno.execPath(), ["run", "-A", "--quiet", script, ...args]];
  return [process.execPath, ["run", script, ...args]];
}

type Signal = "SIGINT" | "SIGTERM" | "SIGKILL";
type Exit = { code: number | null; signal: string | null };

/** A started program: its output so far, and its exit. */
class Child {
  readonly process: ChildProcess;
  readonly exited: Promise<Exit>;
  output = { stdout: "", stderr: "" };
  #exit: Exit | undefined;
  #wake: (() => void) | undefined;

  constructor(program: LongRunner, broker: Mosquitto | undefined) {
    const [command, args] = runtimeCommand(program.script, program.args(broker));
    const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: "1" };
    delete env.MQTT_URL;
    this.process = spawn(command, args, { cwd: ROOT, env, stdio: "pipe" });
    for (const stream of ["stdout", "stderr"] as const) {
      this.process[stream]!.setEncoding("utf8").on("data", (text: string) => {
        this.output[stream] += text;
        this.#wake?.();
      });
    }
    this.process.stdin!.on("error", () => {});
    if (!program.stdinOpen) this.process.stdin!.end();
    this.exited = new Promise((resolve) => {
      this.process.once("close", (code, signal) => {
        this.#exit ??= { code, signal };
        this.#wake?.();
        resolve(this.#exit);
      });
    });
  }

  /** Resolves once `pattern` shows on `stream`; rejects if the program exits first. */
  async waitFor(stream: "stdout" | "stderr", pattern: RegExp): Promise<void> {
    while (!pattern.test(this.output[stream])) {
      if (this.#exit !== undefined) {
        assert.fail(
          `exited (${JSON.stringify(this.#exit)}) before printing ${pattern}\n` +
            `stdout: ${this.output.stdout}\nstderr: ${this.output.stderr}`,
        );
      }
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  /** Sends a signal, unless it has exited. */
  send(signal: Signal): void {
    // Not `this.process.kill`: Deno's node:child_process then reports the signal as the cause
    // of the exit even when the child handled it and exited with a status of its own.
    if (this.#exit === undefined && this.process.pid !== undefined) {
      process.kill(this.process.pid, signal);
    }
  }

  /** The exit, or `undefined` if it has not exited within `ms`. */
  async exitWithin(ms: number): Promise<Exit | undefined> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<undefined>((resolve) =>
      timer = setTimeout(() => resolve(undefined), ms)
    );
    try {
      return await Promise.race([this.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }
}

async function interruptOnce(
  program: LongRunner,
  broker: Mosquitto | undefined,
  signal: Signal,
): Promise<void> {
  const child = new Child(program, broker);
  try {
    await child.waitFor(program.ready.stream, program.ready.pattern);
    child.send(signal);
    const exit = await child.exitWithin(EXIT_WITHIN_MS);
    const output = `stdout: ${child.output.stdout}\nstderr: ${child.output.stderr}`;
    assert.ok(exit !== undefined, `still running ${EXIT_WITHIN_MS} ms after ${signal}\n${output}`);
    assert.deepEqual(exit, { code: 0, signal: null }, output);
    if (program.goodbye !== undefined) assert.match(child.output.stdout, program.goodbye);
  } finally {
    child.send("SIGKILL");
    await child.exited;
  }
}

describe("Ctrl-C and SIGTERM", () => {
  const skip = mosquittoSkipReason();
  const broker = sharedMosquitto({}, skip);
  for (const program of PROGRAMS) {
    for (const signal of SIGNALS) {
      test(
        `${program.name} - ${signal} ends it with status 0 within 2 s`,
        { skip: program.needsMosquitto ? skip : undefined, timeout: 60_000 },
        () => interruptOnce(program, program.needsMosquitto ? broker : undefined, signal),
      );
    }
  }
});
