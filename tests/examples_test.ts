/**
 * The three examples run as a user runs them (`deno run` or `bun run`, whichever runtime runs
 * this file) against a real mosquitto, each once round.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import { mosquittoSkipReason, startMosquitto } from "./helpers/mosquitto.ts";

/** Starts an example with the runtime running this test. */
function run(example: string, args: string[], env?: Record<string, string>): ChildProcess {
  const command = typeof Deno !== "undefined" ? Deno.execPath() : process.execPath;
  const runArgs = typeof Deno !== "undefined" ? ["run", "-A", example] : ["run", example];
  const environment = { ...process.env, ...env };
  if (env === undefined) delete environment.MQTT_URL;
  return spawn(command, [...runArgs, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: environment,
  });
}

/** Collects a child's output; resolves with it when the child exits. */
function finished(child: ChildProcess): Promise<{ code: number | null; out: string }> {
  let out = "";
  child.stdout!.on("data", (chunk) => out += chunk);
  child.stderr!.on("data", (chunk) => out += chunk);
  return new Promise((resolve) => child.on("exit", (code) => resolve({ code, out })));
}

/** Resolves once the child printed a line containing `text`. */
function printed(child: ChildProcess, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (chunk) => {
      out += chunk;
      if (out.includes(text)) resolve();
    });
    child.on("exit", () => reject(new Error(`exited before printing "${text}": ${out}`)));
  });
}

describe("demo", () => {
  test(
    "demo.ts runs the three profiles on the local broker and exits 0 when every message arrived",
    {
      timeout: 60_000,
    },
    async () => {
      const child = run("examples/demo.ts", []);
      try {
        const { code, out } = await finished(child);
        assert.equal(code, 0, out);
        assert.match(out, /local broker {2}listening on mqtt:\/\/127\.0\.0\.1:\d+/);
        for (const qos of [0, 1, 2]) assert.match(out, new RegExp(`received {4}demo/qos${qos}`));
        assert.match(out, /every message arrived/);
      } finally {
        child.kill("SIGKILL");
      }
    },
  );

  test("demo.ts uses the broker MQTT_URL names", {
    skip: mosquittoSkipReason(),
    timeout: 60_000,
  }, async () => {
    await using broker = await startMosquitto();
    const child = run("examples/demo.ts", [], { MQTT_URL: broker.url });
    try {
      const { code, out } = await finished(child);
      assert.equal(code, 0, out);
      assert.match(out, /from MQTT_URL/);
      assert.doesNotMatch(out, /local broker/);
      assert.match(out, /every message arrived/);
    } finally {
      child.kill("SIGKILL");
    }
  });
});

describe("examples", { skip: mosquittoSkipReason() }, () => {
  test("subscriber.ts receives the QoS 0, 1 and 2 messages publisher.ts sends", {
    timeout: 60_000,
  }, async () => {
    await using broker = await startMosquitto();
    const url = broker.url;
    const children: ChildProcess[] = [];
    try {
      const subscriber = run("examples/subscriber.ts", [url, "--count", "3"]);
      children.push(subscriber);
      const subscriberDone = finished(subscriber);
      await printed(subscriber, "subscribed");
      const publisher = run("examples/publisher.ts", [url, "--count", "1"]);
      children.push(publisher);
      const published = await finished(publisher);
      assert.equal(published.code, 0, published.out);
      for (const qos of [0, 1, 2]) assert.match(published.out, new RegExp(`published QoS ${qos}`));
      const received = await subscriberDone;
      assert.equal(received.code, 0, received.out);
      for (const qos of [0, 1, 2]) {
        assert.match(received.out, new RegExp(`foo/bar/qos${qos} \\(QoS ${qos}\\): hello world 1`));
      }
    } finally {
      for (const child of children) child.kill("SIGKILL");
    }
  });

  test("pubsub.ts gets back each message it publishes", { timeout: 60_000 }, async () => {
    await using broker = await startMosquitto();
    const child = run("examples/pubsub.ts", [broker.url, "--count", "1"]);
    try {
      const { code, out } = await finished(child);
      assert.equal(code, 0, out);
      for (const qos of [0, 1, 2]) assert.match(out, new RegExp(`received foo/bar/qos${qos}`));
    } finally {
      child.kill("SIGKILL");
    }
  });
});
