/**
 * The `"."` export (`mod.ts`) bundles for the browser: `bun build --target=browser` succeeds, the
 * bundle imports nothing (no `node:` module, nor any other), and it loads and works with the
 * globals of a browser only.
 *
 * Under Bun the bundle is made with `Bun.build`; under Deno with the `bun` on PATH or in
 * `~/.cache/kite-tools/node_modules/.bin` (skipped, saying so, where there is none, except with
 * `CI` set: there a missing `bun` fails); under Deno, `deno bundle --platform=browser` is checked
 * too. The `node:` modules are left external, so that one would stay an import the test sees,
 * rather than a polyfill Bun inlines. The bundle is then run in a child process of the same
 * runtime that first deletes `process`, `Deno`, `require`, `Buffer`, `setImmediate` and the like
 * (Bun's `Bun` cannot be deleted; the bundle never reads it), so that it goes the way a page
 * goes: a `FileStore` is refused with an error that names `MemoryStore`, and a client connects
 * to mosquitto over `ws://`, subscribes, publishes and receives at QoS 1.
 *
 * Not a browser: that is the next step (headless Chromium against the same broker).
 */

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { runToEnd } from "./helpers/run.ts";
import { builtinModules } from "node:module";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { mosquittoSkipReason, startMosquitto } from "./helpers/mosquitto.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const ENTRY = path.join(ROOT, "mod.ts");
const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";
const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
const slow = { timeout: 60_000 };

/** Runs a command to its end (at most 60 s) in the checkout. */
const run = (command: string, args: string[]) => runToEnd(command, args, { cwd: ROOT });

