/**
 * `deno task test`: the whole suite on Deno, then the same files on Bun, on a machine with only
 * Deno installed as on CI.
 *
 * - Bun: the `bun` on PATH, else the one in ~/.cache/kite-tools, else it installs Bun there with
 *   npm (as .ci/run does); without npm it says so in one line and fails after the Deno half.
 * - Both halves write their whole output to test.log at the top of the checkout (with `CI` set or
 *   `--verbose`, it goes to stdout too); a failing half's failures are printed here.
 * - It ends with two summary lines, `Deno: N passed, N failed` and `Bun: N pass, N fail`, and,
 *   where mosquitto or its command-line clients are missing, one line saying how many tests were
 *   skipped and how to install them. `KITE_REQUIRE_MOSQUITTO=1` (CI) makes those tests fail
 *   instead. Where no Chromium is installed, one more line says the browser tests were skipped
 *   and how to install it (with `CI=true` they fail instead).
 *
 * The exit status is 0 when both halves passed.
 *
 *     deno task test [--verbose] [FILE_OR_FOLDER...]
 *
 * With files or folders, both halves run only those (`deno task test tests/cli/`); without, Deno
 * runs `mod.ts src/ tests/` with the JSDoc examples and Bun runs `tests/`.
 *
 * @module
 */

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const LOG = `${ROOT}test.log`;
const HOME = Deno.env.get("HOME") ?? "/root";
const TOOLS = `${HOME}/.cache/kite-tools`;
const verbose = Deno.args.includes("--verbose") || (Deno.env.get("CI") ?? "") !== "";
const only = Deno.args.filter((arg) => !arg.startsWith("--"));

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
  options: { cwd?: string } = {},
): Promise<{ code: number; output: string }> {
  await log.write(encoder.encode(`\n+ ${command} ${args.join(" ")}\n`));
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command, {
      args,
      cwd: options.cwd ?? ROOT,
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

/**
 * How many tests a half skipped for a missing mosquitto: every skipped test but those whose name
 * says why they skip ("skipped: ...", "not applicable", "not run: ..."), which skip whatever is
 * installed. Deno reports a skipped `describe` block as one test, Bun each test in it.
 */
function skippedForMosquitto(runtime: "Deno" | "Bun", output: string): number {
  const skipped = runtime === "Deno"
    ? (line: string) => / \.\.\. ignored \(/.test(line)
    : (line: string) => line.startsWith("(skip) ");
  return plain(output).split("\n").filter((line) =>
    skipped(line) && !/skipped:|not applicable|not run:/.test(line)
  ).length;
}

/** The part of a failed half's output that says what failed. */
function failures(runtime: "Deno" | "Bun", output: string): string {
  const lines = plain(output).split("\n");
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

const bunFound = await findBun();

await say(
  `Deno: running the ${only.length > 0 ? "tests" : "whole suite (a few minutes)"}; ` +
    `the output goes to ${LOG}${verbose ? "" : " (--verbose shows it here)"}`,
);
const deno = await run(
  Deno.execPath(),
  ["test", "-A", "--quiet", ...(only.length > 0 ? only : ["--doc", "mod.ts", "src/", "tests/"])],
);
const denoResult = denoCounts(deno.output);
if (deno.code !== 0 && !verbose) await say(failures("Deno", deno.output));

let bun: { code: number; output: string } | undefined;
let bunResult: Counts | undefined;
if ("bun" in bunFound) {
  await say(`Bun: running the same files`);
  bun = await run(bunFound.bun, ["test", ...(only.length > 0 ? only : ["tests/"])]);
  bunResult = bunCounts(bun.output);
  if (bun.code !== 0 && !verbose) await say(failures("Bun", bun.output));
}

const mosquittoMissing = !installed("mosquitto", ["/usr/sbin/mosquitto"]);
const clientsMissing = !installed("mosquitto_pub", ["/usr/bin/mosquitto_pub"]) ||
  !installed("mosquitto_sub", ["/usr/bin/mosquitto_sub"]);

await say("");
await say(`Full output: ${LOG}`);
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
if ((mosquittoMissing || clientsMissing) && Deno.env.get("KITE_REQUIRE_MOSQUITTO") !== "1") {
  const what = mosquittoMissing && clientsMissing
    ? "mosquitto and its clients are"
    : mosquittoMissing
    ? "mosquitto is"
    : "mosquitto_pub and mosquitto_sub are";
  await say(
    `mosquitto: ${what} not installed, so ${skippedForMosquitto("Deno", deno.output)} tests ` +
      `on Deno and ${bun === undefined ? 0 : skippedForMosquitto("Bun", bun.output)} on Bun ` +
      "were skipped; install with sudo apt-get install mosquitto mosquitto-clients " +
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

const passed = deno.code === 0 && denoResult !== undefined && bun?.code === 0 &&
  bunResult !== undefined;
Deno.exit(passed ? 0 : 1);
