/**
 * The `kite` command of the built package on Node: the bin npm linked into
 * `node_modules/.bin/kite` when it installed the package, run as a user runs it.
 *
 * Runs only under `node --test`, from `dist/node-test/` (see support.ts).
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { mosquittoSkipReason, sharedMosquitto } from "../helpers/mosquitto.ts";
import { child, HERE, KITE_BIN, NODE } from "./support.ts";

const skip = mosquittoSkipReason();

/** Runs `kite ...args` to its end; with `input`, that is its stdin. */
async function kite(
  args: string[],
  input?: string,
): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  const run = child(KITE_BIN, args, { stdin: input === undefined ? "ignore" : "pipe" });
  if (input !== undefined) run.process.stdin!.end(input);
  const exit = await run.exited();
  return { ...exit, stdout: run.stdout, stderr: run.stderr };
}

test("node - kite --help and a wrong command line, through the bin", async () => {
  const help = await kite(["--help"]);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^kite: an MQTT 3\.1, 3\.1\.1 and 5\.0 command line/);
  const wrong = await kite(["publish"]);
  assert.equal(wrong.code, 2);
  // One line that says what went wrong.
  assert.match(wrong.stderr, /^kite: unknown command "publish"[^\n]*\n$/);
});

test("node - node .../src/cli/mod.js runs the CLI too, as deno run and bun run do", async () => {
  // Node before 24.2 has no import.meta.main; the build gives the module an equivalent.
  const module = path.join(
    HERE,
    "..",
    "..",
    "node_modules",
    "@kite",
    "mqtt",
    "src",
    "cli",
    "mod.js",
  );
  const run = child(NODE, [module, "sub", "--help"]);
  assert.deepEqual(await run.exited(), { code: 0, signal: null }, run.stderr);
  assert.match(run.stdout, /^Usage: kite sub /);
});

describe("node - kite pub and kite sub with mosquitto", () => {
  const broker = sharedMosquitto({ tls: true }, skip);

  test(
    "node - kite sub receives what kite pub sends at QoS 1 and 2, over TCP and TLS",
    { skip },
    async () => {
      const directory = fs.mkdtempSync(path.join(os.tmpdir(), "kite-node-cli-"));
      const cafile = path.join(directory, "ca.pem");
      fs.writeFileSync(cafile, broker.ca);
      const port = String(broker.port);
      const sub = child(KITE_BIN, [
        "sub",
        "-h",
        "127.0.0.1",
        "-p",
        port,
        "-t",
        "node/cli/#",
        "-q",
        "2",
        "-C",
        "3",
        "-v",
        "-d",
      ]);
      try {
        await sub.sees(/subscribed to node\/cli\/#/, "stderr");
        const one = await kite([
          "pub",
          "-h",
          "127.0.0.1",
          "-p",
          port,
          "-t",
          "node/cli/one",
          "-m",
          "first",
          "-q",
          "1",
        ]);
        assert.equal(one.code, 0, one.stderr);
        const lines = await kite(
          [
            "pub",
            "-h",
            "127.0.0.1",
            "-p",
            String(broker.tlsPort),
            "--cafile",
            cafile,
            "-t",
            "node/cli/lines",
            "-q",
            "2",
            "-l",
          ],
          "second\nthird\n",
        );
        assert.equal(lines.code, 0, lines.stderr);
        assert.deepEqual(await sub.exited(), { code: 0, signal: null }, sub.stderr);
        assert.equal(
          sub.stdout,
          "node/cli/one first\nnode/cli/lines second\nnode/cli/lines third\n",
        );
      } finally {
        sub.kill();
        fs.rmSync(directory, { recursive: true, force: true });
      }
    },
  );
});

test("node - kite broker serves kite pub and kite sub, and Ctrl-C stops it", async () => {
  const broker = child(KITE_BIN, ["broker", "-h", "127.0.0.1", "-p", "0"]);
  try {
    await broker.sees(/^listening on mqtt:\/\/127\.0\.0\.1:\d+$/m);
    const port = /:(\d+)$/m.exec(broker.stdout)![1];
    const sub = child(KITE_BIN, [
      "sub",
      "-h",
      "127.0.0.1",
      "-p",
      port,
      "-t",
      "node/local",
      "-q",
      "1",
      "-C",
      "1",
      "-d",
    ]);
    try {
      await sub.sees(/subscribed to node\/local/, "stderr");
      const pub = await kite([
        "pub",
        "-h",
        "127.0.0.1",
        "-p",
        port,
        "-t",
        "node/local",
        "-m",
        "through Kite's broker",
        "-q",
        "1",
      ]);
      assert.equal(pub.code, 0, pub.stderr);
      assert.deepEqual(await sub.exited(), { code: 0, signal: null }, sub.stderr);
      assert.equal(sub.stdout, "through Kite's broker\n");
    } finally {
      sub.kill();
    }
    broker.process.kill("SIGINT");
    assert.deepEqual(await broker.exited(), { code: 0, signal: null }, broker.stderr);
  } finally {
    broker.kill();
  }
});
