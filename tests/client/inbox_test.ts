/**
 * The inbox on its own: held messages, the handler, iterators and their bounded queues,
 * back-pressure on the read loop, acknowledgement once every consumer took a message, and
 * closing. Then what the client shows of it: an iterator made after the client closed.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Inbox } from "../../src/client/inbox.ts";
import type { Message } from "../../src/client/types.ts";
import type { MessageData } from "../../src/client/inbox.ts";
import { Deferred } from "../../src/_async.ts";
import { MqttError } from "../../src/errors.ts";
import { connected, settle, watch } from "./harness.ts";

/** A QoS 1 message whose payload is `text` and whose packet id is `packetId`. */
function message(packetId: number, text = `${packetId}`, topic = "a/b"): MessageData {
  return {
    topic,
    payload: new TextEncoder().encode(text),
    qos: 1,
    retain: false,
    dup: false,
    packetId,
  };
}

/** An inbox that records what it acknowledges and the errors it reports. */
function recorded(maxHeld?: number): { inbox: Inbox; acknowledged: number[]; errors: MqttError[] } {
  const acknowledged: number[] = [];
  const errors: MqttError[] = [];
  const inbox = new Inbox({
    acknowledge: (m) => acknowledged.push(m.packetId!),
    onError: (error) => errors.push(error),
    maxHeld,
  });
  return { inbox, acknowledged, errors };
}

/** The packet ids of the next `count` messages of `iterator`. */
async function take(iterator: AsyncIterator<Message>, count: number): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < count; i++) ids.push((await iterator.next()).value!.packetId!);
  return ids;
}

