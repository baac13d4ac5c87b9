/**
 * Runs a command to its end, for tests that need a tool's exit status and output (a bundler,
 * mosquitto's clients, another runtime). Only `node:` built-ins, so it runs under Deno and Bun.
 *
 * @module
 */

import { spawn } from "node:child_process";

/** How a command ended, and what it wrote. */
export interface Finished {
  /** The exit status; `null` when it was killed or could not start. */
  code: number | null;
  stdout: string;
  stderr: string;
  /** Both, in the order they came. */
  output: string;
}

/**
 * Runs `command` with `args` until it exits, or kills it with SIGKILL after `timeoutMs` (default
 * 60 s, said at the end of `stderr`). Never rejects: a command that cannot start ends with `code`
 * `null` and the reason in `stderr`.
 */
export function runToEnd(
  command: string,
  args: string[],
  options: { cwd?: string; timeoutMs?: number } = {},
): Promise<Finished> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: options.cwd, stdio: ["ignore", "pipe", "pipe"] });
    const ran = { code: null as number | null, stdout: "", stderr: "", output: "" };
    child.stdout.setEncoding("utf8").on("data", (text: string) => {
      ran.stdout += text;
      ran.output += text;
    });
    child.stderr.setEncoding("utf8").on("data", (text: string) => {
      ran.stderr += text;
      ran.output += text;
    });
    const note = (text: string) => {
      ran.stderr += text;
      ran.output += text;
    };
    const timer = setTimeout(() => {
      note(`\n(killed after ${timeoutMs} ms)`);
      child.kill("SIGKILL");
    }, timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      note(`spawn failed: ${error.message}`);
      resolve(ran);
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      ran.code = code;
      resolve(ran);
    });
  });
}
