/**
 * Reconnecting, byte by byte: a dialer hands the client a new fake broker for every connection,
 * and the fake clock runs the backoff. Resending with DUP and PUBREL in order on a resumed
 * session, re-queueing and resubscribing on a lost one, the offline queue and its bounds, which
 * refusals stop reconnecting, and `disconnect()` during the backoff.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, type Dialer, isRetryable } from "../../src/client/reconnect.ts";
import { MqttClient } from "../../src/client/clients.ts";
import type { ClientOptions } from "../../src/client/types.ts";
import {
  ConnectionClosedError,
  ConnectionRefusedError,
  LimitError,
  ProtocolError,
} from "../../src/errors.ts";
import type { Packet, ProtocolVersion } from "../../src/packet/types.ts";
import { FakeBroker, FakeClock, nextEvent, recordEvents, settle, watch } from "./harness.ts";

/** A client whose every connection is a new fake broker, and the brokers as they are dialed. */
class Rig {
  readonly clock = new FakeClock();
  readonly brokers: FakeBroker[] = [];
  readonly client: MqttClient;
  readonly attempts: number[] = [];
  #waiting: ((broker: FakeBroker) => void)[] = [];
  refuseDial = false;

  constructor(readonly version: ProtocolVersion = 4) {
    const dial: Dialer = (_signal, attempt) => {
      this.attempts.push(attempt);
      if (this.refuseDial) return Promise.reject(new Error("connection refused"));
      const broker = new FakeBroker(version);
      this.brokers.push(broker);
      this.#waiting.shift()?.(broker);
      return Promise.resolve(broker.transport);
    };
    this.client = new MqttClient(dial);
  }

