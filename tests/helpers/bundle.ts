/**
 * Bundles an entry point for the browser with the bundler of the runtime running the tests:
 * `deno bundle --platform=browser` under Deno, `Bun.build({ target: "browser" })` (what
 * `bun build --target=browser` does) under Bun. So the suite on each runtime proves the bundle
 * command the README gives for it.
 *
 * @module
 */

import { runToEnd } from "./run.ts";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";

const BUNDLE_TIMEOUT_MS = 60_000;

/** `"deno"` or `"bun"`: the runtime that bundles. */
export const bundler: "deno" | "bun" = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined"
  ? "bun"
  : "deno";

/**
 * Bundles `entry` into one ES module for browsers and returns its code.
 *
 * @param entry The path of the entry point, e.g. the checkout's `mod.ts`.
 * @returns The bundle's JavaScript.
 */
export async function bundleForBrowser(entry: string): Promise<string> {
  if (bundler === "bun") {
    const bun = (globalThis as unknown as {
      Bun: {
        build(options: object): Promise<
          { success: boolean; logs: unknown[]; outputs: { text(): Promise<string> }[] }
        >;
      };
    }).Bun;
    const result = await bun.build({ entrypoints: [entry], target: "browser", format: "esm" });
    if (!result.success || result.outputs.length !== 1) {
      throw new Error(`Bun.build of ${entry} failed:\n${result.logs.join("\n")}`);
    }
    return await result.outputs[0].text();
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kite-bundle-"));
  try {
    const outfile = path.join(dir, "bundle.js");
    const args = ["bundle", "--quiet", "--platform=browser", `--output=${outfile}`, entry];
    const { code, output } = await run(process.execPath, args);
    if (code !== 0) throw new Error(`deno ${args.join(" ")} failed (${code}):\n${output}`);
    return fs.readFileSync(outfile, "utf8");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const run = (command: string, args: string[]) =>
  runToEnd(command, args, { timeoutMs: BUNDLE_TIMEOUT_MS });
