/**
 * Opening a connection that does not open: a dialer (or a `beforeConnect`, a TLS or WebSocket
 * handshake) that never answers is bounded by `connectTimeout`, the signal and `disconnect()`,
 * on the first connection and on reconnections; `beforeConnect` changes the URL and credentials;
 * `disconnect()` while a store opens leaves nothing behind.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import type { Dialer } from "../../src/client/reconnect.ts";
import { MqttClient } from "../../src/client/clients.ts";
import { connect } from "../../src/client/connect.ts";
import { ConnectionClosedError, TimeoutError } from "../../src/errors.ts";
import { decode, encode } from "../../src/packet/mod.ts";
import type { ConnectPacket } from "../../src/packet/types.ts";
import { MemoryStore } from "../../src/store/memory_store.ts";
import type { Store, StoreContents } from "../../src/store/store.ts";
import type { Transport } from "../../src/transport/types.ts";
import { FakeBroker, FakeClock, nextEvent, settle, UnhandledGuard, watch } from "./harness.ts";
import { Deferred } from "../../src/_async.ts";
import { Clients } from "../helpers/clients.ts";

/** A dialer whose every attempt waits for the test to answer it (or never answers). */
class ScriptedDialer {
  readonly attempts: { attempt: number; signal: AbortSignal; answer: Deferred<Transport> }[] = [];
  #waiters: (() => void)[] = [];
  readonly dial: Dialer = (signal, attempt) => {
    const answer = new Deferred<Transport>();
    this.attempts.push({ attempt, signal, answer });
    this.#waiters.splice(0).forEach((wake) => wake());
    return answer.promise;
  };

  /** Resolves once `count` attempts have been made. */
  async attempted(count: number): Promise<void> {
    while (this.attempts.length < count) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }
}

