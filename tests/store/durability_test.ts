/**
 * The timing FileStore's `fsync: "batch"` promises: the log is flushed within 100 ms of a write
 * and at most every 100 ms, never when nothing was written, and no timer is left once the store
 * stops. Driven by a fake clock, so no real time is waited on.
 *
 * @module
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Flusher } from "../../src/store/durability.ts";
import { FakeClock } from "../helpers/fake_clock.ts";

/** A flusher under `"batch"` on a fake clock, with the background work played by the test. */
function batch() {
  const clock = new FakeClock();
  let wakes = 0;
  let syncs = 0;
  const flusher = new Flusher("batch", "session.log", () => wakes++, clock);
  const log = {
    datasync: () => {
      syncs++;
      return Promise.resolve();
    },
  };
  /** What the store's background work does when woken: the flushes that are due. */
  const work = async () => {
    while (flusher.flushDue) await flusher.flushNext(log);
  };
  return {
    clock,
    flusher,
    work,
    get wakes() {
      return wakes;
    },
    get syncs() {
      return syncs;
    },
  };
}

describe('Flusher - fsync "batch"', () => {
  test("a write resolves at once, and is flushed 100 ms later, not before", async () => {
    const store = batch();
    await store.flusher.written();
    await store.clock.advance(99);
    assert.equal(store.wakes, 0);
    assert.equal(store.flusher.flushDue, false);
    await store.clock.advance(1);
    assert.equal(store.wakes, 1);
    assert.equal(store.flusher.flushDue, true);
    await store.work();
    assert.equal(store.syncs, 1);
    assert.equal(store.flusher.flushDue, false);
    store.flusher.stop();
  });

  test("many writes within 100 ms share one flush", async () => {
    const store = batch();
    for (let i = 0; i < 50; i++) {
      await store.flusher.written();
      await store.clock.advance(1);
    }
    await store.clock.advance(50);
    await store.work();
    assert.equal(store.wakes, 1);
    assert.equal(store.syncs, 1);
    store.flusher.stop();
  });

  test("at most one flush every 100 ms: a write 30 ms after a flush waits 70 ms", async () => {
    const store = batch();
    await store.flusher.written();
    await store.clock.advance(100);
    await store.work();
    assert.equal(store.syncs, 1);
    await store.clock.advance(30);
    await store.flusher.written();
    await store.clock.advance(69);
    assert.equal(store.wakes, 1);
    await store.clock.advance(1);
    assert.equal(store.wakes, 2);
    await store.work();
    assert.equal(store.syncs, 2);
    store.flusher.stop();
  });

  test("no write, no flush and no timer", async () => {
    const store = batch();
    await store.flusher.written();
    await store.clock.advance(100);
    await store.work();
    assert.equal(store.clock.pending, 0);
    await store.clock.advance(10_000);
    assert.equal(store.wakes, 1);
    assert.equal(store.syncs, 1);
  });

  test("stop() leaves no timer behind, and a flush that was due is not made", async () => {
    const store = batch();
    await store.flusher.written();
    assert.equal(store.clock.pending, 1);
    store.flusher.stop();
    assert.equal(store.clock.pending, 0);
    await store.clock.advance(1000);
    assert.equal(store.wakes, 0);
    assert.equal(store.flusher.flushDue, false);
  });

  test("finish() flushes what was written and not flushed yet, and nothing else", async () => {
    let syncs = 0;
    const log = {
      datasync: () => {
        syncs++;
        return Promise.resolve();
      },
    };
    const clean = batch();
    await clean.flusher.finish(log);
    assert.equal(syncs, 0);
    const written = batch();
    await written.flusher.written();
    await written.flusher.finish(log);
    assert.equal(syncs, 1);
    assert.equal(written.clock.pending, 0);
  });
});
