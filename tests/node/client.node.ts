/**
 * The built package on Node: `import { connect } from "@kite/mqtt"` reaches mosquitto over TCP,
 * TLS (with and without a client certificate) and WebSocket, moves QoS 0, 1 and 2 messages both
 * ways, and reconnects (and subscribes again) after the broker restarts; the other entry points
 * (`/broker`, `/cli`, `/packet`) load and work.
 *
 * Runs only under `node --test`, from `dist/node-test/` (see support.ts). On Node 20 the
 * global `WebSocket` needs `--experimental-websocket`, which `.ci/test.ts` passes.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import process from "node:process";
import { connect, ConnectionClosedError, type ConnectOptions, MqttClient } from "@kite/mqtt";
import { decode, encode } from "@kite/mqtt/packet";
import { Broker } from "@kite/mqtt/broker";
import { main } from "@kite/mqtt/cli";
import { mosquittoSkipReason, sharedMosquitto, startMosquitto } from "../helpers/mosquitto.ts";
import { within } from "../helpers/wait.ts";
import { child, HERE, NODE, take, text, WAIT_MS } from "./support.ts";

const skip = mosquittoSkipReason();

/** Connects both ways over `url`, then each QoS goes client → broker → client. */
async function roundTrips(url: string, options: ConnectOptions, topic: string): Promise<void> {
  const subscriber = await connect(url, { ...options, reconnect: false });
  const publisher = await connect(url, { ...options, reconnect: false });
  try {
    assert.ok(subscriber instanceof MqttClient);
    assert.equal(await subscriber.subscribe(`${topic}/#`, { qos: 2 }), 2);
    const arriving = take(subscriber, `${topic}/#`, 3);
    for (const qos of [0, 1, 2] as const) {
      // Settles on the flush (QoS 0), PUBACK (1) or PUBCOMP (2): the broker took it.
      await within(
        publisher.publish(`${topic}/${qos}`, `at QoS ${qos}`, { qos }),
        WAIT_MS,
        `the QoS ${qos} publish to settle`,
      );
    }
    const messages = await arriving;
    assert.deepEqual(
      messages.map((message) => [message.topic, text(message), message.qos]),
      [0, 1, 2].map((qos) => [`${topic}/${qos}`, `at QoS ${qos}`, qos]),
    );
  } finally {
    await publisher.disconnect();
    await subscriber.disconnect();
  }
}

describe("node - the package over each transport", () => {
  const broker = sharedMosquitto({ tls: true, websockets: true }, skip);

  test("node - mqtt: over TCP, QoS 0, 1 and 2 both ways", { skip }, async () => {
    await roundTrips(`mqtt://127.0.0.1:${broker.port}`, {}, "node/tcp");
  });

  test(
    "node - mqtts: over TLS trusting the test CA, QoS 0, 1 and 2 both ways",
    { skip },
    async () => {
      await roundTrips(`mqtts://127.0.0.1:${broker.tlsPort}`, { ca: broker.ca }, "node/tls");
    },
  );

  test("node - mqtts: with a client certificate (mutual TLS)", { skip }, async () => {
    const options = { ca: broker.ca, cert: broker.clientCert, key: broker.clientKey };
    await roundTrips(`mqtts://127.0.0.1:${broker.mtlsPort}`, options, "node/mtls");
  });

  test("node - mqtts: refuses a broker whose certificate it cannot verify", { skip }, async () => {
    await assert.rejects(
      connect(`mqtts://127.0.0.1:${broker.tlsPort}`, { reconnect: false, connectTimeout: WAIT_MS }),
      ConnectionClosedError,
    );
  });

  test("node - ws: over WebSocket, QoS 0, 1 and 2 both ways", { skip }, async () => {
    assert.equal(
      typeof globalThis.WebSocket,
      "function",
      "Node has no global WebSocket: on Node 20 and 21 run node with --experimental-websocket",
    );
    await roundTrips(`ws://127.0.0.1:${broker.wsPort}`, {}, "node/ws");
  });
});

