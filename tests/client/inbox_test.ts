/**
 * The inbox on its own: held messages, the handler, iterators and their bounded queues,
 * back-pressure on the read loop, acknowledgement once every consumer took a message, and
 * closing. Then what the client shows of it: an iterator made after the client closed.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Inbox } from "../../src/client/inbox.ts";
import type { Message } from "../../src/client/types.ts";
import { Deferred } from "../../src/_async.ts";
import { MqttError } from "../../src/errors.ts";
import { connected, settle, watch } from "./harness.ts";

/** A QoS 1 message whose payload is `text` and whose packet id is `packetId`. */
function message(packetId: number, text = `${packetId}`, topic = "a/b"): Message {
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
  test("Inbox - held messages go to the first iterator, in order, and are acknowledged only then", async () => {
    const { inbox, acknowledged } = recorded();
    for (let id = 1; id <= 3; id++) assert.equal(inbox.deliver(message(id)), undefined);
    assert.deepEqual(acknowledged, []);
    const iterator = inbox.messages();
    assert.deepEqual(acknowledged, [1, 2, 3]);
    assert.deepEqual(await take(iterator, 3), [1, 2, 3]);
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

  test("Inbox - an iterator full at highWaterMark makes the read loop wait and holds back the acknowledgement until it is read", async () => {
    const { inbox, acknowledged } = recorded();
    const iterator = inbox.messages(undefined, { highWaterMark: 2 });
    assert.equal(inbox.deliver(message(1)), undefined);
    const full = watch(inbox.deliver(message(2))!);
    await settle();
    assert.deepEqual(acknowledged, [1]);
    assert.equal(full.settled, false);
    assert.deepEqual(await take(iterator, 1), [1]);
    await full.promise;
    assert.deepEqual(acknowledged, [1, 2]);
  });

  test("Inbox - a message is acknowledged once every matching iterator took it into its queue", async () => {
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

  test("Inbox - break out of for await detaches the iterator at once and lets a waiting read loop go on", async () => {
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
    assert.deepEqual(acknowledged, [1, 2]);
    // Detached: nobody is left, so the next message is held, not pushed into the dead queue.
    assert.equal(inbox.deliver(message(3)), undefined);
    assert.deepEqual(acknowledged, [1, 2]);
    assert.deepEqual((await iterator.next()).done, true);
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
