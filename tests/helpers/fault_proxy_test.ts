import { test } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import process from "node:process";
import { clearTimeout, setImmediate, setTimeout } from "node:timers";
import {
  type FaultConnectionInfo,
  type FaultProxy,
  mulberry32,
  startFaultProxy,
} from "./fault_proxy.ts";
import { mosquittoSkipReason, startMosquitto } from "./mosquitto.ts";

const HOST = "127.0.0.1";
/** The bound on every wait: a test that waits this long has failed, it has not slept. */
const WAIT_MS = 10_000;
const MiB = 1024 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One seed per run; set KITE_SEED to replay a failure. Every message about random cuts names it. */
const SEED = process.env.KITE_SEED === undefined
  ? Math.floor(Math.random() * 2 ** 32)
  : Number(process.env.KITE_SEED);

/** A socket a test drives: it keeps everything it receives and how its stream ended. */
class Peer {
  readonly socket: net.Socket;
  #chunks: Uint8Array[] = [];
  length = 0;
  /** How the incoming stream ended: EOF, or an error such as a reset. */
  ending: "end" | "error" | undefined;
  isClosed = false;
  readonly closed: Promise<void>;
  #wake: () => void = () => {};

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.length += chunk.length;
      this.#wake();
    });
    socket.on("end", () => {
      this.ending ??= "end";
      this.#wake();
    });
    socket.on("error", () => {
      this.ending ??= "error";
      this.#wake();
    });
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        this.isClosed = true;
        this.#wake();
        resolve();
      })
    );
  }

  received(): Uint8Array {
    const all = new Uint8Array(this.length);
    let offset = 0;
    for (const chunk of this.#chunks) {
      all.set(chunk, offset);
      offset += chunk.length;
    }
    this.#chunks = [all];
    return all;
  }

  text(): string {
    return decoder.decode(this.received());
  }

  write(data: string | Uint8Array | number[]): void {
    this.socket.write(typeof data === "string" ? encoder.encode(data) : Uint8Array.from(data));
  }

  /** Waits until `condition` holds, waking on every event of the socket. */
  async until(condition: () => boolean, what: string): Promise<void> {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.#wake();
    }, WAIT_MS);
    try {
      while (!condition()) {
        if (timedOut) {
          throw new Error(
            `waited ${WAIT_MS} ms for ${what}; got ${this.length} bytes, ` +
              `ending ${this.ending}, closed ${this.isClosed}`,
          );
        }
        await new Promise<void>((resolve) => this.#wake = resolve);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  bytes(count: number): Promise<void> {
    return this.until(() => this.length >= count || this.isClosed, `${count} bytes`).then(() => {
      if (this.length < count) {
        throw new Error(`closed after ${this.length} of ${count} bytes`);
      }
    });
  }

  close(): Promise<void> {
    return this.until(() => this.isClosed, "the socket to close");
  }
}

/** A loopback server that hands each accepted socket to the test as a Peer. */
class TestServer {
  readonly host = HOST;
  readonly peers: Peer[] = [];
  readonly #server: net.Server;
  #wake: () => void = () => {};

  private constructor(server: net.Server) {
    this.#server = server;
  }

  static async start(
    onPeer: (peer: Peer) => void = () => {},
    options: net.ServerOpts = {},
  ): Promise<TestServer> {
    const server = net.createServer(options, (socket) => {
      const peer = new Peer(socket);
      onPeer(peer);
      testServer.peers.push(peer);
      testServer.#wake();
    });
    // The handler runs only once the server listens, after this line.
    const testServer = new TestServer(server);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, HOST, () => resolve());
    });
    return testServer;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  /** The `index`-th accepted socket, once it is accepted. */
  async peer(index: number): Promise<Peer> {
    const timer = setTimeout(() => this.#wake(), WAIT_MS);
    try {
      const deadline = Date.now() + WAIT_MS;
      while (this.peers.length <= index) {
        if (Date.now() >= deadline) throw new Error(`connection ${index} never arrived`);
        await new Promise<void>((resolve) => this.#wake = resolve);
      }
      return this.peers[index];
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    for (const peer of this.peers) peer.socket.destroy();
    await Promise.all(this.peers.map((peer) => peer.closed));
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

function echoing(peer: Peer): void {
  peer.socket.pipe(peer.socket);
}

function connect(port: number, options: { allowHalfOpen?: boolean } = {}): Promise<Peer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: HOST, port, ...options });
    const peer = new Peer(socket);
    socket.once("connect", () => {
      socket.off("error", reject);
      resolve(peer);
    });
    socket.once("error", reject);
  });
}

