/**
 * What only a store on disk has to prove: recovery after a close and after a crash, torn
 * records, compaction, the lock, and the refusals of a closed store.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { appendFile, mkdtemp, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { MqttError } from "../../src/errors.ts";
import type { PublishPacket } from "../../src/packet/types.ts";
import { FileStore, type FileStoreOptions } from "../../src/store/file_store.ts";
import { MemoryStore } from "../../src/store/memory_store.ts";
import { applyOperation, type StoreContents, type StoreOperation } from "../../src/store/store.ts";
import { crashPayload } from "./crash_child.ts";

/** Runs `body` with a new temporary folder, removed afterwards. */
async function inTempDir(body: (directory: string) => Promise<void>): Promise<void> {
  const directory = await mkdtemp(join(tmpdir(), "kite-file-store-"));
  try {
    await body(directory);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

function publish(sequence: number, fields: Partial<PublishPacket> = {}): PublishPacket {
  return {
    type: "publish",
    topic: `t/${sequence}`,
    payload: new TextEncoder().encode(`payload ${sequence}`),
    qos: 1,
    retain: false,
    dup: false,
    ...fields,
  };
}

/** Opens a new store over `directory`, hands it to `body`, and closes it. */
async function withStore(
  directory: string,
  body: (store: FileStore, contents: StoreContents) => Promise<void>,
  options?: FileStoreOptions,
): Promise<void> {
  const store = new FileStore(directory, options);
  const contents = await store.open();
  try {
    await body(store, contents);
  } finally {
    await store.close();
  }
}

/** What a new store over `directory` finds. */
async function reopen(directory: string): Promise<StoreContents> {
  let found: StoreContents | undefined;
  await withStore(directory, (_store, contents) => {
    found = contents;
    return Promise.resolve();
  });
  return found!;
}

function logPath(directory: string): string {
  return join(directory, "session.log");
}

async function logSize(directory: string): Promise<number> {
  return (await stat(logPath(directory))).size;
}

function sequencesOf(contents: StoreContents): number[] {
  return contents.outgoing.map((record) => record.sequence);
}

describe("FileStore - recovery", () => {
  test("FileStore - a reopened store holds everything the closed one held", () =>
    inTempDir(async (directory) => {
      const model = new MemoryStore();
      await withStore(directory, async (store) => {
        for (let sequence = 1; sequence <= 300; sequence++) {
          const packet = publish(sequence, { qos: sequence % 3 === 0 ? 2 : 1 });
          await store.put({ sequence, state: "queued", packet });
          model.put({ sequence, state: "queued", packet: structuredClone(packet) });
          if (sequence % 4 === 0) {
            await store.delete(sequence - 2);
            model.delete(sequence - 2);
          }
          if (sequence % 7 === 0) {
            await store.update(sequence, "publish", sequence);
            model.update(sequence, "publish", sequence);
          }
          if (sequence % 10 === 0) {
            await store.putIncoming(sequence);
            model.putIncoming(sequence);
          }
        }
      });
      assert.deepEqual(await reopen(directory), model.open());
      // And again: opening must not change what is there.
      assert.deepEqual(await reopen(directory), model.open());
    }));

  test("FileStore - a log cut short by a few bytes loses only its torn last record", () =>
    inTempDir(async (directory) => {
      await withStore(directory, async (store) => {
        for (let sequence = 1; sequence <= 10; sequence++) {
          await store.put({ sequence, state: "queued", packet: publish(sequence) });
        }
      });
      const whole = await logSize(directory);
      await truncate(logPath(directory), whole - 3);
      assert.deepEqual(sequencesOf(await reopen(directory)), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
      // The torn tail is gone from the file, so what is written next follows record 9.
      const cut = await logSize(directory);
      assert.ok(cut < whole - 3, `the log is ${cut} bytes, it was ${whole}`);
      await withStore(directory, async (store) => {
        await store.put({ sequence: 11, state: "queued", packet: publish(11) });
      });
      assert.deepEqual(sequencesOf(await reopen(directory)), [1, 2, 3, 4, 5, 6, 7, 8, 9, 11]);
    }));

  test("FileStore - garbage after the last record is ignored and cut off", () =>
    inTempDir(async (directory) => {
      await withStore(directory, async (store) => {
        await store.put({ sequence: 1, state: "queued", packet: publish(1) });
        await store.putIncoming(5);
      });
      const whole = await logSize(directory);
      const garbage = new Uint8Array(100);
      for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 97 + 13) & 0xff;
      await appendFile(logPath(directory), garbage);
      const contents = await reopen(directory);
      assert.deepEqual(sequencesOf(contents), [1]);
      assert.deepEqual(contents.incoming, [5]);
      assert.equal(await logSize(directory), whole);
    }));

  test("FileStore - a record whose bytes changed fails its CRC and ends the log", () =>
    inTempDir(async (directory) => {
      await withStore(directory, async (store) => {
        for (let sequence = 1; sequence <= 3; sequence++) {
          await store.put({ sequence, state: "queued", packet: publish(sequence) });
        }
      });
      const log = await readFile(logPath(directory));
      log[log.length - 2] ^= 0x01; // in the payload of record 3
      await writeFile(logPath(directory), log);
      assert.deepEqual(sequencesOf(await reopen(directory)), [1, 2]);
    }));

  test("FileStore - a log cut inside its header is started anew", () =>
    inTempDir(async (directory) => {
      await withStore(directory, () => Promise.resolve());
      await truncate(logPath(directory), 3);
      assert.deepEqual(await reopen(directory), { outgoing: [], incoming: [] });
      await withStore(directory, (store) => store.putIncoming(1));
      assert.deepEqual((await reopen(directory)).incoming, [1]);
    }));

  test("FileStore - a file that is not a session log is refused and left as it was", () =>
    inTempDir(async (directory) => {
      await writeFile(logPath(directory), "hello, world");
      const store = new FileStore(directory);
      await assert.rejects(store.open(), (error: unknown) => {
        assert.ok(error instanceof MqttError);
        assert.match(error.message, /not a Kite session log/);
        return true;
      });
      assert.equal(await readFile(logPath(directory), "utf8"), "hello, world");
      // The failed open released the lock.
      await assert.rejects(readFile(join(directory, "lock")), { code: "ENOENT" });
    }));

  test("FileStore - a compaction that a crash cut short leaves the old log in charge", () =>
    inTempDir(async (directory) => {
      await withStore(directory, (store) => store.putIncoming(9));
      await writeFile(join(directory, "session.log.compact"), "half a new log");
      assert.deepEqual((await reopen(directory)).incoming, [9]);
      await assert.rejects(readFile(join(directory, "session.log.compact")), { code: "ENOENT" });
    }));

  for (const fsync of ["batch", "never"] as const) {
    test(`FileStore - fsync "${fsync}" keeps what was written`, () =>
      inTempDir(async (directory) => {
        await withStore(directory, async (store) => {
          const calls: Promise<void>[] = [];
          for (let sequence = 1; sequence <= 50; sequence++) {
            calls.push(store.put({ sequence, state: "queued", packet: publish(sequence) }));
          }
          calls.push(store.delete(1));
          await Promise.all(calls);
          await store.put({ sequence: 51, state: "queued", packet: publish(51) });
        }, { fsync });
        assert.equal((await reopen(directory)).outgoing.length, 50);
      }));
  }
});

/** What a store finds in a log whose bytes are `log` (copied into a folder of its own). */
async function contentsOf(log: Uint8Array): Promise<StoreContents> {
  let found: StoreContents | undefined;
  await inTempDir(async (directory) => {
    await writeFile(logPath(directory), log);
    found = await reopen(directory);
  });
  return found!;
}

describe("FileStore - a change is in the log when its call returns", () => {
  for (const fsync of ["always", "batch", "never"] as const) {
    test(`FileStore - put, update, putIncoming and delete are in the file before their promises resolve (fsync "${fsync}")`, () =>
      inTempDir(async (directory) => {
        const snapshots: Uint8Array[] = [];
        await withStore(directory, async (store) => {
          // The log is read right after each call, synchronously: nothing else has run.
          const calls = [store.put({ sequence: 1, state: "queued", packet: publish(1) })];
          snapshots.push(readFileSync(logPath(directory)));
          calls.push(store.update(1, "publish", 7));
          snapshots.push(readFileSync(logPath(directory)));
          calls.push(store.putIncoming(3));
          snapshots.push(readFileSync(logPath(directory)));
          calls.push(store.delete(1));
          snapshots.push(readFileSync(logPath(directory)));
          await Promise.all(calls);
        }, { fsync });
        const [put, updated, incoming, deleted] = await Promise.all(snapshots.map(contentsOf));
        assert.deepEqual(
          put.outgoing.map(({ sequence, state, packet }) => [sequence, state, packet.topic]),
          [[1, "queued", "t/1"]],
        );
        assert.equal(updated.outgoing[0].state, "publish");
        assert.equal(updated.outgoing[0].packet.packetId, 7);
        assert.deepEqual(incoming.incoming, [3]);
        assert.deepEqual(deleted, { outgoing: [], incoming: [3] });
      }));
  }

  test("FileStore - while compactions replace the log, the log holds every change whose call returned", () =>
    inTempDir(async (directory) => {
      const model = new MemoryStore();
      const checks: { log: Uint8Array; expected: StoreContents }[] = [];
      let replaced = 0;
      await withStore(directory, async (store) => {
        let inode = (await stat(logPath(directory))).ino;
        const pending: Promise<void>[] = [];
        for (let sequence = 1; sequence <= 600; sequence++) {
          const packet = publish(sequence, { payload: new Uint8Array(200).fill(sequence) });
          pending.push(store.put({ sequence, state: "queued", packet }));
          model.put({ sequence, state: "queued", packet: structuredClone(packet) });
          if (sequence % 5 !== 0) {
            pending.push(store.delete(sequence));
            model.delete(sequence);
          }
          if (sequence % 40 === 0) {
            checks.push({ log: readFileSync(logPath(directory)), expected: model.open() });
          }
          if (sequence % 7 === 0) {
            // Calls go on while a flush or a compaction is under way.
            await Promise.all(pending.splice(0));
            const { ino } = await stat(logPath(directory));
            if (ino !== inode) replaced++;
            inode = ino;
          }
        }
        await Promise.all(pending);
      }, { compactRatio: 2, minCompactBytes: 4096 });
      assert.ok(replaced >= 3, `the log was replaced ${replaced} times`);
      for (const { log, expected } of checks) {
        assert.deepEqual(await contentsOf(log), structuredClone(expected));
      }
      assert.deepEqual(await reopen(directory), model.open());
    }));
});

describe("FileStore - apply", () => {
  test("FileStore - apply makes a journal's changes in order, in the log when it returns", () =>
    inTempDir(async (directory) => {
      const journal: StoreOperation[] = [
        { op: "put", record: { sequence: 1, state: "queued", packet: publish(1) } },
        { op: "put", record: { sequence: 2, state: "queued", packet: publish(2, { qos: 2 }) } },
        { op: "update", sequence: 1, state: "publish", packetId: 11 },
        { op: "putIncoming", packetId: 5 },
        { op: "update", sequence: 2, state: "pubrel", packetId: 12 },
        { op: "delete", sequence: 1 },
        { op: "putIncoming", packetId: 6 },
        { op: "deleteIncoming", packetId: 5 },
      ];
      const model = new MemoryStore();
      for (const operation of journal) applyOperation(model, structuredClone(operation));
      let log: Uint8Array | undefined;
      await withStore(directory, async (store) => {
        const applied = store.apply(journal);
        log = readFileSync(logPath(directory));
        await applied;
      });
      assert.deepEqual(await contentsOf(log!), model.open());
      assert.deepEqual(await reopen(directory), model.open());
    }));

  test("FileStore - apply: a change the log cannot hold rejects; those before it are made, none after", () =>
    inTempDir(async (directory) => {
      await withStore(directory, async (store) => {
        await assert.rejects(
          store.apply([
            { op: "put", record: { sequence: 1, state: "queued", packet: publish(1) } },
            {
              op: "put",
              record: { sequence: 2, state: "queued", packet: publish(2, { topic: "a/#" }) },
            },
            { op: "put", record: { sequence: 3, state: "queued", packet: publish(3) } },
          ]),
          /wildcard/,
        );
        await store.put({ sequence: 4, state: "queued", packet: publish(4) });
      });
      assert.deepEqual(sequencesOf(await reopen(directory)), [1, 4]);
    }));
});

describe("FileStore - group commit", () => {
  test("FileStore - the calls of one tick share one commit", () =>
    inTempDir((directory) =>
      withStore(directory, async (store) => {
        const first = store.put({ sequence: 1, state: "queued", packet: publish(1) });
        const second = store.putIncoming(1);
        const third = store.delete(1);
        assert.equal(first, second);
        assert.equal(second, third);
        await first;
        const later = store.clear();
        assert.notEqual(later, first);
        await later;
      })
    ));

  test("FileStore - a call the codec refuses rejects alone and writes nothing", () =>
    inTempDir(async (directory) => {
      await withStore(directory, async (store) => {
        const good = store.put({ sequence: 1, state: "queued", packet: publish(1) });
        const bad = store.put({
          sequence: 2,
          state: "queued",
          packet: publish(2, { topic: "a/#" }),
        });
        const alsoGood = store.put({ sequence: 3, state: "queued", packet: publish(3) });
        await assert.rejects(bad, /wildcard/);
        await assert.rejects(
          store.update(1, "sent" as "publish"),
          (error: unknown) => error instanceof TypeError,
        );
        await assert.rejects(store.putIncoming(0), RangeError);
        await good;
        await alsoGood;
      });
      assert.deepEqual(sequencesOf(await reopen(directory)), [1, 3]);
    }));
});

/** The size of a log that holds exactly `contents`: written once, nothing deleted. */
async function liveSize(contents: StoreContents): Promise<number> {
  let size = 0;
  await inTempDir(async (directory) => {
    await withStore(directory, async (store) => {
      for (const record of contents.outgoing) await store.put(record);
      for (const packetId of contents.incoming) await store.putIncoming(packetId);
    });
    size = await logSize(directory);
  });
  return size;
}

describe("FileStore - compaction", () => {
  const options: FileStoreOptions = { compactRatio: 2, minCompactBytes: 4096 };
  // Compaction flushes its new log whatever the policy; the records between need no flush.
  const quick: FileStoreOptions = { ...options, fsync: "never" };

  /** Puts 2000 publishes and leaves 200, with updates and incoming ids along the way. */
  async function churn(
    directory: string,
    store: FileStore,
    model: MemoryStore,
  ): Promise<number> {
    let shrinks = 0;
    let size = await logSize(directory);
    for (let sequence = 1; sequence <= 2000; sequence++) {
      const packet = publish(sequence, {
        qos: 2,
        properties: { userProperties: [["n", String(sequence)]] },
      });
      await store.put({ sequence, state: "queued", packet });
      model.put({ sequence, state: "queued", packet: structuredClone(packet) });
      if (sequence % 10 !== 0) {
        await store.update(sequence, "publish", sequence % 65535 + 1);
        model.update(sequence, "publish", sequence % 65535 + 1);
        await store.delete(sequence);
        model.delete(sequence);
      } else if (sequence % 20 === 0) {
        await store.update(sequence, "pubrel", 1000 + sequence);
        model.update(sequence, "pubrel", 1000 + sequence);
      }
      if (sequence % 3 === 0) {
        await store.putIncoming(sequence);
        model.putIncoming(sequence);
      } else if (sequence % 3 === 1 && sequence > 3) {
        await store.deleteIncoming(sequence - 1);
        model.deleteIncoming(sequence - 1);
      }
      const now = await logSize(directory);
      if (now < size) shrinks++;
      size = now;
    }
    return shrinks;
  }

  test("FileStore - compaction keeps exactly the live records, in order, and shrinks the log", () =>
    inTempDir(async (directory) => {
      const model = new MemoryStore();
      let shrinks = 0;
      await withStore(directory, async (store) => {
        shrinks = await churn(directory, store, model);
      }, quick);
      const contents = await reopen(directory);
      assert.deepEqual(contents, model.open());
      assert.equal(contents.outgoing.length, 200);
      assert.ok(shrinks >= 5, `the log shrank ${shrinks} times`);
      // The log holds the live records and never more than compactRatio times their size;
      // without compaction it holds every record ever written.
      const size = await logSize(directory);
      const live = await liveSize(contents);
      assert.ok(size <= 2 * live, `the log is ${size} bytes for ${live} live bytes`);
      await inTempDir(async (uncompacted) => {
        await withStore(uncompacted, async (store) => {
          assert.equal(await churn(uncompacted, store, new MemoryStore()), 0);
        }, { minCompactBytes: Infinity, fsync: "never" });
        const full = await logSize(uncompacted);
        assert.ok(size * 5 < full, `the log is ${size} bytes; uncompacted it is ${full}`);
      });
    }));

  test("FileStore - writes made while a compaction runs are neither lost nor reordered", () =>
    inTempDir(async (directory) => {
      const model = new MemoryStore();
      let inode = -1;
      let replaced = -1;
      await withStore(directory, async (store) => {
        // Fifty writers that never wait for each other: while one batch is being compacted
        // into a new log, the others go on calling.
        const worker = async (id: number): Promise<void> => {
          for (let round = 0; round < 40; round++) {
            const sequence = round * 100 + id;
            const packet = publish(sequence, { payload: new Uint8Array(100).fill(id) });
            model.put({ sequence, state: "queued", packet: structuredClone(packet) });
            await store.put({ sequence, state: "queued", packet });
            model.update(sequence, "publish", sequence + 1);
            const updated = store.update(sequence, "publish", sequence + 1);
            if (round % 4 !== 3) {
              model.delete(sequence);
              await Promise.all([updated, store.delete(sequence)]);
            } else {
              await updated;
            }
            if (id === 0) {
              // A new inode: a compaction renamed a new log over the old one.
              const { ino } = await stat(logPath(directory));
              if (ino !== inode) replaced++;
              inode = ino;
            }
          }
        };
        await Promise.all(Array.from({ length: 50 }, (_, id) => worker(id)));
      }, options);
      assert.deepEqual(await reopen(directory), model.open());
      assert.ok(replaced >= 3, `the log was replaced ${replaced} times`);
    }));

  test("FileStore - a log of deleted records compacts to its header", () =>
    inTempDir(async (directory) => {
      await withStore(directory, async (store) => {
        for (let sequence = 1; sequence <= 500; sequence++) {
          await store.put({ sequence, state: "queued", packet: publish(sequence) });
          await store.delete(sequence);
        }
        await store.clear();
      }, { compactRatio: 2, minCompactBytes: 0 });
      assert.ok(await logSize(directory) < 4096);
      assert.deepEqual(await reopen(directory), { outgoing: [], incoming: [] });
    }));
});

describe("FileStore - lifecycle", () => {
  test("FileStore - a second store on the same folder is refused while the first is open", () =>
    inTempDir(async (directory) => {
      await withStore(directory, async (store) => {
        await store.putIncoming(3);
        const second = new FileStore(directory);
        await assert.rejects(second.open(), (error: unknown) => {
          assert.ok(error instanceof MqttError);
          assert.match(error.message, /in use by another store in this process/);
          return true;
        });
        assert.equal((await readFile(join(directory, "lock"), "utf8")).trim(), `${process.pid}`);
        await second.close();
      });
      // Closing released the lock.
      await assert.rejects(readFile(join(directory, "lock")), { code: "ENOENT" });
      assert.deepEqual((await reopen(directory)).incoming, [3]);
    }));

  test("FileStore - a lock left by a process that is gone is taken over", () =>
    inTempDir(async (directory) => {
      await withStore(directory, (store) => store.putIncoming(4));
      // No process has this id: Linux and macOS cap ids far below it.
      await writeFile(join(directory, "lock"), "2147483646\n");
      assert.deepEqual((await reopen(directory)).incoming, [4]);
    }));

  test("FileStore - a lock naming this process that no store here holds is taken over", () =>
    inTempDir(async (directory) => {
      await withStore(directory, (store) => store.putIncoming(6));
      // What a restarted container finds: its predecessor had the same process id.
      await writeFile(join(directory, "lock"), `${process.pid}\n`);
      assert.deepEqual((await reopen(directory)).incoming, [6]);
    }));

  test("FileStore - calls before open and after close reject with MqttError", () =>
    inTempDir(async (directory) => {
      const store = new FileStore(directory);
      await assert.rejects(store.putIncoming(1), (error: unknown) => {
        assert.ok(error instanceof MqttError);
        assert.match(error.message, /not open/);
        return true;
      });
      await store.open();
      await assert.rejects(store.open(), MqttError);
      const pending = store.putIncoming(1);
      const closing = store.close();
      assert.equal(store.close(), closing);
      await pending; // close() flushed it
      await closing;
      const closed = (error: unknown): boolean => {
        assert.ok(error instanceof MqttError);
        assert.match(error.message, /the store is closed/);
        return true;
      };
      await assert.rejects(store.put({ sequence: 1, state: "queued", packet: publish(1) }), closed);
      await assert.rejects(store.update(1, "publish", 1), closed);
      await assert.rejects(store.delete(1), closed);
      await assert.rejects(store.putIncoming(2), closed);
      await assert.rejects(store.deleteIncoming(1), closed);
      await assert.rejects(store.clear(), closed);
      await assert.rejects(store.open(), closed);
      assert.deepEqual((await reopen(directory)).incoming, [1]);
    }));

  test("FileStore - close() while open() runs waits for it, then closes", () =>
    inTempDir(async (directory) => {
      const store = new FileStore(join(directory, "nested", "folder"));
      const opening = store.open();
      const closing = store.close();
      await opening;
      await closing;
      await assert.rejects(store.putIncoming(1), /the store is closed/);
      await assert.rejects(readFile(join(directory, "nested", "folder", "lock")), {
        code: "ENOENT",
      });
    }));

  test("FileStore - bad options are refused at construction", () => {
    assert.throws(
      () => new FileStore("x", { fsync: "sometimes" as "always" }),
      TypeError,
    );
    assert.throws(() => new FileStore("x", { compactRatio: 1 }), RangeError);
    assert.throws(() => new FileStore("x", { minCompactBytes: -1 }), RangeError);
  });
});

/** The command that runs a script on the runtime running this test. */
function runtimeCommand(script: string, args: string[]): [string, string[]] {
  const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
  if (deno !== undefined) return [deno.execPath(), ["run", "-A", script, ...args]];
  return [process.execPath, ["run", script, ...args]];
}

describe("FileStore - a real crash", () => {
  for (const fsync of ["always", "never"] as const) {
    test(`FileStore - a change whose call returned survives SIGKILL (fsync "${fsync}")`, () =>
      killedChild(fsync));
  }
});

async function killedChild(fsync: "always" | "never"): Promise<void> {
  await inTempDir(async (directory) => {
    const script = fileURLToPath(new URL("./crash_child.ts", import.meta.url));
    const [command, args] = runtimeCommand(script, [directory, fsync]);
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    const put = new Set<number>();
    const updated = new Set<number>();
    const deleted = new Set<number>();
    let stderr = "";
    let pending = "";
    let killed = false;
    try {
      await new Promise<void>((resolve, reject) => {
        // Only a guard: the test waits for output, and this fires only if none comes.
        const guard = setTimeout(() => {
          child.kill("SIGKILL");
          reject(new Error(`the child printed ${put.size} puts in 60 s; stderr: ${stderr}`));
        }, 60_000);
        child.stderr.setEncoding("utf8");
        child.stderr.on("data", (chunk: string) => stderr += chunk);
        child.stdout.setEncoding("utf8");
        child.stdout.on("data", (chunk: string) => {
          const lines = (pending + chunk).split("\n");
          pending = lines.pop()!;
          for (const line of lines) {
            const sequence = Number(line.slice(2));
            if (line[0] === "p") put.add(sequence);
            else if (line[0] === "u") updated.add(sequence);
            else if (line[0] === "d") deleted.add(sequence);
          }
          if (!killed && put.size >= 1000) {
            killed = true;
            child.kill("SIGKILL");
          }
        });
        child.on("error", reject);
        // "close": the child is gone and all it printed has been read.
        child.on("close", (code, signal) => {
          clearTimeout(guard);
          if (killed && signal === "SIGKILL") resolve();
          else reject(new Error(`the child ended early (${code}, ${signal}): ${stderr}`));
        });
      });
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }

    // The child's lock names a process that no longer exists: this store takes it over.
    const { outgoing } = await reopen(directory);
    const found = new Map(outgoing.map((record) => [record.sequence, record]));
    assert.ok(put.size >= 1000);
    for (const sequence of put) {
      const record = found.get(sequence);
      if (deleted.has(sequence)) {
        assert.equal(record, undefined, `publish ${sequence} was deleted, yet it is back`);
        continue;
      }
      if (sequence % 4 !== 1) continue; // its delete may or may not have been written
      assert.ok(record, `publish ${sequence} was written, yet it is gone`);
      assert.equal(record.packet.topic, `crash/${sequence}`);
      assert.deepEqual(record.packet.payload, crashPayload(sequence));
      if (updated.has(sequence)) {
        assert.equal(record.state, "publish");
        assert.equal(record.packet.packetId, sequence % 65535 + 1);
      }
    }
    // Nothing comes back that the child never asked for.
    for (const record of outgoing) {
      assert.equal(record.packet.topic, `crash/${record.sequence}`);
      assert.deepEqual(record.packet.payload, crashPayload(record.sequence));
    }
  });
}