test("node - without a global WebSocket (Node 20 without the flag), ws: fails with a TypeError saying so", async () => {
  // A Node of its own, without --experimental-websocket; on Node 22 and later it has WebSocket.
  const script = 'import { connect } from "@kite/mqtt";\n' +
    "if (typeof WebSocket === 'function') console.log('has WebSocket');\n" +
    "else await connect('ws://127.0.0.1:9/mqtt').catch((e) => console.log(e.name, e.message));\n";
  const run = child(NODE, ["--input-type=module", "-e", script], {
    cwd: path.join(HERE, "..", ".."),
    env: { NODE_OPTIONS: "" },
  });
  assert.deepEqual(await run.exited(), { code: 0, signal: null }, run.stderr);
  if (Number(process.versions.node.split(".")[0]) >= 22) {
    assert.equal(run.stdout, "has WebSocket\n");
  } else {
    assert.match(run.stdout, /^TypeError .*this runtime has no WebSocket\n$/);
  }
});

test(
  "node - reconnects after mosquitto restarts, subscribes again, and delivers",
  { skip },
  async () => {
    const broker = await startMosquitto();
    const url = broker.url;
    const options = { reconnect: { minDelay: 10, maxDelay: 200 } };
    const subscriber = await connect(url, options);
    const publisher = await connect(url, options);
    try {
      await subscriber.subscribe("node/restart", { qos: 1 });
      const reconnected = (client: MqttClient) =>
        new Promise((resolve) => client.addEventListener("connect", resolve, { once: true }));
      const back = Promise.all([reconnected(subscriber), reconnected(publisher)]);
      await broker.restart();
      await within(back, WAIT_MS, "both clients to reconnect");
      // The restarted broker kept no session: the subscriber subscribed again by itself. Retained,
      // the message reaches it whether its SUBSCRIBE got there before the PUBLISH or after.
      const arriving = take(subscriber, "node/restart", 1);
      await within(
        publisher.publish("node/restart", "after the restart", { qos: 1, retain: true }),
        WAIT_MS,
        "the publish after the restart to be acknowledged",
      );
      const [message] = await arriving;
      assert.equal(text(message), "after the restart");
      assert.equal(subscriber.state, "connected");
    } finally {
      await publisher.disconnect();
      await subscriber.disconnect();
      await broker.stop();
    }
  },
);

test("node - the broker entry point serves a client over TCP", async () => {
  const broker = new Broker();
  try {
    const { port } = await broker.listen({ port: 0, hostname: "127.0.0.1" });
    await roundTrips(`mqtt://127.0.0.1:${port}`, {}, "node/local");
  } finally {
    await broker.close();
  }
});

test("node - Symbol.asyncDispose, what a compiled `await using` calls, disconnects the client and closes the broker", async () => {
  // Node 20 cannot parse `await using`, but TypeScript compiles it to calls of this method.
  assert.equal(typeof Symbol.asyncDispose, "symbol");
  const broker = new Broker();
  const { port } = await broker.listen({ port: 0, hostname: "127.0.0.1" });
  const client = await connect(`mqtt://127.0.0.1:${port}`, { reconnect: false });
  await client[Symbol.asyncDispose]();
  assert.equal(client.state, "closed");
  await broker[Symbol.asyncDispose]();
  await assert.rejects(
    connect(`mqtt://127.0.0.1:${port}`, { reconnect: false }),
    ConnectionClosedError,
  );
});

test("node - the CLI entry point runs in-process", async () => {
  let output = "";
  const stdout = new WritableStream<Uint8Array>({
    write: (chunk) => void (output += new TextDecoder().decode(chunk)),
  });
  assert.equal(await main(["pub", "--help"], { stdout }), 0);
  assert.match(output, /^Usage: kite pub /);
});

test("node - the codec entry point encodes and decodes", () => {
  const bytes = encode({
    type: "subscribe",
    packetId: 7,
    subscriptions: [{ topicFilter: "a/#", qos: 1 }],
  });
  assert.deepEqual(decode(bytes), {
    type: "subscribe",
    packetId: 7,
    subscriptions: [{ topicFilter: "a/#", qos: 1 }],
  });
});
