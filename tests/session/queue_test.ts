/**
 * The queue of publishes waiting to be sent, in the session: bounded by bytes, not by a count a
 * loop of publishes trips over; what its refusal says; when a publish counts as waiting.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { LimitError } from "../../src/errors.ts";
import type { PublishPacket, QoS } from "../../src/packet/types.ts";
import { Session, type SessionOptions } from "../../src/session/session.ts";
import { queueBounds, queueHasRoom, queueRefusal } from "../../src/session/limits.ts";

const encoder = new TextEncoder();

function message(qos: QoS, payload = ""): PublishPacket {
  return {
    type: "publish",
    topic: "t",
    payload: encoder.encode(payload),
    qos,
    retain: false,
    dup: false,
  };
}

function connectedSession(
  options: Partial<SessionOptions> = {},
): Session<number> {
  const session = new Session<number>({
    protocolVersion: 4,
    clientId: "c",
    clean: true,
    keepalive: 0,
    ...options,
  });
  session.connect(0);
  session.receive({ type: "connack", sessionPresent: false, reasonCode: 0 }, 0);
  session.takeOutbox(0);
  return session;
}

describe("the queue of publishes waiting to be sent", () => {
  test("Session with default options: 20,000 QoS 1 and 20,000 QoS 2 publishes waiting behind a full window are all taken", () => {
    const session = connectedSession();
    for (let i = 0; i < 20_000; i++) {
      session.publish(message(1, "0123456789"), i);
    }
    for (let i = 0; i < 20_000; i++) {
      session.publish(message(2, "0123456789"), i);
    }
    assert.equal(session.inflightCount, 20);
    assert.equal(session.waitingCount, 39_980);
    assert.equal(session.waitingBytes, 399_800);
  });

  test("Session default bounds: no bound by count, 64 MiB, a high-water mark of 1 MiB", () => {
    assert.deepEqual(connectedSession().queueBounds, {
      maxMessages: Infinity,
      maxBytes: 64 * 1024 * 1024,
      highWaterMark: 1024 * 1024,
    });
  });

  test("Session a publish past maxQueuedBytes throws LimitError naming queue.maxBytes; nothing changes", () => {
    const session = connectedSession({ inflightWindow: 1, maxQueuedBytes: 10 });
    session.publish(message(1, "in flight, not counted"), 0);
    session.publish(message(1, "123456"), 1);
    session.publish(message(2, "1234"), 2);
    assert.equal(session.hasQueueRoom(0), true);
    assert.equal(session.hasQueueRoom(1), false);
    assert.throws(() => session.publish(message(1, "x"), 3), {
      name: "LimitError",
      message:
        "the queue of operations waiting to be sent would hold 11 bytes, more than queue.maxBytes (10); raise queue.maxBytes, or wait for room with client.ready() or client.writable()",
    });
    assert.equal(session.waitingCount, 2);
    assert.equal(session.waitingBytes, 10);
    // QoS 0 does not wait while connected: it goes at once.
    session.publish(message(0, "x"), 4);
    assert.equal(session.waitingBytes, 10);
  });

  test("Session the first publish to wait for a full window is held to the bound too", () => {
    const session = connectedSession({ inflightWindow: 1, maxQueuedBytes: 5 });
    session.publish(message(1, "large, but it goes at once"), 0);
    assert.throws(() => session.publish(message(1, "123456"), 1), LimitError);
    assert.equal(session.waitingCount, 0);
    session.publish(message(1, "12345"), 2);
    assert.equal(session.waitingBytes, 5);
  });

  test("Session hasQueueRoom follows the count bound when one is given", () => {
    const session = connectedSession({
      inflightWindow: 1,
      maxQueuedMessages: 2,
    });
    session.publish(message(1), 0);
    session.publish(message(1), 1);
    assert.equal(session.hasQueueRoom(0), true);
    session.publish(message(1), 2);
    assert.equal(session.hasQueueRoom(0), false);
    assert.throws(() => session.publish(message(1), 3), LimitError);
  });

  test("queueBounds: the high-water mark is never more than maxBytes; bounds below 0 are refused", () => {
    assert.deepEqual(queueBounds(5, 100, 200), {
      maxMessages: 5,
      maxBytes: 100,
      highWaterMark: 100,
    });
    assert.deepEqual(queueBounds(undefined, undefined, 10).highWaterMark, 10);
    assert.throws(() => queueBounds(-1, undefined, undefined), RangeError);
    assert.throws(
      () => queueBounds(undefined, Number.NaN, undefined),
      RangeError,
    );
    assert.throws(() => queueBounds(undefined, undefined, 0), RangeError);
  });

  test("queueRefusal and queueHasRoom agree", () => {
    const bounds = { maxMessages: 3, maxBytes: 10, highWaterMark: 5 };
    for (
      const [operations, queued, bytes] of [[0, 0, 0], [2, 9, 1], [2, 9, 2], [
        3,
        0,
        0,
      ]]
    ) {
      assert.equal(
        queueHasRoom(bounds, operations, queued, bytes),
        queueRefusal(bounds, operations, 0, queued, bytes) === undefined,
        `${operations} operations, ${queued} + ${bytes} bytes`,
      );
    }
  });
});
