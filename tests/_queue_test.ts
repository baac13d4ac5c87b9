import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Queue } from "../src/_queue.ts";
import { mulberry32 } from "./helpers/fault_proxy.ts";

/** Takes every item, front first. */
function drain<T>(queue: Queue<T>): T[] {
  const items: T[] = [];
  for (let item = queue.shift(); item !== undefined; item = queue.shift()) items.push(item);
  return items;
}

describe("Queue", () => {
  test("Queue - an empty queue has nothing to peek at or take", () => {
    const queue = new Queue<number>();
    assert.equal(queue.length, 0);
    assert.equal(queue.peek(), undefined);
    assert.equal(queue.shift(), undefined);
    assert.equal(queue.at(0), undefined);
    assert.equal(queue.indexOf(1), -1);
    assert.deepEqual([...queue], []);
    // Taking from an empty queue leaves it usable.
    queue.push(1);
    assert.equal(queue.length, 1);
    assert.equal(queue.shift(), 1);
  });

  test("Queue - items come out in the order they went in", () => {
    const queue = new Queue<number>();
    for (let i = 0; i < 10; i++) queue.push(i);
    assert.equal(queue.length, 10);
    assert.deepEqual([...queue], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual(drain(queue), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(queue.length, 0);
  });

  test("Queue - peek shows the front and leaves it there", () => {
    const queue = new Queue<string>();
    queue.push("a");
    queue.push("b");
    assert.equal(queue.peek(), "a");
    assert.equal(queue.peek(), "a");
    assert.equal(queue.length, 2);
    assert.equal(queue.shift(), "a");
    assert.equal(queue.peek(), "b");
    assert.equal(queue.shift(), "b");
    assert.equal(queue.peek(), undefined);
  });

  test("Queue - at, set and indexOf count from the front, after items were taken", () => {
    const queue = new Queue<string>();
    for (const item of ["a", "b", "c", "d"]) queue.push(item);
    queue.shift();
    assert.equal(queue.at(0), "b");
    assert.equal(queue.at(2), "d");
    assert.equal(queue.at(3), undefined);
    assert.equal(queue.at(-1), undefined, "a taken item is not readable");
    assert.equal(queue.indexOf("c"), 1);
    assert.equal(queue.indexOf("a"), -1, "a taken item is not found");
    queue.set(1, "C");
    assert.deepEqual([...queue], ["b", "C", "d"]);
    assert.throws(() => queue.set(3, "e"), RangeError);
    assert.throws(() => queue.set(-1, "e"), RangeError);
    assert.deepEqual([...queue], ["b", "C", "d"], "a refused set changes nothing");
  });

  test("Queue - clear empties it, and it fills again from the start", () => {
    const queue = new Queue<number>();
    for (let i = 0; i < 5; i++) queue.push(i);
    queue.shift();
    queue.clear();
    assert.equal(queue.length, 0);
    assert.equal(queue.peek(), undefined);
    queue.push(7);
    assert.deepEqual([...queue], [7]);
    assert.equal(queue.at(0), 7);
  });

  test("Queue - an emptied queue fills again, after a short burst and after a long one", () => {
    const queue = new Queue<number>();
    for (const burst of [3, 200, 1, 5000, 2]) {
      for (let i = 0; i < burst; i++) queue.push(i);
      assert.equal(queue.length, burst);
      assert.deepEqual(drain(queue), Array.from({ length: burst }, (_, i) => i));
      assert.equal(queue.length, 0);
      assert.equal(queue.peek(), undefined);
      assert.equal(queue.at(0), undefined);
      assert.equal(queue.indexOf(0), -1, "a taken item is not found");
    }
  });

  test("Queue - items pushed while iterating are seen", () => {
    const queue = new Queue<number>();
    queue.push(1);
    const seen: number[] = [];
    for (const item of queue) {
      seen.push(item);
      if (item < 3) queue.push(item + 1);
    }
    assert.deepEqual(seen, [1, 2, 3]);
  });

  test("Queue - compacting a long queue that never empties loses and reorders nothing", () => {
    // One in, one out, with a backlog: the head runs far past the compaction threshold
    // (1,024) many times while the queue never empties.
    const queue = new Queue<number>();
    const backlog = 1500;
    for (let i = 0; i < backlog; i++) queue.push(i);
    let next = 0;
    for (let i = backlog; i < 20_000; i++) {
      queue.push(i);
      assert.equal(queue.shift(), next++);
      assert.equal(queue.length, backlog);
      assert.equal(queue.peek(), next);
      assert.equal(queue.at(backlog - 1), i);
    }
    assert.equal(queue.indexOf(next + 10), 10);
    assert.deepEqual(drain(queue), Array.from({ length: backlog }, (_, i) => next + i));
  });

  test("Queue - taking a long queue down to one item compacts it and keeps the rest", () => {
    const queue = new Queue<number>();
    for (let i = 0; i < 5000; i++) queue.push(i);
    for (let i = 0; i < 4999; i++) assert.equal(queue.shift(), i);
    assert.equal(queue.length, 1);
    assert.equal(queue.at(0), 4999);
    queue.push(5000);
    assert.deepEqual([...queue], [4999, 5000]);
    assert.deepEqual(drain(queue), [4999, 5000]);
  });

  test("Queue - many interleaved pushes, takes, sets and clears match an array", () => {
    const random = mulberry32(0x5eed);
    const queue = new Queue<number>();
    let model: number[] = [];
    let counter = 0;
    for (let step = 0; step < 60_000; step++) {
      // Phases of 2,000 steps that grow the queue past the compaction threshold (1,024), then
      // 4,000 that mostly take from it, so the head runs far and the array is compacted, emptied
      // and refilled many times.
      const growing = step % 6000 < 2000;
      const roll = random();
      if (roll < (growing ? 0.6 : 0.15)) {
        const burst = 1 + Math.floor(random() * 3);
        for (let i = 0; i < burst; i++) {
          queue.push(counter);
          model.push(counter++);
        }
      } else if (roll < 0.95) {
        assert.equal(queue.peek(), model[0]);
        assert.equal(queue.shift(), model.shift());
      } else if (roll < 0.999) {
        if (model.length > 0) {
          const index = Math.floor(random() * model.length);
          assert.equal(queue.at(index), model[index]);
          assert.equal(queue.indexOf(model[index]), index);
          queue.set(index, -model[index] - 1);
          model[index] = -model[index] - 1;
        }
      } else {
        queue.clear();
        model = [];
      }
      assert.equal(queue.length, model.length);
    }
    assert.deepEqual([...queue], model);
    assert.deepEqual(drain(queue), model);
  });
});
