/**
 * A `FileStore` on Node, across processes: a Node process publishes at QoS 1 and 2 while the
 * broker is down, and is killed; a second one started on the same folder delivers both.
 *
 * Runs only under `node --test`, from `dist/node-test/` (see support.ts).
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { connect, type MqttClient } from "@kite/mqtt";
import { mosquittoSkipReason, startMosquitto } from "../helpers/mosquitto.ts";
import { type Child, child, HERE, NODE, take, text } from "./support.ts";

const skip = mosquittoSkipReason();
// Compiled next to this file.
const CHILD = path.join(HERE, "store_child.js");

test(
  "node - FileStore: what a killed process published while the broker was down, the next process delivers",
  { skip },
  async () => {
    const broker = await startMosquitto();
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), "kite-node-store-"));
    const topic = "node/store";
    const children: Child[] = [];
    let subscriber: MqttClient | undefined;
    try {
      const first = child(NODE, [CHILD, "publish", broker.url, directory, topic]);
      children.push(first);
      await first.sees(/^connected$/m);
      await broker.stop();
      await first.sees(/^published$/m);
      assert.deepEqual(await first.exited(), { code: null, signal: "SIGKILL" });

      await broker.restart();
      subscriber = await connect(broker.url, { reconnect: false });
      await subscriber.subscribe(topic, { qos: 2 });
      const arriving = take(subscriber, topic, 2);
      const second = child(NODE, [CHILD, "deliver", broker.url, directory, topic]);
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
  },
);
