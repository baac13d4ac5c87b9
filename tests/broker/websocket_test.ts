import assert from "node:assert/strict";
import { test } from "node:test";
import { Broker } from "../../src/broker/mod.ts";
import { Clients } from "../helpers/clients.ts";
import type { Message } from "../../src/client/types.ts";
import type { QoS } from "../../src/packet/types.ts";
import { str, versionName, VERSIONS, waitFor } from "./helpers.ts";

const canServe = typeof (globalThis as { Deno?: { serve?: unknown } }).Deno?.serve === "function" ||
  typeof (globalThis as { Bun?: { serve?: unknown } }).Bun?.serve === "function";

for (const version of VERSIONS) {
  test(
    `Broker - ${versionName(version)} over WebSocket: QoS 0, 1 and 2`,
    { skip: canServe ? false : "this runtime cannot serve WebSocket" },
    async () => {
      await using broker = new Broker();
      const { port } = await broker.listenWebSocket({ port: 0 });
      const url = `ws://127.0.0.1:${port}/mqtt`;
      await using clients = new Clients();
      const sub = await clients.connect(url, {
        clientId: "ws-sub",
        protocolVersion: version,
        reconnect: false,
      });
      const messages: Message[] = [];
      sub.setPublishHandler((message) => {
        messages.push({ ...message, payload: message.payload.slice() });
      });
      await sub.subscribe("ws/#", { qos: 2 });
      const pub = await clients.connect(url, {
        clientId: "ws-pub",
        protocolVersion: version,
        reconnect: false,
      });
      for (const qos of [0, 1, 2] as QoS[]) await pub.publish(`ws/${qos}`, `q${qos}`, { qos });
      await waitFor(() => messages.length === 3, "three messages");
      assert.deepEqual(messages.map((m) => [m.topic, str(m.payload), m.qos]), [
        ["ws/0", "q0", 0],
        ["ws/1", "q1", 1],
        ["ws/2", "q2", 2],
      ]);
      await pub.disconnect();
      sub.addEventListener("error", () => {});
      await broker.close();
      await waitFor(() => sub.state === "closed", "the subscriber to see the close");
    },
  );
}
