/**
 * Every ```ts block of README.md runs as written on each runtime the README claims for it:
 * Deno, Bun and Node (≥ 20.16, as plain JavaScript in an `.mjs` file).
 *
 * Two things are replaced before a block runs, and nothing else:
 * - the imports `jsr:@kite/mqtt`, `jsr:@kite/mqtt/packet` and `jsr:@kite/mqtt/broker` become
 *   this checkout's `mod.ts`, `src/packet/mod.ts` and `src/broker/mod.ts` (for Node, a bundle
 *   of them that `Bun.build` makes, standing in for what `npx jsr add @kite/mqtt` installs);
 * - the broker address `mqtt://127.0.0.1:1883` becomes a mosquitto of the test's own on a free
 *   port (a block that names it is skipped where mosquitto is not installed).
 *
 * Under `deno test` each block is type-checked and run with `deno run --check`; under
 * `bun test` it runs with `bun run`, then with `node` (skipped, saying so, where `node` is not
 * installed). A block that cannot run must say why in the line before it, as
 * `<!-- readme_test: not run: REASON -->`; the test lists those and fails on one without a reason.
 */

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { runToEnd } from "./helpers/run.ts";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { type Mosquitto, mosquittoSkipReason, startMosquitto } from "./helpers/mosquitto.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const README = path.join(ROOT, "README.md");
const BROKER_URL = "mqtt://127.0.0.1:1883";
const NOT_RUN = /^<!-- readme_test: not run:\s*(.*?)\s*-->$/;
const ENTRY_POINTS = {
  "jsr:@kite/mqtt/packet": "src/packet/mod.ts",
  "jsr:@kite/mqtt/broker": "src/broker/mod.ts",
  "jsr:@kite/mqtt": "mod.ts",
} as const;

const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";
const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

/** One ```ts block of the README. */
interface Block {
  /** The line of its opening fence, counting from 1. */
  line: number;
  code: string;
  /** Why it is not run, when the README says so. */
  notRun?: string;
}

/** The README's ```ts blocks, in order. */
function readmeBlocks(markdown: string): Block[] {
  const lines = markdown.split("\n");
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== "```ts") continue;
    const start = i;
    const code: string[] = [];
    for (i++; i < lines.length && lines[i].trim() !== "```"; i++) code.push(lines[i]);
    const marker = start > 0 ? NOT_RUN.exec(lines[start - 1].trim()) : null;
    blocks.push({ line: start + 1, code: code.join("\n") + "\n", notRun: marker?.[1] });
  }
  return blocks;
}

/** The block with the imports and the broker address replaced. */
function prepare(block: Block, imports: Record<string, string>, brokerUrl?: string): string {
  let code = block.code;
  // Longest specifier first, so `jsr:@kite/mqtt` does not eat the start of its subpaths.
  for (const specifier of Object.keys(ENTRY_POINTS)) {
    code = code.replaceAll(`"${specifier}"`, JSON.stringify(imports[specifier]));
  }
  if (brokerUrl !== undefined) code = code.replaceAll(BROKER_URL, brokerUrl);
  return code;
}

/** Runs a command to its end (at most 60 s) in the checkout. */
const run = (command: string, args: string[]) => runToEnd(command, args, { cwd: ROOT });

/** Where `node` is, or `undefined`. */
function findNode(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    const candidate = path.join(dir, "node");
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

const blocks = readmeBlocks(fs.readFileSync(README, "utf8"));
const mosquittoSkip = mosquittoSkipReason();

describe("README", () => {
  test("has ts blocks, and says why for each one it does not run", () => {
    assert.ok(blocks.length >= 5, `found only ${blocks.length} ts blocks in README.md`);
    for (const block of blocks.filter((block) => block.notRun !== undefined)) {
      assert.notEqual(block.notRun, "", `README.md:${block.line} is not run, but says not why`);
    }
  });

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kite-readme-"));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const local = Object.fromEntries(
    Object.entries(ENTRY_POINTS).map(([specifier, file]) => [specifier, path.join(ROOT, file)]),
  );
  let bundled: Record<string, string> | undefined;
  const node = findNode();

  if (isBun) {
    before(async () => {
      // What `npx jsr add @kite/mqtt` gives Node: the package as JavaScript.
      const bun = (globalThis as unknown as {
        Bun: {
          build(options: object): Promise<
            { success: boolean; logs: unknown[]; outputs: { path: string }[] }
          >;
        };
      }).Bun;
      const result = await bun.build({
        entrypoints: Object.values(ENTRY_POINTS).map((file) => path.join(ROOT, file)),
        root: ROOT,
        outdir: path.join(dir, "bundle"),
        target: "node",
        format: "esm",
        splitting: true,
      });
      assert.ok(result.success, `Bun.build failed: ${result.logs.join("\n")}`);
      bundled = Object.fromEntries(
        Object.entries(ENTRY_POINTS).map((
          [specifier, file],
        ) => [specifier, path.join(dir, "bundle", file.replace(/\.ts$/, ".js"))]),
      );
      for (const file of Object.values(bundled)) assert.ok(fs.existsSync(file), file);
    });
  }

  for (const block of blocks) {
    const where = `README.md:${block.line}`;
    if (block.notRun !== undefined) {
      test(`${where} - not run: ${block.notRun}`, { skip: block.notRun }, () => {});
      continue;
    }
    const needsBroker = block.code.includes(BROKER_URL);
    const skip = needsBroker ? mosquittoSkip : undefined;
    const first = block.code.split("\n").find((line) => line.startsWith("import")) ?? "";
    const runtimes = isDeno ? ["Deno"] : isBun ? ["Bun", "Node"] : [];
    for (const runtime of runtimes) {
      const runtimeSkip = runtime === "Node" && node === undefined
        ? "node is not installed"
        : undefined;
      test(
        `${where} (${first}) runs on ${runtime}${runtimeSkip ? ` - skipped: ${runtimeSkip}` : ""}`,
        { skip: skip ?? runtimeSkip, timeout: 90_000 },
        async () => {
          let broker: Mosquitto | undefined;
          try {
            if (needsBroker) broker = await startMosquitto();
            const file = path.join(dir, `block-${block.line}.${runtime === "Node" ? "mjs" : "ts"}`);
            const imports = runtime === "Node" ? bundled! : local;
            fs.writeFileSync(file, prepare(block, imports, broker?.url));
            const [command, args] = runtime === "Deno"
              ? [process.execPath, ["run", "-A", "--quiet", "--check", file]]
              : runtime === "Bun"
              ? [process.execPath, ["run", file]]
              : [node!, [file]];
            const { code, output } = await run(command, args);
            assert.equal(code, 0, `${where} failed on ${runtime}:\n${output}`);
          } finally {
            await broker?.stop();
          }
        },
      );
    }
  }
});
