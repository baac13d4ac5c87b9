/**
 * `disconnect()` and every way a connection can end leave no socket, timer or pending operation
 * behind: Deno's test sanitizers (ops, resources, exit), turned on explicitly for each test.
 *
 * The brokers and the fault proxy are started and stopped in tests of their own with the
 * sanitizers off, since they spawn processes and listen on sockets that outlive one test.
 * Bun has no sanitizers: there, this file registers a single skipped test that says so.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  connect,
  ConnectionClosedError,
  ConnectionRefusedError,
  type DisconnectEventDetail,
} from "../../mod.ts";
import { type Mosquitto, mosquittoSkipReason, startMosquitto } from "../helpers/mosquitto.ts";
import { type FaultProxy, startFaultProxy } from "../helpers/fault_proxy.ts";
import { Clients } from "../helpers/clients.ts";

/** Publishes, subscribes, receives and disconnects, over a fresh `connect(url)`. */
async function session(url: string, tlsOptions: { ca?: string }): Promise<void> {
  await using clients = new Clients();
  const client = await clients.connect(url, { ...tlsOptions, keepalive: 5 });
  await client.publish("kite/leak", "one", { qos: 1 });
  assert.equal(await client.subscribe("kite/leak/#", { qos: 1 }), 1);
  const message = (async () => {
    for await (const message of client.messages("kite/leak/#")) return message;
    return undefined;
  })();
  await client.publish("kite/leak/echo", "two", { qos: 1 });
  assert.equal(new TextDecoder().decode((await message)?.payload), "two");
  await client.disconnect();
  assert.equal(client.state, "closed");
}