describe("Inbox", () => {
  test("Inbox - held messages go to the first iterator, in order, and are acknowledged as it yields them", async () => {
    const { inbox, acknowledged } = recorded();
    for (let id = 1; id <= 3; id++) assert.equal(inbox.deliver(message(id)), undefined);
    assert.deepEqual(acknowledged, []);
    const iterator = inbox.messages();
    assert.deepEqual(acknowledged, []);
    assert.deepEqual(await take(iterator, 2), [1, 2]);
    assert.deepEqual(acknowledged, [1, 2]);
    assert.deepEqual(await take(iterator, 1), [3]);
    assert.deepEqual(acknowledged, [1, 2, 3]);
  });

  test("Inbox - held messages that fill the first iterator reach it one queue at a time; newer ones wait behind them", async () => {
    const { inbox, acknowledged } = recorded();
    for (let id = 1; id <= 3; id++) inbox.deliver(message(id));
    const iterator = inbox.messages(undefined, { highWaterMark: 1 });
    // 1 fills the queue: 2 and 3 are still held, and a new message waits behind them.
    const newer = watch(inbox.deliver(message(4))!);
    await settle();
    assert.deepEqual(acknowledged, []);
    assert.equal(newer.settled, false);
    assert.deepEqual(await take(iterator, 4), [1, 2, 3, 4]);
    await newer.promise;
    assert.deepEqual(acknowledged, [1, 2, 3, 4]);
  });

  test("Inbox - at maxHeld the read loop waits until a consumer is attached", async () => {
    const { inbox, acknowledged } = recorded(2);
    assert.equal(inbox.deliver(message(1)), undefined);
    const full = watch(inbox.deliver(message(2))!);
    await settle();
    assert.equal(full.settled, false);
    const seen: number[] = [];
    inbox.setHandler((m) => {
      seen.push(m.packetId!);
    });
    await full.promise;
    assert.deepEqual(seen, [1, 2]);
    assert.deepEqual(acknowledged, [1, 2]);
  });

  test("Inbox - raising maxHeld lets a waiting read loop go on", async () => {
    const { inbox } = recorded(1);
    const full = watch(inbox.deliver(message(1))!);
    await settle();
    assert.equal(full.settled, false);
    inbox.maxHeld = 10;
    await full.promise;
  });

  test("Inbox - an iterator full at highWaterMark makes the read loop wait; what waits in it is acknowledged only once read", async () => {
    const { inbox, acknowledged } = recorded();
    const iterator = inbox.messages(undefined, { highWaterMark: 2 });
    assert.equal(inbox.deliver(message(1)), undefined);
    const full = watch(inbox.deliver(message(2))!);
    await settle();
    assert.deepEqual(acknowledged, []);
    assert.equal(full.settled, false);
    assert.deepEqual(await take(iterator, 1), [1]);
    await full.promise;
    assert.deepEqual(acknowledged, [1]);
    assert.deepEqual(await take(iterator, 1), [2]);
    assert.deepEqual(acknowledged, [1, 2]);
  });

  test("Inbox - a message is acknowledged once every matching iterator yielded it", async () => {
    const { inbox, acknowledged } = recorded();
    const roomy = inbox.messages("a/#");
    const tight = inbox.messages("+/b", { highWaterMark: 1 });
    const elsewhere = inbox.messages("c/#", { highWaterMark: 1 });
    const waiting = watch(inbox.deliver(message(1))!);
    await settle();
    assert.deepEqual(acknowledged, []);
    assert.deepEqual(await take(roomy, 1), [1]);
    await settle();
    assert.equal(waiting.settled, false, "the tight iterator is still full");
    assert.deepEqual(await take(tight, 1), [1]);
    await waiting.promise;
    assert.deepEqual(acknowledged, [1]);
    await elsewhere.return!();
  });

  test("Inbox - break out of for await detaches the iterator at once, lets a waiting read loop go on, and hands back what it had not yielded", async () => {
    const { inbox, acknowledged } = recorded();
    const iterator = inbox.messages(undefined, { highWaterMark: 1 });
    const first = watch(inbox.deliver(message(1))!);
    let second: ReturnType<typeof watch<void>> | undefined;
    for await (const m of iterator) {
      assert.equal(m.packetId, 1);
      await first.promise;
      // 2 fills the queue again: the read loop waits, until the loop leaves.
      second = watch(inbox.deliver(message(2))!);
      await settle();
      assert.equal(second.settled, false);
      break;
    }
    await second!.promise;
    // 2 was never yielded: handed back, not acknowledged.
    assert.deepEqual(acknowledged, [1]);
    // Detached: nobody is left, so the next message is held, not pushed into the dead queue.
    assert.equal(inbox.deliver(message(3)), undefined);
    assert.deepEqual(acknowledged, [1]);
    assert.deepEqual((await iterator.next()).done, true);
    // The next iterator gets what was handed back, then the newer one, in order.
    assert.deepEqual(await take(inbox.messages(), 2), [2, 3]);
    assert.deepEqual(acknowledged, [1, 2, 3]);
  });

  test("Inbox - return() ends a pending next() at once", async () => {
    const { inbox } = recorded();
    const iterator = inbox.messages();
    const pending = iterator.next();
    assert.deepEqual(await iterator.return!(), { value: undefined, done: true });
    assert.equal((await pending).done, true);
    assert.equal(inbox.deliver(message(1)), undefined);
    assert.equal((await iterator.next()).done, true);
  });

  test("Inbox - close ends every iterator after what it has queued, and a waiting read loop goes on", async () => {
    const { inbox } = recorded();
    const iterator = inbox.messages(undefined, { highWaterMark: 2 });
    const waiting = inbox.messages("x/#", { highWaterMark: 1 });
    const pending = waiting.next();
    inbox.deliver(message(1));
    const full = watch(inbox.deliver(message(2))!);
    inbox.close();
    await full.promise;
    assert.equal(inbox.closed, true);
    assert.deepEqual(await take(iterator, 2), [1, 2]);
    assert.equal((await iterator.next()).done, true);
    assert.equal((await pending).done, true);
  });

  test("Inbox - an iterator made after close ends at once", async () => {
    const { inbox } = recorded();
    inbox.close();
    const iterator = inbox.messages("a/#");
    assert.deepEqual(await iterator.next(), { value: undefined, done: true });
    const seen: Message[] = [];
    for await (const m of inbox.messages()) seen.push(m);
    assert.deepEqual(seen, []);
  });

  test("Inbox - a handler's promise holds back the acknowledgement and the read loop; its failure is reported, the message still acknowledged", async () => {
    const { inbox, acknowledged, errors } = recorded();
    const gate = new Deferred<void>();
    inbox.setHandler(() => gate.promise);
    const waiting = watch(inbox.deliver(message(1))!);
    await settle();
    assert.deepEqual(acknowledged, []);
    assert.equal(waiting.settled, false);
    gate.reject(new Error("boom"));
    await waiting.promise;
    assert.deepEqual(acknowledged, [1]);
    assert.equal(errors.length, 1);
    assert.match(errors[0].message, /the publish handler threw: boom/);
  });

  test("Inbox - a handler that throws: reported, acknowledged, no wait", () => {
    const { inbox, acknowledged, errors } = recorded();
    inbox.setHandler(() => {
      throw new Error("boom");
    });
    assert.equal(inbox.deliver(message(1)), undefined);
    assert.deepEqual(acknowledged, [1]);
    assert.ok(errors[0] instanceof MqttError);
    assert.ok(errors[0].cause instanceof Error);
  });
});

