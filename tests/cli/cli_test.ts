/**
 * The `kite` command line, run as a subprocess of the runtime running the tests (`deno run -A`
 * under `deno test`, `bun run` under `bun test`) against a mosquitto the suite starts, and
 * cross-checked with mosquitto's own command-line clients. A few tests call `main()` in-process.
 */

import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { main } from "../../src/cli/mod.ts";
import { parseArgs } from "../../src/cli/args.ts";
import {
  type Mosquitto,
  mosquittoClientsSkipReason,
  mosquittoSkipReason,
  sharedMosquitto,
} from "../helpers/mosquitto.ts";
import { concat } from "../packet/generate.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = path.join(ROOT, "src", "cli", "mod.ts");
const skip = mosquittoSkipReason() ?? mosquittoClientsSkipReason();
const TIMEOUT = { timeout: 30_000 };
const WITH_MOSQUITTO = { skip, timeout: 30_000 };

type Exit = { code: number | null; signal: string | null };

/** The runtime running the tests, and how it runs the CLI. */
function kiteCommand(): [string, string[]] {
  const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
  if (deno !== undefined) return [deno.execPath(), ["run", "-A", "--quiet", CLI]];
  return [process.execPath, ["run", CLI]];
}

function childEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && key !== "MQTT_URL") env[key] = value;
  }
  env.NO_COLOR = "1";
  return env;
}

/** A process this test started: its output so far, its exit, and a way to wait for a line. */
class Child {
  readonly name: string;
  readonly process: ChildProcess;
  readonly exited: Promise<Exit>;
  stdout = "";
  stderr = "";
  #exit: Exit | undefined;
  #waiters = new Set<() => void>();

