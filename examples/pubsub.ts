/**
 * Both profiles in one client, as in twisted-mqtt's README: it subscribes to what it publishes
 * and prints each message as it comes back, publishing at QoS 0, 1 and 2 every 5 seconds.
 * Ctrl-C (or SIGTERM) disconnects and exits 0, also during the wait.
 *
 *     deno run -A examples/pubsub.ts [mqtt://127.0.0.1:1883] [--count N]
 *     bun run examples/pubsub.ts [mqtt://127.0.0.1:1883] [--count N]
 *
 * @module
 */

import { connect } from "../mod.ts";
import { interrupt, parseArgs, sleep } from "./_args.ts";

const { url, count } = parseArgs();
const { signal, release } = interrupt();
try {
  // The high-level way: connect dials the URL and reconnects on its own after a loss.
  const client = await connect(url, { clientId: `kite-pubsub-${Date.now() % 100000}`, signal });
  // Disconnecting settles what is in flight and ends the messages() loop.
  const stop = () => void client.disconnect();
  signal.addEventListener("abort", stop, { once: true });
  client.addEventListener("reconnect", () => console.log("connection lost; reconnecting"));
  await client.subscribe("foo/bar/#", { qos: 2 });
  console.log(`connected to ${url}; subscribed to foo/bar/#`);

  const decoder = new TextDecoder();
  const expected = count * 3;
  let received = 0;
  const printing = (async () => {
    for await (const message of client.messages()) {
      console.log(
        `received ${message.topic} (QoS ${message.qos}): ${decoder.decode(message.payload)}`,
      );
      if (++received >= expected) break;
    }
  })();

  for (let round = 1; round <= count && !signal.aborted; round++) {
    for (const qos of [0, 1, 2] as const) {
      await client.publish(`foo/bar/qos${qos}`, `hello world ${round} (QoS ${qos})`, { qos });
      console.log(`published QoS ${qos} message ${round}`);
    }
    if (round < count) await sleep(5000, signal);
  }
  await printing;
  signal.removeEventListener("abort", stop);
  await client.disconnect();
  console.log("disconnected");
} catch (error) {
  // Interrupted while connecting or publishing: nothing to report.
  if (!signal.aborted) throw error;
} finally {
  release();
}
