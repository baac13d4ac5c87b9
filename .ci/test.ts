/**
 * `deno task test`: the whole suite on Deno, then the same files on Bun, then the npm package on
 * Node, on a machine with only Deno installed as on CI.
 *
 * - Bun: the `bun` on PATH, else the one in ~/.cache/kite-tools, else it installs Bun there with
 *   npm (as .ci/run does); without npm it says so in one line and fails after the Deno half.
 * - Node: `deno task build:npm --tests` builds the package into `dist/npm/` and installs it, with
 *   the tests of `tests/node/` compiled, into `dist/node-test/`; `node --test` runs them there
 *   (with `--experimental-websocket` on Node 20 and 21, whose `WebSocket` is behind it). Where
 *   `node` or `npm` is missing, or Node is older than 20.16, it says so in one line, and fails
 *   only with `CI=true`.
 * - Each run writes its whole output to test.log at the top of the checkout (with `CI` set or
 *   `--verbose`, it goes to stdout too); a failing run's failures are printed here.
 * - It ends with three summary lines, `Deno: N passed, N failed`, `Bun: N pass, N fail` and
 *   `Node: N pass, N fail`, and, where mosquitto or its command-line clients are missing, one line
 *   saying how many tests were skipped and how to install them. `KITE_REQUIRE_MOSQUITTO=1` (CI)
 *   makes those tests fail instead. Where no Chromium is installed, one more line says the browser
 *   tests were skipped and how to install it (with `CI=true` they fail instead).
 *
 * The exit status is 0 when every run passed.
 *
 *     deno task test [--verbose] [FILE_OR_FOLDER...]
 *
 * With files or folders, Deno and Bun run only those (`deno task test tests/cli/`), and Node runs
 * only if some are under `tests/node/` (then those); without, Deno runs `mod.ts src/ tests/` with
 * the JSDoc examples, Bun runs `tests/` and Node runs every `tests/node/*.node.ts`.
 *
 * @module
 */

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const LOG = `${ROOT}test.log`;
const HOME = Deno.env.get("HOME") ?? "/root";
const TOOLS = `${HOME}/.cache/kite-tools`;
const verbose = Deno.args.includes("--verbose") || (Deno.env.get("CI") ?? "") !== "";
const only = Deno.args.filter((arg) => !arg.startsWith("--"));
const CI = Deno.env.get("CI") === "true";
/** Named files or folders under tests/node/, which only Node runs. */
const NODE_TESTS = /^(\.\/)?tests\/node(\/|$)/;
const onlyNode = only.filter((arg) => NODE_TESTS.test(arg));
const onlyOthers = only.filter((arg) => !NODE_TESTS.test(arg));
/** Whether Deno and Bun run: always, unless every file named is one of Node's. */
const runDenoAndBun = only.length === 0 || onlyOthers.length > 0;
/** Whether Node runs: with no files named, or with some of its own. */
const runNode = only.length === 0 || onlyNode.length > 0;

const log = await Deno.open(LOG, { create: true, write: true, truncate: true });
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Says one line here (and in the log). */
async function say(line: string): Promise<void> {
  await Deno.stdout.write(encoder.encode(`${line}\n`));
  await log.write(encoder.encode(`${line}\n`));
}

/** Runs a command with its output going to the log (and stdout when verbose). */
async function run(
  command: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; output: string }> {
  await log.write(encoder.encode(`\n+ ${command} ${args.join(" ")}\n`));
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command, {
      args,
      cwd: options.cwd ?? ROOT,
      env: options.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    const message = `${command}: ${error instanceof Error ? error.message : error}\n`;
    await log.write(encoder.encode(message));
    return { code: 127, output: message };
  }
  let output = "";
  const copy = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) {
      output += decoder.decode(chunk, { stream: true });
      await log.write(chunk);
      if (verbose) await Deno.stdout.write(chunk);
    }
  };
  const [status] = await Promise.all([child.status, copy(child.stdout), copy(child.stderr)]);
  return { code: status.code, output };
}

