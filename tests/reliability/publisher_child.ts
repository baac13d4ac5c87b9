/**
 * The publisher that `crash_test.ts` kills with SIGKILL. It connects with a {@linkcode FileStore}
 * (clean session off), resumes what the store holds, and publishes messages `from` … `from +
 * count - 1` with at most `window` calls outstanding (it awaits the promise of the call made
 * `window` calls earlier before the next one). Right after each `publish()` call returns, before
 * anything is awaited, it prints `published <index>`: from that moment the message is the
 * client's to deliver, whatever happens to this process. With `--kill-at K` it kills itself with
 * SIGKILL right after the call that published K returned, the worst moment for a store that
 * writes later. When it has published them all it prints `done` and waits to be killed (at most
 * a minute).
 *
 * With `--drain` it publishes nothing of its own: it connects on the same store, waits until
 * everything the store gave back is acknowledged (`client.pending` is `{ inflight: 0, waiting:
 * 0 }`), publishes message `--sentinel` and awaits it (the subscriber has everything else once
 * that arrives), prints `drained`, and disconnects.
 *
 * Usage: `deno run -A tests/reliability/publisher_child.ts --port P --dir D --client-id ID
 * --topic T --qos 1|2 [--from F] [--count N] [--window W] [--fsync always|batch|never]
 * [--kill-at K] [--drain --sentinel S]` (or `bun run …`).
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { connect } from "../../src/client/connect.ts";
import type { ConnectEventDetail } from "../../src/client/events.ts";
import { FileStore } from "../../src/store/file_store.ts";
import { payloadOf } from "./support.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    port: { type: "string" },
    dir: { type: "string" },
    "client-id": { type: "string" },
    topic: { type: "string" },
    qos: { type: "string", default: "1" },
    from: { type: "string", default: "0" },
    count: { type: "string", default: "2000" },
    window: { type: "string", default: "20" },
    fsync: { type: "string", default: "always" },
    drain: { type: "boolean", default: false },
    sentinel: { type: "string", default: "-1" },
    "kill-at": { type: "string", default: "-1" },
  },
});

const qos = Number(values.qos) as 1 | 2;
const from = Number(values.from);
const count = Number(values.count);
const window = Number(values.window);
const killAt = Number(values["kill-at"]);
const DRAIN_LIMIT_MS = 60_000;
const LINGER_MS = 60_000;

const client = await connect(`mqtt://127.0.0.1:${values.port}`, {
  clientId: values["client-id"],
  clean: false,
  keepalive: 10,
  store: new FileStore(values.dir!, { fsync: values.fsync as "always" | "batch" | "never" }),
  reconnect: { minDelay: 10, maxDelay: 200 },
});
// A broker that answers a reconnection with "no session present" has lost what was in flight:
// the client sends it again as new messages, so a QoS 2 message may then arrive twice. Said on
// stdout, so that the parent holds the run to exactly once only where the broker kept the session
// (the first connection of the first run has no session yet, and nothing in flight).
if (!client.sessionPresent && (from > 0 || values.drain)) process.stdout.write("session absent\n");
client.addEventListener("connect", (event) => {
  const detail = (event as CustomEvent<ConnectEventDetail>).detail;
  if (!detail.sessionPresent) process.stdout.write("session absent\n");
});
client.addEventListener("error", (event) => {
  process.stderr.write(
    `child error: ${(event as CustomEvent<Error>).detail.message}\n`,
  );
});

if (values.drain) {
  // Restored publishes have no promise anyone holds, and no event says the last one completed:
  // look at the counts whenever a packet may have changed them, within a bound.
  const started = Date.now();
  await new Promise<void>((resolve, reject) => {
    const check = () => {
      const { inflight, waiting } = client.pending;
      if (inflight === 0 && waiting === 0) {
        clearInterval(timer);
        resolve();
      } else if (Date.now() - started > DRAIN_LIMIT_MS) {
        clearInterval(timer);
        reject(
          new Error(
            `still pending after ${DRAIN_LIMIT_MS} ms: ${inflight} in flight, ${waiting} waiting`,
          ),
        );
      }
    };
    const timer = setInterval(check, 5);
    check();
  });
  await client.publish(values.topic!, payloadOf(Number(values.sentinel)), { qos });
  process.stdout.write("drained\n");
  await client.disconnect();
} else {
  const outstanding: (Promise<void> | undefined)[] = new Array(window);
  for (let index = from; index < from + count; index++) {
    const slot = index % window;
    await outstanding[slot];
    outstanding[slot] = client.publish(values.topic!, payloadOf(index), { qos });
    process.stdout.write(`published ${index}\n`);
    if (index === killAt) process.kill(process.pid, "SIGKILL");
  }
  await Promise.all(outstanding);
  process.stdout.write("done\n");
  // The parent kills this process; this only keeps a forgotten child from lingering.
  setTimeout(() => process.exit(3), LINGER_MS);
}
