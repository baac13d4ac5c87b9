/**
 * A publisher process killed with SIGKILL part way through and started again on its FileStore
 * (same client id, clean session off) finishes what it accepted: every message it reported as
 * accepted (in the store) arrives; with QoS 2, exactly once.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { startFaultProxy } from "../helpers/fault_proxy.ts";
import { mosquittoSkipReason, startMosquitto } from "../helpers/mosquitto.ts";
import { Clients } from "../helpers/clients.ts";
import type { ConnectEventDetail } from "../../src/client/events.ts";
import { indexOf, nextEvent, runtimeCommand, seedFor, Tally, within } from "./support.ts";

const CHILD = fileURLToPath(new URL("./publisher_child.ts", import.meta.url));
const COUNT = 20_000;
const BATCH = 50;

interface ChildRun {
  /** The highest k of an `accepted k` line. */
  accepted: number;
  /** Every line it printed. */
  lines: string[];
  code: number | null;
  signal: string | null;
  stderr: string;
}

/**
 * Runs the child; with `killAfter`, kills it with SIGKILL once it has printed `accepted k` with
 * k >= killAfter.
 */
function runChild(args: string[], killAfter?: number): Promise<ChildRun> {
  const [command, argv] = runtimeCommand(CHILD, args);
  const child = spawn(command, argv, { stdio: ["ignore", "pipe", "pipe"] });
  const run: ChildRun = {
    accepted: 0,
    lines: [],
    code: null,
    signal: null,
    stderr: "",
  };
  let buffered = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (text: string) => {
    buffered += text;
    const lines = buffered.split("\n");
    buffered = lines.pop()!;
    for (const line of lines) {
      run.lines.push(line);
      const match = /^accepted (\d+)$/.exec(line);
      if (match) {
        run.accepted = Math.max(run.accepted, Number(match[1]));
        if (
          killAfter !== undefined && run.accepted >= killAfter &&
          child.exitCode === null
        ) {
          child.kill("SIGKILL");
        }
      }
    }
  });
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (text: string) => (run.stderr += text));
  const exited = new Promise<ChildRun>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => {
      run.code = code;
      run.signal = signal;
      resolve(run);
    });
  });
  return within(exited, 60_000, `the publisher child (${args.join(" ")})`)
    .catch((error) => {
      child.kill("SIGKILL");
      throw new Error(`${error.message}; stderr: ${run.stderr}`);
    });
}

async function crashAndResume(qos: 1 | 2, cuts = false, brokerRestart = false): Promise<void> {
  const name = `crash qos${qos}${cuts ? " with cuts" : ""}${
    brokerRestart ? " then a broker restart" : ""
  }`;
  const seed = seedFor(name);
  const topic = `reliability/${seed}/crash`;
  const clientId = `crash-${seed}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kite-crash-"));
  // Somewhere between 10 % and 40 % of the way.
  const killAfter = BATCH *
    Math.floor((COUNT / BATCH) * (0.1 + (seed % 1000) / 1000 * 0.3));
  try {
    await using broker = await startMosquitto({ extraConfig: "max_queued_messages 0" });
    // With cuts, both runs of the child go through connections cut every 1 to 6 KB.
    await using proxy = cuts ? await startFaultProxy(broker, { seed }) : undefined;
    proxy?.cutRandomly({ minBytes: 1_000, maxBytes: 6_000 });
    const tally = new Tally(COUNT, COUNT);
    await using clients = new Clients();
    const subscriber = await clients.connect(broker.url, {
      clientId: `crash-sub-${seed}`,
      clean: false,
      reconnect: { minDelay: 10, maxDelay: 100 },
    });
    subscriber.setPublishHandler((message) => tally.add(indexOf(message.payload)));
    assert.equal(await subscriber.subscribe(topic, { qos }), qos);

    const args = [
      "--port",
      String(proxy?.port ?? broker.port),
      "--dir",
      dir,
      "--client-id",
      clientId,
      "--topic",
      topic,
      "--qos",
      String(qos),
      "--count",
      String(COUNT),
      "--batch",
      String(BATCH),
    ];
    const first = await runChild(args, killAfter);
    assert.equal(
      first.signal,
      "SIGKILL",
      `the child was to be killed, but it exited with ${first.code}; stderr: ${first.stderr}`,
    );
    assert.ok(first.accepted >= killAfter);
    if (brokerRestart) {
      // Without persistence the broker forgets both sessions: the restarted publisher finds no
      // session and must send what its store gave back again as new messages.
      const back = nextEvent<ConnectEventDetail>(subscriber, "connect", 30_000);
      await broker.restart();
      assert.equal((await back).sessionPresent, false);
      // Subscribed again before anything is published (the client also resubscribes by itself).
      await subscriber.subscribe(topic, { qos });
    }
    const second = await runChild([...args, "--drain"]);
    assert.equal(
      second.code,
      0,
      `the restarted child failed: ${second.stderr}`,
    );
    assert.ok(second.lines.includes("drained"), second.lines.join("\n"));

    tally.want(first.accepted);
    await within(
      tally.complete,
      30_000,
      `the ${first.accepted} accepted messages (missing ${tally.missing().join(", ")})`,
    );
    console.log(
      `[reliability] ${name}${
        cuts ? ` (${proxy!.accepted} connections)` : ""
      }: killed after ${first.accepted} of ${COUNT} accepted; ` +
        `${tally.distinct} distinct arrived (those beyond ${first.accepted} were in the child's ` +
        `memory only), ${tally.duplicates} duplicates; seed ${seed}`,
    );
    assert.equal(tally.strays, 0);
    if (qos === 2) {
      assert.deepEqual(
        tally.repeated(),
        [],
        `QoS 2 delivered twice; seed ${seed}`,
      );
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test(
  "reliability - a QoS 1 publisher killed with SIGKILL resumes from its FileStore and loses nothing",
  { timeout: 120_000, skip: mosquittoSkipReason() },
  () => crashAndResume(1),
);

test(
  "reliability - a QoS 2 publisher killed with SIGKILL resumes from its FileStore, exactly once",
  { timeout: 120_000, skip: mosquittoSkipReason() },
  () => crashAndResume(2),
);

test(
  "reliability - a QoS 2 publisher killed with SIGKILL amid cut connections resumes exactly once",
  { timeout: 120_000, skip: mosquittoSkipReason() },
  () => crashAndResume(2, true),
);

test(
  "reliability - a QoS 1 publisher killed with SIGKILL, then a broker that lost the session: nothing lost",
  { timeout: 120_000, skip: mosquittoSkipReason() },
  () => crashAndResume(1, false, true),
);
