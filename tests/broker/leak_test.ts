/**
 * `broker.close()` leaves nothing behind: no listener, socket, timer or pending read. Deno's test
 * sanitizers (ops, resources), all left on, check each test. Bun has no sanitizers: there, this
 * file registers a single skipped test that says so.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { Broker } from "../../src/broker/mod.ts";
import { connect } from "../../src/client/connect.ts";
import { connectKite } from "./helpers.ts";

if (typeof Deno !== "undefined") {
  Deno.test("Broker leak - close() with clients still connected over TCP leaves nothing", async () => {
    const broker = new Broker();
    const { port } = await broker.listen();
    const client = await connect(`mqtt://127.0.0.1:${port}`, {
      clientId: "leaky",
      keepalive: 30,
      reconnect: false,
      will: { topic: "w", payload: "x" },
    });
    client.addEventListener("error", () => {});
    await client.subscribe("t", { qos: 1 });
    await client.publish("t", "x", { qos: 2, retain: true });
    const closed = new Promise((resolve) => client.addEventListener("disconnect", resolve));
    await broker.close();
    await closed;
    assert.equal(client.state, "closed");
  });

  Deno.test("Broker leak - WebSocket and in-memory clients, persistent sessions with expiry", async () => {
    const broker = new Broker();
    const { port } = await broker.listenWebSocket();
    const ws = await connect(`ws://127.0.0.1:${port}/mqtt`, {
      clientId: "ws",
      keepalive: 30,
      reconnect: false,
    });
    ws.addEventListener("error", () => {});
    const memory = await connectKite(broker, {
      clientId: "mem",
      protocolVersion: 5,
      clean: false,
      properties: { sessionExpiryInterval: 600 },
      will: { topic: "w", payload: "x", properties: { willDelayInterval: 60 } },
    });
    await memory.client.subscribe("t", { qos: 1 });
    // The session now waits on its expiry timer, and its will on the will delay.
    broker.dropClient("mem");
    const closed = new Promise((resolve) => ws.addEventListener("disconnect", resolve));
    await broker.close();
    await closed;
  });

  Deno.test("Broker leak - a client that never sends CONNECT", async () => {
    const broker = new Broker();
    const { port } = await broker.listen();
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await broker.close();
    const buffer = new Uint8Array(1);
    assert.equal(await conn.read(buffer), null);
    conn.close();
  });
} else {
  test("Broker leak - skipped: this runtime has no resource sanitizers", { skip: true }, () => {});
}
