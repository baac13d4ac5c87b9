/**
 * The demo behind `deno task demo`: no broker to install. It starts Kite's local broker on a free
 * loopback port (or uses `MQTT_URL`), then runs the three profiles of the examples — a subscriber
 * to three topics at QoS 2, a publisher sending one message at QoS 0, 1 and 2, and a client doing
 * both — prints what was sent and received, and exits 0 when every message arrived.
 *
 *     deno task demo
 *     bun run examples/demo.ts
 *     MQTT_URL=mqtt://127.0.0.1:1883 deno task demo
 *
 * @module
 */

import process from "node:process";
import { connect, type Message, type MqttClient } from "../mod.ts";
import { Broker } from "../src/broker/mod.ts";

const decoder = new TextDecoder();
const topics = ["demo/qos0", "demo/qos1", "demo/qos2"];

let broker: Broker | undefined;
let url = process.env.MQTT_URL;
if (url === undefined) {
  broker = new Broker();
  const { port } = await broker.listen({ port: 0, hostname: "127.0.0.1" });
  url = `mqtt://127.0.0.1:${port}`;
  console.log(`local broker  listening on ${url}`);
} else {
  console.log(`broker        ${url} (from MQTT_URL)`);
}

/** Resolves with the first `count` messages `client` receives; rejects after 10 s. */
function collect(client: MqttClient, count: number): Promise<Message[]> {
  return new Promise((resolve, reject) => {
    const messages: Message[] = [];
    const timer = setTimeout(
      () => reject(new Error(`only ${messages.length} of ${count} messages arrived`)),
      10_000,
    );
    client.setPublishHandler((message) => {
      messages.push(message);
      console.log(
        `  received    ${message.topic} (QoS ${message.qos}): ${decoder.decode(message.payload)}`,
      );
      if (messages.length === count) {
        clearTimeout(timer);
        resolve(messages);
      }
    });
  });
}

let ok = false;
try {
  const run = Date.now().toString(36);
  const subscriber = await connect(url, { clientId: `demo-sub-${run}`, reconnect: false });
  const granted = await subscriber.subscribe(topics.map((topic) => ({ topic, qos: 2 as const })));
  console.log(`subscriber    subscribed to ${topics.join(", ")} (granted QoS ${granted})`);
  const both = await connect(url, { clientId: `demo-both-${run}`, reconnect: false });
  await both.subscribe("demo/echo", { qos: 1 });
  console.log("pubsub        subscribed to demo/echo");

  const subscriberGot = collect(subscriber, 3);
  const bothGot = collect(both, 1);
  // Awaited below, after subscriberGot: a timeout meanwhile must not count as unhandled.
  bothGot.catch(() => {});
  const publisher = await connect(url, { clientId: `demo-pub-${run}`, reconnect: false });
  for (const qos of [0, 1, 2] as const) {
    await publisher.publish(topics[qos], `hello at QoS ${qos}`, { qos });
    console.log(`publisher     published to ${topics[qos]} at QoS ${qos}`);
  }
  await both.publish("demo/echo", "hello from the client that does both", { qos: 1 });
  console.log("pubsub        published to demo/echo at QoS 1");

  const received = [...await subscriberGot, ...await bothGot];
  ok = received.length === 4 &&
    topics.every((topic) => received.some((message) => message.topic === topic));
  await Promise.all([publisher.disconnect(), subscriber.disconnect(), both.disconnect()]);
  console.log(ok ? "every message arrived" : "some messages did not arrive");
} catch (error) {
  console.error(`demo failed: ${error instanceof Error ? error.message : error}`);
} finally {
  await broker?.close();
}
process.exit(ok ? 0 : 1);
