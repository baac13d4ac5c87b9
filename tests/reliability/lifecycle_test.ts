/**
 * Losing the connection in the three ways that are not a clean cut: a connection that goes
 * silent (found by keepalive), a broker that stops and starts again (publishes made meanwhile
 * are queued and delivered), and `disconnect()` while the client waits out its backoff.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import type {
  ConnectEventDetail,
  DisconnectEventDetail,
  ReconnectEventDetail,
} from "../../src/client/events.ts";
import { ConnectionClosedError, TimeoutError } from "../../src/errors.ts";
import { startFaultProxy } from "../helpers/fault_proxy.ts";
import { mosquittoSkipReason, startMosquitto } from "../helpers/mosquitto.ts";
import { Clients } from "../helpers/clients.ts";
import { indexOf, nextEvent, payloadOf, seedFor, Tally, within } from "./support.ts";

test(
  "reliability - a stalled connection is found by keepalive and replaced, then publishing works",
  { timeout: 120_000, skip: mosquittoSkipReason() },
  async () => {
    const seed = seedFor("stall");
    const topic = `reliability/${seed}/stall`;
    await using broker = await startMosquitto();
    await using proxy = await startFaultProxy(broker, { seed });
    const tally = new Tally(3);
    await using clients = new Clients();
    const subscriber = await clients.connect(broker.url, {
      clientId: `stall-sub-${seed}`,
    });
    subscriber.setPublishHandler((message) => tally.add(indexOf(message.payload)));
    await subscriber.subscribe(topic, { qos: 1 });
    const publisher = await clients.connect(proxy.url, {
      clientId: `stall-pub-${seed}`,
      clean: false,
      keepalive: 1,
      pingTimeout: 1_000,
      reconnect: { minDelay: 20, maxDelay: 100 },
    });
    await publisher.publish(topic, payloadOf(0), { qos: 1 });

    const order: string[] = [];
    for (const type of ["disconnect", "reconnect", "connect"]) {
      publisher.addEventListener(type, () => order.push(type));
    }
    const lost = nextEvent<DisconnectEventDetail>(
      publisher,
      "disconnect",
      10_000,
    );
    const scheduled = nextEvent<ReconnectEventDetail>(
      publisher,
      "reconnect",
      10_000,
    );
    const stalledAt = performance.now();
    proxy.stall();
    // Sent into the silence: it can only complete on the next connection.
    const during = publisher.publish(topic, payloadOf(1), { qos: 1 });
    const loss = await lost;
    const detectedAfter = performance.now() - stalledAt;
    assert.equal(loss.reconnecting, true);
    assert.ok(loss.error instanceof TimeoutError, `lost with ${loss.error}`);
    const reconnect = await scheduled;
    assert.ok(reconnect.error instanceof TimeoutError);
    // New connections go through again; the stalled one is closed by the client.
    const back = nextEvent<ConnectEventDetail>(publisher, "connect", 10_000);
    proxy.resume();
    const connected = await back;
    assert.equal(connected.reconnected, true);
    assert.equal(connected.sessionPresent, true);
    assert.deepEqual(order.slice(0, 3), [
      "disconnect",
      "reconnect",
      "connect",
    ]);
    assert.equal(publisher.state, "connected");
    await within(during, 10_000, "the publish made during the stall");
    await within(
      publisher.publish(topic, payloadOf(2), { qos: 1 }),
      10_000,
      "a publish after",
    );
    await within(
      tally.complete,
      10_000,
      "the three messages at the subscriber",
    );
    console.log(
      `[reliability] stall: keepalive 1 s, pingTimeout 1 s: the loss was found after ` +
        `${detectedAfter.toFixed(0)} ms, reconnect delay ${reconnect.delay} ms; seed ${seed}`,
    );
    // Keepalive 1 s plus the ping timeout of 1 s: found within about 2 s, not much later.
    assert.ok(detectedAfter < 4_000, `found only after ${detectedAfter} ms`);
  },
);

test(
  "reliability - a stalled connection with a write blocked and packets queued behind it is found by keepalive",
  {
    timeout: 120_000,
    skip: mosquittoSkipReason(),
  },
  async () => {
    const seed = seedFor("stall with a blocked write");
    await using broker = await startMosquitto();
    await using proxy = await startFaultProxy(broker, { seed });
    await using clients = new Clients();
    const publisher = await clients.connect(proxy.url, {
      clientId: `blocked-${seed}`,
      keepalive: 1,
      pingTimeout: 1_000,
      reconnect: { minDelay: 20, maxDelay: 100 },
    });
    const lost = nextEvent<DisconnectEventDetail>(publisher, "disconnect", 10_000);
    proxy.stall();
    // More than the sockets buffer: the write of it hangs while the proxy holds still.
    const big = publisher.publish("reliability/blocked", new Uint8Array(8 << 20)).catch(() => {});
    // One turn of the event loop: the big write starts (flushes run in a microtask), so the
    // next publish waits in the outbox behind it.
    await new Promise((resolve) => setTimeout(resolve, 0));
    const small = publisher.publish("reliability/blocked", "x").catch(() => {});
    const stalledAt = performance.now();
    const loss = await lost;
    assert.ok(loss.error instanceof TimeoutError, `lost with ${loss.error}`);
    console.log(
      `[reliability] blocked write: found after ${(performance.now() - stalledAt).toFixed(0)} ms`,
    );
    proxy.resume();
    await Promise.all([big, small]);
  },
);

test(
  "reliability - whole messages that arrived before a cut in the middle of a packet are delivered",
  {
    timeout: 120_000,
    skip: mosquittoSkipReason(),
  },
  async () => {
    const seed = seedFor("cut after whole packets");
    const whole = 10;
    await using broker = await startMosquitto();
    await using proxy = await startFaultProxy(broker, { seed });
    await using clients = new Clients();
    const subscriber = await clients.connect(proxy.url, {
      clientId: `whole-${seed}`,
      keepalive: 0,
      reconnect: false,
    });
    const delivered: number[] = [];
    // A consumer that yields once per message, as any that awaits I/O does.
    subscriber.setPublishHandler((message) => {
      delivered.push(message.payload[0]);
      return new Promise<void>((resolve) => setTimeout(resolve, 0));
    });
    await subscriber.subscribe("w", { qos: 0 });
    const lost = nextEvent<DisconnectEventDetail>(subscriber, "disconnect", 10_000);
    // Each PUBLISH to "w" with one byte of payload is 6 bytes: `whole` of them, then 3 bytes
    // of the next, then the cut.
    proxy.cutAfterBytes(whole * 6 + 3, "down");
    const publisher = await clients.connect(broker.url, {
      clientId: `whole-pub-${seed}`,
    });
    for (let i = 0; i < 2 * whole; i++) {
      await publisher.publish("w", new Uint8Array([i]), { qos: 0 });
    }
    await lost;
    // The read loop has ended: whatever was going to be delivered has been.
    assert.deepEqual(delivered, Array.from({ length: whole }, (_, i) => i));
  },
);

test(
  "reliability - a broker restart is reconnected to, and publishes queued meanwhile are delivered",
  { timeout: 120_000, skip: mosquittoSkipReason() },
  async () => {
    const seed = seedFor("broker restart");
    const topic = `reliability/${seed}/restart`;
    const before = 100;
    const during = 200;
    await using broker = await startMosquitto({
      persistence: true,
      extraConfig: "max_queued_messages 0",
    });
    const url = broker.url;
    const tally = new Tally(before + during);
    const options = {
      clean: false,
      reconnect: { minDelay: 20, maxDelay: 200 },
    } as const;
    await using clients = new Clients();
    const subscriber = await clients.connect(url, {
      ...options,
      clientId: `restart-sub-${seed}`,
    });
    subscriber.setPublishHandler((message) => tally.add(indexOf(message.payload)));
    await subscriber.subscribe(topic, { qos: 1 });
    const publisher = await clients.connect(url, {
      ...options,
      clientId: `restart-pub-${seed}`,
    });
    const first: Promise<void>[] = [];
    for (let i = 0; i < before; i++) {
      first.push(publisher.publish(topic, payloadOf(i), { qos: 1 }));
    }
    await within(
      Promise.all(first),
      10_000,
      "the publishes before the restart",
    );

    const publisherLost = nextEvent<DisconnectEventDetail>(
      publisher,
      "disconnect",
      10_000,
    );
    const subscriberLost = nextEvent<DisconnectEventDetail>(
      subscriber,
      "disconnect",
      10_000,
    );
    await broker.stop();
    assert.equal((await publisherLost).reconnecting, true);
    assert.equal((await subscriberLost).reconnecting, true);
    assert.equal(publisher.state, "reconnecting");
    const queued: Promise<void>[] = [];
    for (let i = before; i < before + during; i++) {
      queued.push(publisher.publish(topic, payloadOf(i), { qos: 1 }));
    }
    assert.equal(
      publisher.pending.waiting,
      during,
      "the outage's publishes wait in the queue",
    );
    const publisherBack = nextEvent<ConnectEventDetail>(
      publisher,
      "connect",
      30_000,
    );
    const subscriberBack = nextEvent<ConnectEventDetail>(
      subscriber,
      "connect",
      30_000,
    );
    await broker.restart();
    const back = await publisherBack;
    assert.equal(back.reconnected, true);
    // The broker kept both sessions on disk.
    assert.equal(back.sessionPresent, true);
    assert.equal((await subscriberBack).sessionPresent, true);
    await within(
      Promise.all(queued),
      30_000,
      "the publishes queued during the outage",
    );
    await within(
      tally.complete,
      30_000,
      `every message at the subscriber (missing ${tally.missing().join(", ")})`,
    );
    console.log(
      `[reliability] broker restart: ${during} publishes queued during the outage delivered; ` +
        `${tally.duplicates} duplicates; seed ${seed}`,
    );
  },
);

test(
  "reliability - disconnect() during the backoff wait returns at once and rejects what is pending",
  { timeout: 120_000, skip: mosquittoSkipReason() },
  async () => {
    const seed = seedFor("disconnect in backoff");
    await using broker = await startMosquitto();
    await using proxy = await startFaultProxy(broker, { seed });
    await using clients = new Clients();
    const client = await clients.connect(proxy.url, {
      clientId: `backoff-${seed}`,
      clean: false,
      // Long waits, so that disconnect() surely lands inside one.
      reconnect: { minDelay: 20_000, maxDelay: 30_000 },
    });
    const scheduled = nextEvent<ReconnectEventDetail>(
      client,
      "reconnect",
      10_000,
    );
    await proxy.refuse(true);
    proxy.cutAll();
    const { delay } = await scheduled;
    assert.ok(delay >= 20_000);
    assert.equal(client.state, "reconnecting");
    const pending = [
      client.publish("reliability/backoff", "a", { qos: 1 }),
      client.publish("reliability/backoff", "b", { qos: 2 }),
      client.publish("reliability/backoff", "c", { qos: 0 }),
    ];
    const settled = Promise.allSettled(pending);
    const closedEvent = nextEvent<DisconnectEventDetail>(
      client,
      "disconnect",
      5_000,
    );
    const started = performance.now();
    await within(
      client.disconnect(),
      5_000,
      "disconnect() in the backoff wait",
    );
    const took = performance.now() - started;
    assert.equal(client.state, "closed");
    assert.equal((await closedEvent).reconnecting, false);
    for (
      const result of await within(
        settled,
        5_000,
        "the pending publishes to settle",
      )
    ) {
      assert.equal(result.status, "rejected");
      assert.ok(
        result.reason instanceof ConnectionClosedError,
        `rejected with ${result.reason}`,
      );
    }
    console.log(
      `[reliability] disconnect in backoff: returned in ${took.toFixed(1)} ms`,
    );
    assert.ok(took < 500, `disconnect() took ${took} ms`);
    // And nothing dials afterwards.
    assert.equal(proxy.accepted, 1);
  },
);

test(
  "reliability - disconnect() while redials are refused returns at once and leaves it closed",
  { timeout: 120_000, skip: mosquittoSkipReason() },
  async () => {
    const seed = seedFor("disconnect while refused");
    await using broker = await startMosquitto();
    await using proxy = await startFaultProxy(broker, { seed });
    await using clients = new Clients();
    const client = await clients.connect(proxy.url, {
      clientId: `refused-${seed}`,
      reconnect: { minDelay: 5, maxDelay: 20 },
    });
    await proxy.refuse(true);
    // Several refused attempts: the client is between a refused dial and the next one.
    let refusals = 0;
    const refusedTwice = nextEvent<ReconnectEventDetail>(
      client,
      "reconnect",
      10_000,
      () => ++refusals >= 3,
    );
    proxy.cutAll();
    await refusedTwice;
    const pending = client.publish("reliability/refused", "x", { qos: 1 });
    const started = performance.now();
    await within(
      client.disconnect(),
      5_000,
      "disconnect() between refused attempts",
    );
    const took = performance.now() - started;
    assert.equal(client.state, "closed");
    await assert.rejects(pending, ConnectionClosedError);
    console.log(
      `[reliability] disconnect while refused: returned in ${took.toFixed(1)} ms after ` +
        `${refusals} scheduled attempts`,
    );
    assert.ok(took < 500, `disconnect() took ${took} ms`);
  },
);