/** The error code of a connect that fails, or an error if it succeeds. */
function connectError(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: HOST, port });
    socket.once("connect", () => {
      socket.destroy();
      reject(new Error(`connecting to ${port} succeeded`));
    });
    socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

/** Records each connection the proxy accepts, for their ids and `closed` promises. */
function recordConnections(proxy: FaultProxy): FaultConnectionInfo[] {
  const infos: FaultConnectionInfo[] = [];
  proxy.onConnection((info) => infos.push(info));
  return infos;
}

/** Deterministic bytes, so a reordered or corrupted stream shows. */
function pattern(length: number, seed: number): Uint8Array {
  const random = mulberry32(seed);
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (random() * 256) >>> 0;
  return bytes;
}

function assertSameBytes(actual: Uint8Array, expected: Uint8Array, message = ""): void {
  let first = -1;
  const common = Math.min(actual.length, expected.length);
  for (let i = 0; i < common; i++) {
    if (actual[i] !== expected[i]) {
      first = i;
      break;
    }
  }
  assert.ok(
    first === -1 && actual.length === expected.length,
    `${message} got ${actual.length} bytes, expected ${expected.length}` +
      (first === -1 ? "" : `; first difference at byte ${first}`),
  );
}

/**
 * Lets pending socket events run: round trips over a separate, direct connection to an echo
 * server. Whatever the proxy would forward by now, it would have forwarded.
 */
async function letSocketsRun(echo: Peer, roundTrips = 3): Promise<void> {
  for (let i = 0; i < roundTrips; i++) {
    const expected = echo.length + 1;
    echo.write([i]);
    await echo.bytes(expected);
  }
}

/**
 * Waits until the proxy holds bytes it cannot write yet. The proxy has no event for that, so
 * this looks after every event loop turn, for at most WAIT_MS.
 */
