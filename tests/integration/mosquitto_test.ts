/**
 * Kite against a real mosquitto: round trips on every protocol version and QoS, retained
 * messages, wills, clean and persistent sessions, TLS, mutual TLS, websockets, a burst of 1,000
 * QoS 2 publishes, and a refused CONNACK. Each describe block starts its own broker.
 */

import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import {
  connect,
  ConnectionRefusedError,
  type ConnectOptions,
  type Message,
  MqttClient,
  type ProtocolVersion,
  type QoS,
  type Transport,
} from "../../mod.ts";
import { mosquittoSkipReason, sharedMosquitto } from "../helpers/mosquitto.ts";
import { startFaultProxy } from "../helpers/fault_proxy.ts";
import { Clients } from "../helpers/clients.ts";

const skip = mosquittoSkipReason();
const SLOW = { skip, timeout: 60_000 };
const VERSIONS: ProtocolVersion[] = [3, 4, 5];
const QOS: QoS[] = [0, 1, 2];
const NAMES: Record<ProtocolVersion, string> = { 3: "MQTT 3.1", 4: "MQTT 3.1.1", 5: "MQTT 5.0" };
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A short client id, unique in this run, within MQTT 3.1's 23 characters. */
let idCounter = 0;
function clientId(label: string): string {
  return `k${label.slice(0, 10)}${(++idCounter).toString(36)}${
    Math.random().toString(36).slice(2, 6)
  }`;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Collects every message a client receives (payloads copied), and waits for a count of them. */
class Inbox {
  readonly messages: Message[] = [];
  #wake: (() => void) | undefined;

  constructor(client: MqttClient) {
    client.setPublishHandler((message) => {
      this.messages.push({ ...message, payload: message.payload.slice() });
      this.#wake?.();
    });
  }

  /** Resolves with the messages once there are at least `count`; rejects after `ms`. */
  async waitFor(count: number, ms = 10_000): Promise<Message[]> {
    const deadline = Date.now() + ms;
    while (this.messages.length < count) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`expected ${count} messages, got ${this.messages.length} within ${ms} ms`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
      this.#wake = undefined;
    }
    return this.messages;
  }

  /** Waits `ms`, then asserts that the inbox still holds exactly `count` messages. */
  async staysAt(count: number, ms = 500): Promise<void> {
    await delay(ms);
    assert.equal(this.messages.length, count, `unexpected messages: ${this.describe()}`);
  }

  describe(): string {
    return this.messages.map((m) => `${m.topic}=${decoder.decode(m.payload)}`).join(", ");
  }
}

/**
 * Runs `body` with an `open` that connects and remembers each client, and disconnects them all
 * afterwards, whatever happened.
 */
async function withClients(
  body: (open: (url: string, options?: ConnectOptions) => Promise<MqttClient>) => Promise<void>,
): Promise<void> {
  await using clients = new Clients({ reconnect: false, keepalive: 30 });
  await body((url, options) => clients.connect(url, options));
}

/**
 * A plain TCP connection as a `Transport`, for the low-level `new MqttClient(transport)`:
 * `Deno.connect` on Deno, a `node:net` socket adapted to web streams elsewhere. Its `close()`
 * drops the connection at once, without DISCONNECT.
 */
async function openTcp(host: string, port: number): Promise<Transport> {
  if (typeof Deno !== "undefined") return await Deno.connect({ hostname: host, port });
  const socket = net.connect({ host, port });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  const readable = new ReadableStream<Uint8Array>({
    start(controller) {
      const end = (error?: Error) => {
        try {
          if (error) controller.error(error);
          else controller.close();
        } catch {
          // Already closed.
        }
      };
      socket.on("data", (chunk: Uint8Array) => controller.enqueue(new Uint8Array(chunk)));
      socket.on("end", () => end());
      socket.on("error", (error) => end(error));
      socket.on("close", () => end());
    },
    cancel() {
      socket.destroy();
    },
  });
  const writable = new WritableStream<Uint8Array>({
    write(chunk) {
      return new Promise((resolve, reject) =>
        socket.write(chunk, (error) => (error ? reject(error) : resolve()))
      );
    },
    close() {
      return new Promise((resolve) => socket.end(() => resolve()));
    },
    abort() {
      socket.destroy();
    },
  });
  return {
    readable,
    writable,
    close: () => {
      socket.destroy();
    },
  };
}

