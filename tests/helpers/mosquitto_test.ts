import { test } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import * as tls from "node:tls";
import { mosquittoSkipReason, startMosquitto } from "./mosquitto.ts";

const skip = mosquittoSkipReason();
// Bun's default of 5 s per test is too short for starting and stopping a broker on a loaded
// machine (seen once in a full run: a stop that had not finished after 5 s).
const BROKER = { skip, timeout: 30_000 };

// MQTT 3.1.1 CONNECT: clean session, keepalive 60, empty client id; and the CONNACK accepting it.
const CONNECT = [
  0x10,
  0x0c,
  0x00,
  0x04,
  0x4d,
  0x51,
  0x54,
  0x54,
  0x04,
  0x02,
  0x00,
  0x3c,
  0x00,
  0x00,
];
const CONNACK_ACCEPTED = [0x20, 0x02, 0x00, 0x00];
const encoder = new TextEncoder();

/** A raw MQTT conversation over one socket: write bytes, read exactly n bytes back. */
class Conversation {
  #socket: net.Socket;
  #received: number[] = [];
  #failure: Error | undefined;
  #wake: () => void = () => {};
  #closed: Promise<void>;

  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Uint8Array) => {
      this.#received.push(...chunk);
      this.#wake();
    });
    socket.on("error", (error) => {
      this.#failure ??= error;
      this.#wake();
    });
    this.#closed = new Promise((resolve) =>
      socket.once("close", () => {
        this.#failure ??= new Error("the broker closed the connection");
        this.#wake();
        resolve();
      })
    );
  }

  write(bytes: number[]): void {
    this.#socket.write(Uint8Array.from(bytes));
  }

  async read(count: number, timeoutMs = 5_000): Promise<number[]> {
    const timer = setTimeout(() => {
      this.#failure ??= new Error(`no ${count} bytes within ${timeoutMs} ms`);
      this.#wake();
    }, timeoutMs);
    try {
      while (this.#received.length < count) {
        if (this.#failure) throw this.#failure;
        await new Promise<void>((resolve) => this.#wake = resolve);
      }
      return this.#received.splice(0, count);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.#socket.destroy();
    await this.#closed;
  }
}

function openTcp(port: number): Promise<Conversation> {
  return opened(net.connect({ host: "127.0.0.1", port }), "connect");
}

function openTls(port: number, options: tls.ConnectionOptions): Promise<Conversation> {
  return opened(tls.connect({ host: "127.0.0.1", port, ...options }), "secureConnect");
}

function opened(socket: net.Socket, readyEvent: string): Promise<Conversation> {
  const conversation = new Conversation(socket);
  return new Promise((resolve, reject) => {
    socket.once(readyEvent, () => resolve(conversation));
    socket.once("error", async (error) => {
      await conversation.close();
      reject(error);
    });
  });
}

/** Connects with MQTT 3.1.1 and returns the four CONNACK bytes. */
async function connack(conversation: Conversation): Promise<number[]> {
  conversation.write(CONNECT);
  return await conversation.read(4);
}

async function refuses(port: number): Promise<boolean> {
  try {
    const conversation = await openTcp(port);
    await conversation.close();
    return false;
  } catch (error) {
    return (error as { code?: string }).code === "ECONNREFUSED";
  }
}

test("startMosquitto - every listener is up on its own loopback port", BROKER, async () => {
  await using broker = await startMosquitto({ tls: true, websockets: true, persistence: true });
  assert.equal(broker.host, "127.0.0.1");
  const ports = [broker.port, broker.tlsPort, broker.mtlsPort, broker.wsPort, broker.wssPort];
  for (const port of ports) assert.ok(typeof port === "number" && port > 0);
  assert.equal(new Set(ports).size, ports.length);
  assert.match(broker.ca, /-----BEGIN CERTIFICATE-----/);
  assert.match(broker.clientCert, /-----BEGIN CERTIFICATE-----/);
  assert.match(broker.clientKey, /-----BEGIN PRIVATE KEY-----/);
  for (const port of ports as number[]) {
    const conversation = await openTcp(port);
    await conversation.close();
  }
});

test("startMosquitto - only the plain listener without options", BROKER, async () => {
  await using broker = await startMosquitto();
  assert.equal(typeof broker.port, "number");
  assert.deepEqual(
    [broker.tlsPort, broker.mtlsPort, broker.wsPort, broker.wssPort],
    [undefined, undefined, undefined, undefined],
  );
  assert.equal(broker.ca, "");
});

test("startMosquitto - a raw MQTT 3.1.1 CONNECT gets an accepting CONNACK", BROKER, async () => {
  await using broker = await startMosquitto();
  const conversation = await openTcp(broker.port);
  try {
    assert.deepEqual(await connack(conversation), CONNACK_ACCEPTED);
  } finally {
    await conversation.close();
  }
});

test("startMosquitto - CONNECT over TLS trusting the test CA", BROKER, async () => {
  await using broker = await startMosquitto({ tls: true });
  const conversation = await openTls(broker.tlsPort!, { ca: broker.ca });
  try {
    assert.deepEqual(await connack(conversation), CONNACK_ACCEPTED);
  } finally {
    await conversation.close();
  }
});

test("startMosquitto - the server certificate names localhost too", BROKER, async () => {
  await using broker = await startMosquitto({ tls: true });
  const conversation = await openTls(broker.tlsPort!, { ca: broker.ca, servername: "localhost" });
  try {
    assert.deepEqual(await connack(conversation), CONNACK_ACCEPTED);
  } finally {
    await conversation.close();
  }
});

test("startMosquitto - TLS without the test CA is rejected by the client", BROKER, async () => {
  await using broker = await startMosquitto({ tls: true });
  await assert.rejects(openTls(broker.tlsPort!, {}));
});

test("startMosquitto - CONNECT over mutual TLS with the client certificate", BROKER, async () => {
  await using broker = await startMosquitto({ tls: true });
  const conversation = await openTls(broker.mtlsPort!, {
    ca: broker.ca,
    cert: broker.clientCert,
    key: broker.clientKey,
  });
  try {
    assert.deepEqual(await connack(conversation), CONNACK_ACCEPTED);
  } finally {
    await conversation.close();
  }
});

test(
  "startMosquitto - mutual TLS without a client certificate gets no CONNACK",
  BROKER,
  async () => {
    await using broker = await startMosquitto({ tls: true });
    // With TLS 1.3 the client may finish its handshake before the broker rejects it.
    await assert.rejects(async () => {
      const conversation = await openTls(broker.mtlsPort!, { ca: broker.ca });
      try {
        await connack(conversation);
      } finally {
        await conversation.close();
      }
    });
  },
);

test("startMosquitto - CONNECT over websockets with subprotocol mqtt", BROKER, async () => {
  await using broker = await startMosquitto({ websockets: true });
  const socket = new WebSocket(`ws://127.0.0.1:${broker.wsPort}/`, "mqtt");
  socket.binaryType = "arraybuffer";
  const closed = new Promise((resolve) => socket.addEventListener("close", resolve));
  try {
    const reply = await new Promise<number[]>((resolve, reject) => {
      socket.addEventListener("open", () => socket.send(Uint8Array.from(CONNECT)));
      socket.addEventListener("message", (event) => resolve([...new Uint8Array(event.data)]));
      socket.addEventListener("error", () => reject(new Error("websocket error")));
    });
    assert.equal(socket.protocol, "mqtt");
    assert.deepEqual(reply, CONNACK_ACCEPTED);
  } finally {
    socket.close();
    await closed;
  }
});

test(
  "startMosquitto - restart keeps the port and the persisted retained message",
  BROKER,
  async () => {
    await using broker = await startMosquitto({ persistence: true });
    const topic = [...encoder.encode("kite/retained")];
    const payload = [...encoder.encode("kept")];
    const publisher = await openTcp(broker.port);
    try {
      assert.deepEqual(await connack(publisher), CONNACK_ACCEPTED);
      // PUBLISH QoS 1, retain, packet id 1; PUBACK proves the broker has stored it.
      publisher.write([
        0x33,
        2 + topic.length + 2 + payload.length,
        0,
        topic.length,
        ...topic,
        0,
        1,
        ...payload,
      ]);
      assert.deepEqual(await publisher.read(4), [0x40, 0x02, 0x00, 0x01]);
    } finally {
      await publisher.close();
    }

    const port = broker.port;
    await broker.restart();
    assert.equal(broker.port, port);

    const subscriber = await openTcp(broker.port);
    try {
      assert.deepEqual(await connack(subscriber), CONNACK_ACCEPTED);
      // SUBSCRIBE packet id 2 to the topic at QoS 0.
      subscriber.write([0x82, 2 + 2 + topic.length + 1, 0, 2, 0, topic.length, ...topic, 0]);
      assert.deepEqual(await subscriber.read(5), [0x90, 0x03, 0x00, 0x02, 0x00]);
      const retained = [
        0x31,
        2 + topic.length + payload.length,
        0,
        topic.length,
        ...topic,
        ...payload,
      ];
      assert.deepEqual(await subscriber.read(retained.length), retained);
    } finally {
      await subscriber.close();
    }
  },
);

test("startMosquitto - stop makes the port refuse, and is idempotent", BROKER, async () => {
  await using broker = await startMosquitto({ tls: true });
  await broker.stop();
  assert.ok(await refuses(broker.port));
  assert.ok(await refuses(broker.tlsPort!));
  await broker.stop();
});
