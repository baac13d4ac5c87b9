/**
 * The CLI's standard streams as web streams, on Deno, Bun and Node alike, and the byte helpers
 * the commands read and write them with.
 *
 * @module
 */

import process from "node:process";

/**
 * What the CLI reads, writes and listens to. `main` takes the process's own by default; tests
 * pass their own streams to run the CLI in-process.
 */
export interface CliIo {
  /** Standard input: the payloads of `kite pub -l` and `kite pub -s`. */
  stdin: ReadableStream<Uint8Array>;
  /** Standard output: the messages `kite sub` receives. */
  stdout: WritableStream<Uint8Array>;
  /** Standard error: the one line that says what went wrong, and `-d` reports. */
  stderr: WritableStream<Uint8Array>;
  /** The environment; `MQTT_URL` names the broker when no flag does. */
  env: Readonly<Record<string, string | undefined>>;
  /**
   * Stops a running command the way Ctrl-C does: `kite sub` and `kite pub -l` disconnect
   * cleanly and exit 0, `kite broker` closes. The process's own fires on SIGINT and SIGTERM.
   */
  signal?: AbortSignal;
  /**
   * Whether stdout or stderr is a terminal: `kite bench` then rewrites one progress line in
   * place. Absent, neither is.
   */
  isTerminal?(stream: "stdout" | "stderr"): boolean;
}

type DenoStdio = {
  stdin: { readable: ReadableStream<Uint8Array> };
  stdout: { writable: WritableStream<Uint8Array>; isTerminal(): boolean };
  stderr: { writable: WritableStream<Uint8Array>; isTerminal(): boolean };
};

type BunStdin = { stdin: { stream(): ReadableStream<Uint8Array> } };

/**
 * The process's standard streams, environment and interrupt signal. Each is made when first
 * used, so a command that never reads stdin leaves it alone. The signal listens for SIGINT and
 * SIGTERM until `release()`; a second SIGINT ends the process at once with status 130.
 *
 * @returns The process's {@linkcode CliIo}, and `release()` to remove the signal listeners.
 *
 * @example
 * ```ts
 * import { processIo } from "./io.ts";
 *
 * const io = processIo();
 * const writer = io.stdout.getWriter();
 * await writer.write(new TextEncoder().encode("hello\n"));
 * writer.releaseLock();
 * io.release();
 * ```
 */
export function processIo(): CliIo & {
  release(): void;
  isTerminal(stream: "stdout" | "stderr"): boolean;
} {
  const deno = (globalThis as { Deno?: DenoStdio }).Deno;
  const bun = (globalThis as { Bun?: BunStdin }).Bun;
  let stdin: ReadableStream<Uint8Array> | undefined;
  let stdout: WritableStream<Uint8Array> | undefined;
  let stderr: WritableStream<Uint8Array> | undefined;
  let controller: AbortController | undefined;
  let interrupts = 0;
  const onSignal = () => {
    if (++interrupts > 1) process.exit(130);
    controller?.abort(new Error("interrupted"));
  };
  return {
    get stdin(): ReadableStream<Uint8Array> {
      stdin ??= deno?.stdin.readable ?? bun?.stdin.stream() ?? nodeReadable();
      return stdin;
    },
    get stdout(): WritableStream<Uint8Array> {
      stdout ??= deno?.stdout.writable ?? nodeWritable(process.stdout);
      return stdout;
    },
    get stderr(): WritableStream<Uint8Array> {
      stderr ??= deno?.stderr.writable ?? nodeWritable(process.stderr);
      return stderr;
    },
    get env(): Readonly<Record<string, string | undefined>> {
      return process.env;
    },
    get signal(): AbortSignal {
      if (controller === undefined) {
        controller = new AbortController();
        process.on("SIGINT", onSignal);
        process.on("SIGTERM", onSignal);
      }
      return controller.signal;
    },
    isTerminal(stream: "stdout" | "stderr"): boolean {
      return deno?.[stream].isTerminal() ?? process[stream].isTTY === true;
    },
    release(): void {
      if (controller === undefined) return;
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    },
  };
}

/** Node's stdin as a web stream, for runtimes with neither `Deno.stdin` nor `Bun.stdin`. */
function nodeReadable(): ReadableStream<Uint8Array> {
  const input = process.stdin;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      input.on("data", (chunk: Uint8Array | string) => {
        controller.enqueue(typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk);
        if ((controller.desiredSize ?? 1) <= 0) input.pause();
      });
      input.once("end", () => controller.close());
      input.once("error", (error) => controller.error(error));
    },
    pull() {
      input.resume();
    },
    cancel() {
      input.pause();
    },
  });
}