if (typeof Deno !== "undefined") {
  const skip = mosquittoSkipReason();
  const ignore = skip !== undefined;
  const harness = { sanitizeOps: false, sanitizeResources: false, ignore };
  // Deno 2.9 no longer turns the sanitizers on by default: every client test asks for them.
  const sanitized = { sanitizeOps: true, sanitizeResources: true, sanitizeExit: true, ignore };
  let broker: Mosquitto;
  let doomed: Mosquitto;
  let proxy: FaultProxy;
  let strict: Mosquitto;

  Deno.test({
    name:
      "leak setup: start mosquitto (TLS, websockets), a broker to stop, a fault proxy, a broker that refuses anonymous clients",
    ...harness,
    async fn() {
      broker = await startMosquitto({ tls: true, websockets: true });
      doomed = await startMosquitto();
      proxy = await startFaultProxy(broker);
      strict = await startMosquitto({ extraConfig: "allow_anonymous false" });
    },
  });

  const targets: [string, () => string, () => { ca?: string }][] = [
    ["mqtt:", () => broker.url, () => ({})],
    ["mqtts:", () => `mqtts://127.0.0.1:${broker.tlsPort}`, () => ({ ca: broker.ca })],
    ["ws:", () => `ws://127.0.0.1:${broker.wsPort}`, () => ({})],
    ["wss:", () => `wss://127.0.0.1:${broker.wssPort}`, () => ({ ca: broker.ca })],
  ];

  for (const [scheme, url, tlsOptions] of targets) {
    Deno.test({
      name:
        `${scheme} connect, publish QoS 1, subscribe, disconnect: nothing is left once disconnect() resolves`,
      ...sanitized,
      async fn() {
        await session(url(), tlsOptions());
      },
    });
  }

  Deno.test({
    name:
      "mqtt: the network cuts the connection (reconnect: false): nothing left after the disconnect event",
    ...sanitized,
    async fn() {
      // Wrapped: resolving with the promise itself would wait for it.
      const accepted = new Promise<{ closed: Promise<void> }>((resolve) => {
        const off = proxy.onConnection((info) => {
          off();
          resolve({ closed: info.closed });
        });
      });
      await using clients = new Clients();
      const client = await clients.connect(proxy.url, {
        reconnect: false,
        keepalive: 5,
      });
      const proxied = await accepted;
      await client.publish("kite/leak/cut", "before", { qos: 1 });
      const disconnected = new Promise<CustomEvent<DisconnectEventDetail>>((resolve) =>
        client.addEventListener(
          "disconnect",
          (event) => resolve(event as CustomEvent<DisconnectEventDetail>),
          { once: true },
        )
      );
      proxy.cutAll();
      const event = await disconnected;
      assert.equal(event.detail.reconnecting, false);
      assert.ok(event.detail.error instanceof ConnectionClosedError);
      assert.equal(client.state, "closed");
      // The proxy's own two sockets of this connection are not the client's to close.
      await proxied.closed;
    },
  });

  Deno.test({
    name:
      "mqtt: the broker stops mid-session (reconnect: false): nothing left after the disconnect event",
    ...sanitized,
    async fn() {
      await using clients = new Clients();
      const client = await clients.connect(doomed.url, {
        reconnect: false,
        keepalive: 5,
      });
      await client.subscribe("kite/leak/stop", { qos: 1 });
      const disconnected = new Promise<Event>((resolve) =>
        client.addEventListener("disconnect", resolve, { once: true })
      );
      await doomed.stop();
      const event = await disconnected as CustomEvent<DisconnectEventDetail>;
      assert.equal(event.detail.reconnecting, false);
      assert.ok(event.detail.error instanceof ConnectionClosedError);
      assert.equal(client.state, "closed");
    },
  });

  for (const [scheme, url, tlsOptions] of targets) {
    Deno.test({
      name:
        `${scheme} the broker closes the connection first (session taken over, reconnect: false): nothing left`,
      ...sanitized,
      async fn() {
        // The broker ends the connection, with every sanitizer on: no process to wait for here.
        await using clients = new Clients();
        const client = await clients.connect(url(), {
          ...tlsOptions(),
          reconnect: false,
          keepalive: 5,
        });
        const disconnected = new Promise<Event>((resolve) =>
          client.addEventListener("disconnect", resolve, { once: true })
        );
        // When the same client id connects again, mosquitto closes the first connection
        // without a DISCONNECT (MQTT 3.1.1), as a broker going away would. The thief comes
        // over plain TCP, whose disconnect() leaves nothing open (unlike a WebSocket's, today).
        const thief = await clients.connect(broker.url, {
          clientId: client.clientId,
          reconnect: false,
          keepalive: 5,
        });
        await thief.disconnect();
        const event = await disconnected as CustomEvent<DisconnectEventDetail>;
        assert.equal(event.detail.reconnecting, false);
        assert.ok(event.detail.error instanceof ConnectionClosedError);
        assert.equal(client.state, "closed");
      },
    });
  }

  Deno.test({
    name: "mqtt: a refused CONNACK (anonymous not allowed) leaves no socket or timer",
    ...sanitized,
    async fn() {
      const error = await connect(strict.url, { keepalive: 5 }).then(
        (client) => client.disconnect().then(() => assert.fail("the broker accepted")),
        (error: unknown) => error,
      );
      assert.ok(error instanceof ConnectionRefusedError, `got ${error}`);
      assert.equal(error.reasonCode, 5);
    },
  });

  Deno.test({
    name: "mqtt: a refused connection (nothing listens on the port) leaves no socket or timer",
    ...sanitized,
    async fn() {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = listener.addr.port;
      listener.close();
      await assert.rejects(
        connect(`mqtt://127.0.0.1:${port}`, { connectTimeout: 5_000 }),
        ConnectionClosedError,
      );
    },
  });

  Deno.test({
    name: "ws: a refused connection (nothing listens on the port) leaves no socket or timer",
    ...sanitized,
    async fn() {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = listener.addr.port;
      listener.close();
      await assert.rejects(connect(`ws://127.0.0.1:${port}`, { connectTimeout: 5_000 }));
    },
  });

  Deno.test({
    name: "mqtts: a failed TLS handshake (untrusted certificate) leaves no TLS connection open",
    ...sanitized,
    async fn() {
      await assert.rejects(
        connect(`mqtts://127.0.0.1:${broker.tlsPort}`, { connectTimeout: 5_000 }),
      );
    },
  });

  Deno.test({
    name: "leak teardown: stop the fault proxy and the brokers",
    ...harness,
    async fn() {
      await proxy?.close();
      await doomed?.stop();
      await strict?.stop();
      await broker?.stop();
    },
  });
} else {
  test("leak_test: not applicable outside Deno (resource sanitizers are Deno's)", {
    skip: "Deno only: Bun has no op and resource sanitizers",
  }, () => {});
}