/** Where `bun` is (PATH, then ~/.cache/kite-tools), or `undefined`. */
function findBun(): string | undefined {
  const dirs = [
    ...(process.env.PATH ?? "").split(path.delimiter),
    path.join(os.homedir(), ".cache", "kite-tools", "node_modules", ".bin"),
  ];
  for (const dir of dirs.filter((dir) => dir !== "")) {
    const candidate = path.join(dir, "bun");
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** Why the bundle cannot be made here, or `undefined`; throws on CI, where bun must be there. */
function skipReason(): string | undefined {
  if (isBun || findBun() !== undefined) return undefined;
  if ((process.env.CI ?? "") !== "") {
    throw new Error(
      "CI is set but bun is not installed (looked on PATH and in ~/.cache/kite-tools)",
    );
  }
  return "bun is not installed (looked on PATH and in ~/.cache/kite-tools): it makes the bundle";
}

// Bun's browser target inlines a polyfill for some node: modules (node:path) and an empty
// object for others (node:fs), and fails on a few (the default export of node:process). Left
// external, every one of them stays an import in the bundle, where the test sees it.
const NODE_EXTERNAL = ["node:*", ...builtinModules];

/**
 * Bundles `mod.ts` for the browser into `outfile`, as `bun build --target=browser` does; with
 * `external`, the node: modules are left as imports rather than polyfilled.
 */
async function bundle(outfile: string, external: boolean): Promise<void> {
  if (isBun) {
    const bun = (globalThis as unknown as {
      Bun: {
        build(options: object): Promise<
          { success: boolean; logs: unknown[]; outputs: { text(): Promise<string> }[] }
        >;
      };
    }).Bun;
    const result = await bun.build({
      entrypoints: [ENTRY],
      target: "browser",
      format: "esm",
      external: external ? NODE_EXTERNAL : [],
    });
    assert.ok(result.success, `Bun.build failed:\n${result.logs.join("\n")}`);
    assert.equal(result.outputs.length, 1, "one file, no chunks");
    fs.writeFileSync(outfile, await result.outputs[0].text());
  } else {
    const result = await run(findBun()!, [
      "build",
      ENTRY,
      "--target=browser",
      "--format=esm",
      `--outfile=${outfile}`,
      ...(external ? NODE_EXTERNAL.map((name) => `--external=${name}`) : []),
    ]);
    assert.equal(result.code, 0, `bun build failed:\n${result.stdout}${result.stderr}`);
  }
}

/** The imports a bundle makes: static, dynamic with a literal specifier, and `require`. */
function importsOf(code: string): string[] {
  return [
    // import x from "…", export { x } from "…", import "…"
    /^\s*(?:import|export)\b[^;"'`]*?\bfrom\s*["'`][^"'`]+["'`]/gm,
    /^\s*import\s*["'`][^"'`]+["'`]/gm,
    // import("…"), require("…")
    /\bimport\s*\(\s*["'`][^"'`]+["'`]/g,
    /\brequire\s*\(\s*["'`][^"'`]+["'`]/g,
  ].flatMap((pattern) => code.match(pattern) ?? []);
}

// Run by the child process: takes away what a browser does not have, then loads the bundle and
// uses it as a page would. Prints one line of JSON.
const CHILD = `
const exit = globalThis.process?.exit?.bind(globalThis.process) ?? globalThis.Deno.exit;
const GONE = ["process", "Deno", "require", "module", "exports", "Buffer", "global",
  "setImmediate", "clearImmediate", "__dirname", "__filename"];
for (const name of GONE) {
  try { delete globalThis[name]; } catch { /* stays: reported below */ }
}
const report = { left: GONE.filter((name) => name in globalThis) };
const timer = setTimeout(() => { console.log(JSON.stringify({ ...report, timeout: true })); exit(3); }, 30000);
try {
  const kite = await import(BUNDLE_URL);
  report.exports = Object.keys(kite).sort();
  try {
    new kite.FileStore("kite-browser-test");
    report.fileStore = "made";
  } catch (error) {
    report.fileStore = error.name + ": " + error.message;
  }
  const memory = new kite.MemoryStore();
  report.memoryStore = await memory.open();
  if (WS_URL !== undefined) {
    const client = await kite.connect(WS_URL, { clientId: "kite-browser-bundle", clean: true });
    try {
      await client.subscribe("kite/browser/#", { qos: 1 });
      await client.publish("kite/browser/page", "hello from the bundle", { qos: 1 });
      for await (const message of client.messages()) {
        report.received = {
          topic: message.topic,
          payload: new TextDecoder().decode(message.payload),
          qos: message.qos,
        };
        break;
      }
    } finally {
      await client.disconnect();
    }
  }
} catch (error) {
  report.error = String(error?.stack ?? error);
}
clearTimeout(timer);
console.log(JSON.stringify(report));
`;

/** Runs CHILD in a new process of this runtime; resolves with its report. */
async function runChild(
  dir: string,
  bundleFile: string,
  wsUrl: string | undefined,
): Promise<Record<string, unknown>> {
  const file = path.join(dir, `child-${wsUrl === undefined ? "offline" : "ws"}.mjs`);
  fs.writeFileSync(
    file,
    `const BUNDLE_URL = ${JSON.stringify(pathToFileURL(bundleFile).href)};\n` +
      `const WS_URL = ${wsUrl === undefined ? "undefined" : JSON.stringify(wsUrl)};\n${CHILD}`,
  );
  const args = isDeno ? ["run", "--allow-read", "--allow-net=127.0.0.1", file] : [file];
  const result = await run(process.execPath, args);
  const line = result.stdout.trim().split("\n").at(-1) ?? "";
  assert.ok(
    line.startsWith("{"),
    `the child printed no report (status ${result.code}):\n${result.stdout}${result.stderr}`,
  );
  return JSON.parse(line);
}

const skip = skipReason();
const mosquittoSkip = mosquittoSkipReason();

describe("mod.ts bundled for the browser", { skip }, () => {
  let dir = "";
  let bundleFile = "";
  let code = "";

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "kite-browser-"));
    // As the issue ran it: bun build mod.ts --target=browser, which must succeed.
    await bundle(path.join(dir, "kite.default.mjs"), false);
    // The file tested: the same, with node: modules left external rather than polyfilled.
    bundleFile = path.join(dir, "kite.browser.mjs");
    await bundle(bundleFile, true);
    code = fs.readFileSync(bundleFile, "utf8");
  });
  after(() => {
    if (dir !== "") fs.rmSync(dir, { recursive: true, force: true });
  });

  test("imports nothing: no node: module, nor any other", () => {
    assert.ok(code.length > 10_000, `the bundle is only ${code.length} characters`);
    assert.deepEqual(importsOf(code), []);
    // Only the runtime is asked for node: modules (process.getBuiltinModule, absent in a
    // browser).
    assert.doesNotMatch(code, /__require|createRequire/);
  });

  test("deno bundle --platform=browser imports nothing either", {
    skip: isDeno ? undefined : "deno bundle is Deno's",
    ...slow,
  }, async () => {
    const outfile = path.join(dir, "kite.deno.mjs");
    const result = await run(process.execPath, [
      "bundle",
      "--quiet",
      "--platform=browser",
      ...NODE_EXTERNAL.map((name) => `--external=${name}`),
      `--output=${outfile}`,
      ENTRY,
    ]);
    assert.equal(result.code, 0, `deno bundle failed:\n${result.stdout}${result.stderr}`);
    const bundled = fs.readFileSync(outfile, "utf8");
    assert.ok(bundled.length > 10_000, `the bundle is only ${bundled.length} characters`);
    assert.deepEqual(importsOf(bundled), []);
  });

  test("exports what mod.ts exports", async () => {
    const bundled = await import(pathToFileURL(bundleFile).href);
    const source = await import(pathToFileURL(ENTRY).href);
    assert.deepEqual(Object.keys(bundled).sort(), Object.keys(source).sort());
    assert.equal(typeof bundled.FileStore, "function");
  });

  test(
    "loads without process, Deno, require or Buffer; FileStore is refused there",
    slow,
    async () => {
      const report = await runChild(dir, bundleFile, undefined);
      assert.equal(report.error, undefined);
      // Bun's global `Bun` cannot be deleted; the bundle does not read it.
      assert.deepEqual((report.left as string[]).filter((name) => name !== "Bun"), []);
      assert.ok((report.exports as string[]).includes("connect"));
      assert.match(
        String(report.fileStore),
        /^MqttError: FileStore needs the file system.*use MemoryStore$/,
      );
      assert.deepEqual(report.memoryStore, { outgoing: [], incoming: [] });
    },
  );

  test("connects over ws:// without them, subscribes, publishes and receives at QoS 1", {
    skip: mosquittoSkip,
    ...slow,
  }, async () => {
    await using broker = await startMosquitto({ websockets: true });
    const report = await runChild(dir, bundleFile, `ws://127.0.0.1:${broker.wsPort}/`);
    assert.equal(report.error, undefined);
    assert.deepEqual(report.received, {
      topic: "kite/browser/page",
      payload: "hello from the bundle",
      qos: 1,
    });
  });
});