async function proxyBacklog(proxy: FaultProxy): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (proxy.buffered === 0) {
    if (Date.now() > deadline) throw new Error(`the proxy had no backlog within ${WAIT_MS} ms`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

test("FaultProxy - forwards 4 MiB both ways, intact and in order", async () => {
  const echo = await TestServer.start(echoing);
  const proxy = await startFaultProxy(echo);
  try {
    const client = await connect(proxy.port);
    const data = pattern(4 * MiB, 1);
    for (let offset = 0; offset < data.length; offset += 100_000) {
      client.write(data.subarray(offset, offset + 100_000));
    }
    await client.bytes(data.length);
    assertSameBytes((await echo.peer(0)).received(), data, "the server");
    assertSameBytes(client.received(), data, "the client");
    assert.equal(proxy.connections, 1);
    assert.equal(proxy.accepted, 1);
    client.socket.end();
    await client.close();
  } finally {
    await proxy.close();
    await echo.close();
  }
});

test("FaultProxy - a slow reader pauses the writer instead of filling the proxy", async () => {
  const sink = await TestServer.start((peer) => peer.socket.pause());
  const proxy = await startFaultProxy(sink);
  try {
    const client = await connect(proxy.port);
    const server = await sink.peer(0);
    const data = pattern(32 * MiB, 2);
    for (let offset = 0; offset < data.length; offset += 64 * 1024) {
      client.write(data.subarray(offset, offset + 64 * 1024));
    }
    // The sink is full once the proxy cannot write. Then give the proxy every chance to read
    // on regardless: sample until nothing has moved for 200 event loop turns (at most WAIT_MS).
    await proxyBacklog(proxy);
    let peak = 0;
    let unchanged = 0;
    let last = -1;
    for (const deadline = Date.now() + WAIT_MS; unchanged < 200 && Date.now() < deadline;) {
      await new Promise((resolve) => setImmediate(resolve));
      peak = Math.max(peak, proxy.buffered);
      const now = client.socket.writableLength + proxy.buffered;
      unchanged = now === last ? unchanged + 1 : 0;
      last = now;
    }
    assert.ok(client.socket.writableLength > 0, "the client holds the backlog, not the proxy");
    server.socket.on("data", () => peak = Math.max(peak, proxy.buffered));
    server.socket.resume();
    await server.bytes(data.length);
    assertSameBytes(server.received(), data, "the server");
    assert.ok(peak <= 4 * MiB, `the proxy buffered up to ${peak} bytes`);
  } finally {
    await proxy.close();
    await sink.close();
  }
});

test("FaultProxy - cutAfterBytes up: the server gets exactly n bytes of a chunk, then EOF", async () => {
  const sink = await TestServer.start();
  const proxy = await startFaultProxy(sink);
  const infos = recordConnections(proxy);
  try {
    proxy.cutAfterBytes(1000, "up");
    const client = await connect(proxy.port);
    const data = pattern(5000, 3);
    client.write(data);
    const server = await sink.peer(0);
    await server.close();
    assert.equal(server.ending, "end");
    assertSameBytes(server.received(), data.subarray(0, 1000), "the server");
    await client.close();
    await infos[0].closed;
    assert.equal(proxy.connections, 0);
    assert.deepEqual(infos[0].forwarded, { up: 1000, down: 0 });
  } finally {
    await proxy.close();
    await sink.close();
  }
});

test("FaultProxy - a cut behind a slow reader still delivers the bytes queued before it", async () => {
  // The server also talks, unheard: closing a socket with unread input sends a reset, and a
  // reset throws away what was still queued to go out.
  const sink = await TestServer.start((peer) => {
    peer.socket.pause();
    peer.write(new Uint8Array(8 * MiB));
  });
  const proxy = await startFaultProxy(sink);
  const infos = recordConnections(proxy);
  try {
    const client = await connect(proxy.port);
    client.socket.pause();
    const data = pattern(32 * MiB, 3);
    client.write(data);
    const server = await sink.peer(0);
    await proxyBacklog(proxy);
    const n = infos[0].forwarded.up;
    proxy.cutAfterBytes(0, "up");
    server.socket.resume();
    await server.close();
    assert.equal(server.ending, "end");
    assertSameBytes(server.received(), data.subarray(0, n), "the server");
    await client.close();
  } finally {
    await proxy.close();
    await sink.close();
  }
});

test("FaultProxy - cutAfterBytes down on an open connection counts from the call", async () => {
  const echo = await TestServer.start(echoing);
  const proxy = await startFaultProxy(echo);
  try {
    const client = await connect(proxy.port);
    const data = pattern(10_010, 4);
    client.write(data.subarray(0, 10));
    await client.bytes(10);
    proxy.cutAfterBytes(3000, "down");
    client.write(data.subarray(10));
    await client.close();
    assert.equal(client.ending, "end");
    assertSameBytes(client.received(), data.subarray(0, 3010), "the client");
    await (await echo.peer(0)).close();
  } finally {
    await proxy.close();
    await echo.close();
  }
});

test("FaultProxy - cutAfterBytes both counts the two directions together", async () => {
  const echo = await TestServer.start(echoing);
  const proxy = await startFaultProxy(echo);
  try {
    proxy.cutAfterBytes(10);
    const client = await connect(proxy.port);
    client.write("abcdef");
    await client.close();
    assert.equal(client.text(), "abcd");
    const server = await echo.peer(0);
    await server.close();
    assert.equal(server.text(), "abcdef");
  } finally {
    await proxy.close();
    await echo.close();
  }
});

test("FaultProxy - cutAfterBytes(0) cuts open connections and new ones until stopCutting", async () => {
  const echo = await TestServer.start(echoing);
  const proxy = await startFaultProxy(echo);
  const infos = recordConnections(proxy);
  try {
    const open = await connect(proxy.port);
    proxy.cutAfterBytes(0);
    await open.close();
    const refused = await connect(proxy.port);
    await refused.close();
    assert.equal(refused.length, 0);
    proxy.stopCutting();
    const fine = await connect(proxy.port);
    fine.write("still here");
    await fine.bytes(10);
    assert.equal(fine.text(), "still here");
    await Promise.all([infos[0].closed, infos[1].closed]);
    assert.equal(proxy.connections, 1);
  } finally {
    await proxy.close();
  }
  assert.equal(proxy.connections, 0);
  await echo.close();
});

test("FaultProxy - cutRandomly cuts each connection at the same bytes for the same seed", async () => {
  const size = 64 * 1024;
  const data = pattern(size, 5);
  const talker = await TestServer.start((peer) => peer.socket.end(data));
  const options = { minBytes: 1, maxBytes: 60_000, direction: "down" as const };
  const cutPoints = async (seed: number): Promise<number[]> => {
    const proxy = await startFaultProxy(talker);
    try {
      proxy.cutRandomly({ seed, ...options });
      const points: number[] = [];
      for (let i = 0; i < 5; i++) {
        const client = await connect(proxy.port);
        await client.close();
        assertSameBytes(client.received(), data.subarray(0, client.length), `seed ${seed}:`);
        points.push(client.length);
      }
      proxy.stopCutting();
      const whole = await connect(proxy.port);
      await whole.close();
      assert.equal(whole.length, size, `seed ${seed}: after stopCutting`);
      return points;
    } finally {
      await proxy.close();
    }
  };
  try {
    const first = await cutPoints(SEED);
    const random = mulberry32(SEED);
    const expected = first.map(() => 1 + Math.floor(random() * 60_000));
    assert.deepEqual(first, expected, `seed ${SEED} (KITE_SEED=${SEED} replays it)`);
    assert.deepEqual(await cutPoints(SEED), first, `seed ${SEED} twice`);
    assert.notDeepEqual(await cutPoints(SEED + 1), first, `seeds ${SEED} and ${SEED + 1}`);
  } finally {
    await talker.close();
  }
});

test("FaultProxy - stall holds bytes and EOF both ways, resume delivers them in order", async () => {
  const sink = await TestServer.start();
  const echo = await TestServer.start(echoing);
  const proxy = await startFaultProxy(sink);
  try {
    const direct = await connect(echo.port);
    const client = await connect(proxy.port);
    const server = await sink.peer(0);
    client.write("up-0;");
    server.write("down-0;");
    await server.bytes(5);
    await client.bytes(7);

    proxy.stall();
    client.write("up-1;");
    client.write("up-2;");
    server.write("down-1;");
    server.write("down-2;");
    client.socket.end();
    await letSocketsRun(direct);
    assert.equal(server.text(), "up-0;");
    assert.equal(server.ending, undefined);
    assert.equal(client.text(), "down-0;");

    proxy.resume();
    await server.until(() => server.ending === "end", "the held EOF");
    assert.equal(server.text(), "up-0;up-1;up-2;");
    await client.close();
    assert.equal(client.text(), "down-0;down-1;down-2;");
    direct.socket.destroy();
  } finally {
    await proxy.close();
    await sink.close();
    await echo.close();
  }
});

test("FaultProxy - refuse makes connects fail while open connections go on", async () => {
  const echo = await TestServer.start(echoing);
  const proxy = await startFaultProxy(echo);
  try {
    const before = await connect(proxy.port);
    await proxy.refuse(true);
    assert.equal(await connectError(proxy.port), "ECONNREFUSED");
    before.write("ping");
    await before.bytes(4);

    await proxy.refuse(false);
    const after = await connect(proxy.port);
    after.write("pong");
    await after.bytes(4);
    assert.equal(after.text(), "pong");
    assert.equal(proxy.accepted, 2);
  } finally {
    await proxy.close();
    await echo.close();
  }
});

test("FaultProxy - cutAll closes every connection on both sides", async () => {
  const echo = await TestServer.start(echoing);
  const proxy = await startFaultProxy(echo);
  const infos = recordConnections(proxy);
  try {
    const clients = [await connect(proxy.port), await connect(proxy.port)];
    for (const client of clients) {
      client.write("hi");
      await client.bytes(2);
    }
    proxy.cutAll();
    await Promise.all(clients.map((client) => client.close()));
    await Promise.all(echo.peers.map((peer) => peer.close()));
    await Promise.all(infos.map((info) => info.closed));
    assert.equal(proxy.connections, 0);

    const later = await connect(proxy.port);
    later.write("again");
    await later.bytes(5);
  } finally {
    await proxy.close();
    await echo.close();
  }
});

test("FaultProxy - close leaves no connections and no listener, and is idempotent", async () => {
  const echo = await TestServer.start(echoing);
  const proxy = await startFaultProxy(echo);
  const clients = [await connect(proxy.port), await connect(proxy.port)];
  clients[0].write("hi");
  await clients[0].bytes(2);
  proxy.stall();
  clients[1].write("held");
  await proxy.close();
  assert.equal(proxy.connections, 0);
  assert.equal(proxy.buffered, 0);
  await Promise.all(clients.map((client) => client.close()));
  await Promise.all(echo.peers.map((peer) => peer.close()));
  await proxy.close();
  assert.equal(await connectError(proxy.port), "ECONNREFUSED");
  await echo.close();
});

test("FaultProxy - onConnection reports each connection until unsubscribed", async () => {
  const echo = await TestServer.start(echoing);
  const proxy = await startFaultProxy(echo);
  try {
    const ids: number[] = [];
    const unsubscribe = proxy.onConnection((info) => ids.push(info.id));
    await connect(proxy.port);
    await connect(proxy.port);
    await echo.peer(1);
    unsubscribe();
    await connect(proxy.port);
    await echo.peer(2);
    assert.deepEqual(ids, [1, 2]);
    assert.equal(proxy.accepted, 3);
  } finally {
    await proxy.close();
    await echo.close();
  }
});

test("FaultProxy - when the target is down, the client is accepted and then closed", async () => {
  const gone = await TestServer.start();
  const port = gone.port;
  await gone.close();
  const proxy = await startFaultProxy({ host: HOST, port });
  const infos = recordConnections(proxy);
  try {
    const client = await connect(proxy.port);
    await client.close();
    await infos[0].closed;
    assert.equal(proxy.connections, 0);
  } finally {
    await proxy.close();
  }
});

test("FaultProxy - a half-close passes through and the other way keeps going", async () => {
  const server = await TestServer.start((peer) => {
    peer.socket.on("end", () => peer.socket.end(`bye after ${peer.text()}`));
  }, { allowHalfOpen: true });
  const proxy = await startFaultProxy(server);
  try {
    const client = await connect(proxy.port, { allowHalfOpen: true });
    client.write("hi");
    client.socket.end();
    await client.close();
    assert.equal(client.ending, "end");
    assert.equal(client.text(), "bye after hi");
  } finally {
    await proxy.close();
    await server.close();
  }
});

test("FaultProxy - cutRandomly and cutAfterBytes reject nonsense", async () => {
  const proxy = await startFaultProxy({ host: HOST, port: 1 });
  try {
    assert.throws(() => proxy.cutAfterBytes(-1), RangeError);
    assert.throws(() => proxy.cutAfterBytes(1.5), RangeError);
    assert.throws(() => proxy.cutRandomly({ minBytes: 10, maxBytes: 9 }), RangeError);
  } finally {
    await proxy.close();
  }
});

// Raw MQTT 3.1.1 for the tests against mosquitto; every packet here is under 128 bytes long.
const CONNECT = [0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0, 0];
const CONNACK_ACCEPTED = [0x20, 0x02, 0x00, 0x00];
const PINGREQ = [0xc0, 0x00];
const PINGRESP = [0xd0, 0x00];

function mqttString(text: string): number[] {
  const bytes = encoder.encode(text);
  return [bytes.length >> 8, bytes.length & 0xff, ...bytes];
}

function packet(firstByte: number, body: number[]): number[] {
  assert.ok(body.length < 128, "a one-byte remaining length");
  return [firstByte, body.length, ...body];
}

/** CONNECT with clean session, an empty client id and a will. */
function connectWithWill(keepAliveSeconds: number, topic: string, message: string): number[] {
  const flags = 0x02 | 0x04;
  return packet(0x10, [
    ...mqttString("MQTT"),
    0x04,
    flags,
    keepAliveSeconds >> 8,
    keepAliveSeconds & 0xff,
    ...mqttString(""),
    ...mqttString(topic),
    ...mqttString(message),
  ]);
}

function publish(topic: string, message: string): number[] {
  return packet(0x30, [...mqttString(topic), ...encoder.encode(message)]);
}

async function expectBytes(peer: Peer, expected: number[]): Promise<void> {
  const start = peer.length;
  await peer.bytes(start + expected.length);
  assert.deepEqual([...peer.received().subarray(start, start + expected.length)], expected);
}

/** A direct (unproxied) connection subscribed to `topic`. */
async function subscriber(port: number, topic: string): Promise<Peer> {
  const peer = await connect(port);
  peer.write(CONNECT);
  await expectBytes(peer, CONNACK_ACCEPTED);
  peer.write(packet(0x82, [0x00, 0x01, ...mqttString(topic), 0x00]));
  await expectBytes(peer, [0x90, 0x03, 0x00, 0x01, 0x00]);
  return peer;
}

const skip = mosquittoSkipReason();

test("FaultProxy - mosquitto answers through the proxy, and a stalled PINGREQ on resume", {
  skip,
}, async () => {
  await using broker = await startMosquitto();
  await using proxy = await startFaultProxy(broker);
  const client = await connect(proxy.port);
  client.write(CONNECT);
  await expectBytes(client, CONNACK_ACCEPTED);
  proxy.stall();
  client.write(PINGREQ);
  proxy.resume();
  await expectBytes(client, PINGRESP);
});

test("FaultProxy - a cut in the middle of a PUBLISH makes mosquitto publish the will", {
  skip,
}, async () => {
  await using broker = await startMosquitto();
  await using proxy = await startFaultProxy(broker);
  const topic = "kite/fault-proxy/cut";
  const watcher = await subscriber(broker.port, topic);
  const client = await connect(proxy.port);
  client.write(connectWithWill(60, topic, "gone"));
  await expectBytes(client, CONNACK_ACCEPTED);
  proxy.cutAfterBytes(3, "up");
  client.write(publish("kite/fault-proxy/other", "never whole"));
  await expectBytes(watcher, publish(topic, "gone"));
  await client.close();
  watcher.socket.destroy();
});

// mosquitto 2.0 notices an expired keepalive only on its next periodic check, up to ~5 s later.
test("FaultProxy - while stalled, mosquitto's keepalive expires; its EOF waits for resume", {
  skip,
  timeout: 20_000,
}, async () => {
  await using broker = await startMosquitto();
  await using proxy = await startFaultProxy(broker);
  const topic = "kite/fault-proxy/keepalive";
  const watcher = await subscriber(broker.port, topic);
  const client = await connect(proxy.port);
  client.write(connectWithWill(1, topic, "timed out"));
  await expectBytes(client, CONNACK_ACCEPTED);
  proxy.stall();
  // mosquitto gives up after 1.5 keepalives without a packet, and publishes the will.
  await expectBytes(watcher, publish(topic, "timed out"));
  for (let i = 0; i < 3; i++) {
    watcher.write(PINGREQ);
    await expectBytes(watcher, PINGRESP);
  }
  assert.equal(client.isClosed, false, "the broker's EOF is held while stalled");
  proxy.resume();
  await client.close();
  assert.equal(client.ending, "end");
  watcher.socket.destroy();
});
