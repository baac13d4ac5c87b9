/**
 * A `FileStore` on Node, across processes: a Node process publishes at QoS 1 and 2 while the
 * broker is down, and is killed; a second one started on the same folder delivers both.
 *
 * Runs only under `node --test`, from `dist/node-test/` (see `.ci/build_npm.ts`).
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { connect } from "@kite/mqtt";
import { mosquittoSkipReason, startMosquitto } from "../helpers/mosquitto.js";
import { child, HERE, take, text } from "./support.mjs";

const skip = mosquittoSkipReason();
const CHILD = path.join(HERE, "store_child.mjs");

test("node - FileStore: what a killed process published while the broker was down, the next process delivers", { skip }, async () => {
  const broker = await startMosquitto();
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), "kite-node-store-"));
  const topic = "node/store";
  const children = [];
  let subscriber;
  try {
    const first = child(process.execPath, [CHILD, "publish", broker.url, directory, topic]);
    children.push(first);
    await first.sees(/^connected$/m);
    await broker.stop();
    await first.sees(/^published$/m);
    assert.deepEqual(await first.exited(), { code: null, signal: "SIGKILL" });

    await broker.restart();
    subscriber = await connect(broker.url, { reconnect: false });
    await subscriber.subscribe(topic, { qos: 2 });
    const arriving = take(subscriber, topic, 2);
    const second = child(process.execPath, [CHILD, "deliver", broker.url, directory, topic]);
    children.push(second);
    const messages = await arriving;
    assert.deepEqual(
      messages.map((message) => [text(message), message.qos]),
      [["one", 1], ["two", 2]],
    );
    await second.sees(/^delivered$/m);
    assert.deepEqual(await second.exited(), { code: 0, signal: null }, second.stderr);
  } finally {
    for (const process_ of children) process_.kill();
    await subscriber?.disconnect();
    await broker.stop();
    fs.rmSync(directory, { recursive: true, force: true });
  }
});
