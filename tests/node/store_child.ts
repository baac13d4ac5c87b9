/**
 * The Node process of `file_store.node.mjs`, on the built package, with a `FileStore`.
 *
 * - `publish`: connects (clean session off), prints `connected`, and once the connection is lost
 *   (the test stops the broker) publishes `one` at QoS 1 and `two` at QoS 2 to TOPIC, prints
 *   `published` when both calls have returned, and kills itself with SIGKILL: nothing gets the
 *   chance to finish later.
 * - `deliver`: connects on the same store, waits until what it found there is acknowledged
 *   (`client.pending` at zero, looked at every 10 ms for at most 10 s), prints `delivered`, and
 *   disconnects.
 *
 * Usage (compiled, in `dist/node-test/`): `node store_child.js publish|deliver URL STORE_DIR TOPIC`
 */

import process from "node:process";
import { connect, FileStore } from "@kite/mqtt";

const [mode, url, directory, topic] = process.argv.slice(2);
const LIMIT_MS = 10_000;

const client = await connect(url, {
  clientId: "kite-node-store",
  clean: false,
  keepalive: 5,
  store: new FileStore(directory),
  reconnect: { minDelay: 10, maxDelay: 100 },
});
process.stdout.write("connected\n");

if (mode === "publish") {
  client.addEventListener("disconnect", () => {
    void client.publish(topic, "one", { qos: 1 }).catch(() => {});
    void client.publish(topic, "two", { qos: 2 }).catch(() => {});
    process.stdout.write("published\n", () => process.kill(process.pid, "SIGKILL"));
  }, { once: true });
} else {
  const started = Date.now();
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      const { inflight, waiting } = client.pending;
      if (inflight === 0 && waiting === 0) {
        clearInterval(timer);
        resolve();
      } else if (Date.now() - started > LIMIT_MS) {
        clearInterval(timer);
        reject(new Error(`still pending: ${inflight} in flight, ${waiting} waiting`));
      }
    }, 10);
  });
  process.stdout.write("delivered\n");
  await client.disconnect();
}