/** Every byte value, so a payload that is not UTF-8 makes it through untouched. */
function binaryPayload(tag: number): Uint8Array {
  const bytes = new Uint8Array(300);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i + tag) & 0xff;
  return bytes;
}

describe("mosquitto: round trips", () => {
  const broker = sharedMosquitto();

  for (const version of VERSIONS) {
    for (const publishQos of QOS) {
      test(
        `${
          NAMES[version]
        } publish QoS ${publishQos} reaches subscriptions at QoS 0, 1 and 2 with min(pub, sub)`,
        SLOW,
        async () => {
          await withClients(async (open) => {
            const prefix = `kite/rt/v${version}/p${publishQos}`;
            const subscriber = await open(broker.url, {
              clientId: clientId("sub"),
              protocolVersion: version,
            });
            const inbox = new Inbox(subscriber);
            for (const subscribeQos of QOS) {
              const granted = await subscriber.subscribe(`${prefix}/s${subscribeQos}/+`, {
                qos: subscribeQos,
              });
              assert.equal(granted, subscribeQos);
            }
            const publisher = await open(broker.url, {
              clientId: clientId("pub"),
              protocolVersion: version,
            });
            const topics = QOS.map((subscribeQos) => `${prefix}/s${subscribeQos}/m`);
            for (const [i, topic] of topics.entries()) {
              await publisher.publish(topic, binaryPayload(i), { qos: publishQos });
            }
            const received = await inbox.waitFor(3);
            await inbox.staysAt(3, 200);
            for (const [i, topic] of topics.entries()) {
              const message = received.find((m) => m.topic === topic);
              assert.ok(message, `nothing on ${topic}: ${inbox.describe()}`);
              assert.deepEqual(message.payload, binaryPayload(i));
              assert.equal(message.qos, Math.min(publishQos, i));
              assert.equal(message.retain, false);
              assert.equal(message.dup, false);
              assert.equal(message.packetId === undefined, message.qos === 0);
            }
          });
        },
      );
    }
  }

  test(
    "MQTT 5.0 properties survive the round trip (content type, user properties, correlation data)",
    SLOW,
    async () => {
      await withClients(async (open) => {
        const subscriber = await open(broker.url, {
          clientId: clientId("sub"),
          protocolVersion: 5,
        });
        const inbox = new Inbox(subscriber);
        await subscriber.subscribe("kite/props", { qos: 1 });
        const publisher = await open(broker.url, { clientId: clientId("pub"), protocolVersion: 5 });
        await publisher.publish("kite/props", "{}", {
          qos: 1,
          properties: {
            contentType: "application/json",
            userProperties: [["a", "1"], ["a", "2"]],
            correlationData: Uint8Array.of(1, 2, 3),
          },
        });
        const [message] = await inbox.waitFor(1);
        assert.equal(message.properties?.contentType, "application/json");
        assert.deepEqual(message.properties?.userProperties, [["a", "1"], ["a", "2"]]);
        assert.deepEqual(message.properties?.correlationData, Uint8Array.of(1, 2, 3));
      });
    },
  );

  test(
    'MQTT 5.0 topicAliases "auto": every message reaches the subscriber with its topic, past the broker\'s 10 aliases, in fewer bytes',
    SLOW,
    async () => {
      await using clients = new Clients();
      const subscriber = await clients.connect(broker.url, {
        clientId: clientId("sub"),
        protocolVersion: 5,
      });
      const inbox = new Inbox(subscriber);
      await subscriber.subscribe("kite/alias/#", { qos: 1 });
      // 12 topics, more than mosquitto's default max_topic_alias of 10: topics 10 and 11 take
      // the aliases of the least recently used ones, which come back later.
      const topics = Array.from(
        { length: 12 },
        (_, i) => `kite/alias/building-7/floor-3/room-${i}/sensor/temperature`,
      );
      const order = [...topics.slice(0, 10), ...topics.slice(0, 10), ...topics, ...topics];
      const written: number[] = [];
      for (const topicAliases of ["manual", "auto"] as const) {
        const transport = await openTcp(broker.host, broker.port);
        let bytes = 0;
        const writer = transport.writable.getWriter();
        const counting: Transport = {
          readable: transport.readable,
          writable: new WritableStream<Uint8Array>({
            write(chunk) {
              bytes += chunk.length;
              return writer.write(chunk);
            },
            close: () => writer.close(),
            abort: (reason) => writer.abort(reason),
          }),
          close: () => transport.close?.(),
        };
        const publisher = clients.add(new MqttClient(counting));
        await publisher.connect({
          clientId: clientId("pub"),
          protocolVersion: 5,
          keepalive: 0,
          topicAliases,
        });
        const start = bytes;
        for (const [i, topic] of order.entries()) {
          await publisher.publish(topic, `${topicAliases}${i}`, { qos: i % 2 === 0 ? 0 : 1 });
        }
        written.push(bytes - start);
        const received = await inbox.waitFor(order.length * written.length);
        const mine = received.slice(-order.length);
        assert.deepEqual(
          mine.map((m) => [m.topic, decoder.decode(m.payload)]),
          order.map((topic, i) => [topic, `${topicAliases}${i}`]),
        );
      }
      assert.ok(written[1] < written[0], `with aliases ${written[1]} bytes, without ${written[0]}`);
    },
  );

  test(
    "low level: MqttClient over a TCP connection opened by hand, MQTT 3.1, QoS 2",
    SLOW,
    async () => {
      await using clients = new Clients();
      const client = clients.add(new MqttClient(await openTcp(broker.host, broker.port)));
      const sessionPresent = await client.connect({
        clientId: clientId("low"),
        protocolVersion: 3,
        keepalive: 0,
      });
      assert.equal(sessionPresent, false);
      const inbox = new Inbox(client);
      assert.equal(await client.subscribe("kite/low", { qos: 2 }), 2);
      await client.publish("kite/low", "by hand", { qos: 2 });
      const [message] = await inbox.waitFor(1);
      assert.equal(decoder.decode(message.payload), "by hand");
      assert.equal(message.qos, 2);
    },
  );

  for (const version of VERSIONS) {
    test(
      `${
        NAMES[version]
      } retained: a new subscriber gets it with retain=true; an empty retained payload clears it`,
      SLOW,
      async () => {
        await withClients(async (open) => {
          const topic = `kite/retained/v${version}`;
          const publisher = await open(broker.url, {
            clientId: clientId("pub"),
            protocolVersion: version,
          });
          await publisher.publish(topic, "kept", { qos: 1, retain: true });

          const first = await open(broker.url, {
            clientId: clientId("sub"),
            protocolVersion: version,
          });
          const firstInbox = new Inbox(first);
          await first.subscribe(topic, { qos: 1 });
          const [retained] = await firstInbox.waitFor(1);
          assert.equal(retained.topic, topic);
          assert.equal(decoder.decode(retained.payload), "kept");
          assert.equal(retained.retain, true);
          assert.equal(retained.qos, 1);

          // A live publish to a subscriber that is already there is not marked retained.
          await publisher.publish(topic, "", { qos: 1, retain: true });
          const [, cleared] = await firstInbox.waitFor(2);
          assert.equal(cleared.payload.length, 0);
          assert.equal(cleared.retain, false);

          const second = await open(broker.url, {
            clientId: clientId("sub"),
            protocolVersion: version,
          });
          const secondInbox = new Inbox(second);
          await second.subscribe(topic, { qos: 1 });
          await secondInbox.staysAt(0, 500);
        });
      },
    );
  }
});

