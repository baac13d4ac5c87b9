/**
 * MQTT 5 request / response against a byte-scripted broker: the response-topic SUBSCRIBE (once),
 * the request's PUBLISH with its Response Topic and Correlation Data, matching responses by
 * Correlation Data, timeout on a fake clock, abort, the client's close, and `respond()`'s
 * answers; MQTT 3.1 and 3.1.1 refuse.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  ConnectionClosedError,
  MqttError,
  SubscribeError,
  TimeoutError,
} from "../../src/errors.ts";
import type { PublishPacket } from "../../src/packet/types.ts";
import type { Message } from "../../src/client/types.ts";
import type { Dialer } from "../../src/client/reconnect.ts";
import { MqttClient } from "../../src/client/clients.ts";
import {
  assertQuiet,
  connected,
  FakeBroker,
  FakeClock,
  hex,
  nextEvent,
  recordEvents,
  settle,
  UnhandledGuard,
  utf8Hex,
  versionName,
  watch,
} from "./harness.ts";

const text = (payload: Uint8Array): string => new TextDecoder().decode(payload);

/** The response to `request`, as the broker delivers it. */
function response(
  request: PublishPacket,
  payload: string,
  packetId?: number,
): PublishPacket {
  return {
    type: "publish",
    topic: request.properties!.responseTopic!,
    payload: new TextEncoder().encode(payload),
    qos: packetId === undefined ? 0 : 1,
    retain: false,
    dup: false,
    ...(packetId === undefined ? {} : { packetId }),
    properties: { correlationData: request.properties!.correlationData! },
  };
}

