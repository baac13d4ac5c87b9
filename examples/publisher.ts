/**
 * A pure publisher, as in twisted-mqtt's README: every 5 seconds it publishes one message at
 * QoS 0, one at QoS 1 and one at QoS 2, and says when each is done.
 *
 *     deno run -A examples/publisher.ts [mqtt://127.0.0.1:1883] [--count N]
 *     bun run examples/publisher.ts [mqtt://127.0.0.1:1883] [--count N]
 *
 * @module
 */

import { MqttPublisher } from "../mod.ts";
import { openTransport } from "../src/transport/mod.ts";
import { onInterrupt, parseArgs } from "./_args.ts";

const { url, count } = parseArgs();
// The low-level way, as twisted-mqtt does it: open the connection, wrap it in a profile.
const publisher = new MqttPublisher(await openTransport(new URL(url)));
const sessionPresent = await publisher.connect({ clientId: `kite-pub-${Date.now() % 100000}` });
console.log(`connected to ${url} (session present: ${sessionPresent})`);

let timer: ReturnType<typeof setTimeout> | undefined;
let stopping = false;
const stop = async () => {
  stopping = true;
  clearTimeout(timer);
  await publisher.disconnect();
  console.log("disconnected");
};
onInterrupt(stop);

for (let round = 1; round <= count && !stopping; round++) {
  const results = await Promise.allSettled(
    ([0, 1, 2] as const).map((qos) =>
      publisher.publish(`foo/bar/qos${qos}`, `hello world ${round} (QoS ${qos})`, { qos })
    ),
  );
  results.forEach((result, qos) => {
    console.log(
      result.status === "fulfilled"
        ? `published QoS ${qos} message ${round}`
        : `publish QoS ${qos} failed: ${result.reason.message}`,
    );
  });
  if (round < count && !stopping) {
    await new Promise<void>((resolve) => timer = setTimeout(resolve, 5000));
  }
}
if (!stopping) await stop();
