/**
 * A pure subscriber, as in twisted-mqtt's README: it subscribes to three topics at QoS 2 and
 * prints every message that arrives. Ctrl-C (or SIGTERM) disconnects and exits 0.
 *
 *     deno run -A examples/subscriber.ts [mqtt://127.0.0.1:1883] [--count N]
 *     bun run examples/subscriber.ts [mqtt://127.0.0.1:1883] [--count N]
 *
 * @module
 */

import { MqttSubscriber, openTransport } from "../mod.ts";
import { interrupt, parseArgs } from "./_args.ts";

const { url, count } = parseArgs();
const { signal, release } = interrupt();
try {
  const subscriber = new MqttSubscriber(await openTransport(new URL(url), { signal }));
  // Disconnecting ends the messages() loop below.
  const stop = () => void subscriber.disconnect();
  signal.addEventListener("abort", stop, { once: true });
  await subscriber.connect({ clientId: `kite-sub-${Date.now() % 100000}` });
  const granted = await subscriber.subscribe([
    { topic: "foo/bar/qos0", qos: 2 },
    { topic: "foo/bar/qos1", qos: 2 },
    { topic: "foo/bar/qos2", qos: 2 },
  ]);
  console.log(`connected to ${url}; subscribed, granted QoS ${granted.join(", ")}`);

  const decoder = new TextDecoder();
  let received = 0;
  // The twisted-mqtt way would be subscriber.setPublishHandler((message) => ...).
  for await (const message of subscriber.messages()) {
    console.log(`${message.topic} (QoS ${message.qos}): ${decoder.decode(message.payload)}`);
    if (++received >= count) break;
  }
  signal.removeEventListener("abort", stop);
  await subscriber.disconnect();
  console.log("disconnected");
} catch (error) {
  // Interrupted while connecting or subscribing: nothing to report.
  if (!signal.aborted) throw error;
} finally {
  release();
}