describe("request v5", () => {
  test("request v5: SUBSCRIBE to kite/response/<clientId> at QoS 1, then PUBLISH with Response Topic and Correlation Data; the matching response resolves it", async () => {
    const guard = new UnhandledGuard();
    const { client, broker, clock } = await connected(5);
    const reply = watch(client.request("svc/add", "1 2", { timeout: 5_000 }));
    // SUBSCRIBE id 1, no properties, "kite/response/kite", QoS 1.
    assert.equal(
      (await broker.next()).hex,
      `82 18 00 01 00 00 12 ${utf8Hex("kite/response/kite")} 01`,
    );
    await assertQuiet(broker);
    await broker.send("90 04 00 01 00 01");
    const sent = await broker.next();
    const request = sent.packet as PublishPacket;
    const correlation = request.properties!.correlationData!;
    assert.equal(correlation.length, 16);
    // QoS 0, not retained: topic, properties (0x08 Response Topic, 0x09 Correlation Data), payload.
    assert.equal(
      sent.hex,
      `30 35 00 07 ${utf8Hex("svc/add")} 28 08 00 12 ${utf8Hex("kite/response/kite")} 09 00 10 ${
        hex(correlation)
      } ${utf8Hex("1 2")}`,
    );
    assert.equal(reply.settled, false);
    await broker.sendPacket(response(request, "3"));
    const message = await reply.promise;
    assert.equal(message.topic, "kite/response/kite");
    assert.equal(text(message.payload), "3");
    assert.deepEqual(message.properties?.correlationData, correlation);
    assert.deepEqual(Object.keys(message).sort(), [
      "ack",
      "dup",
      "payload",
      "properties",
      "qos",
      "retain",
      "topic",
    ]);
    // No timer, hence no pending request, is left.
    assert.equal(clock.pending, 0);
    await assertQuiet(broker);
    await Promise.all([client.disconnect(), broker.closed()]);
    await guard.check();
  });

  test("request v5: the response topic is subscribed once; concurrent requests are matched by Correlation Data, in any order; others are ignored", async () => {
    const { client, broker, clock } = await connected(5);
    const first = watch(client.request("svc", "a", { qos: 1 }));
    const second = watch(client.request("svc", "b", { qos: 1 }));
    await broker.expect("subscribe");
    await broker.send("90 04 00 01 00 01");
    const a = await broker.expect("publish");
    const b = await broker.expect("publish");
    assert.deepEqual([text(a.payload), text(b.payload), a.qos, b.qos], ["a", "b", 1, 1]);
    assert.notDeepEqual(a.properties!.correlationData, b.properties!.correlationData);
    await broker.send(`40 03 00 ${a.packetId!.toString(16).padStart(2, "0")} 00`);
    await broker.send(`40 03 00 ${b.packetId!.toString(16).padStart(2, "0")} 00`);
    // A third request reuses the subscription: no SUBSCRIBE.
    const third = watch(client.request("svc", "c"));
    const c = await broker.expect("publish");
    // A response nobody waits for, then the answers in reverse order; QoS 1 responses get PUBACK.
    await broker.sendPacket({
      ...response(c, "stray", 7),
      properties: { correlationData: new Uint8Array([1, 2, 3]) },
    });
    assert.equal((await broker.next()).hex, "40 02 00 07");
    await broker.sendPacket(response(c, "C", 8));
    await broker.sendPacket(response(b, "B", 9));
    await broker.sendPacket(response(a, "A"));
    assert.equal(text((await third.promise).payload), "C");
    assert.equal(text((await second.promise).payload), "B");
    assert.equal(text((await first.promise).payload), "A");
    assert.deepEqual([(await broker.next()).hex, (await broker.next()).hex], [
      "40 02 00 08",
      "40 02 00 09",
    ]);
    assert.equal(clock.pending, 0);
    await assertQuiet(broker);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("request v5: with requestResponseInformation, the Response Information of CONNACK is the response topic", async () => {
    const { client, broker } = await connected(5, {
      options: { properties: { requestResponseInformation: true } },
      connack: {
        type: "connack",
        sessionPresent: false,
        reasonCode: 0,
        properties: { responseInformation: "replies/abc" },
      },
    });
    const reply = client.request("svc", "x");
    const subscribe = await broker.expect("subscribe");
    assert.deepEqual(subscribe.subscriptions.map((s) => s.topicFilter), ["replies/abc"]);
    await broker.send("90 04 00 01 00 01");
    const request = await broker.expect("publish");
    assert.equal(request.properties!.responseTopic, "replies/abc");
    await broker.sendPacket(response(request, "ok"));
    assert.equal(text((await reply).payload), "ok");
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("request v5: responses reach neither the publish handler nor messages(); other messages still do", async () => {
    const { client, broker } = await connected(5);
    const seen: string[] = [];
    client.setPublishHandler((message) => {
      seen.push(message.topic);
    });
    const reply = client.request("svc", "x");
    await broker.expect("subscribe");
    await broker.send("90 04 00 01 00 01");
    const request = await broker.expect("publish");
    await broker.sendPacket(response(request, "ok"));
    await reply;
    await broker.sendPacket({
      type: "publish",
      topic: "other",
      payload: new Uint8Array(),
      qos: 0,
      retain: false,
      dup: false,
    });
    await settle();
    assert.deepEqual(seen, ["other"]);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("request v5: while no consumer of the user's is attached, other messages are still held for the first one (QoS 1: unacknowledged until then)", async () => {
    const { client, broker } = await connected(5);
    const reply = client.request("svc", "x");
    await broker.expect("subscribe");
    await broker.send("90 04 00 01 00 01");
    const request = await broker.expect("publish");
    await broker.sendPacket({
      type: "publish",
      topic: "other",
      payload: new TextEncoder().encode("held"),
      qos: 1,
      packetId: 4,
      retain: false,
      dup: false,
    });
    await broker.sendPacket(response(request, "ok"));
    assert.equal(text((await reply).payload), "ok");
    await assertQuiet(broker);
    const seen: string[] = [];
    client.setPublishHandler((message) => {
      seen.push(text(message.payload));
    });
    assert.equal((await broker.next()).hex, "40 02 00 04");
    assert.deepEqual(seen, ["held"]);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("request v5: no response within the timeout rejects with TimeoutError; a late response is acknowledged and ignored", async () => {
    const { client, broker, clock } = await connected(5);
    const errors = recordEvents(client, ["error"]);
    const reply = watch(client.request("svc", "x", { timeout: 1_000 }));
    await broker.expect("subscribe");
    await broker.send("90 04 00 01 00 01");
    const request = await broker.expect("publish");
    await clock.advance(999);
    assert.equal(reply.settled, false);
    await clock.advance(1);
    assert.ok(reply.reason instanceof TimeoutError, String(reply.reason));
    assert.match((reply.reason as Error).message, /within 1000 ms/);
    assert.equal(clock.pending, 0);
    await broker.sendPacket(response(request, "late", 3));
    assert.equal((await broker.next()).hex, "40 02 00 03");
    assert.deepEqual(errors, []);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("request v5: the timeout also covers a SUBACK that does not come", async () => {
    const { client, broker, clock } = await connected(5);
    const reply = watch(client.request("svc", "x", { timeout: 500 }));
    await broker.expect("subscribe");
    await clock.advance(500);
    assert.ok(reply.reason instanceof TimeoutError);
    // The SUBACK arrives after all: the request is not published any more.
    await broker.send("90 04 00 01 00 01");
    await assertQuiet(broker);
    assert.equal(clock.pending, 0);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("request v5: abort rejects with the signal's reason and forgets the request; an aborted signal sends nothing", async () => {
    const { client, broker, clock } = await connected(5);
    const before = new AbortController();
    const reason = new Error("no longer needed");
    before.abort(reason);
    await assert.rejects(
      client.request("svc", "x", { signal: before.signal }),
      (e) => e === reason,
    );
    await assertQuiet(broker);

    const controller = new AbortController();
    const reply = watch(client.request("svc", "x", { signal: controller.signal }));
    await broker.expect("subscribe");
    await broker.send("90 04 00 01 00 01");
    const request = await broker.expect("publish");
    controller.abort();
    await settle();
    assert.ok(reply.reason instanceof DOMException && reply.reason.name === "AbortError");
    assert.equal(clock.pending, 0);
    await broker.sendPacket(response(request, "late"));
    await assertQuiet(broker);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("request v5: disconnect() rejects pending requests with ConnectionClosedError; later ones reject at once", async () => {
    const { client, broker, clock } = await connected(5);
    const reply = watch(client.request("svc", "x", { timeout: Infinity }));
    await broker.expect("subscribe");
    await broker.send("90 04 00 01 00 01");
    await broker.expect("publish");
    await Promise.all([client.disconnect(), broker.closed()]);
    await settle();
    assert.ok(reply.reason instanceof ConnectionClosedError, String(reply.reason));
    assert.equal(clock.pending, 0);
    await assert.rejects(client.request("svc", "x"), ConnectionClosedError);
  });

  test("request v5: a timeout longer than a timer holds (2^31 ms) arms no timer, which would fire at once", async () => {
    const { client, broker, clock } = await connected(5);
    const reply = watch(client.request("svc", "x", { timeout: 3_000_000_000 }));
    await broker.expect("subscribe");
    await broker.send("90 04 00 01 00 01");
    await broker.expect("publish");
    await settle();
    assert.equal(clock.pending, 0);
    assert.equal(reply.settled, false);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("request v5: the connection lost without reconnection rejects pending requests with ConnectionClosedError", async () => {
    const { client, broker } = await connected(5);
    recordEvents(client, ["error"]);
    const reply = watch(client.request("svc", "x"));
    await broker.expect("subscribe");
    await broker.send("90 04 00 01 00 01");
    await broker.expect("publish");
    await broker.hangUp();
    await settle();
    assert.ok(reply.reason instanceof ConnectionClosedError, String(reply.reason));
  });

  test("request v5: a refused response-topic SUBSCRIBE rejects the request; the next request subscribes again", async () => {
    const { client, broker } = await connected(5);
    const refused = client.request("svc", "x");
    await broker.expect("subscribe");
    await broker.send("90 04 00 01 00 87");
    await assert.rejects(refused, SubscribeError);
    const reply = client.request("svc", "y");
    await broker.expect("subscribe");
    await broker.send("90 04 00 02 00 01");
    const request = await broker.expect("publish");
    assert.equal(text(request.payload), "y");
    await broker.sendPacket(response(request, "ok"));
    assert.equal(text((await reply).payload), "ok");
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});

/** A v5 client that reconnects: each connection is a new fake broker. */
async function reconnecting(resubscribe: boolean) {
  const clock = new FakeClock();
  const brokers: FakeBroker[] = [];
  let dialed: ((broker: FakeBroker) => void) | undefined;
  const dial: Dialer = () => {
    const broker = new FakeBroker(5);
    brokers.push(broker);
    dialed?.(broker);
    return Promise.resolve(broker.transport);
  };
  const nextBroker = () => new Promise<FakeBroker>((resolve) => (dialed = resolve));
  const client = new MqttClient(dial);
  const firstDialed = nextBroker();
  const connecting = client.connect({
    clientId: "kite",
    keepalive: 0,
    protocolVersion: 5,
    clock,
    resubscribe,
    reconnect: { minDelay: 100, maxDelay: 100, random: () => 0 },
  });
  const first = await firstDialed;
  await first.accept(false);
  await connecting;
  /** Cuts the connection, runs the backoff, accepts the new one without a session. */
  const reconnect = async (broker: FakeBroker): Promise<FakeBroker> => {
    const scheduled = nextEvent(client, "reconnect");
    const redialed = nextBroker();
    await broker.hangUp();
    await scheduled;
    await clock.advance(clock.nextAt - clock.now());
    const next = await redialed;
    await next.accept(false);
    return next;
  };
  return { client, clock, first, reconnect };
}

/**
 * Sends a request on `broker` (granting the response-topic SUBSCRIBE first when `subscribes`),
 * answers it, and checks the answer reached the client.
 */
async function roundTrip(
  client: MqttClient,
  broker: FakeBroker,
  payload: string,
  subscribes = false,
): Promise<void> {
  const reply = client.request("svc", payload);
  if (subscribes) {
    const subscribe = await broker.expect("subscribe");
    assert.deepEqual(subscribe.subscriptions.map((s) => s.topicFilter), ["kite/response/kite"]);
    await broker.sendPacket({ type: "suback", packetId: subscribe.packetId, reasonCodes: [1] });
  }
  const request = await broker.expect("publish");
  assert.equal(text(request.payload), payload);
  await broker.sendPacket(response(request, `re ${payload}`));
  assert.equal(text((await reply).payload), `re ${payload}`);
}

describe("request v5 across reconnections", () => {
  test("request v5: after a reconnection that lost the session, the session subscribes to the response topic again and requests work without a new SUBSCRIBE", async () => {
    const { client, first, reconnect } = await reconnecting(true);
    recordEvents(client, ["error"]);
    await roundTrip(client, first, "1", true);
    const second = await reconnect(first);
    const again = await second.expect("subscribe");
    assert.deepEqual(again.subscriptions.map((s) => s.topicFilter), ["kite/response/kite"]);
    await second.sendPacket({ type: "suback", packetId: again.packetId, reasonCodes: [1] });
    await roundTrip(client, second, "2");
    await assertQuiet(second);
    await Promise.all([client.disconnect(), second.closed()]);
  });

  test("request v5: with resubscribe: false, the first request after a lost session subscribes again", async () => {
    const { client, first, reconnect } = await reconnecting(false);
    recordEvents(client, ["error"]);
    await roundTrip(client, first, "1", true);
    const second = await reconnect(first);
    await assertQuiet(second);
    await roundTrip(client, second, "2", true);
    await Promise.all([client.disconnect(), second.closed()]);
  });
});

describe("respond v5", () => {
  test("respond v5: SUBSCRIBE to the filter; a request is acknowledged and answered on its Response Topic with its Correlation Data, at its QoS, not retained", async () => {
    const { client, broker } = await connected(5);
    const stop = client.respond("svc/+", (request) => `re: ${text(request.payload)}`);
    assert.equal((await broker.next()).hex, `82 0b 00 01 00 00 05 ${utf8Hex("svc/+")} 01`);
    await broker.send("90 04 00 01 00 01");
    assert.equal(await stop.ready, 1);
    await broker.sendPacket({
      type: "publish",
      topic: "svc/echo",
      payload: new TextEncoder().encode("hi"),
      qos: 1,
      packetId: 5,
      retain: false,
      dup: false,
      properties: { responseTopic: "back", correlationData: new Uint8Array([0xca, 0xfe]) },
    });
    assert.equal((await broker.next()).hex, "40 02 00 05");
    // PUBLISH QoS 1, id 2 (SUBSCRIBE had 1), Correlation Data only, payload "re: hi".
    assert.equal(
      (await broker.next()).hex,
      `32 14 00 04 ${utf8Hex("back")} 00 02 05 09 00 02 ca fe ${utf8Hex("re: hi")}`,
    );
    await broker.send("40 03 00 02 00");
    await assertQuiet(broker);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("respond v5: a promised result is sent once it settles; a request without Response Topic is ignored; a failing handler is an error event and sends nothing", async () => {
    const { client, broker } = await connected(5);
    const errors = recordEvents(client, ["error"]);
    const stop = client.respond("svc", async (request) => {
      await Promise.resolve();
      if (text(request.payload) === "fail") throw new Error("bad input");
      return new Uint8Array([1, 2]);
    });
    await broker.expect("subscribe");
    await broker.send("90 04 00 01 00 01");
    await stop.ready;
    const publish = (payload: string, properties: PublishPacket["properties"]) =>
      broker.sendPacket({
        type: "publish",
        topic: "svc",
        payload: new TextEncoder().encode(payload),
        qos: 0,
        retain: false,
        dup: false,
        properties,
      });
    await publish("no reply topic", {});
    await publish("fail", { responseTopic: "back" });
    await settle();
    await assertQuiet(broker);
    assert.equal(errors.length, 1);
    assert.ok(errors[0][1] instanceof MqttError);
    assert.match((errors[0][1] as Error).message, /bad input/);
    // Without Correlation Data, the response has none either.
    await publish("ok", { responseTopic: "back" });
    assert.equal((await broker.next()).hex, `30 09 00 04 ${utf8Hex("back")} 00 01 02`);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("respond v5: stop() unsubscribes; requests that come after go to the user's consumers", async () => {
    const { client, broker } = await connected(5);
    const answered: string[] = [];
    const stop = client.respond("svc", (request) => {
      answered.push(text(request.payload));
      return "";
    });
    await broker.expect("subscribe");
    await broker.send("90 04 00 01 00 01");
    await stop.ready;
    const stopped = watch(stop());
    assert.equal((await broker.next()).hex, `a2 08 00 02 00 00 03 ${utf8Hex("svc")}`);
    await broker.send("b0 04 00 02 00 00");
    await stopped.promise;
    assert.equal(stopped.fulfilled, true);
    await stop(); // again: nothing
    const seen: Message[] = [];
    client.setPublishHandler((message) => {
      seen.push(message);
    });
    await broker.sendPacket({
      type: "publish",
      topic: "svc",
      payload: new TextEncoder().encode("late"),
      qos: 0,
      retain: false,
      dup: false,
      properties: { responseTopic: "back" },
    });
    await settle();
    assert.deepEqual(answered, []);
    assert.deepEqual(seen.map((m) => text(m.payload)), ["late"]);
    await assertQuiet(broker);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("respond v5: a QoS 1 request to a server whose Maximum QoS is 0 is answered at QoS 0", async () => {
    const { client, broker } = await connected(5, {
      connack: {
        type: "connack",
        sessionPresent: false,
        reasonCode: 0,
        properties: { maximumQoS: 0 },
      },
    });
    const stop = client.respond("svc", () => "ok", { qos: 0 });
    await broker.expect("subscribe");
    await broker.send("90 04 00 01 00 00");
    await stop.ready;
    await broker.sendPacket({
      type: "publish",
      topic: "svc",
      payload: new Uint8Array(),
      qos: 1,
      packetId: 2,
      retain: false,
      dup: false,
      properties: { responseTopic: "back" },
    });
    assert.equal((await broker.next()).hex, "40 02 00 02");
    assert.equal((await broker.next()).hex, `30 09 00 04 ${utf8Hex("back")} 00 ${utf8Hex("ok")}`);
    await Promise.all([client.disconnect(), broker.closed()]);
  });

  test("respond v5: stop() after the client closed resolves without sending anything", async () => {
    const { client, broker } = await connected(5);
    const stop = client.respond("svc", () => "x");
    await broker.expect("subscribe");
    await broker.send("90 04 00 01 00 01");
    await stop.ready;
    await Promise.all([client.disconnect(), broker.closed()]);
    await stop();
  });

  test("respond v5: a refused SUBSCRIBE rejects ready and stops the responder", async () => {
    const { client, broker } = await connected(5);
    const stop = client.respond("svc", () => "x");
    await broker.expect("subscribe");
    await broker.send("90 04 00 01 00 87");
    await assert.rejects(stop.ready, SubscribeError);
    await stop();
    await assertQuiet(broker);
    await Promise.all([client.disconnect(), broker.closed()]);
  });
});

for (const version of [3, 4] as const) {
  const v = versionName(version);
  test(`request and respond ${v}: refused with an MqttError naming MQTT 5; nothing is sent`, async () => {
    const { client, broker } = await connected(version);
    await assert.rejects(client.request("svc", "x"), (error) => {
      assert.ok(error instanceof MqttError);
      assert.match(error.message, /request needs MQTT 5/);
      return true;
    });
    assert.throws(() => client.respond("svc", () => "x"), /respond needs MQTT 5/);
    await assertQuiet(broker);
    await Promise.all([client.disconnect(), broker.closed()]);
  });
}