  constructor(command: string, args: string[], options: { stdin?: string | "open" } = {}) {
    this.name = `${path.basename(command)} ${args.join(" ")}`;
    this.process = spawn(command, args, { cwd: ROOT, env: childEnv(), stdio: "pipe" });
    this.process.stdout!.setEncoding("utf8").on("data", (text: string) => {
      this.stdout += text;
      this.#wake();
    });
    this.process.stderr!.setEncoding("utf8").on("data", (text: string) => {
      this.stderr += text;
      this.#wake();
    });
    this.process.stdin!.on("error", () => {}); // It may exit before reading all of stdin.
    if (options.stdin !== "open") this.process.stdin!.end(options.stdin ?? "");
    this.exited = new Promise((resolve) => {
      this.process.once("error", (error) => {
        this.stderr += `spawn failed: ${error.message}`;
        this.#exit ??= { code: null, signal: null };
        this.#wake();
        resolve(this.#exit);
      });
      this.process.once("close", (code, signal) => {
        this.#exit ??= { code, signal };
        this.#wake();
        resolve(this.#exit);
      });
    });
  }

  /** Resolves with the first match of `pattern` in the stream; rejects if the process exits first. */
  async waitFor(stream: "stdout" | "stderr", pattern: RegExp): Promise<RegExpMatchArray> {
    for (;;) {
      const match = this[stream].match(pattern);
      if (match !== null) return match;
      if (this.#exit !== undefined) {
        throw new Error(
          `${this.name} exited (${JSON.stringify(this.#exit)}) before printing ${pattern} on ` +
            `${stream}\nstdout: ${this.stdout}\nstderr: ${this.stderr}`,
        );
      }
      await new Promise<void>((resolve) => this.#waiters.add(resolve));
    }
  }

  /** Waits for the exit and returns it with the whole output. */
  async finished(): Promise<Exit & { stdout: string; stderr: string }> {
    const exit = await this.exited;
    return { ...exit, stdout: this.stdout, stderr: this.stderr };
  }

  get hasExited(): boolean {
    return this.#exit !== undefined;
  }

  signal(signal: "SIGINT" | "SIGKILL"): void {
    // Not `this.process.kill`: Deno's node:child_process then reports the signal as the cause
    // of the exit even when the child handled it and exited with a status of its own.
    if (this.#exit === undefined && this.process.pid !== undefined) {
      process.kill(this.process.pid, signal);
    }
  }

  kill(): void {
    this.signal("SIGKILL");
  }

  #wake(): void {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const wake of waiters) wake();
  }
}

/** Starts `kite ARGS...`. */
function kite(args: string[], options?: { stdin?: string | "open" }): Child {
  const [command, prefix] = kiteCommand();
  return new Child(command, [...prefix, ...args], options);
}

/** Runs `kite ARGS...` to its end. */
async function runKite(
  args: string[],
  options?: { stdin?: string },
): Promise<Exit & { stdout: string; stderr: string }> {
  const child = kite(args, options);
  try {
    return await child.finished();
  } finally {
    child.kill();
  }
}

/**
 * Starts `mosquitto_sub` and resolves once the broker acknowledged its subscription. Its own
 * output is block-buffered on a pipe, so the broker's log tells when the SUBACK went out.
 */
async function mosquittoSub(broker: Mosquitto, args: string[]): Promise<Child> {
  const id = uniqueId("m");
  const child = new Child("mosquitto_sub", [
    "-h",
    broker.host,
    "-p",
    `${broker.port}`,
    "-i",
    id,
    ...args,
  ]);
  try {
    await logMatches(broker, new RegExp(`Sending SUBACK to ${id}\\b`), child);
  } catch (error) {
    child.kill();
    throw error;
  }
  return child;
}

/** The non-empty lines a process printed. */
function received(child: Child): string[] {
  return child.stdout.split("\n").filter((line) => line !== "");
}

async function runMosquittoPub(broker: Mosquitto, args: string[]): Promise<void> {
  const child = new Child("mosquitto_pub", ["-h", broker.host, "-p", `${broker.port}`, ...args]);
  try {
    const exit = await child.finished();
    assert.equal(exit.code, 0, `mosquitto_pub failed: ${exit.stderr}`);
  } finally {
    child.kill();
  }
}

/**
 * Resolves once mosquitto's log matches `pattern`, reading it again as it grows; fails when
 * `child` (the process expected to make the broker write it) exits first.
 */
async function logMatches(broker: Mosquitto, pattern: RegExp, child?: Child): Promise<void> {
  const file = path.join(broker.dir, "mosquitto.log");
  const deadline = Date.now() + 10_000;
  while (!pattern.test(fs.readFileSync(file, "utf8"))) {
    if (child?.hasExited) {
      assert.fail(`${child.name} exited before mosquitto logged ${pattern}: ${child.stderr}`);
    }
    if (Date.now() > deadline) assert.fail(`mosquitto's log never matched ${pattern}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function assertOneLine(stderr: string, pattern: RegExp): void {
  const lines = stderr.split("\n").filter((line) => line !== "");
  assert.equal(lines.length, 1, `expected one line on stderr, got: ${JSON.stringify(stderr)}`);
  assert.match(lines[0], pattern);
}

let topicCounter = 0;
function uniqueTopic(label: string): string {
  return `kite-cli/${label}/${++topicCounter}-${Math.random().toString(36).slice(2, 8)}`;
}

function uniqueId(label: string): string {
  return `kc${label}${++topicCounter}${Math.random().toString(36).slice(2, 6)}`;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("kite against mosquitto", () => {
  const broker = sharedMosquitto({ tls: true }, skip);
  let at: string[];

  before(() => {
    if (skip) return;
    at = ["-h", broker.host, "-p", `${broker.port}`];
  });

  test("kite pub - mosquitto_sub receives the message", WITH_MOSQUITTO, async () => {
    const topic = uniqueTopic("pub");
    const sub = await mosquittoSub(broker, ["-t", topic, "-C", "1", "-v"]);
    try {
      const pub = await runKite(["pub", ...at, "-t", topic, "-m", "hello kite"]);
      assert.equal(pub.code, 0, pub.stderr);
      assert.equal(pub.stdout, "");
      assert.equal(pub.stderr, "");
      assert.equal((await sub.finished()).code, 0);
      assert.deepEqual(received(sub), [`${topic} hello kite`]);
    } finally {
      sub.kill();
    }
  });

  test(
    "kite sub -C 1 -v - prints what mosquitto_pub sends as topic payload",
    WITH_MOSQUITTO,
    async () => {
      const topic = uniqueTopic("sub");
      const sub = kite(["sub", ...at, "-t", `${topic}/#`, "-C", "1", "-v", "-d"]);
      try {
        await sub.waitFor("stderr", /subscribed to/);
        await runMosquittoPub(broker, ["-t", `${topic}/a`, "-m", "from mosquitto"]);
        const exit = await sub.finished();
        assert.equal(exit.code, 0, exit.stderr);
        assert.equal(exit.stdout, `${topic}/a from mosquitto\n`);
      } finally {
        sub.kill();
      }
    },
  );

  test(
    "kite sub - prints the bare payload without -v, and (null) for an empty one with -v",
    WITH_MOSQUITTO,
    async () => {
      const topic = uniqueTopic("bare");
      const bare = kite(["sub", ...at, "-t", topic, "-C", "2", "-d"]);
      const verbose = kite(["sub", ...at, "-t", topic, "-C", "2", "-v", "-d"]);
      try {
        await bare.waitFor("stderr", /subscribed to/);
        await verbose.waitFor("stderr", /subscribed to/);
        await runMosquittoPub(broker, ["-t", topic, "-m", "first"]);
        await runMosquittoPub(broker, ["-t", topic, "-n"]);
        const [bareExit, verboseExit] = await Promise.all([bare.finished(), verbose.finished()]);
        assert.equal(bareExit.code, 0, bareExit.stderr);
        assert.equal(bareExit.stdout, "first\n\n");
        assert.equal(verboseExit.code, 0, verboseExit.stderr);
        assert.equal(verboseExit.stdout, `${topic} first\n${topic} (null)\n`);
      } finally {
        bare.kill();
        verbose.kill();
      }
    },
  );

  test("kite sub - several -t filters in one subscription", WITH_MOSQUITTO, async () => {
    const topic = uniqueTopic("multi");
    const sub = kite(["sub", ...at, "-t", `${topic}/a`, "-t", `${topic}/b`, "-C", "2", "-v", "-d"]);
    try {
      await sub.waitFor("stderr", /subscribed to .*\/a, .*\/b/);
      await runMosquittoPub(broker, ["-t", `${topic}/b`, "-m", "bee"]);
      await runMosquittoPub(broker, ["-t", `${topic}/a`, "-m", "ay"]);
      const exit = await sub.finished();
      assert.equal(exit.code, 0, exit.stderr);
      assert.equal(exit.stdout, `${topic}/b bee\n${topic}/a ay\n`);
    } finally {
      sub.kill();
    }
  });

  test("kite pub -l - one message per stdin line", WITH_MOSQUITTO, async () => {
    const topic = uniqueTopic("lines");
    const sub = await mosquittoSub(broker, ["-t", topic, "-C", "4", "-v"]);
    try {
      const pub = await runKite(["pub", ...at, "-t", topic, "-l", "-q", "1"], {
        stdin: "one\ntwo words\r\n\nlast without newline",
      });
      assert.equal(pub.code, 0, pub.stderr);
      assert.equal((await sub.finished()).code, 0);
      assert.deepEqual(received(sub), [
        `${topic} one`,
        `${topic} two words`,
        `${topic} (null)`,
        `${topic} last without newline`,
      ]);
    } finally {
      sub.kill();
    }
  });

  test("kite pub -s - all of stdin as one message; -n an empty one", WITH_MOSQUITTO, async () => {
    const topic = uniqueTopic("stdin");
    const sub = await mosquittoSub(broker, ["-t", topic, "-C", "2", "-F", "%l:%p"]);
    try {
      const whole = await runKite(["pub", ...at, "-t", topic, "-s"], { stdin: "line 1\nline 2\n" });
      assert.equal(whole.code, 0, whole.stderr);
      const empty = await runKite(["pub", ...at, "-t", topic, "-n"]);
      assert.equal(empty.code, 0, empty.stderr);
      assert.equal((await sub.finished()).code, 0);
      assert.deepEqual(received(sub), ["14:line 1", "line 2", "0:"]);
    } finally {
      sub.kill();
    }
  });

  test(
    "kite pub -q 1 -r - the broker gets QoS 1 and retains the message",
    WITH_MOSQUITTO,
    async () => {
      const topic = uniqueTopic("retain");
      const id = uniqueId("r");
      const pub = await runKite([
        "pub",
        ...at,
        "-i",
        id,
        "-t",
        topic,
        "-m",
        "kept",
        "-q",
        "1",
        "-r",
      ]);
      assert.equal(pub.code, 0, pub.stderr);
      await logMatches(
        broker,
        new RegExp(`Received PUBLISH from ${id} \\(d0, q1, r1, m\\d+, '${escape(topic)}'`),
      );
      // The retained message reaches a subscriber that comes later, with its retain flag.
      const sub = await mosquittoSub(broker, [
        "-t",
        topic,
        "-C",
        "1",
        "-q",
        "2",
        "-F",
        "%r %q %t %p",
      ]);
      try {
        assert.equal((await sub.finished()).code, 0);
        assert.deepEqual(received(sub), [`1 1 ${topic} kept`]);
      } finally {
        sub.kill();
      }
      // And kite sub receives it too.
      const kiteSub = await runKite(["sub", ...at, "-t", topic, "-C", "1", "-v", "-q", "1"]);
      assert.equal(kiteSub.code, 0, kiteSub.stderr);
      assert.equal(kiteSub.stdout, `${topic} kept\n`);
    },
  );

  test("kite pub -q 2 to kite sub -q 2 - exactly once, both ways", WITH_MOSQUITTO, async () => {
    const topic = uniqueTopic("qos2");
    const subId = uniqueId("s");
    const pubId = uniqueId("p");
    const sub = kite(["sub", ...at, "-i", subId, "-t", topic, "-q", "2", "-C", "1", "-d"]);
    try {
      await sub.waitFor("stderr", /granted QoS 2/);
      const pub = await runKite(["pub", ...at, "-i", pubId, "-t", topic, "-m", "once", "-q", "2"]);
      assert.equal(pub.code, 0, pub.stderr);
      const exit = await sub.finished();
      assert.equal(exit.code, 0, exit.stderr);
      assert.equal(exit.stdout, "once\n");
      await logMatches(broker, new RegExp(`Received PUBLISH from ${pubId} \\(d0, q2`));
      await logMatches(broker, new RegExp(`Received PUBREL from ${pubId}`));
      await logMatches(broker, new RegExp(`Sending PUBLISH to ${subId} \\(d0, q2`));
      await logMatches(broker, new RegExp(`Received PUBCOMP from ${subId}`));
    } finally {
      sub.kill();
    }
  });

  test(
    "-V mqttv5, 5, mqttv31 and 311 - the protocol version on the wire",
    WITH_MOSQUITTO,
    async () => {
      const topic = uniqueTopic("v5");
      const subId = uniqueId("v");
      const sub = kite([
        "sub",
        ...at,
        "-V",
        "mqttv5",
        "-i",
        subId,
        "-t",
        topic,
        "-C",
        "4",
        "-v",
        "-d",
      ]);
      try {
        await sub.waitFor("stderr", /MQTT 5\.0.*\n.*subscribed to/);
        await logMatches(broker, new RegExp(`as ${subId} \\(p5,`));
        const versions = [["mqttv5", "p5"], ["5", "p5"], ["mqttv31", "p1"], ["311", "p2"]];
        for (const [version, logged] of versions) {
          const id = uniqueId("v");
          const pub = await runKite([
            "pub",
            ...at,
            "-V",
            version,
            "-i",
            id,
            "-t",
            topic,
            "-m",
            version,
          ]);
          assert.equal(pub.code, 0, pub.stderr);
          await logMatches(broker, new RegExp(`as ${id} \\(${logged},`));
        }
        const exit = await sub.finished();
        assert.equal(exit.code, 0, exit.stderr);
        assert.equal(exit.stdout, versions.map(([version]) => `${topic} ${version}\n`).join(""));
      } finally {
        sub.kill();
      }
    },
  );

  test("-L url - host, port, credentials and topic from one URL", WITH_MOSQUITTO, async () => {
    const topic = uniqueTopic("url");
    const id = uniqueId("u");
    const sub = await mosquittoSub(broker, ["-t", topic, "-C", "1", "-v"]);
    try {
      const url = `mqtt://alice:s%40cret@${broker.host}:${broker.port}/${topic}`;
      const pub = await runKite(["pub", "-L", url, "-i", id, "-m", "via url"]);
      assert.equal(pub.code, 0, pub.stderr);
      assert.equal((await sub.finished()).code, 0);
      assert.deepEqual(received(sub), [`${topic} via url`]);
      await logMatches(broker, new RegExp(`as ${id} \\(p2, c1, k60, u'alice'\\)`));
    } finally {
      sub.kill();
    }
  });

  test("--cafile, --cert, --key and --insecure - TLS and mutual TLS", WITH_MOSQUITTO, async () => {
    const topic = uniqueTopic("tls");
    const sub = await mosquittoSub(broker, ["-t", topic, "-C", "3", "-v"]);
    const pem = (name: string) => path.join(broker.dir, `${name}.pem`);
    try {
      const tls = await runKite([
        "pub",
        "-h",
        broker.host,
        "-p",
        `${broker.tlsPort}`,
        "--cafile",
        pem("ca"),
        "-t",
        topic,
        "-m",
        "over tls",
      ]);
      assert.equal(tls.code, 0, tls.stderr);
      const mtls = await runKite([
        "pub",
        "-h",
        broker.host,
        "-p",
        `${broker.mtlsPort}`,
        "--cafile",
        pem("ca"),
        "--cert",
        pem("clientCert"),
        "--key",
        pem("clientKey"),
        "-t",
        topic,
        "-m",
        "over mutual tls",
      ]);
      assert.equal(mtls.code, 0, mtls.stderr);
      const insecure = await runKite([
        "pub",
        "-h",
        broker.host,
        "-p",
        `${broker.tlsPort}`,
        "--tls-use-os-certs",
        "--insecure",
        "-t",
        topic,
        "-m",
        "unverified",
      ]);
      assert.equal(insecure.code, 0, insecure.stderr);
      assert.equal((await sub.finished()).code, 0);
      assert.deepEqual(received(sub), [
        `${topic} over tls`,
        `${topic} over mutual tls`,
        `${topic} unverified`,
      ]);
    } finally {
      sub.kill();
    }
  });

  test("TLS without the broker's CA - exit 1 with one line", WITH_MOSQUITTO, async () => {
    const exit = await runKite([
      "pub",
      "-h",
      broker.host,
      "-p",
      `${broker.tlsPort}`,
      "--tls-use-os-certs",
      "-t",
      "t",
      "-m",
      "x",
    ]);
    assert.equal(exit.code, 1);
    assertOneLine(exit.stderr, /^kite pub: could not connect to mqtts:\/\/127\.0\.0\.1:\d+/);
  });

  test(
    "--will-* - the broker publishes the will when kite sub is killed",
    WITH_MOSQUITTO,
    async () => {
      const topic = uniqueTopic("will");
      const watcher = await mosquittoSub(broker, [
        "-t",
        `${topic}/will`,
        "-C",
        "1",
        "-F",
        "%r %q %t %p",
      ]);
      const sub = kite([
        "sub",
        ...at,
        "-t",
        `${topic}/x`,
        "-d",
        "--will-topic",
        `${topic}/will`,
        "--will-payload",
        "gone",
        "--will-qos",
        "1",
        "--will-retain",
      ]);
      try {
        await sub.waitFor("stderr", /subscribed to/);
        sub.signal("SIGKILL");
        assert.equal((await watcher.finished()).code, 0);
        // A live subscriber sees the retain flag cleared; the QoS is the lower of the two.
        assert.deepEqual(received(watcher), [`0 0 ${topic}/will gone`]);
        // The will was retained.
        const late = await runKite(["sub", ...at, "-t", `${topic}/will`, "-C", "1", "-v"]);
        assert.equal(late.stdout, `${topic}/will gone\n`);
      } finally {
        sub.kill();
        watcher.kill();
      }
    },
  );

  test("SIGINT - kite sub disconnects cleanly and exits 0", WITH_MOSQUITTO, async () => {
    const topic = uniqueTopic("sigint");
    const id = uniqueId("i");
    const sub = kite(["sub", ...at, "-i", id, "-t", topic, "-d"]);
    try {
      await sub.waitFor("stderr", /subscribed to/);
      sub.signal("SIGINT");
      const exit = await sub.finished();
      assert.equal(exit.code, 0, exit.stderr);
      await logMatches(
        broker,
        new RegExp(`Received DISCONNECT from ${id}\\n.*Client ${id} disconnected\\.`),
      );
    } finally {
      sub.kill();
    }
  });

  test(
    "SIGINT - kite pub -l stops reading stdin, disconnects cleanly and exits 0",
    WITH_MOSQUITTO,
    async () => {
      const topic = uniqueTopic("sigint-pub");
      const id = uniqueId("j");
      const watcher = await mosquittoSub(broker, ["-t", topic, "-C", "1", "-v"]);
      const pub = kite(["pub", ...at, "-i", id, "-t", topic, "-l", "-q", "1"], { stdin: "open" });
      try {
        pub.process.stdin!.write("first line\n");
        assert.equal((await watcher.finished()).code, 0);
        assert.deepEqual(received(watcher), [`${topic} first line`]);
        pub.signal("SIGINT");
        const exit = await pub.finished();
        assert.equal(exit.code, 0, exit.stderr);
        await logMatches(broker, new RegExp(`Client ${id} disconnected\\.`));
      } finally {
        pub.kill();
        watcher.kill();
      }
    },
  );

  test("in-process main() - a sub and a pub talk through the broker", WITH_MOSQUITTO, async () => {
    const topic = uniqueTopic("main");
    const output = collector();
    const errors = collector();
    const interrupt = new AbortController();
    const sub = main(["sub", ...at, "-t", topic, "-v", "-d"], {
      stdout: output.stream,
      stderr: errors.stream,
      signal: interrupt.signal,
      env: {},
    });
    try {
      const ended = sub.then((status) =>
        assert.fail(`kite sub ended early (${status}): ${errors.text()}`)
      );
      await Promise.race([errors.until(/subscribed to/), ended]);
      const pubErrors = collector();
      // The broker from MQTT_URL, as no flag names one.
      const pubStatus = await main(["pub", "-t", topic, "-m", "in process"], {
        stderr: pubErrors.stream,
        env: { MQTT_URL: `mqtt://${broker.host}:${broker.port}` },
      });
      assert.equal(pubStatus, 0, pubErrors.text());
      await Promise.race([output.until(/\n/), ended]);
    } finally {
      interrupt.abort();
    }
    assert.equal(await sub, 0, errors.text());
    assert.equal(output.text(), `${topic} in process\n`);
  });
});

describe("kite broker", () => {
  test(
    "kite broker -p 0 - serves kite and mosquitto clients until SIGINT",
    WITH_MOSQUITTO,
    async () => {
      const brokerProcess = kite(["broker", "-p", "0"]);
      try {
        const [, host, port] = await brokerProcess.waitFor(
          "stdout",
          /listening on mqtt:\/\/([\d.]+):(\d+)/,
        );
        const local = { host, port: Number(port) } as Mosquitto;
        const topic = uniqueTopic("local");
        const sub = kite([
          "sub",
          "-h",
          host,
          "-p",
          port,
          "-t",
          topic,
          "-C",
          "2",
          "-v",
          "-q",
          "2",
          "-d",
        ]);
        try {
          await sub.waitFor("stderr", /granted QoS 2/);
          await runMosquittoPub(local, ["-t", topic, "-m", "from mosquitto_pub", "-q", "1"]);
          const pub = await runKite([
            "pub",
            "-h",
            host,
            "-p",
            port,
            "-t",
            topic,
            "-m",
            "from kite",
            "-q",
            "2",
          ]);
          assert.equal(pub.code, 0, pub.stderr);
          const exit = await sub.finished();
          assert.equal(exit.code, 0, exit.stderr);
          assert.equal(exit.stdout, `${topic} from mosquitto_pub\n${topic} from kite\n`);
        } finally {
          sub.kill();
        }
        brokerProcess.signal("SIGINT");
        const exit = await brokerProcess.finished();
        assert.equal(exit.code, 0, exit.stderr);
      } finally {
        brokerProcess.kill();
      }
    },
  );
});

describe("kite errors", () => {
  test("an unknown flag - exit 2 with one line naming it", TIMEOUT, async () => {
    const exit = await runKite(["pub", "-t", "a", "-m", "x", "--bogus"]);
    assert.equal(exit.code, 2);
    assertOneLine(exit.stderr, /^kite pub: unknown option --bogus \(see kite pub --help\)$/);
    assert.equal(exit.stdout, "");
  });

  test("a flag of the other command - exit 2", TIMEOUT, async () => {
    const exit = await runKite(["sub", "-t", "a", "-l"]);
    assert.equal(exit.code, 2);
    assertOneLine(exit.stderr, /^kite sub: unknown option -l/);
  });

  test("no topic - exit 2 with one line, for pub and for sub", TIMEOUT, async () => {
    for (const args of [["pub", "-m", "x"], ["sub", "-v"]]) {
      const exit = await runKite(args);
      assert.equal(exit.code, 2, args.join(" "));
      assertOneLine(exit.stderr, new RegExp(`^kite ${args[0]}: no topic given; use -t topic`));
    }
  });

  test(
    "no message, two messages, a bad QoS, a bad version, a missing value - exit 2",
    TIMEOUT,
    async () => {
      const cases: [string[], RegExp][] = [
        [["pub", "-t", "a"], /no message given/],
        [["pub", "-t", "a", "-m", "x", "-l"], /give only one of -m, -n, -l and -s \(got -m, -l\)/],
        [["pub", "-t", "a", "-m", "x", "-q", "3"], /-q needs a QoS of 0, 1 or 2, not "3"/],
        [["sub", "-t", "a", "-V", "mqttv4"], /-V needs mqttv31, mqttv311 or mqttv5/],
        [["sub", "-t"], /-t needs a value/],
        [["pub", "-t", "a/+", "-m", "x"], /topic name "a\/\+"/],
        [["sub", "-t", "a/#/b"], /topic filter "a\/#\/b"/],
        [["pub", "-L", "http://x/t", "-m", "x"], /-L must be an mqtt:\/\/ or mqtts:\/\/ URL/],
      ];
      for (const [args, pattern] of cases) {
        const status = await mainInProcess(args);
        assert.equal(status.code, 2, args.join(" "));
        assertOneLine(status.stderr, pattern);
      }
    },
  );

  test("port 0 - exit 2 for pub and sub, which dial it; kite broker listens on a free port", async () => {
    const cases: [string[], RegExp][] = [
      [
        ["pub", "-t", "a", "-m", "x", "-p", "0"],
        /^kite pub: -p needs a whole number from 1 to 65535, not "0"/,
      ],
      [["sub", "-t", "a", "--port", "0"], /^kite sub: --port needs a whole number from 1 to 65535/],
      [
        ["pub", "-m", "x", "-L", "mqtt://127.0.0.1:0/a"],
        /^kite pub: -L needs a port from 1 to 65535, not 0/,
      ],
      [
        ["sub", "-p", "65536", "-t", "a"],
        /^kite sub: -p needs a whole number from 1 to 65535, not "65536"/,
      ],
    ];
    for (const [args, pattern] of cases) {
      const status = await mainInProcess(args);
      assert.equal(status.code, 2, args.join(" "));
      assertOneLine(status.stderr, pattern);
    }
    const fromEnv = await mainInProcess(["sub", "-t", "a"], { MQTT_URL: "mqtt://127.0.0.1:0" });
    assert.equal(fromEnv.code, 2);
    assertOneLine(fromEnv.stderr, /^kite sub: MQTT_URL needs a port from 1 to 65535, not 0/);
    assert.deepEqual(parseArgs("broker", ["-p", "0"], {}), {
      command: "broker",
      host: "127.0.0.1",
      port: 0,
    });
  });

  test("an unreachable port - exit 1 with one line", TIMEOUT, async () => {
    const port = await closedPort();
    for (const command of [["pub", "-m", "x"], ["sub"]]) {
      const exit = await runKite([...command, "-h", "127.0.0.1", "-p", `${port}`, "-t", "t"]);
      assert.equal(exit.code, 1, exit.stderr);
      assertOneLine(
        exit.stderr,
        new RegExp(`^kite ${command[0]}: could not connect to mqtt://127\\.0\\.0\\.1:${port}`),
      );
    }
  });

  test("an unreadable --cafile - exit 1 with one line", TIMEOUT, async () => {
    const status = await mainInProcess([
      "pub",
      "-t",
      "t",
      "-m",
      "x",
      "--cafile",
      "/nonexistent/ca.pem",
    ]);
    assert.equal(status.code, 1);
    assertOneLine(status.stderr, /^kite pub: cannot read --cafile \/nonexistent\/ca\.pem: ENOENT/);
  });

  test("no command, an unknown command - exit 2 with one line", TIMEOUT, async () => {
    const none = await runKite([]);
    assert.equal(none.code, 2);
    assertOneLine(none.stderr, /^kite: no command given/);
    const unknown = await mainInProcess(["publish"]);
    assert.equal(unknown.code, 2);
    assertOneLine(unknown.stderr, /^kite: unknown command "publish"/);
  });

  test("--help - usage on stdout, exit 0", TIMEOUT, async () => {
    const exit = await runKite(["--help"]);
    assert.equal(exit.code, 0);
    assert.equal(exit.stderr, "");
    assert.match(exit.stdout, /kite pub -t TOPIC/);
    for (const command of ["pub", "sub", "broker"]) {
      const status = await mainInProcess([command, "--help"]);
      assert.equal(status.code, 0);
      assert.match(status.stdout, new RegExp(`^Usage: kite ${command}`));
    }
  });
});

/** A stream that keeps what is written to it, and tells when its text matches. */
function collector(): {
  stream: WritableStream<Uint8Array>;
  text(): string;
  until(pattern: RegExp): Promise<void>;
} {
  const chunks: Uint8Array[] = [];
  const waiters: { pattern: RegExp; resolve: () => void }[] = [];
  const text = () => new TextDecoder().decode(concat(...chunks));
  const write = (chunk: Uint8Array) => {
    chunks.push(chunk.slice());
    const current = text();
    for (const waiter of waiters.filter(({ pattern }) => pattern.test(current))) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  };
  return {
    stream: new WritableStream({ write }),
    text,
    until: (pattern) => {
      if (pattern.test(text())) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ pattern, resolve }));
    },
  };
}

/** Runs `main(args)` in this process with captured streams. */
async function mainInProcess(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = collector();
  const stderr = collector();
  const code = await main(args, {
    stdin: new Blob([]).stream(),
    stdout: stdout.stream,
    stderr: stderr.stream,
    env,
  });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}
