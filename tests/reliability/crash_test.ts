/**
 * A publisher process killed with SIGKILL at a random point and started again on its FileStore
 * (same client id, clean session off), several times over, loses nothing it published. It is
 * killed in turns by this process, at a random moment, and by itself, right after a random
 * `publish()` call returned (before anything else could run). Every
 * message whose `publish()` call had returned arrives at a subscriber; at QoS 2 exactly once,
 * at QoS 1 with no more duplicates than the in-flight window can explain. This holds under every
 * fsync policy: a killed process loses nothing the operating system was given.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { mulberry32, startFaultProxy } from "../helpers/fault_proxy.ts";
import { mosquittoSkipReason, startMosquitto } from "../helpers/mosquitto.ts";
import { Clients } from "../helpers/clients.ts";
import type { ConnectEventDetail } from "../../src/client/events.ts";
import { indexOf, nextEvent, runtimeCommand, seedFor, Tally, within } from "./support.ts";

const CHILD = fileURLToPath(new URL("./publisher_child.ts", import.meta.url));
/** Publisher processes killed per test; each publishes its own range of messages. */
const KILLS = 3;
/** Messages each killed process is given to publish. */
const COUNT = 3_000;
/** Outstanding `publish()` calls of the child, and its in-flight window (the default, 20). */
const WINDOW = 20;

interface ChildRun {
  lines: string[];
  code: number | null;
  signal: string | null;
  stderr: string;
}

/**
 * Runs the child. With `killAt`, kills it with SIGKILL once it printed `published k` with
 * k >= killAt (or `done`), after a further `delay` ms, and records in `published` every index
 * it printed.
 */
