/**
 * The process that `file_store_test.ts` kills with SIGKILL: it writes to a {@linkcode FileStore}
 * in a loop and prints each change as soon as its call returned, before its promise resolved
 * (it awaits the promises afterwards), one line each:
 *
 * - `p N`: publish N was put;
 * - `u N`: publish N (N % 4 === 1) was updated to state "publish", packet id `N % 65535 + 1`;
 * - `d N`: publish N (every other N) was deleted.
 *
 * Three in four publishes are deleted, so that the log is compacted again and again.
 *
 * Usage: `deno run -A tests/store/crash_child.ts DIR [FSYNC]` or `bun run tests/store/crash_child.ts
 * DIR [FSYNC]`, FSYNC being the store's `fsync` policy (default "always").
 *
 * @module
 */

import process from "node:process";
import { setImmediate } from "node:timers";
import type { PublishPacket } from "../../src/packet/types.ts";
import { FileStore } from "../../src/store/file_store.ts";

const ROUND = 8;
const LIMIT = 200_000;

/** The payload of publish `sequence`: recognisable, so that the parent can check it. */
export function crashPayload(sequence: number): Uint8Array {
  const payload = new Uint8Array(64 + (sequence % 64));
  for (let i = 0; i < payload.length; i++) payload[i] = (sequence + i) & 0xff;
  return payload;
}

async function main(directory: string, fsync: "always" | "batch" | "never"): Promise<void> {
  // Small thresholds, so that the log is compacted again and again before the parent kills us.
  const store = new FileStore(directory, { compactRatio: 2, minCompactBytes: 8 * 1024, fsync });
  await store.open();
  for (let first = 1; first <= LIMIT; first += ROUND) {
    const puts: Promise<void>[] = [];
    for (let sequence = first; sequence < first + ROUND; sequence++) {
      const packet: PublishPacket = {
        type: "publish",
        topic: `crash/${sequence}`,
        payload: crashPayload(sequence),
        qos: 1,
        retain: false,
        dup: false,
      };
      puts.push(store.put({ sequence, state: "queued", packet }));
    }
    let lines = "";
    for (let sequence = first; sequence < first + ROUND; sequence++) lines += `p ${sequence}\n`;
    process.stdout.write(lines);
    await Promise.all(puts);

    const changes: Promise<void>[] = [];
    for (let sequence = first; sequence < first + ROUND; sequence++) {
      changes.push(
        sequence % 4 === 1
          ? store.update(sequence, "publish", sequence % 65535 + 1)
          : store.delete(sequence),
      );
    }
    lines = "";
    for (let sequence = first; sequence < first + ROUND; sequence++) {
      lines += `${sequence % 4 === 1 ? "u" : "d"} ${sequence}\n`;
    }
    process.stdout.write(lines);
    await Promise.all(changes);
    // Promises that resolve at once (fsync "never") would never let compaction or the output run.
    await new Promise((resolve) => setImmediate(resolve));
  }
  await store.close();
}

if (import.meta.main) {
  await main(process.argv[2], (process.argv[3] ?? "always") as "always" | "batch" | "never");
}