describe("mosquitto: wills", () => {
  const broker = sharedMosquitto();

  /** A client on the will topic, and its inbox. */
  async function watcher(
    open: (url: string, options?: ConnectOptions) => Promise<MqttClient>,
    topic: string,
  ): Promise<Inbox> {
    const client = await open(broker.url, { clientId: clientId("watch") });
    const inbox = new Inbox(client);
    await client.subscribe(topic, { qos: 1 });
    return inbox;
  }

  for (const version of VERSIONS) {
    test(
      `${
        NAMES[version]
      } will: the broker publishes it when the transport closes abruptly (low-level client)`,
      SLOW,
      async () => {
        await withClients(async (open) => {
          const topic = `kite/will/low/v${version}`;
          const inbox = await watcher(open, topic);
          const transport = await openTcp(broker.host, broker.port);
          const client = new MqttClient(transport);
          try {
            await client.connect({
              clientId: clientId("will"),
              protocolVersion: version,
              keepalive: 0,
              will: { topic, payload: Uint8Array.of(0, 1, 255), qos: 1 },
            });
            const disconnected = new Promise((resolve) =>
              client.addEventListener("disconnect", resolve, { once: true })
            );
            transport.close!();
            const [will] = await inbox.waitFor(1);
            assert.equal(will.topic, topic);
            assert.deepEqual(will.payload, Uint8Array.of(0, 1, 255));
            assert.equal(will.qos, 1);
            await disconnected;
            assert.equal(client.state, "closed");
          } finally {
            await client.disconnect();
          }
        });
      },
    );
  }

  test(
    "will: the broker publishes it when the network cuts the connection (connect(url) through a proxy)",
    SLOW,
    async () => {
      await using proxy = await startFaultProxy(broker);
      await withClients(async (open) => {
        const topic = "kite/will/proxy";
        const inbox = await watcher(open, topic);
        const client = await open(proxy.url, {
          clientId: clientId("will"),
          will: { topic, payload: "cut", qos: 1 },
        });
        const disconnected = new Promise<Event>((resolve) =>
          client.addEventListener("disconnect", resolve, { once: true })
        );
        proxy.cutAll();
        const [will] = await inbox.waitFor(1);
        assert.equal(decoder.decode(will.payload), "cut");
        const event = await disconnected as CustomEvent<{ error?: Error; reconnecting: boolean }>;
        assert.equal(event.detail.reconnecting, false);
        assert.ok(event.detail.error, "an unexpected loss carries an error");
      });
    },
  );

  for (const version of VERSIONS) {
    test(`${NAMES[version]} will: a normal disconnect() does not publish it`, SLOW, async () => {
      await withClients(async (open) => {
        const topic = `kite/will/normal/v${version}`;
        const inbox = await watcher(open, topic);
        const client = await open(broker.url, {
          clientId: clientId("will"),
          protocolVersion: version,
          will: { topic, payload: "should not appear", qos: 1 },
        });
        await client.disconnect();
        await inbox.staysAt(0, 700);
      });
    });
  }

  test(
    "MQTT 5.0 will: disconnect({ reasonCode: 0x04 }) publishes it, with its properties",
    SLOW,
    async () => {
      await withClients(async (open) => {
        const topic = "kite/will/0x04";
        const watcherClient = await open(broker.url, {
          clientId: clientId("watch"),
          protocolVersion: 5,
        });
        const inbox = new Inbox(watcherClient);
        await watcherClient.subscribe(topic, { qos: 1 });
        const client = await open(broker.url, {
          clientId: clientId("will"),
          protocolVersion: 5,
          will: {
            topic,
            payload: "asked for",
            qos: 1,
            properties: { contentType: "text/plain" },
          },
        });
        await client.disconnect({ reasonCode: 0x04 });
        const [will] = await inbox.waitFor(1);
        assert.equal(decoder.decode(will.payload), "asked for");
        assert.equal(will.properties?.contentType, "text/plain");
      });
    },
  );
});