function runChild(
  args: string[],
  kill?: { at: number; delay: number; published: Uint8Array },
): Promise<ChildRun> {
  const [command, argv] = runtimeCommand(CHILD, args);
  const child = spawn(command, argv, { stdio: ["ignore", "pipe", "pipe"] });
  const run: ChildRun = { lines: [], code: null, signal: null, stderr: "" };
  let buffered = "";
  let killing = false;
  const killSoon = () => {
    if (killing) return;
    killing = true;
    // A little later, at a point not tied to this line.
    setTimeout(() => child.kill("SIGKILL"), kill!.delay);
  };
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (text: string) => {
    buffered += text;
    const lines = buffered.split("\n");
    buffered = lines.pop()!;
    for (const line of lines) {
      if (line.startsWith("published ")) {
        const index = Number(line.slice(10));
        if (kill !== undefined) {
          kill.published[index] = 1;
          if (index >= kill.at) killSoon();
        }
      } else {
        run.lines.push(line);
        if (line === "done" && kill !== undefined) killSoon();
      }
    }
  });
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (text: string) => (run.stderr += text));
  const exited = new Promise<ChildRun>((resolve, reject) => {
    child.once("error", reject);
    // "close": the child is gone and everything it printed has been read.
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

interface CrashOptions {
  qos: 1 | 2;
  fsync: "always" | "batch" | "never";
  /** Both runs of the child go through connections cut every 1 to 6 KB. */
  cuts?: boolean;
  /** The broker restarts (losing every session) before the last start of the child. */
  brokerRestart?: boolean;
}

async function crashAndResume(options: CrashOptions): Promise<void> {
  const { qos, fsync, cuts = false, brokerRestart = false } = options;
  const name = `crash qos${qos} fsync ${fsync}${cuts ? " with cuts" : ""}${
    brokerRestart ? " then a broker restart" : ""
  }`;
  const seed = seedFor(name);
  // The same seed kills at the same points.
  const next = mulberry32(seed);
  const topic = `reliability/${seed}/crash`;
  const clientId = `crash-${seed}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kite-crash-"));
  const total = KILLS * COUNT;
  const sentinel = total;
  try {
    await using broker = await startMosquitto({ extraConfig: "max_queued_messages 0" });
    await using proxy = cuts ? await startFaultProxy(broker, { seed }) : undefined;
    proxy?.cutRandomly({ minBytes: 1_000, maxBytes: 6_000 });
    const tally = new Tally(total + 1, 0);
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
      "--window",
      String(WINDOW),
      "--fsync",
      fsync,
    ];
    // Whose `publish()` returned in some run of the child: these must all arrive.
    const published = new Uint8Array(total);
    const killedAt: number[] = [];
    const runs: ChildRun[] = [];
    for (let run = 0; run < KILLS; run++) {
      const from = run * COUNT;
      // Somewhere between 10 % and 90 % of the way.
      const at = from + Math.floor(COUNT * (0.1 + 0.8 * next()));
      const delay = Math.floor(20 * next());
      const byItself = run % 2 === 0;
      const child = byItself
        ? await runChild([...args, "--from", String(from), "--kill-at", String(at)])
        // Up to 20 ms after it printed `published at`.
        : await runChild([...args, "--from", String(from)], { at, delay, published });
      runs.push(child);
      assert.equal(
        child.signal,
        "SIGKILL",
        `the child was to be killed, but it exited with ${child.code}; stderr: ${child.stderr}`,
      );
      // Killing itself, it had returned from every call up to `at`, printed or not.
      if (byItself) published.fill(1, from, at + 1);
      let last = from - 1;
      while (last + 1 < from + COUNT && published[last + 1] === 1) last++;
      killedAt.push(last + 1 - from);
      assert.ok(last >= at, `the child was killed after ${last + 1 - from} of ${COUNT}`);
    }
    if (brokerRestart) {
      // Without persistence the broker forgets both sessions: the restarted publisher finds no
      // session and must send what its store gave back again as new messages.
      const back = nextEvent<ConnectEventDetail>(subscriber, "connect", 30_000);
      await broker.restart();
      assert.equal((await back).sessionPresent, false);
      // Subscribed again before anything is published (the client also resubscribes by itself).
      await subscriber.subscribe(topic, { qos });
    }
    const drain = await runChild([...args, "--drain", "--sentinel", String(sentinel)]);
    // Reconnections the broker answered with "no session present" (see publisher_child.ts).
    const sessionLosses = [...runs, drain].reduce(
      (sum, child) => sum + child.lines.filter((line) => line === "session absent").length,
      0,
    );
    assert.equal(drain.code, 0, `the restarted child failed: ${drain.stderr}`);
    assert.ok(drain.lines.includes("drained"), drain.lines.join("\n"));

    // The sentinel went last, once everything else was acknowledged: once it is here, so is every
    // message that will ever arrive.
    await within(waitFor(tally, [sentinel]), 30_000, "the sentinel published after the drain");
    const required: number[] = [];
    for (let index = 0; index < total; index++) if (published[index] === 1) required.push(index);
    const lost = required.filter((index) => tally.counts[index] === 0);
    const beyond = tally.distinct - 1 - (required.length - lost.length);
    console.log(
      `[reliability] ${name}${cuts ? ` (${proxy!.accepted} connections)` : ""}: killed after ` +
        `${killedAt.join(", ")} of ${COUNT} publish() calls; ${required.length} returned, ` +
        `${lost.length} lost, ${beyond} more arrived (published as the child was killed), ` +
        `${tally.duplicates} duplicates; the broker answered ${sessionLosses} reconnections ` +
        `with no session; seed ${seed}`,
    );
    assert.deepEqual(lost.slice(0, 20), [], `${lost.length} published but lost; seed ${seed}`);
    assert.equal(tally.strays, 0);
    if (qos === 2 && sessionLosses === 0) {
      assert.deepEqual(tally.repeated(), [], `QoS 2 delivered twice; seed ${seed}`);
    } else if (qos === 2) {
      // The broker lost the session: what was in flight went again as new messages, at most the
      // window each time. Nothing else may arrive twice.
      assert.ok(
        tally.duplicates <= sessionLosses * WINDOW,
        `${tally.duplicates} duplicates after ${sessionLosses} lost sessions; seed ${seed}`,
      );
    } else if (!cuts) {
      // A restarted process sends again only the flows it had in flight (at most the window),
      // never one whose PUBACK it had handled; a broker that lost the session adds one window.
      const restarts = KILLS + (brokerRestart ? 1 : 0);
      assert.ok(
        tally.duplicates <= restarts * WINDOW,
        `${tally.duplicates} duplicates after ${restarts} restarts; seed ${seed}`,
      );
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Resolves once every index in `indexes` has arrived; checks on each arrival. */
function waitFor(tally: Tally, indexes: number[]): Promise<void> {
  return new Promise((resolve) => {
    let at = 0;
    const check = (): void => {
      while (at < indexes.length && tally.counts[indexes[at]] > 0) at++;
      if (at < indexes.length) return;
      tally.onArrival = undefined;
      resolve();
    };
    tally.onArrival = check;
    check();
  });
}

test(
  'reliability - a QoS 1 publisher killed with SIGKILL 3 times (fsync "never") loses no publish() that returned',
  { timeout: 180_000, skip: mosquittoSkipReason() },
  () => crashAndResume({ qos: 1, fsync: "never" }),
);

test(
  'reliability - a QoS 2 publisher killed with SIGKILL 3 times (fsync "always") delivers every publish() that returned exactly once',
  { timeout: 180_000, skip: mosquittoSkipReason() },
  () => crashAndResume({ qos: 2, fsync: "always" }),
);

test(
  'reliability - a QoS 2 publisher killed with SIGKILL 3 times amid cut connections (fsync "batch"): exactly once',
  { timeout: 180_000, skip: mosquittoSkipReason() },
  () => crashAndResume({ qos: 2, fsync: "batch", cuts: true }),
);

test(
  "reliability - a QoS 1 publisher killed with SIGKILL, then a broker that lost the session: nothing lost",
  { timeout: 180_000, skip: mosquittoSkipReason() },
  () => crashAndResume({ qos: 1, fsync: "always", brokerRestart: true }),
);