/** A Node write stream as a web stream that never closes it: stdout and stderr outlive us. */
function nodeWritable(
  output: { write(chunk: Uint8Array, callback: (error?: Error | null) => void): boolean },
): WritableStream<Uint8Array> {
  return new WritableStream<Uint8Array>({
    write(chunk) {
      return new Promise((resolve, reject) => {
        output.write(chunk, (error) => error ? reject(error) : resolve());
      });
    },
  });
}

/**
 * Writes bytes or text to a stream and releases it again, so others may write after.
 *
 * @param stream Where to write.
 * @param data The bytes, or text to send as UTF-8.
 *
 * @example
 * ```ts
 * import { writeTo } from "./io.ts";
 *
 * const chunks: Uint8Array[] = [];
 * await writeTo(new WritableStream({ write: (chunk) => void chunks.push(chunk) }), "hi\n");
 * console.log(chunks.length); // 1
 * ```
 */
export async function writeTo(
  stream: WritableStream<Uint8Array>,
  data: Uint8Array | string,
): Promise<void> {
  const writer = stream.getWriter();
  try {
    await writer.write(typeof data === "string" ? new TextEncoder().encode(data) : data);
  } finally {
    writer.releaseLock();
  }
}

/**
 * Reads a stream to its end.
 *
 * @param stream The bytes.
 * @param signal Stops reading early; what was read so far is returned.
 * @returns Everything read, in one array.
 *
 * @example
 * ```ts
 * import { readAll } from "./io.ts";
 *
 * const bytes = await readAll(new Blob(["a", "b"]).stream());
 * console.log(bytes); // Uint8Array(2) [ 97, 98 ]
 * ```
 */
export async function readAll(
  stream: ReadableStream<Uint8Array>,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of chunksOf(stream, signal)) chunks.push(chunk);
  return join(chunks);
}

/**
 * Splits a stream into lines, as bytes, without their `\n` or `\r\n`. A last line without a
 * newline is a line too; the bytes are not decoded, so any payload survives as it is.
 *
 * @param stream The bytes.
 * @param signal Stops reading early.
 * @returns The lines, one at a time as they arrive.
 *
 * @example
 * ```ts
 * import { readLines } from "./io.ts";
 *
 * const lines = [];
 * for await (const line of readLines(new Blob(["a\nb\r\nc"]).stream())) lines.push(line.length);
 * console.log(lines); // [1, 1, 1]
 * ```
 */
export async function* readLines(
  stream: ReadableStream<Uint8Array>,
  signal?: AbortSignal,
): AsyncGenerator<Uint8Array> {
  // The start of the current line, as it came: each chunk is searched once, and a long line is
  // joined once, when its newline arrives.
  let parts: Uint8Array[] = [];
  for await (const chunk of chunksOf(stream, signal)) {
    let start = 0;
    for (let newline = chunk.indexOf(0x0a); newline !== -1; newline = chunk.indexOf(0x0a, start)) {
      parts.push(chunk.subarray(start, newline));
      yield withoutCarriageReturn(join(parts));
      parts = [];
      start = newline + 1;
    }
    if (start < chunk.length) parts.push(chunk.slice(start));
  }
  if (parts.length > 0) yield join(parts);
}

function join(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0].slice();
  const all = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    all.set(part, offset);
    offset += part.length;
  }
  return all;
}

function withoutCarriageReturn(line: Uint8Array): Uint8Array {
  return line.length > 0 && line[line.length - 1] === 0x0d ? line.subarray(0, -1) : line;
}

/** The chunks of a stream, until it ends or the signal aborts (which cancels the read). */
async function* chunksOf(
  stream: ReadableStream<Uint8Array>,
  signal?: AbortSignal,
): AsyncGenerator<Uint8Array> {
  const reader = stream.getReader();
  const cancel = () => void reader.cancel().catch(() => {});
  signal?.addEventListener("abort", cancel, { once: true });
  try {
    while (!signal?.aborted) {
      const { value, done } = await reader.read();
      if (done || signal?.aborted) return;
      yield value;
    }
  } finally {
    signal?.removeEventListener("abort", cancel);
    reader.releaseLock();
  }
}
