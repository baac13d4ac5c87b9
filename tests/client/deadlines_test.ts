import { test } from "node:test";
import assert from "node:assert/strict";
import { type Deadline, Deadlines, settlesWithin } from "../../src/client/deadlines.ts";
import { FakeClock } from "../helpers/fake_clock.ts";

function deadline(fired: string[], name: string): Deadline {
  return { at: Infinity, slot: -1, due: () => fired.push(name) };
}

test("Deadlines - many deadlines, one timer, each called at its own time, in order", async () => {
  const clock = new FakeClock();
  const deadlines = Deadlines.of(clock);
  const fired: string[] = [];
  const times = [500, 100, 300, 100, 900, 200];
  const all = times.map((at, i) => {
    const d = deadline(fired, `${at}/${i}`);
    deadlines.schedule(d, at);
    return d;
  });
  assert.equal(deadlines.size, 6);
  assert.equal(clock.pending, 1, "one runtime timer for all of them");
  assert.equal(clock.nextAt, 100);
  await clock.advance(99);
  assert.deepEqual(fired, []);
  await clock.advance(1);
  assert.deepEqual(fired.sort(), ["100/1", "100/3"]);
  await clock.advance(1000);
  assert.deepEqual(fired.slice(2), ["200/5", "300/2", "500/0", "900/4"]);
  assert.equal(clock.pending, 0, "no timer once none is scheduled");
  assert.ok(all.every((d) => d.slot === -1 && d.at === Infinity));
});

test("Deadlines - moving a deadline earlier or later, and cancelling one", async () => {
  const clock = new FakeClock();
  const deadlines = Deadlines.of(clock);
  const fired: string[] = [];
  const a = deadline(fired, "a");
  const b = deadline(fired, "b");
  const c = deadline(fired, "c");
  deadlines.schedule(a, 100);
  deadlines.schedule(b, 200);
  deadlines.schedule(c, 300);
  deadlines.schedule(c, 50); // earlier: the timer follows it
  assert.equal(clock.nextAt, 50);
  deadlines.schedule(a, 400); // later
  deadlines.cancel(b);
  deadlines.cancel(b); // twice changes nothing
  assert.equal(deadlines.size, 2);
  await clock.advance(1000);
  assert.deepEqual(fired, ["c", "a"]);
  assert.equal(clock.pending, 0);
});

test("Deadlines - a deadline that schedules itself again when called", async () => {
  const clock = new FakeClock();
  const deadlines = Deadlines.of(clock);
  const times: number[] = [];
  const ping: Deadline = {
    at: Infinity,
    slot: -1,
    due: () => {
      times.push(clock.now());
      if (times.length < 3) deadlines.schedule(ping, clock.now() + 60_000);
    },
  };
  deadlines.schedule(ping, 60_000);
  await clock.advance(200_000);
  assert.deepEqual(times, [60_000, 120_000, 180_000]);
  assert.equal(clock.pending, 0);
});

test("settlesWithin - true once the promise fulfils, false when it rejects or the time is up, no timer left", async () => {
  const clock = new FakeClock();
  let resolveLate!: () => void;
  const late = new Promise<void>((resolve) => resolveLate = resolve);
  const results: boolean[] = [];
  const slow = settlesWithin(late, 1000, clock).then((ok) => void results.push(ok));
  assert.equal(await settlesWithin(Promise.resolve(), 1000, clock), true);
  assert.equal(await settlesWithin(Promise.reject(new Error("no")), 1000, clock), false);
  await clock.advance(999);
  assert.deepEqual(results, []);
  await clock.advance(1);
  await slow;
  assert.deepEqual(results, [false], "the time was up first");
  resolveLate();
  assert.equal(Deadlines.of(clock).size, 0);
  assert.equal(clock.pending, 0, "no timer once every wait has settled");
});

test("Deadlines - many waits one after the other keep one timer, which fires early and is set again", async () => {
  const clock = new FakeClock();
  const deadlines = Deadlines.of(clock);
  const fired: string[] = [];
  const waits = Array.from({ length: 100 }, (_, i) => deadline(fired, `w${i}`));
  for (const [i, wait] of waits.entries()) deadlines.schedule(wait, 1000 + i);
  assert.equal(clock.pending, 1);
  // The first ones go (as closes that settle in order): the timer stays set for the first.
  for (const wait of waits.slice(0, 99)) deadlines.cancel(wait);
  assert.equal(clock.pending, 1);
  assert.equal(clock.nextAt, 1000);
  await clock.advance(1000);
  assert.deepEqual(fired, [], "it fired early: nothing was due");
  assert.equal(clock.nextAt, 1099, "and was set again for the one left");
  await clock.advance(99);
  assert.deepEqual(fired, ["w99"]);
  assert.equal(clock.pending, 0);
});
