/**
 * The README's example for Node ("### On Node"), as written, on the installed package: saved as
 * an `.mjs` file next to `node_modules/@kite/mqtt` and run with `node`, with the broker address
 * pointed at a mosquitto of the test's own.
 *
 * Runs only under `node --test`, from `dist/node-test/` (see support.ts).
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { connect } from "@kite/mqtt";
import { mosquittoSkipReason, startMosquitto } from "../helpers/mosquitto.ts";
import { child, HERE, NODE, take, text } from "./support.ts";

const skip = mosquittoSkipReason();
const INSTALLED = path.join(HERE, "..", "..", "node_modules", "@kite", "mqtt");

/** The first ```js block after the heading `### On Node` of the README the package carries. */
function nodeExample(): string {
  const readme = fs.readFileSync(path.join(INSTALLED, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("\n### On Node\n"));
  const block = /\n```js\n([\s\S]*?)\n```\n/.exec(section);
  assert.ok(
    readme.includes("\n### On Node\n") && block !== null,
    "README: no ```js block in On Node",
  );
  return block[1] + "\n";
}

test(
  "node - the README's Node example runs as written on the installed package",
  { skip },
  async () => {
    const broker = await startMosquitto();
    const app = path.join(HERE, "..", "..", "readme-app.mjs");
    const subscriber = await connect(broker.url, { reconnect: false });
    try {
      await subscriber.subscribe("greetings", { qos: 1 });
      const arriving = take(subscriber, "greetings", 1);
      const code = nodeExample();
      assert.match(code, /mqtt:\/\/127\.0\.0\.1:1883/);
      fs.writeFileSync(app, code.replaceAll("mqtt://127.0.0.1:1883", broker.url));
      const run = child(NODE, [app]);
      assert.deepEqual(await run.exited(), { code: 0, signal: null }, run.stderr);
      const [message] = await arriving;
      assert.equal(text(message), "hello from Node");
    } finally {
      await subscriber.disconnect();
      await broker.stop();
      fs.rmSync(app, { force: true });
    }
  },
);