/** Whether `command --version` works. */
async function works(command: string): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(command, {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}

/** Whether an executable is on PATH or at one of `also`. */
function installed(name: string, also: string[] = []): boolean {
  const dirs = (Deno.env.get("PATH") ?? "").split(":").filter((dir) => dir !== "");
  for (const candidate of [...dirs.map((dir) => `${dir}/${name}`), ...also]) {
    try {
      if (Deno.statSync(candidate).isFile) return true;
    } catch {
      // Not there.
    }
  }
  return false;
}

/** Bun's command, installing it into ~/.cache/kite-tools with npm when missing; or why not. */
async function findBun(): Promise<{ bun: string } | { problem: string }> {
  if (await works("bun")) return { bun: "bun" };
  const cached = `${TOOLS}/node_modules/.bin/bun`;
  if (await works(cached)) return { bun: cached };
  if (!await works("npm")) {
    return {
      problem: "Bun is not installed and there is no npm to fetch it: install Bun, or Node " +
        "with npm, and run deno task test again",
    };
  }
  await say(`Bun is not installed: installing it into ${TOOLS} with npm`);
  await run("npm", ["install", "--prefix", TOOLS, "--no-audit", "--no-fund", "bun@1"]);
  // npm may skip install scripts; bun's placeholder binary needs its script to fetch the real one.
  if (!await works(cached)) {
    await run("node", ["install.js"], { cwd: `${TOOLS}/node_modules/bun` });
  }
  if (await works(cached)) return { bun: cached };
  return { problem: `installing Bun with npm into ${TOOLS} failed (see ${LOG})` };
}

// deno-lint-ignore no-control-regex
const plain = (text: string) => text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "");

interface Counts {
  passed: number;
  failed: number;
}

/**
 * Deno's closing line, `ok | 45 passed (812 steps) | 0 failed`. A
 * `describe` block is one test with its tests as steps: count steps where there are any, as
 * .ci/run always has, so the figures are near Bun's, which counts the inner tests.
 */
function denoCounts(output: string): Counts | undefined {
  const line = plain(output).split("\n").reverse().find((line) =>
    /^(ok|FAILED) \| \d+ passed/.test(line)
  );
  if (line === undefined) return undefined;
  const field = (word: string) => {
    const match = new RegExp(`(\\d+) ${word}(?: \\((\\d+) steps?\\))?`).exec(line);
    return { tests: Number(match?.[1] ?? 0), steps: Number(match?.[2] ?? 0) };
  };
  const passed = field("passed");
  const failed = field("failed");
  return {
    passed: passed.steps > 0 ? passed.steps : passed.tests,
    failed: Math.max(failed.tests, failed.steps),
  };
}

/** Bun's closing lines: ` 812 pass`, ` 0 fail`. */
function bunCounts(output: string): Counts | undefined {
  const lines = plain(output).split("\n");
  const count = (word: string) => {
    const line = lines.findLast((line) => new RegExp(`^\\s*\\d+ ${word}$`).test(line));
    return line === undefined ? undefined : Number(line.trim().split(" ")[0]);
  };
  const passed = count("pass");
  const failed = count("fail");
  if (passed === undefined && failed === undefined) return undefined;
  return { passed: passed ?? 0, failed: failed ?? 0 };
}

/** node --test's spec reporter's closing lines: `ℹ pass 12`, `ℹ fail 0`. */
function nodeCounts(output: string): Counts | undefined {
  const lines = plain(output).split("\n");
  const count = (word: string) => {
    const line = lines.findLast((line) => new RegExp(`^ℹ ${word} \\d+$`).test(line));
    return line === undefined ? undefined : Number(line.split(" ")[2]);
  };
  const passed = count("pass");
  const failed = count("fail");
  if (passed === undefined || failed === undefined) return undefined;
  return { passed, failed: failed + (count("cancelled") ?? 0) };
}

/**
 * How many tests a half skipped for a missing mosquitto: every skipped test but those whose name
 * says why they skip ("skipped: ...", "not applicable", "not run: ..."), which skip whatever is
 * installed. Deno reports a skipped `describe` block as one test, Bun each test in it.
 */
