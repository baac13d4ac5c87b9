/**
 * A pure publisher, as in twisted-mqtt's README: every 5 seconds it publishes one message at
 * QoS 0, one at QoS 1 and one at QoS 2, and says when each is done. Ctrl-C (or SIGTERM)
 * disconnects and exits 0, also during the wait.
 *
 *     deno run -A examples/publisher.ts [mqtt://127.0.0.1:1883] [--count N]
 *     bun run examples/publisher.ts [mqtt://127.0.0.1:1883] [--count N]
 *
 * @module
 */

import { MqttPublisher, openTransport } from "../mod.ts";
import { interrupt, parseArgs, sleep } from "./_args.ts";

const { url, count } = parseArgs();
const { signal, release } = interrupt();
try {
  // The low-level way, as twisted-mqtt does it: open the connection, wrap it in a profile.
  const publisher = new MqttPublisher(await openTransport(new URL(url), { signal }));
  // Disconnecting settles whatever is still in flight, so the loop below ends at once.
  const stop = () => void publisher.disconnect();
  signal.addEventListener("abort", stop, { once: true });
  const sessionPresent = await publisher.connect({ clientId: `kite-pub-${Date.now() % 100000}` });
  console.log(`connected to ${url} (session present: ${sessionPresent})`);

  for (let round = 1; round <= count && !signal.aborted; round++) {
    const results = await Promise.allSettled(
      ([0, 1, 2] as const).map((qos) =>
        publisher.publish(`foo/bar/qos${qos}`, `hello world ${round} (QoS ${qos})`, { qos })
      ),
    );
    if (signal.aborted) break;
    results.forEach((result, qos) => {
      console.log(
        result.status === "fulfilled"
          ? `published QoS ${qos} message ${round}`
          : `publish QoS ${qos} failed: ${result.reason.message}`,
      );
    });
    if (round < count) await sleep(5000, signal);
  }
  signal.removeEventListener("abort", stop);
  await publisher.disconnect();
  console.log("disconnected");
} catch (error) {
  // Interrupted while connecting: nothing to report.
  if (!signal.aborted) throw error;
} finally {
  release();
}