describe("mosquitto: clean and persistent sessions", () => {
  const broker = sharedMosquitto();

  for (const version of VERSIONS) {
    // MQTT 5 keeps a session only for its Session Expiry Interval, which defaults to 0.
    const keep = version === 5 ? { properties: { sessionExpiryInterval: 300 } } : {};

    test(
      `${
        NAMES[version]
      } clean: false: QoS 1 messages published while offline arrive after reconnecting${
        version === 3 ? "" : ", sessionPresent true"
      }`,
      SLOW,
      async () => {
        await withClients(async (open) => {
          const id = clientId("pers");
          const topic = `kite/session/persistent/v${version}`;
          const first = await open(broker.url, {
            clientId: id,
            protocolVersion: version,
            clean: false,
            ...keep,
          });
          await first.subscribe(topic, { qos: 1 });
          await first.disconnect();

          const publisher = await open(broker.url, {
            clientId: clientId("pub"),
            protocolVersion: version,
          });
          for (let i = 0; i < 5; i++) await publisher.publish(topic, `offline ${i}`, { qos: 1 });

          const again = await open(broker.url, {
            clientId: id,
            protocolVersion: version,
            clean: false,
            ...keep,
          });
          // MQTT 3.1's CONNACK has no session present flag: its first byte is reserved.
          assert.equal(again.sessionPresent, version !== 3);
          // The queued messages arrived right after CONNACK; they were held for this handler.
          const inbox = new Inbox(again);
          const received = await inbox.waitFor(5);
          assert.deepEqual(
            received.map((m) => decoder.decode(m.payload)),
            [0, 1, 2, 3, 4].map((i) => `offline ${i}`),
          );
          assert.ok(received.every((m) => m.qos === 1 && m.topic === topic));
          await inbox.staysAt(5, 300);
        });
      },
    );

    test(
      `${
        NAMES[version]
      } clean: true: nothing published while offline arrives, sessionPresent false`,
      SLOW,
      async () => {
        await withClients(async (open) => {
          const id = clientId("clean");
          const topic = `kite/session/clean/v${version}`;
          const first = await open(broker.url, {
            clientId: id,
            protocolVersion: version,
            clean: false,
            ...keep,
          });
          await first.subscribe(topic, { qos: 1 });
          await first.disconnect();

          const publisher = await open(broker.url, {
            clientId: clientId("pub"),
            protocolVersion: version,
          });
          for (let i = 0; i < 3; i++) await publisher.publish(topic, `lost ${i}`, { qos: 1 });

          const again = await open(broker.url, {
            clientId: id,
            protocolVersion: version,
            clean: true,
          });
          assert.equal(again.sessionPresent, false);
          const inbox = new Inbox(again);
          await inbox.staysAt(0, 700);
          // And the subscription is gone with the session.
          await publisher.publish(topic, "after", { qos: 1 });
          await inbox.staysAt(0, 300);
        });
      },
    );
  }
});

