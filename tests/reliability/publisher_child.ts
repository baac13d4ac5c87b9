/**
 * The publisher that `crash_test.ts` kills with SIGKILL. It connects with a {@linkcode FileStore}
 * (clean session off), publishes messages 0 … count-1 in batches, and after each batch awaits
 * `client.persisted()` and prints `accepted <k>`: messages 0 … k-1 are in the store and must
 * arrive whatever happens to this process afterwards. It waits for the acknowledgements of a
 * batch only after the next batch is accepted, so a kill finds publishes in flight.
 *
 * With `--drain` it publishes nothing: it connects on the same store, waits until everything the
 * store gave back is acknowledged (`client.pending` is `{ inflight: 0, waiting: 0 }`), prints
 * `drained`, and disconnects.
 *
 * Usage: `deno run -A tests/reliability/publisher_child.ts --port P --dir D --client-id ID
 * --topic T --qos 1|2 --count N [--batch B] [--drain]` (or `bun run …`).
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { connect } from "../../src/client/connect.ts";
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
    count: { type: "string", default: "2000" },
    batch: { type: "string", default: "50" },
    drain: { type: "boolean", default: false },
  },
});

const qos = Number(values.qos) as 1 | 2;
const count = Number(values.count);
const batchSize = Number(values.batch);
const DRAIN_LIMIT_MS = 60_000;

const client = await connect(`mqtt://127.0.0.1:${values.port}`, {
  clientId: values["client-id"],
  clean: false,
  keepalive: 10,
  store: new FileStore(values.dir!),
  reconnect: { minDelay: 10, maxDelay: 200 },
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
  process.stdout.write("drained\n");
} else {
  let previous: Promise<void[]> | undefined;
  for (let first = 0; first < count; first += batchSize) {
    const last = Math.min(count, first + batchSize);
    const batch: Promise<void>[] = [];
    for (let index = first; index < last; index++) {
      batch.push(client.publish(values.topic!, payloadOf(index), { qos }));
    }
    await client.persisted();
    process.stdout.write(`accepted ${last}\n`);
    await previous;
    previous = Promise.all(batch);
  }
  await previous;
  process.stdout.write("done\n");
}
await client.disconnect();