describe("a dial that does not answer", () => {
  test("connectTimeout covers the dial: a dialer that never answers rejects connect with TimeoutError at 5 s, and the client closes with no timer left", async () => {
    const guard = new UnhandledGuard();
    const dialer = new ScriptedDialer();
    const clock = new FakeClock();
    const client = new MqttClient(dialer.dial);
    const connecting = watch(client.connect({ clock, connectTimeout: 5000, keepalive: 0 }));
    await dialer.attempted(1);
    await clock.advance(4999);
    assert.equal(connecting.settled, false);
    await clock.advance(1);
    await assert.rejects(connecting.promise, TimeoutError);
    assert.equal(dialer.attempts[0].signal.aborted, true);
    assert.equal(client.state, "closed");
    assert.equal(clock.pending, 0);
    await guard.check();
  });

  test("a transport that arrives after the attempt was given up is closed at once", async () => {
    const dialer = new ScriptedDialer();
    const clock = new FakeClock();
    const client = new MqttClient(dialer.dial);
    const connecting = watch(client.connect({ clock, connectTimeout: 1000, keepalive: 0 }));
    await dialer.attempted(1);
    await clock.advance(1000);
    await assert.rejects(connecting.promise, TimeoutError);
    const late = new FakeBroker(4);
    dialer.attempts[0].answer.resolve(late.transport);
    await settle();
    assert.equal(late.transport.closed, true);
    assert.equal(late.tryNext(), undefined, "nothing is written to it");
  });

  test("connectTimeout counts from the start of the dial: a 3 s dial leaves 2 s of 5 for CONNACK", async () => {
    const dialer = new ScriptedDialer();
    const clock = new FakeClock();
    const client = new MqttClient(dialer.dial);
    const connecting = watch(client.connect({ clock, connectTimeout: 5000, keepalive: 0 }));
    await dialer.attempted(1);
    await clock.advance(3000);
    const broker = new FakeBroker(4);
    dialer.attempts[0].answer.resolve(broker.transport);
    await broker.expect("connect");
    await clock.advance(1999);
    assert.equal(connecting.settled, false);
    await clock.advance(1);
    await assert.rejects(connecting.promise, TimeoutError);
    await broker.closed();
  });

  for (const connectTimeout of [0, Infinity]) {
    test(`connectTimeout ${connectTimeout}: no limit; a dial that takes an hour and a CONNACK a day later still connect`, async () => {
      const dialer = new ScriptedDialer();
      const clock = new FakeClock();
      const client = new MqttClient(dialer.dial);
      const connecting = watch(client.connect({ clock, connectTimeout, keepalive: 0 }));
      await dialer.attempted(1);
      await clock.advance(3_600_000);
      assert.equal(connecting.settled, false);
      const broker = new FakeBroker(4);
      dialer.attempts[0].answer.resolve(broker.transport);
      await broker.expect("connect");
      await clock.advance(86_400_000);
      assert.equal(connecting.settled, false);
      await broker.send("20 02 00 00");
      assert.equal(await connecting.promise, false);
      await Promise.all([client.disconnect(), broker.closed()]);
    });
  }

  test("a negative connectTimeout rejects connect with RangeError before anything is dialed", async () => {
    const dialer = new ScriptedDialer();
    const client = new MqttClient(dialer.dial);
    await assert.rejects(client.connect({ connectTimeout: -1 }), RangeError);
    assert.equal(dialer.attempts.length, 0);
  });

  test("disconnect() while dialing rejects connect with ConnectionClosedError, also when the dialer ignores its signal", async () => {
    const dialer = new ScriptedDialer();
    const clock = new FakeClock();
    const client = new MqttClient(dialer.dial);
    const connecting = watch(client.connect({ clock, keepalive: 0 }));
    await dialer.attempted(1);
    await client.disconnect();
    await assert.rejects(connecting.promise, ConnectionClosedError);
    assert.equal(client.state, "closed");
    assert.equal(clock.pending, 0);
  });

  test("aborting the signal while dialing rejects connect with the signal's reason, also when the dialer ignores it", async () => {
    const dialer = new ScriptedDialer();
    const controller = new AbortController();
    const client = new MqttClient(dialer.dial);
    const connecting = watch(
      client.connect({ clock: new FakeClock(), keepalive: 0, signal: controller.signal }),
    );
    await dialer.attempted(1);
    const reason = new Error("stop");
    controller.abort(reason);
    await assert.rejects(connecting.promise, (error) => error === reason);
    assert.equal(client.state, "closed");
  });

  test("a reconnection whose dial never answers times out, and the next attempt is scheduled and succeeds", async () => {
    const dialer = new ScriptedDialer();
    const clock = new FakeClock();
    const client = new MqttClient(dialer.dial);
    const connecting = client.connect({
      clock,
      keepalive: 0,
      clean: false,
      connectTimeout: 5000,
      reconnect: { minDelay: 100, maxDelay: 100, random: () => 0 },
    });
    await dialer.attempted(1);
    const first = new FakeBroker(4);
    dialer.attempts[0].answer.resolve(first.transport);
    await first.accept();
    await connecting;

    const scheduled = nextEvent(client, "reconnect");
    await first.hangUp();
    await scheduled;
    const publish = watch(client.publish("t", "queued", { qos: 1 }));
    await clock.advance(100);
    await dialer.attempted(2); // never answered
    const again = nextEvent<{ attempt: number; error: unknown }>(client, "reconnect");
    await clock.advance(5000);
    const { detail } = await again;
    assert.equal(detail.attempt, 2);
    assert.ok(detail.error instanceof TimeoutError);
    assert.equal(client.state, "reconnecting");

    await clock.advance(100);
    await dialer.attempted(3);
    const third = new FakeBroker(4);
    dialer.attempts[2].answer.resolve(third.transport);
    await third.accept(true);
    const sent = await third.expect("publish");
    assert.equal(new TextDecoder().decode(sent.payload), "queued");
    await third.send("40 02 00 01");
    await publish.promise;
    await Promise.all([client.disconnect(), third.closed()]);
  });
});