describe("mosquitto: TLS, mutual TLS, websockets", () => {
  const broker = sharedMosquitto({ tls: true, websockets: true });

  // mosquitto 2.0 sends large messages to websocket clients at about 40 KB/s (a 200 KB one takes
  // 5 s, on Deno and Bun alike), so the websocket cases use a smaller payload.
  const cases: [string, number, () => [string, ConnectOptions]][] = [
    ["mqtts: with ca", 200_000, () => [`mqtts://127.0.0.1:${broker.tlsPort}`, { ca: broker.ca }]],
    ["mqtts: mutual TLS with ca, cert and key", 200_000, () => [
      `mqtts://127.0.0.1:${broker.mtlsPort}`,
      { ca: broker.ca, cert: broker.clientCert, key: broker.clientKey },
    ]],
    ["ws:", 3_000, () => [`ws://127.0.0.1:${broker.wsPort}`, {}]],
    ["wss: with ca", 3_000, () => [`wss://127.0.0.1:${broker.wssPort}`, { ca: broker.ca }]],
  ];

  for (const [name, size, target] of cases) {
    for (const version of [4, 5] as const) {
      test(
        `${name} ${NAMES[version]}: connect, subscribe, QoS 1 and 2 round trips`,
        SLOW,
        async () => {
          const [url, options] = target();
          await withClients(async (open) => {
            const client = await open(url, {
              ...options,
              clientId: clientId("tls"),
              protocolVersion: version,
            });
            const inbox = new Inbox(client);
            await client.subscribe("kite/secure/#", { qos: 2 });
            const big = new Uint8Array(size).map((_, i) => i % 251);
            await client.publish("kite/secure/one", "over the wire", { qos: 1 });
            await client.publish("kite/secure/two", big, { qos: 2 });
            const [one, two] = await inbox.waitFor(2);
            assert.equal(decoder.decode(one.payload), "over the wire");
            assert.equal(one.qos, 1);
            assert.deepEqual(two.payload, big);
            assert.equal(two.qos, 2);
          });
        },
      );
    }
  }

  test("mqtts: without the test CA the connection fails", SLOW, async () => {
    await assert.rejects(
      connect(`mqtts://127.0.0.1:${broker.tlsPort}`, { reconnect: false, connectTimeout: 5_000 }),
    );
  });

  test("mutual TLS: without a client certificate the connection fails", SLOW, async () => {
    await assert.rejects(
      connect(`mqtts://127.0.0.1:${broker.mtlsPort}`, {
        ca: broker.ca,
        reconnect: false,
        connectTimeout: 5_000,
      }),
    );
  });
});

