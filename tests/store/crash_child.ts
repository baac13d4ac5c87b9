/**
 * The process that `file_store_test.ts` kills with SIGKILL: it writes to a {@linkcode FileStore}
 * in a loop and prints each change once its promise resolved, one line each:
 *
 * - `p N`: publish N was put;
 * - `u N`: publish N (N % 4 === 1) was updated to state "publish", packet id `N % 65535 + 1`;
 * - `d N`: publish N (every other N) was deleted.
 *
 * Three in four publishes are deleted, so that the log is compacted again and again.
 *
 * Usage: `deno run -A tests/store/crash_child.ts DIR` or `bun run tests/store/crash_child.ts DIR`.
 *
 * @module
 */

import process from "node:process";
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

async function main(directory: string): Promise<void> {
  // Small thresholds, so that the log is compacted again and again before the parent kills us.
  const store = new FileStore(directory, { compactRatio: 2, minCompactBytes: 8 * 1024 });
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
    await Promise.all(puts);
    let lines = "";
    for (let sequence = first; sequence < first + ROUND; sequence++) lines += `p ${sequence}\n`;
    process.stdout.write(lines);

    const changes: Promise<void>[] = [];
    for (let sequence = first; sequence < first + ROUND; sequence++) {
      changes.push(
        sequence % 4 === 1
          ? store.update(sequence, "publish", sequence % 65535 + 1)
          : store.delete(sequence),
      );
    }
    await Promise.all(changes);
    lines = "";
    for (let sequence = first; sequence < first + ROUND; sequence++) {
      lines += `${sequence % 4 === 1 ? "u" : "d"} ${sequence}\n`;
    }
    process.stdout.write(lines);
  }
  await store.close();
}

if (import.meta.main) await main(process.argv[2]);