describe("Inbox acknowledgement modes", () => {
  test("Inbox manual - an iterator's message is acknowledged on ack(), not when yielded; a second ack() does nothing", async () => {
    const { inbox, acknowledged } = recorded();
    const iterator = inbox.messages(undefined, { ack: "manual" });
    inbox.deliver(message(1));
    inbox.deliver(message(2));
    const [first, second] = [(await iterator.next()).value!, (await iterator.next()).value!];
    assert.deepEqual(acknowledged, []);
    second.ack();
    assert.deepEqual(acknowledged, [2]);
    second.ack();
    first.ack();
    assert.deepEqual(acknowledged, [2, 1]);
  });

  test("Inbox manual - a handler's message is acknowledged on ack(), also after the handler returned; a handler that throws leaves it unacknowledged", () => {
    const { inbox, acknowledged, errors } = recorded();
    const kept: Message[] = [];
    inbox.setHandler((m) => {
      kept.push(m);
      if (m.packetId === 2) throw new Error("boom");
    }, { ack: "manual" });
    assert.equal(inbox.deliver(message(1)), undefined);
    assert.equal(inbox.deliver(message(2)), undefined);
    assert.deepEqual(acknowledged, []);
    assert.equal(errors.length, 1);
    kept[0].ack();
    assert.deepEqual(acknowledged, [1]);
  });

  test("Inbox manual - a handler's promise still holds back the next message", async () => {
    const { inbox, acknowledged } = recorded();
    const gate = new Deferred<void>();
    inbox.setHandler((m) => {
      m.ack();
      return gate.promise;
    }, { ack: "manual" });
    const waiting = watch(inbox.deliver(message(1))!);
    await settle();
    assert.deepEqual(acknowledged, [1]);
    assert.equal(waiting.settled, false);
    gate.resolve();
    await waiting.promise;
  });

  test("Inbox auto - ack() does nothing: the message is acknowledged when taken", async () => {
    const { inbox, acknowledged } = recorded();
    const iterator = inbox.messages(undefined, { highWaterMark: 2 });
    inbox.deliver(message(1));
    inbox.deliver(message(2));
    assert.deepEqual(acknowledged, []);
    const first = (await iterator.next()).value!;
    first.ack();
    assert.deepEqual(acknowledged, [1]);
  });

  test("Inbox mixed - an automatic handler and a manual iterator: acknowledged once both are done, each with its own object", async () => {
    const { inbox, acknowledged } = recorded();
    let handled: Message | undefined;
    inbox.setHandler((m) => {
      handled = m;
    });
    const iterator = inbox.messages(undefined, { ack: "manual" });
    inbox.deliver(message(1));
    const read = (await iterator.next()).value!;
    assert.notEqual(read, handled);
    assert.equal(read.packetId, 1);
    // The handler's object does not acknowledge for the manual iterator.
    handled!.ack();
    assert.deepEqual(acknowledged, []);
    read.ack();
    assert.deepEqual(acknowledged, [1]);
  });

  test("Inbox mixed - two manual iterators: acknowledged once each has called ack() on its own object", async () => {
    const { inbox, acknowledged } = recorded();
    const one = inbox.messages("a/#", { ack: "manual" });
    const two = inbox.messages("+/b", { ack: "manual" });
    inbox.deliver(message(1));
    const [a, b] = [(await one.next()).value!, (await two.next()).value!];
    assert.notEqual(a, b);
    a.ack();
    a.ack();
    assert.deepEqual(acknowledged, []);
    b.ack();
    assert.deepEqual(acknowledged, [1]);
  });

  test("Inbox mixed - a message no attached consumer's filter matches is acknowledged at once", () => {
    const { inbox, acknowledged } = recorded();
    const other = inbox.messages("c/#", { ack: "manual" });
    assert.equal(inbox.deliver(message(1)), undefined);
    assert.deepEqual(acknowledged, [1]);
    other.return!();
  });

  test("Inbox leaving early - what another consumer took is acknowledged when the iterator that had not yielded it leaves", async () => {
    const { inbox, acknowledged } = recorded();
    const seen: number[] = [];
    inbox.setHandler((m) => void seen.push(m.packetId!));
    const iterator = inbox.messages();
    inbox.deliver(message(1));
    inbox.deliver(message(2));
    assert.deepEqual(seen, [1, 2]);
    assert.deepEqual(acknowledged, []);
    await iterator.return!();
    assert.deepEqual(acknowledged, [1, 2]);
  });

  test("Inbox leaving early - a manual iterator hands back what it had not yielded; what it yielded it can still ack()", async () => {
    const { inbox, acknowledged } = recorded();
    const iterator = inbox.messages(undefined, { ack: "manual" });
    for (let id = 1; id <= 4; id++) inbox.deliver(message(id));
    const first = (await iterator.next()).value!;
    await iterator.return!();
    first.ack();
    assert.deepEqual(acknowledged, [1]);
    const next = inbox.messages(undefined, { ack: "manual" });
    const again = await take(next, 3);
    assert.deepEqual(again, [2, 3, 4]);
    assert.deepEqual(acknowledged, [1]);
  });

  test("Inbox leaving early - what is handed back waits for a consumer that matches it, in arrival order, before newer messages", async () => {
    const { inbox, acknowledged } = recorded();
    const left = inbox.messages("a/#");
    const stays = inbox.messages("c/#");
    inbox.deliver(message(1));
    inbox.deliver(message(2, "2", "c/d"));
    inbox.deliver(message(3));
    await left.return!();
    // 1 and 3 wait; 2 is still in the other iterator.
    inbox.deliver(message(4, "4", "c/d"));
    const late = inbox.messages("x/#");
    assert.deepEqual(acknowledged, []);
    assert.deepEqual(await take(stays, 2), [2, 4]);
    assert.deepEqual(acknowledged, [2, 4]);
    // Neither the iterator still attached nor one with another filter gets them.
    await late.return!();
    const next = inbox.messages("a/#");
    assert.deepEqual(await take(next, 2), [1, 3]);
    assert.deepEqual(acknowledged, [2, 4, 1, 3]);
    await stays.return!();
    await next.return!();
  });

  test("Inbox leaving early - handed back while the client reads on with nobody attached: the next iterator gets everything, in order", async () => {
    const { inbox, acknowledged } = recorded();
    const first = inbox.messages(undefined, { highWaterMark: 3 });
    for (let id = 1; id <= 3; id++) inbox.deliver(message(id));
    assert.deepEqual(await take(first, 1), [1]);
    await first.return!();
    for (let id = 4; id <= 6; id++) assert.equal(inbox.deliver(message(id)), undefined);
    const second = inbox.messages();
    assert.deepEqual(await take(second, 5), [2, 3, 4, 5, 6]);
    assert.deepEqual(acknowledged, [1, 2, 3, 4, 5, 6]);
  });
});

describe("Inbox in the client", () => {
  test("messages() after the client closed: the iterator ends at once", async () => {
    const { client, broker } = await connected(4);
    await Promise.all([client.disconnect(), broker.closed()]);
    assert.deepEqual(await client.messages().next(), { value: undefined, done: true });
  });

  test("messages(): iterators end when the client closes; what they queued can still be read", async () => {
    const { client, broker } = await connected(4);
    const iterator = client.messages();
    await broker.send("30 07 00 03 61 2f 62 68 69");
    await Promise.all([client.disconnect(), broker.closed()]);
    const topics: string[] = [];
    for await (const m of iterator) topics.push(m.topic);
    assert.deepEqual(topics, ["a/b"]);
  });
});