describe("mosquitto: a burst of 1,000 QoS 2 publishes (max_inflight 20)", () => {
  const broker = sharedMosquitto();

  for (const version of [4, 5] as const) {
    test(
      `${
        NAMES[version]
      } 1,000 concurrent QoS 2 publishes all complete; the subscriber gets each exactly once`,
      SLOW,
      async () => {
        await withClients(async (open) => {
          const topic = `kite/burst/v${version}`;
          const subscriber = await open(broker.url, {
            clientId: clientId("sub"),
            protocolVersion: version,
          });
          const inbox = new Inbox(subscriber);
          await subscriber.subscribe(topic, { qos: 2 });
          const publisher = await open(broker.url, {
            clientId: clientId("pub"),
            protocolVersion: version,
          });
          const count = 1_000;
          await Promise.all(
            Array.from({ length: count }, (_, i) => publisher.publish(topic, `${i}`, { qos: 2 })),
          );
          assert.deepEqual(publisher.pending, { inflight: 0, waiting: 0 });
          const received = await inbox.waitFor(count, 30_000);
          await inbox.staysAt(count, 300);
          const seen = new Set(received.map((m) => Number(decoder.decode(m.payload))));
          assert.equal(seen.size, count);
          for (let i = 0; i < count; i++) assert.ok(seen.has(i), `message ${i} missing`);
          assert.ok(received.every((m) => m.qos === 2 && m.topic === topic));
        });
      },
    );
  }
});

/** Creates a mosquitto password file with one user, or says why it cannot. */
function passwordFile(user: string, password: string): { file?: string; reason?: string } {
  const candidates = ["/usr/bin/mosquitto_passwd", "/usr/local/bin/mosquitto_passwd"];
  const tool = candidates.find((candidate) => fs.existsSync(candidate));
  if (tool === undefined) {
    return { reason: "mosquitto_passwd (mosquitto-clients) is not installed" };
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kite-passwd-"));
  const file = path.join(dir, "passwd");
  try {
    execFileSync(tool, ["-c", "-b", file, user, password], { stdio: "ignore" });
    fs.chmodSync(file, 0o600);
    return { file };
  } catch (error) {
    return { reason: `mosquitto_passwd failed: ${error}` };
  }
}

describe("mosquitto: a refused CONNACK (allow_anonymous false + password file)", () => {
  const setup = skip ? { reason: skip } : passwordFile("kite", "s3cret");
  const refusedSkip = skip ?? setup.reason;
  const REFUSED = { skip: refusedSkip, timeout: 60_000 };
  const broker = sharedMosquitto(
    { extraConfig: `allow_anonymous false\npassword_file ${setup.file}` },
    refusedSkip,
  );
  after(() => {
    if (setup.file) fs.rmSync(path.dirname(setup.file), { recursive: true, force: true });
  });

  for (const version of VERSIONS) {
    const expected = version === 5 ? "0x86 or 0x87" : "5";
    const ok = (code: number) => version === 5 ? code === 0x86 || code === 0x87 : code === 5;

    test(
      `${NAMES[version]} anonymous: ConnectionRefusedError with code ${expected}`,
      REFUSED,
      async () => {
        const error = await connect(broker.url, {
          clientId: clientId("anon"),
          protocolVersion: version,
        }).then(
          (client) => client.disconnect().then(() => assert.fail("the broker accepted")),
          (error: unknown) => error,
        );
        assert.ok(error instanceof ConnectionRefusedError, `got ${error}`);
        assert.ok(ok(error.reasonCode), `code 0x${error.reasonCode.toString(16)}`);
      },
    );

    test(
      `${NAMES[version]} wrong password: ConnectionRefusedError with code ${expected}`,
      REFUSED,
      async () => {
        const error = await connect(broker.url, {
          clientId: clientId("bad"),
          protocolVersion: version,
          username: "kite",
          password: "wrong",
        }).then(
          (client) => client.disconnect().then(() => assert.fail("the broker accepted")),
          (error: unknown) => error,
        );
        assert.ok(error instanceof ConnectionRefusedError, `got ${error}`);
        assert.ok(
          version === 5
            ? error.reasonCode === 0x86 || error.reasonCode === 0x87
            : ok(error.reasonCode) || error.reasonCode === 4,
          `code 0x${error.reasonCode.toString(16)}`,
        );
      },
    );

    test(
      `${NAMES[version]} the right password is accepted (credentials in the URL)`,
      REFUSED,
      async () => {
        await withClients(async (open) => {
          const client = await open(`mqtt://kite:s3cret@127.0.0.1:${broker.port}`, {
            clientId: clientId("good"),
            protocolVersion: version,
          });
          assert.equal(client.state, "connected");
          assert.equal(client.connack?.reasonCode, 0);
          await client.publish("kite/auth", encoder.encode("in"), { qos: 1 });
        });
      },
    );
  }
});