describe("beforeConnect", () => {
  test("a beforeConnect that never resolves: connect rejects with TimeoutError at connectTimeout, and its signal aborts", async () => {
    const clock = new FakeClock();
    const signals: AbortSignal[] = [];
    const connecting = watch(connect("mqtt://127.0.0.1:1", {
      clock,
      connectTimeout: 2000,
      keepalive: 0,
      beforeConnect: ({ signal }) => {
        signals.push(signal);
        return new Promise<void>(() => {});
      },
    }));
    await settle();
    assert.equal(signals.length, 1);
    await clock.advance(2000);
    await assert.rejects(connecting.promise, TimeoutError);
    assert.equal(signals[0].aborted, true);
    assert.equal(clock.pending, 0);
  });

  test("beforeConnect's URL is dialed, with the user name and password it carries; a later change of password stays", async () => {
    await using first = await listen();
    await using second = await listen();
    const seen: { attempt: number; url: string }[] = [];
    await using clients = new Clients();
    const client = await clients.connect(`mqtt://${first.host}:${first.port}`, {
      keepalive: 0,
      reconnect: { minDelay: 1, maxDelay: 1 },
      beforeConnect: ({ attempt, url }) => {
        seen.push({ attempt, url: url.href });
        if (attempt === 0) {
          return { url: `mqtt://user%201:p%40ss@${second.host}:${second.port}` };
        }
        return { password: "refreshed" };
      },
    });
    assert.equal(first.connects.length, 0);
    assert.equal(second.connects.length, 1);
    assert.equal(second.connects[0].username, "user 1");
    assert.deepEqual(second.connects[0].password, new TextEncoder().encode("p@ss"));
    // Lose the connection: the next attempt goes to the same URL, with the new password.
    const reconnected = nextEvent(client, "connect");
    second.dropAll();
    await reconnected;
    assert.equal(second.connects.length, 2);
    assert.equal(second.connects[1].username, "user 1");
    assert.deepEqual(second.connects[1].password, new TextEncoder().encode("refreshed"));
    assert.deepEqual(seen.map((s) => s.attempt), [0, 1]);
    assert.equal(seen[1].url, `mqtt://user%201:p%40ss@${second.host}:${second.port}`);
  });
});

describe("disconnect while the store opens", () => {
  test("disconnect() before the store has opened: connect rejects, nothing is written, no timer is left", async () => {
    const opened = new Deferred<StoreContents>();
    const memory = new MemoryStore();
    const slowStore: Store = {
      open: () => opened.promise,
      put: (record) => memory.put(record),
      update: (sequence, state, packetId) => memory.update(sequence, state, packetId),
      delete: (sequence) => memory.delete(sequence),
      putIncoming: (packetId) => memory.putIncoming(packetId),
      deleteIncoming: (packetId) => memory.deleteIncoming(packetId),
      clear: () => memory.clear(),
      close: () => memory.close(),
    };
    const broker = new FakeBroker(4);
    const clock = new FakeClock();
    const client = new MqttClient(broker.transport);
    const connecting = watch(client.connect({ clock, keepalive: 0, store: slowStore }));
    await settle();
    await client.disconnect();
    opened.resolve({ outgoing: [], incoming: [] });
    await assert.rejects(connecting.promise, ConnectionClosedError);
    await settle();
    assert.equal(broker.tryNext(), undefined, "no CONNECT is written");
    assert.equal(clock.pending, 0);
    assert.equal(client.state, "closed");
  });
});

/** A loopback TCP server that accepts every CONNECT (MQTT 3.1.1) and records it. */
async function listen() {
  const connects: ConnectPacket[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let buffered = new Uint8Array(0);
    socket.on("data", (chunk: Uint8Array) => {
      const all = new Uint8Array(buffered.length + chunk.length);
      all.set(buffered);
      all.set(chunk, buffered.length);
      buffered = all;
      // Packets here are small: a one-byte Remaining Length is enough.
      while (buffered.length >= 2 && buffered.length >= 2 + buffered[1]) {
        const packet = decode(buffered.subarray(0, 2 + buffered[1]), 4);
        buffered = buffered.slice(2 + buffered[1]);
        if (packet.type === "connect") {
          connects.push(packet);
          socket.write(encode({ type: "connack", sessionPresent: false, reasonCode: 0 }, 4));
        } else if (packet.type === "disconnect") {
          socket.end();
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    host: "127.0.0.1",
    port,
    connects,
    dropAll(): void {
      for (const socket of sockets) socket.destroy();
    },
    async [Symbol.asyncDispose](): Promise<void> {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