function skippedForMosquitto(runtime: "Deno" | "Bun" | "Node", output: string): number {
  // Every Node test skips for mosquitto alone.
  if (runtime === "Node") return Number(/^ℹ skipped (\d+)$/m.exec(plain(output))?.[1] ?? 0);
  const skipped = runtime === "Deno"
    ? (line: string) => / \.\.\. ignored \(/.test(line)
    : (line: string) => line.startsWith("(skip) ");
  return plain(output).split("\n").filter((line) =>
    skipped(line) && !/skipped:|not applicable|not run:/.test(line)
  ).length;
}

/** The part of a failed half's output that says what failed. */
function failures(runtime: "Deno" | "Bun" | "Node", output: string): string {
  const lines = plain(output).split("\n");
  if (runtime === "Node") {
    const start = lines.findIndex((line) => line.startsWith("✖ failing tests:"));
    return lines.slice(start === -1 ? -40 : start).join("\n");
  }
  if (runtime === "Deno") {
    const start = lines.findIndex((line) => /^\s*(ERRORS|FAILURES)\s*$/.test(line));
    return lines.slice(start === -1 ? -40 : start).join("\n");
  }
  // Bun prints a test's error above its "(fail)" line: keep what came since the last result.
  const shown: string[] = [];
  let since: string[] = [];
  for (const line of lines) {
    if (/^\((pass|skip|todo)\)/.test(line) || /^tests\/.*:$/.test(line)) since = [];
    else if (line.startsWith("(fail)")) {
      shown.push(...since.slice(-30), line, "");
      since = [];
    } else since.push(line);
  }
  return (shown.length > 0 ? shown : lines.slice(-40)).join("\n");
}

/** The major and minor version of a `node --version` such as `v20.20.2`. */
function nodeVersion(text: string): [number, number] | undefined {
  const match = /^v(\d+)\.(\d+)\./.exec(text.trim());
  return match === null ? undefined : [Number(match[1]), Number(match[2])];
}

/** The Node half: builds and installs the package, runs `tests/node/` on it; or why not. */
async function runNodeHalf(): Promise<{ code: number; output: string } | { problem: string }> {
  let version: [number, number] | undefined;
  try {
    const { stdout } = await new Deno.Command("node", { args: ["--version"], stderr: "null" })
      .output();
    version = nodeVersion(decoder.decode(stdout));
  } catch {
    // Not installed.
  }
  if (version === undefined) {
    return { problem: "node is not installed; install Node 20.16 or later (with npm)" };
  }
  if (version[0] < 20 || (version[0] === 20 && version[1] < 16)) {
    return { problem: `Node ${version.join(".")} is older than 20.16, the oldest Kite supports` };
  }
  if (!await works("npm")) return { problem: "npm (which comes with Node) is not installed" };
  await say("Node: building the npm package and running tests/node/ on it");
  const build = await run(Deno.execPath(), ["run", "-A", ".ci/build_npm.ts", "--tests"]);
  if (build.code !== 0) {
    return { code: build.code, output: `the build failed:\n${build.output}` };
  }
  const built = `${ROOT}dist/node-test/tests/node/`;
  const all = [...Deno.readDirSync(built)]
    .filter((entry) => entry.name.endsWith(".node.js"))
    .map((entry) => `${built}${entry.name}`)
    .sort();
  const files = onlyNode.length === 0 ? all : all.filter((file) =>
    onlyNode.some((arg) => {
      const named = arg.replace(/^\.\//, "").replace(/\/$/, "");
      const source = `tests/node/${file.slice(built.length).replace(/\.js$/, ".ts")}`;
      return source === named || source.startsWith(`${named}/`);
    })
  );
  if (files.length === 0) {
    const output = `no Node tests match ${onlyNode.join(" ")} (they are tests/node/*.node.ts)\n`;
    await log.write(encoder.encode(output));
    return { code: 1, output };
  }
  // Node 20 and 21 have the global WebSocket only behind this flag; the children need it too.
  const env: Record<string, string> = {};
  if (version[0] < 22) {
    env.NODE_OPTIONS = `${Deno.env.get("NODE_OPTIONS") ?? ""} --experimental-websocket`.trim();
  }
  return await run(
    "node",
    ["--test", "--test-reporter=spec", "--test-timeout=120000", ...files],
    { env },
  );
}

const bunFound = runDenoAndBun ? await findBun() : { problem: "not needed" };

let deno: { code: number; output: string } | undefined;
let denoResult: Counts | undefined;
let bun: { code: number; output: string } | undefined;
let bunResult: Counts | undefined;
if (runDenoAndBun) {
  await say(
    `Deno: running the ${only.length > 0 ? "tests" : "whole suite (a few minutes)"}; ` +
      `the output goes to ${LOG}${verbose ? "" : " (--verbose shows it here)"}`,
  );
  deno = await run(
    Deno.execPath(),
    [
      "test",
      "-A",
      "--quiet",
      ...(only.length > 0 ? onlyOthers : ["--doc", "mod.ts", "src/", "tests/"]),
    ],
  );
  denoResult = denoCounts(deno.output);
  if (deno.code !== 0 && !verbose) await say(failures("Deno", deno.output));

  if ("bun" in bunFound) {
    await say(`Bun: running the same files`);
    bun = await run(bunFound.bun, ["test", ...(only.length > 0 ? onlyOthers : ["tests/"])]);
    bunResult = bunCounts(bun.output);
    if (bun.code !== 0 && !verbose) await say(failures("Bun", bun.output));
  }
}

let node: { code: number; output: string } | { problem: string } | undefined;
let nodeResult: Counts | undefined;
if (runNode) {
  node = await runNodeHalf();
  if ("output" in node) {
    nodeResult = nodeCounts(node.output);
    if (node.code !== 0 && !verbose) await say(failures("Node", node.output));
  }
}

const mosquittoMissing = !installed("mosquitto", ["/usr/sbin/mosquitto"]);
const clientsMissing = !installed("mosquitto_pub", ["/usr/bin/mosquitto_pub"]) ||
  !installed("mosquitto_sub", ["/usr/bin/mosquitto_sub"]);

await say("");
await say(`Full output: ${LOG}`);
if (deno === undefined) await say("Deno and Bun: not run (only files under tests/node/ named)");
else {
  await say(
    denoResult === undefined
      ? `Deno: no summary (exit status ${deno.code}; see ${LOG})`
      : `Deno: ${denoResult.passed} passed, ${denoResult.failed} failed`,
  );
  if (!("bun" in bunFound)) await say(`Bun: not run: ${bunFound.problem}`);
  else {
    await say(
      bunResult === undefined
        ? `Bun: no summary (exit status ${bun!.code}; see ${LOG})`
        : `Bun: ${bunResult.passed} pass, ${bunResult.failed} fail`,
    );
  }
}
if (node !== undefined) {
  if ("problem" in node) {
    await say(`Node: not run: ${node.problem}${CI ? " (a failure with CI=true)" : ""}`);
  } else {
    await say(
      nodeResult === undefined
        ? `Node: no summary (exit status ${node.code}; see ${LOG})`
        : `Node: ${nodeResult.passed} pass, ${nodeResult.failed} fail`,
    );
  }
}
if ((mosquittoMissing || clientsMissing) && Deno.env.get("KITE_REQUIRE_MOSQUITTO") !== "1") {
  const what = mosquittoMissing && clientsMissing
    ? "mosquitto and its clients are"
    : mosquittoMissing
    ? "mosquitto is"
    : "mosquitto_pub and mosquitto_sub are";
  await say(
    `mosquitto: ${what} not installed, so ` +
      `${deno === undefined ? 0 : skippedForMosquitto("Deno", deno.output)} tests on Deno, ` +
      `${bun === undefined ? 0 : skippedForMosquitto("Bun", bun.output)} on Bun and ` +
      `${
        node === undefined || !("output" in node) ? 0 : skippedForMosquitto("Node", node.output)
      } ` +
      "on Node were skipped; install with sudo apt-get install mosquitto mosquitto-clients " +
      "(Debian, Ubuntu) or brew install mosquitto (macOS)",
  );
}
const chromiumMissing = !installed("chromium-headless-shell", [
  "/usr/lib/chromium/chromium-headless-shell",
  "/usr/bin/chromium",
]) && !installed("chromium");
if (
  chromiumMissing && Deno.env.get("CI") !== "true" && Deno.env.get("KITE_REQUIRE_CHROMIUM") !== "1"
) {
  await say(
    "Chromium: not installed, so the browser tests (tests/browser_test.ts, " +
      "tests/web_demo_test.ts) were skipped; " +
      "install with sudo apt-get install chromium-headless-shell (Debian, Ubuntu)",
  );
}
log.close();

const denoAndBunPassed = !runDenoAndBun ||
  (deno?.code === 0 && denoResult !== undefined && bun?.code === 0 && bunResult !== undefined);
const nodePassed = node === undefined ||
  ("problem" in node ? !CI : node.code === 0 && nodeResult !== undefined);
Deno.exit(denoAndBunPassed && nodePassed ? 0 : 1);