  /** The broker of the next connection the client dials. */
  nextBroker(): Promise<FakeBroker> {
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /** Connects the first time: CONNECT read, CONNACK (`connack`, or an accepting one) answered. */
  async start(
    options: ClientOptions = {},
    connack?: Packet & { type: "connack" },
  ): Promise<FakeBroker> {
    const next = this.nextBroker();
    const connecting = this.client.connect({
      clientId: "kite",
      keepalive: 0,
      clean: false,
      protocolVersion: this.version,
      clock: this.clock,
      reconnect: { minDelay: 100, maxDelay: 1000, random: () => 0 },
      ...options,
    });
    const broker = await next;
    await broker.accept(false, connack);
    await connecting;
    return broker;
  }

  /** Cuts the connection from the broker's side; resolves once the reconnection is scheduled. */
  async lose(broker: FakeBroker): Promise<void> {
    const scheduled = nextEvent(this.client, "reconnect");
    await broker.hangUp();
    await scheduled;
  }

  /** Waits for the backoff timer (the `reconnect` event sets it), then lets it fire. */
  async runBackoff(): Promise<void> {
    if (this.clock.nextAt === Infinity) await nextEvent(this.client, "reconnect");
    await this.clock.advance(this.clock.nextAt - this.clock.now());
  }

  /** Runs the backoff until the client dials again; answers CONNECT with `sessionPresent`. */
  async reconnect(sessionPresent: boolean): Promise<FakeBroker> {
    const next = this.nextBroker();
    await this.runBackoff();
    const broker = await next;
    await broker.accept(sessionPresent);
    return broker;
  }
}

/** Asserts that `operation` was refused at once with LimitError: not queued, not left pending. */
async function assertRefused(operation: Promise<unknown>): Promise<void> {
  const watched = watch(operation);
  await settle();
  assert.ok(
    watched.reason instanceof LimitError,
    `expected LimitError at once; the operation ${
      watched.settled ? `settled with ${watched.reason ?? watched.value}` : "is still pending"
    }`,
  );
}

describe("reconnect", () => {
  test("a resumed session re-sends the PUBLISH with DUP and the PUBREL, in their original order, with their packet ids [MQTT-4.4.0-1]", async () => {
    const rig = new Rig();
    const first = await rig.start();
    const qos1 = rig.client.publish("a", "one", { qos: 1 });
    const qos2 = rig.client.publish("b", "two", { qos: 2 });
    const p1 = await first.expect("publish");
    const p2 = await first.expect("publish");
    await first.sendPacket({ type: "pubrec", packetId: p2.packetId! });
    await first.expect("pubrel");
    const lost = nextEvent(rig.client, "disconnect");
    await rig.lose(first);
    const detail = (await lost).detail as { reconnecting: boolean };
    assert.equal(detail.reconnecting, true);
    assert.equal(rig.client.state, "reconnecting");

    const second = await rig.reconnect(true);
    const again1 = await second.expect("publish");
    assert.equal(again1.dup, true);
    assert.equal(again1.packetId, p1.packetId);
    assert.equal(new TextDecoder().decode(again1.payload), "one");
    const pubrel = await second.expect("pubrel");
    assert.equal(pubrel.packetId, p2.packetId);
    await second.sendPacket({ type: "puback", packetId: p1.packetId! });
    await second.sendPacket({ type: "pubcomp", packetId: p2.packetId! });
    await Promise.all([qos1, qos2]);
    await Promise.all([rig.client.disconnect(), second.closed()]);
  });

  test("a lost session: in-flight publishes go again as new messages, and the subscriptions are made again first", async () => {
    const rig = new Rig();
    const first = await rig.start();
    const subscribed = rig.client.subscribe("t/#", { qos: 1 });
    const subscribe = await first.expect("subscribe");
    await first.sendPacket({ type: "suback", packetId: subscribe.packetId, reasonCodes: [1] });
    await subscribed;
    const publish = rig.client.publish("a", "one", { qos: 2 });
    await first.expect("publish");
    await rig.lose(first);

    const second = await rig.reconnect(false);
    const again = await second.expect("subscribe");
    assert.deepEqual(again.subscriptions, [{ topicFilter: "t/#", qos: 1 }]);
    const resent = await second.expect("publish");
    assert.equal(resent.dup, false, "a new message to a broker without the session");
    await second.sendPacket({ type: "suback", packetId: again.packetId, reasonCodes: [1] });
    await second.sendPacket({ type: "pubrec", packetId: resent.packetId! });
    await second.expect("pubrel");
    await second.sendPacket({ type: "pubcomp", packetId: resent.packetId! });
    await publish;
    await Promise.all([rig.client.disconnect(), second.closed()]);
  });

  test("resubscribe: false does not subscribe again", async () => {
    const rig = new Rig();
    const first = await rig.start({ resubscribe: false });
    const subscribed = rig.client.subscribe("t/#");
    const subscribe = await first.expect("subscribe");
    await first.sendPacket({ type: "suback", packetId: subscribe.packetId, reasonCodes: [0] });
    await subscribed;
    await rig.lose(first);
    const second = await rig.reconnect(false);
    rig.client.publish("probe", "x");
    assert.equal((await second.expect("publish")).topic, "probe", "no SUBSCRIBE before it");
    await Promise.all([rig.client.disconnect(), second.closed()]);
  });

  test("publishes and subscriptions made while disconnected are queued in order and sent after reconnecting", async () => {
    const rig = new Rig();
    const first = await rig.start();
    await rig.lose(first);
    const sent = [
      rig.client.publish("q", "0"),
      rig.client.publish("q", "1", { qos: 1 }),
      rig.client.subscribe("s"),
      rig.client.publish("q", "2", { qos: 2 }),
    ];
    assert.deepEqual(rig.client.pending, { inflight: 0, waiting: 3 });
    const second = await rig.reconnect(true);
    const subscribe = await second.expect("subscribe");
    const payloads: string[] = [];
    for (let i = 0; i < 3; i++) {
      const publish = await second.expect("publish");
      payloads.push(new TextDecoder().decode(publish.payload));
      if (publish.qos === 1) {
        await second.sendPacket({ type: "puback", packetId: publish.packetId! });
      }
      if (publish.qos === 2) {
        await second.sendPacket({ type: "pubrec", packetId: publish.packetId! });
        await second.expect("pubrel");
        await second.sendPacket({ type: "pubcomp", packetId: publish.packetId! });
      }
    }
    assert.deepEqual(payloads, ["0", "1", "2"]);
    await second.sendPacket({ type: "suback", packetId: subscribe.packetId, reasonCodes: [0] });
    await Promise.all(sent);
    await Promise.all([rig.client.disconnect(), second.closed()]);
  });

  test("the offline queue is bounded by count and bytes: a full queue rejects at once with LimitError", async () => {
    const rig = new Rig();
    const first = await rig.start({ queue: { maxMessages: 2, maxBytes: 10 } });
    const disconnectEvent = nextEvent(rig.client, "disconnect");
    await first.hangUp();
    await disconnectEvent;
    const queued = [
      watch(rig.client.publish("q", "aaaa", { qos: 1 })),
      watch(rig.client.publish("q", "bbbb", { qos: 1 })),
    ];
    await assert.rejects(rig.client.publish("q", "c", { qos: 1 }), LimitError);
    assert.deepEqual(rig.client.pending, { inflight: 0, waiting: 2 });
    await rig.client.disconnect();
    for (const publish of queued) {
      await assert.rejects(publish.promise, ConnectionClosedError);
    }
  });

  test("the offline queue counts bytes too", async () => {
    const rig = new Rig();
    const first = await rig.start({ queue: { maxMessages: 100, maxBytes: 6 } });
    const disconnectEvent = nextEvent(rig.client, "disconnect");
    await first.hangUp();
    await disconnectEvent;
    const queued = watch(rig.client.publish("q", "aaaa", { qos: 1 }));
    await assert.rejects(rig.client.publish("q", "bbbb", { qos: 1 }), LimitError);
    await rig.client.disconnect();
    await assert.rejects(queued.promise, ConnectionClosedError);
  });

  test("subscribe and unsubscribe while disconnected count against queue.maxMessages: a full queue rejects them at once with LimitError", async () => {
    const rig = new Rig();
    const first = await rig.start({ queue: { maxMessages: 3 } });
    await rig.lose(first);
    const queued = [
      watch(rig.client.publish("q", "a", { qos: 1 })),
      watch(rig.client.subscribe("s", { qos: 1 })),
      watch(rig.client.unsubscribe("u")),
    ];
    await assertRefused(rig.client.subscribe("t"));
    await assertRefused(rig.client.unsubscribe("t"));
    await assertRefused(rig.client.publish("q", "b", { qos: 1 }));
    // What fitted goes out after the reconnect, and the queue is empty again.
    const second = await rig.reconnect(true);
    const subscribe = await second.expect("subscribe");
    assert.deepEqual(subscribe.subscriptions.map((s) => s.topicFilter), ["s"]);
    const unsubscribe = await second.expect("unsubscribe");
    assert.deepEqual(unsubscribe.topicFilters, ["u"]);
    const publish = await second.expect("publish");
    await second.sendPacket({ type: "suback", packetId: subscribe.packetId, reasonCodes: [1] });
    await second.sendPacket({ type: "unsuback", packetId: unsubscribe.packetId });
    await second.sendPacket({ type: "puback", packetId: publish.packetId! });
    await Promise.all(queued.map((operation) => operation.promise));
    await rig.lose(second);
    const again = [1, 2, 3].map((i) => watch(rig.client.subscribe(`again/${i}`)));
    await assertRefused(rig.client.subscribe("again/4"));
    await rig.client.disconnect();
    for (const operation of again) {
      await assert.rejects(operation.promise, ConnectionClosedError);
    }
  });

  test("subscribe and unsubscribe while disconnected count their topic filters against queue.maxBytes", async () => {
    const rig = new Rig();
    const first = await rig.start({ queue: { maxMessages: 100, maxBytes: 10 } });
    await rig.lose(first);
    // A SUBSCRIBE payload of 2 + 3 + 1 bytes: 6 of the 10.
    const subscribed = watch(rig.client.subscribe("abc"));
    // 2 + 3 more would make 11.
    await assertRefused(rig.client.unsubscribe("abc"));
    await assertRefused(rig.client.publish("q", "12345", { qos: 1 }));
    const published = watch(rig.client.publish("q", "1234", { qos: 1 }));
    await rig.client.disconnect();
    await assert.rejects(subscribed.promise, ConnectionClosedError);
    await assert.rejects(published.promise, ConnectionClosedError);
  });

  test("queue.qos0 'drop' refuses QoS 0 publishes while disconnected", async () => {
    const rig = new Rig();
    const first = await rig.start({ queue: { qos0: "drop" } });
    const disconnectEvent = nextEvent(rig.client, "disconnect");
    await first.hangUp();
    await disconnectEvent;
    await assert.rejects(rig.client.publish("q", "x"), ConnectionClosedError);
    assert.deepEqual(rig.client.pending, { inflight: 0, waiting: 0 });
    await rig.client.disconnect();
  });

  test("the backoff doubles from minDelay up to maxDelay, jittered by the random source, and resets after a connection", async () => {
    const rig = new Rig();
    const first = await rig.start({
      reconnect: { minDelay: 100, maxDelay: 500, random: () => 1 },
    });
    const events = recordEvents(rig.client, ["reconnect"]);
    rig.refuseDial = true;
    const reconnectEvent = nextEvent(rig.client, "reconnect");
    await first.hangUp();
    await reconnectEvent;
    for (let i = 0; i < 4; i++) await rig.runBackoff();
    const delays = events.map(([, detail]) => (detail as { delay: number }).delay);
    assert.deepEqual(delays.slice(0, 5), [200, 400, 500, 500, 500]);
    assert.deepEqual(rig.attempts, [0, 1, 2, 3, 4]);
    rig.refuseDial = false;
    const second = await rig.reconnect(true);
    const againEvent = nextEvent(rig.client, "reconnect");
    await second.hangUp();
    const after = await againEvent;
    assert.equal((after.detail as { attempt: number; delay: number }).attempt, 1);
    assert.equal((after.detail as { delay: number }).delay, 200);
    await rig.client.disconnect();
  });

  test("full jitter: with random 0 the wait is the minimum delay", async () => {
    const rig = new Rig();
    const first = await rig.start({
      reconnect: { minDelay: 250, maxDelay: 5000, random: () => 0 },
    });
    const reconnectEvent = nextEvent(rig.client, "reconnect");
    await first.hangUp();
    const event = await reconnectEvent;
    assert.equal((event.detail as { delay: number }).delay, 250);
    await rig.client.disconnect();
  });

  test("a refusal retrying cannot fix (bad user name or password) stops reconnecting and closes with ConnectionRefusedError", async () => {
    const rig = new Rig();
    const first = await rig.start();
    const errors = recordEvents(rig.client, ["error"]);
    await rig.lose(first);
    const next = rig.nextBroker();
    await rig.runBackoff();
    const second = await next;
    await second.expect("connect");
    const closed = nextEvent(rig.client, "disconnect");
    await second.send("20 02 00 04");
    const detail = (await closed).detail as { error: unknown; reconnecting: boolean };
    assert.equal(detail.reconnecting, false);
    assert.ok(detail.error instanceof ConnectionRefusedError);
    assert.equal(rig.client.state, "closed");
    assert.ok(errors.some(([, error]) => error instanceof ConnectionRefusedError));
  });

  test("topic aliases across a reconnect: the resent PUBLISH and the next ones carry the topic until the new connection knows the alias [MQTT-3.3.2-7]", async () => {
    const rig = new Rig(5);
    const connack = (sessionPresent: boolean) => ({
      type: "connack" as const,
      sessionPresent,
      reasonCode: 0,
      properties: { topicAliasMaximum: 5 },
    });
    const first = await rig.start({}, connack(false));
    const alias = { topicAlias: 1 };
    const declared = rig.client.publish("sensors/temperature", "1", { qos: 1, properties: alias });
    assert.equal((await first.expect("publish")).topic, "sensors/temperature");
    await first.send("40 03 00 01 00");
    await declared;
    const used = watch(rig.client.publish("", "2", { qos: 1, properties: alias }));
    const short = await first.expect("publish");
    assert.equal(short.topic, "");
    assert.equal(short.properties?.topicAlias, 1);

    await rig.lose(first);
    const nextBroker = rig.nextBroker();
    await rig.runBackoff();
    const second = await nextBroker;
    await second.expect("connect");
    await second.sendPacket(connack(true));
    const resent = await second.expect("publish");
    assert.equal(resent.topic, "sensors/temperature", "the new connection knows no alias yet");
    assert.equal(resent.properties?.topicAlias, 1);
    assert.equal(resent.dup, true);
    assert.equal(resent.packetId, short.packetId);
    await second.send("40 03 00 02 00");
    await used.promise;
    const after = rig.client.publish("", "3", { qos: 1, properties: alias });
    assert.equal((await second.expect("publish")).topic, "", "the resend set the alias again");
    await second.send("40 03 00 03 00");
    await after;
    await assert.rejects(
      rig.client.publish("", "x", { qos: 1, properties: { topicAlias: 2 } }),
      LimitError,
    );
    await rig.client.disconnect();
  });

  test('topicAliases "auto" across a reconnect: a new connection forgets every alias; the resent PUBLISHes carry their topic first [MQTT-3.3.2-7]', async () => {
    const rig = new Rig(5);
    const connack = (sessionPresent: boolean, topicAliasMaximum: number) => ({
      type: "connack" as const,
      sessionPresent,
      reasonCode: 0,
      properties: { topicAliasMaximum },
    });
    const topic = "sensors/room-12/temperature";
    const first = await rig.start({ topicAliases: "auto" }, connack(false, 5));
    const one = watch(rig.client.publish(topic, "1", { qos: 1 }));
    const two = watch(rig.client.publish(topic, "2", { qos: 1 }));
    const sent = [await first.expect("publish"), await first.expect("publish")];
    assert.deepEqual(sent.map((p) => [p.topic, p.properties?.topicAlias]), [[topic, 1], ["", 1]]);

    await rig.lose(first);
    const nextBroker = rig.nextBroker();
    await rig.runBackoff();
    const second = await nextBroker;
    await second.expect("connect");
    await second.sendPacket(connack(true, 5));
    const resent = [await second.expect("publish"), await second.expect("publish")];
    assert.deepEqual(
      resent.map((p) => [p.topic, p.properties?.topicAlias, p.dup, p.packetId]),
      [[topic, 1, true, sent[0].packetId], ["", 1, true, sent[1].packetId]],
    );
    await second.send("40 03 00 01 00");
    await second.send("40 03 00 02 00");
    await Promise.all([one.promise, two.promise]);
    await rig.client.publish(topic, "3");
    const after = await second.expect("publish");
    assert.deepEqual([after.topic, after.properties?.topicAlias], ["", 1]);

    // A lost session on a server that allows no aliases: the in-flight one goes with its topic.
    const three = watch(rig.client.publish(topic, "4", { qos: 1 }));
    await second.expect("publish");
    await rig.lose(second);
    const thirdBroker = rig.nextBroker();
    await rig.runBackoff();
    const third = await thirdBroker;
    await third.expect("connect");
    await third.sendPacket({ type: "connack", sessionPresent: false, reasonCode: 0 });
    const again = await third.expect("publish");
    assert.deepEqual([again.topic, again.properties?.topicAlias, again.dup], [
      topic,
      undefined,
      false,
    ]);
    await third.sendPacket({ type: "puback", packetId: again.packetId! });
    await three.promise;
    await rig.client.disconnect();
  });

  test("topic aliases under a new server's limits: a resent PUBLISH goes without an alias it no longer allows; the size check counts the whole topic", async () => {
    const rig = new Rig(5);
    const first = await rig.start({}, {
      type: "connack",
      sessionPresent: false,
      reasonCode: 0,
      properties: { topicAliasMaximum: 10, maximumPacketSize: 80 },
    });
    const topic = "t".repeat(40);
    const declared = watch(
      rig.client.publish(topic, "1", { qos: 1, properties: { topicAlias: 5 } }),
    );
    assert.equal((await first.expect("publish")).properties?.topicAlias, 5);
    // 40 bytes of payload fit with the empty topic, but not with the whole one, which is how the
    // PUBLISH goes on a connection that does not know the alias yet: refused now, not on the wire.
    await assert.rejects(
      rig.client.publish("", "p".repeat(40), { qos: 1, properties: { topicAlias: 5 } }),
      LimitError,
    );

    await rig.lose(first);
    const nextBroker = rig.nextBroker();
    await rig.runBackoff();
    const second = await nextBroker;
    await second.expect("connect");
    await second.sendPacket({ type: "connack", sessionPresent: true, reasonCode: 0 });
    const resent = await second.expect("publish");
    assert.equal(resent.topic, topic);
    assert.equal(resent.dup, true);
    assert.equal(resent.properties?.topicAlias, undefined, "this server allows no alias");
    await second.send("40 03 00 01 00");
    await declared.promise;
    await rig.client.disconnect();
  });

  test("a refusal worth retrying (server unavailable) is retried", async () => {
    const rig = new Rig();
    const first = await rig.start();
    await rig.lose(first);
    const next = rig.nextBroker();
    await rig.runBackoff();
    const second = await next;
    await second.expect("connect");
    const again = nextEvent(rig.client, "reconnect");
    await second.send("20 02 00 03");
    await again;
    assert.equal(rig.client.state, "reconnecting");
    await rig.client.disconnect();
  });

  test("the backoff never waits longer than a timer holds (2^31 - 1 ms): it would fire at once", () => {
    const delay = backoffDelay(40, { minDelay: 1000, maxDelay: 1e12, random: () => 1 });
    assert.equal(delay, 2_147_483_647);
  });

  test("the retry decision: final refusals, session taken over and protocol errors stop; lost connections go on", () => {
    assert.equal(isRetryable(new ConnectionRefusedError(4, 4), 4), false);
    assert.equal(isRetryable(new ConnectionRefusedError(3, 4), 4), true);
    assert.equal(isRetryable(new ConnectionRefusedError(0x87, 5), 5), false);
    assert.equal(isRetryable(new ConnectionRefusedError(0x89, 5), 5), true);
    assert.equal(isRetryable(new ProtocolError("bad"), 4), false);
    assert.equal(isRetryable(new ConnectionClosedError("lost"), 4), true);
  });

  test("shouldRetry overrides the decision", async () => {
    const rig = new Rig();
    const first = await rig.start({
      reconnect: { minDelay: 100, random: () => 0, shouldRetry: () => false },
    });
    const closed = nextEvent(rig.client, "disconnect");
    await first.hangUp();
    assert.equal(((await closed).detail as { reconnecting: boolean }).reconnecting, false);
    assert.equal(rig.client.state, "closed");
  });

  test("attempts bounds the attempts after a loss", async () => {
    const rig = new Rig();
    const first = await rig.start({ reconnect: { minDelay: 100, attempts: 2, random: () => 0 } });
    rig.refuseDial = true;
    const closed = new Promise<void>((resolve) => {
      rig.client.addEventListener("disconnect", (event) => {
        if (!(event as CustomEvent<{ reconnecting: boolean }>).detail.reconnecting) resolve();
      });
    });
    const reconnectEvent = nextEvent(rig.client, "reconnect");
    await first.hangUp();
    await reconnectEvent;
    for (let i = 0; i < 2; i++) await rig.runBackoff();
    await closed;
    assert.equal(rig.client.state, "closed");
    assert.deepEqual(rig.attempts, [0, 1, 2]);
  });

  test("disconnect() during the backoff wait stops everything, leaves no timer, and rejects what was queued", async () => {
    const rig = new Rig();
    const first = await rig.start();
    const reconnectEvent = nextEvent(rig.client, "reconnect");
    await first.hangUp();
    await reconnectEvent;
    const queued = watch(rig.client.publish("q", "x", { qos: 1 }));
    await rig.client.disconnect();
    assert.equal(rig.client.state, "closed");
    assert.equal(rig.clock.pending, 0, "no timer left");
    await assert.rejects(queued.promise, ConnectionClosedError);
    assert.equal(rig.brokers.length, 1, "no further dial");
  });

  test("disconnect() while a reconnection waits for CONNACK closes that connection too", async () => {
    const rig = new Rig();
    const first = await rig.start();
    await rig.lose(first);
    const next = rig.nextBroker();
    await rig.runBackoff();
    const second = await next;
    await second.expect("connect");
    await rig.client.disconnect();
    await second.closed();
    assert.equal(rig.client.state, "closed");
    assert.equal(rig.clock.pending, 0);
  });

  test("incoming QoS 2 exactly once across a reconnect: the re-sent PUBLISH is answered with PUBREC, not delivered again", async () => {
    const rig = new Rig();
    const first = await rig.start();
    const received: string[] = [];
    rig.client.setPublishHandler((message) => {
      received.push(new TextDecoder().decode(message.payload));
    });
    await first.sendPacket({
      type: "publish",
      topic: "t",
      payload: new TextEncoder().encode("once"),
      qos: 2,
      retain: false,
      dup: false,
      packetId: 7,
    });
    assert.equal((await first.expect("pubrec")).packetId, 7);
    await rig.lose(first);
    const second = await rig.reconnect(true);
    await second.sendPacket({
      type: "publish",
      topic: "t",
      payload: new TextEncoder().encode("once"),
      qos: 2,
      retain: false,
      dup: true,
      packetId: 7,
    });
    assert.equal((await second.expect("pubrec")).packetId, 7);
    await second.sendPacket({ type: "pubrel", packetId: 7 });
    assert.equal((await second.expect("pubcomp")).packetId, 7);
    await settle();
    assert.deepEqual(received, ["once"]);
    await Promise.all([rig.client.disconnect(), second.closed()]);
  });

  test("setCredentials: the next CONNECT carries the new user name and password", async () => {
    const rig = new Rig();
    const first = await rig.start({ username: "u", password: "old" });
    rig.client.setCredentials("u", "fresh-token");
    await rig.lose(first);
    const next = rig.nextBroker();
    await rig.runBackoff();
    const second = await next;
    const connect = await second.expect("connect");
    assert.equal(connect.username, "u");
    assert.equal(new TextDecoder().decode(connect.password), "fresh-token");
    await rig.client.disconnect();
  });

  test("a client over a transport it was given does not reconnect", async () => {
    const broker = new FakeBroker(4);
    const client = new MqttClient(broker.transport);
    const connecting = client.connect({ clientId: "c", keepalive: 0, reconnect: true });
    await broker.accept();
    await connecting;
    const closed = nextEvent(client, "disconnect");
    await broker.hangUp();
    assert.equal(((await closed).detail as { reconnecting: boolean }).reconnecting, false);
    assert.equal(client.state, "closed");
  });
});
