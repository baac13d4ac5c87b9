import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as tls from "node:tls";
import { ConnectionClosedError } from "../../src/errors.ts";
import { brokerAddress } from "../../src/transport/address.ts";
import { denoTlsRoute } from "../../src/transport/deno.ts";
import { openTransport, type Transport, type TransportOptions } from "../../src/transport/mod.ts";
import { mosquittoSkipReason, startMosquitto } from "../helpers/mosquitto.ts";
import { settlesWithin, within } from "../helpers/wait.ts";

const skip = mosquittoSkipReason();
// Large transfers and brokers take longer than bun test's default of 5 s on a busy machine.
const slow = { timeout: 60_000 };
const withMosquitto = { skip, ...slow };
const runtime = typeof (globalThis as { Deno?: unknown }).Deno === "object" ? "deno" : "bun";
const HOST = "127.0.0.1";
const MiB = 1024 * 1024;

// MQTT 3.1.1 CONNECT (clean session, keepalive 60, empty client id) and the CONNACK accepting it.
const CONNECT = Uint8Array.of(0x10, 0x0c, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 0x3c, 0, 0);
const CONNACK_ACCEPTED = [0x20, 0x02, 0x00, 0x00];

// ---------------------------------------------------------------------------------------------
// Helpers

/** Runs `body` with the transport and closes it afterwards, whatever happens. */
async function using(
  opening: Promise<Transport>,
  body: (transport: Transport) => Promise<void>,
): Promise<void> {
  const transport = await opening;
  try {
    await body(transport);
  } finally {
    transport.close?.();
  }
}

/** Reads exactly `count` bytes (more may have been read; the rest is returned too). */
async function readBytes(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  count: number,
  ms = 10_000,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  const deadline = Date.now() + ms;
  while (length < count) {
    const { value, done } = await within(reader.read(), deadline - Date.now(), `read ${count}`);
    if (done) throw new Error(`the stream ended after ${length} of ${count} bytes`);
    chunks.push(value);
    length += value.byteLength;
  }
  const bytes = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/** Sends CONNECT and expects an accepting CONNACK. */
async function assertConnack(transport: Transport): Promise<void> {
  const writer = transport.writable.getWriter();
  await writer.write(CONNECT);
  writer.releaseLock();
  const reader = transport.readable.getReader();
  try {
    assert.deepEqual([...await readBytes(reader, 4)], CONNACK_ACCEPTED);
  } finally {
    reader.releaseLock();
  }
}

/** Bytes that differ at every offset of a large range, so a lost or reordered chunk shows. */
function pattern(length: number, seed = 0x9e3779b9): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = seed >>> 0;
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = state & 0xff;
  }
  return bytes;
}

function assertSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  assert.equal(actual.byteLength, expected.byteLength, "length");
  for (let i = 0; i < expected.byteLength; i++) {
    if (actual[i] !== expected[i]) assert.fail(`the bytes differ first at offset ${i}`);
  }
}

function remainingLength(length: number): number[] {
  const bytes: number[] = [];
  do {
    let byte = length % 128;
    length = Math.floor(length / 128);
    if (length > 0) byte |= 0x80;
    bytes.push(byte);
  } while (length > 0);
  return bytes;
}

/**
 * Publishes `payload` at QoS 0 to a topic this connection subscribed to, and expects the broker to
 * send the same bytes back: a round trip through mosquitto.
 */
async function assertRoundTrip(transport: Transport, payload: Uint8Array): Promise<void> {
  const topic = [0, 8, ...new TextEncoder().encode("kite/big")];
  const subscribe = Uint8Array.of(0x82, 2 + topic.length + 1, 0, 1, ...topic, 0);
  const head = [0x30, ...remainingLength(topic.length + payload.byteLength), ...topic];
  const publish = new Uint8Array(head.length + payload.byteLength);
  publish.set(head);
  publish.set(payload, head.length);

  const writer = transport.writable.getWriter();
  const reader = transport.readable.getReader();
  await writer.write(CONNECT);
  assert.deepEqual([...await readBytes(reader, 4)], CONNACK_ACCEPTED);
  await writer.write(subscribe);
  assert.deepEqual([...await readBytes(reader, 5)], [0x90, 3, 0, 1, 0]);
  const received = readBytes(reader, publish.byteLength, 30_000);
  await writer.write(publish);
  const bytes = await received;
  assertSameBytes(bytes.subarray(0, head.length), publish.subarray(0, head.length));
  assertSameBytes(bytes.subarray(head.length), payload);
  writer.releaseLock();
  reader.releaseLock();
}

interface Peer {
  port: number;
  /** Every connection the peer accepted, in order. */
  sockets: net.Socket[];
  /** Resolves when the `n`th connection (from 1) has closed. */
  closed(n?: number): Promise<void>;
  stop(): Promise<void>;
}

/** A loopback server of our own, for behaviour mosquitto does not show. */
async function listen(
  onConnection: (socket: net.Socket) => void,
  server: net.Server = net.createServer(),
): Promise<Peer> {
  const sockets: net.Socket[] = [];
  const closings: Promise<void>[] = [];
  const event = server instanceof tls.Server ? "secureConnection" : "connection";
  server.on(event, (socket: net.Socket) => {
    sockets.push(socket);
    closings.push(new Promise((resolve) => socket.once("close", () => resolve())));
    socket.on("error", () => {});
    onConnection(socket);
  });
  server.on("tlsClientError", () => {});
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    sockets,
    async closed(n = 1) {
      const deadline = Date.now() + 5_000;
      while (closings.length < n) {
        if (Date.now() > deadline) throw new Error(`no connection ${n} within 5 s`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await within(closings[n - 1], 5_000, `connection ${n} to close`);
    },
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function withPeer(
  onConnection: (socket: net.Socket) => void,
  body: (peer: Peer) => Promise<void>,
  server?: net.Server,
): Promise<void> {
  const peer = await listen(onConnection, server);
  try {
    await body(peer);
  } finally {
    await peer.stop();
  }
}

/** A port nothing listens on. */
async function refusingPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface Upgrade {
  path: string;
  protocol: string | undefined;
}

/**
 * A WebSocket server just big enough for our tests: it answers the opening handshake, reports
 * the path and subprotocol asked for, and then reads nothing more.
 */
function webSocketHandshake(socket: net.Socket, onUpgrade: (upgrade: Upgrade) => void): void {
  let head = "";
  const onData = (chunk: Uint8Array) => {
    head += new TextDecoder().decode(chunk);
    if (!head.includes("\r\n\r\n")) return;
    socket.off("data", onData);
    socket.pause();
    const path = head.slice(head.indexOf(" ") + 1, head.indexOf(" HTTP/"));
    const header = (name: string) =>
      new RegExp(`^${name}:[ \\t]*(.*?)[ \\t]*$`, "im").exec(head)?.[1];
    const key = header("sec-websocket-key") ?? "";
    const protocol = header("sec-websocket-protocol");
    const accept = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
      .digest("base64");
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${accept}\r\n` +
        (protocol ? `Sec-WebSocket-Protocol: ${protocol.split(",")[0].trim()}\r\n` : "") +
        "\r\n",
    );
    onUpgrade({ path, protocol });
  };
  socket.on("data", onData);
}

/** A WebSocket peer that sends every frame it receives back, unmasked, as it came. */
function webSocketEcho(socket: net.Socket): void {
  webSocketHandshake(socket, () => {
    let chunks: Uint8Array[] = [];
    let length = 0;
    let need = 2;
    const take = (): Uint8Array => {
      if (chunks.length > 1) {
        const joined = new Uint8Array(length);
        let offset = 0;
        for (const chunk of chunks) {
          joined.set(chunk, offset);
          offset += chunk.byteLength;
        }
        chunks = [joined];
      }
      return chunks[0];
    };
    socket.on("data", (chunk: Uint8Array) => {
      chunks.push(chunk);
      length += chunk.byteLength;
      while (length >= need) {
        const bytes = take();
        let size = bytes[1] & 0x7f;
        let offset = 2;
        if (size === 126) [size, offset] = [bytes[2] << 8 | bytes[3], 4];
        else if (size === 127) [size, offset] = [Number(readUint64(bytes, 2)), 10];
        need = offset + 4 + size; // a client always masks its frames
        if (length < need) break;
        const mask = bytes.subarray(offset, offset + 4);
        const payload = bytes.slice(offset + 4, need);
        for (let i = 0; i < payload.byteLength; i++) payload[i] ^= mask[i & 3];
        socket.write(webSocketFrame(bytes[0], payload));
        if ((bytes[0] & 0x0f) === 8) socket.end();
        chunks = [bytes.subarray(need)];
        length -= need;
        need = 2;
      }
    });
    socket.resume();
  });
}

function readUint64(bytes: Uint8Array, offset: number): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset + offset, 8).getBigUint64(0);
}

/** An unmasked frame, as a server sends it. */
function webSocketFrame(first: number, payload: Uint8Array): Uint8Array {
  const size = payload.byteLength;
  const head = size < 126
    ? [first, size]
    : size < 65536
    ? [first, 126, size >> 8, size & 0xff]
    : [first, 127, 0, 0, 0, 0, size >>> 24, (size >> 16) & 0xff, (size >> 8) & 0xff, size & 0xff];
  const frame = new Uint8Array(head.length + size);
  frame.set(head);
  frame.set(payload, head.length);
  return frame;
}

interface TestPki {
  ca: string;
  /** A certificate that names only `kite.test` (no IP address), signed by `ca`. */
  cert: string;
  key: string;
  /** A certificate for 127.0.0.1, signed by `ca`. */
  ipCert: string;
  ipKey: string;
  /** A client certificate (CN kite-client), signed by `ca`. */
  clientCert: string;
  clientKey: string;
}

let testPki: TestPki | undefined;

/** A CA of our own and two server certificates it signed, made with openssl. */
function kiteTestPki(): TestPki {
  if (testPki) return testPki;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kite-transport-pki-"));
  try {
    const openssl = (command: string) =>
      execFileSync("openssl", command.split(" "), { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    const ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    fs.writeFileSync(
      path.join(dir, "ext.cnf"),
      Object.entries({ name: "DNS:kite.test", ip: "IP:127.0.0.1", client: "" }).map((
        [section, altName],
      ) =>
        `[${section}]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n` +
        `extendedKeyUsage=${altName ? "serverAuth" : "clientAuth"}\n` +
        `authorityKeyIdentifier=keyid\n${altName ? `subjectAltName=${altName}\n` : ""}`
      ).join(""),
    );
    openssl(
      `req -x509 ${ec} -subj /CN=Kite-Transport-Test-CA -days 2 -keyout ca.key -out ca.crt ` +
        "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign",
    );
    const leaves = [["name", "kite.test"], ["ip", "127.0.0.1"], ["client", "kite-client"]];
    for (const [section, subject] of leaves) {
      openssl(`req -new ${ec} -subj /CN=${subject} -keyout ${section}.key -out ${section}.csr`);
      openssl(
        `x509 -req -in ${section}.csr -CA ca.crt -CAkey ca.key -set_serial ${section.length} ` +
          `-days 2 -extfile ext.cnf -extensions ${section} -out ${section}.crt`,
      );
    }
    const read = (name: string) => fs.readFileSync(path.join(dir, name), "utf8");
    testPki = {
      ca: read("ca.crt"),
      cert: read("name.crt"),
      key: read("name.key"),
      ipCert: read("ip.crt"),
      ipKey: read("ip.key"),
      clientCert: read("client.crt"),
      clientKey: read("client.key"),
    };
    return testPki;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A TLS server with the `kite.test` certificate that answers CONNECT and records the SNI name. */
function kiteTestTlsServer(names: (string | false)[]): tls.Server {
  const { cert, key } = kiteTestPki();
  return tls.createServer({ cert, key }, (socket) => {
    names.push((socket as tls.TLSSocket & { servername?: string | false }).servername ?? false);
    socket.once("data", () => socket.write(Uint8Array.from(CONNACK_ACCEPTED)));
  });
}

// ---------------------------------------------------------------------------------------------
// URLs

test("brokerAddress - default ports, the /mqtt path, no credentials in the WebSocket URL", () => {
  const cases: [string, string, number][] = [
    ["mqtt://broker.example", "tcp", 1883],
    ["tcp://broker.example", "tcp", 1883],
    ["mqtts://broker.example", "tls", 8883],
    ["tls://broker.example", "tls", 8883],
    ["ws://broker.example", "websocket", 80],
    ["wss://broker.example", "websocket", 443],
    ["mqtt://broker.example:1999", "tcp", 1999],
  ];
  for (const [url, kind, port] of cases) {
    const address = brokerAddress(new URL(url));
    assert.deepEqual([address.kind, address.hostname, address.port], [
      kind,
      "broker.example",
      port,
    ]);
  }
  assert.equal(brokerAddress(new URL("ws://h")).webSocketUrl?.href, "ws://h/mqtt");
  assert.equal(brokerAddress(new URL("wss://h:9/")).webSocketUrl?.href, "wss://h:9/mqtt");
  assert.equal(brokerAddress(new URL("ws://h/ws?x=1")).webSocketUrl?.href, "ws://h/ws?x=1");
  const secret = brokerAddress(new URL("wss://user:secret@h/mqtt#fragment"));
  assert.equal(secret.webSocketUrl?.href, "wss://h/mqtt");
  assert.ok(!secret.display.includes("secret"));
  assert.equal(brokerAddress(new URL("mqtt://[::1]:1883")).hostname, "::1");
});

test("openTransport - an unsupported scheme is a TypeError that lists the schemes", async () => {
  for (const url of ["http://127.0.0.1:1883", "mqtt+ws://127.0.0.1", "ssl://127.0.0.1"]) {
    await assert.rejects(openTransport(new URL(url)), (error: Error) => {
      assert.ok(error instanceof TypeError);
      assert.match(error.message, /mqtt:, tcp:, mqtts:, tls:, ws:, wss:/);
      return true;
    });
  }
});

test("openTransport - a signal aborted beforehand rejects with its reason", async () => {
  const reason = new Error("not today");
  for (const url of ["mqtt://127.0.0.1:1", "mqtts://127.0.0.1:1", "ws://127.0.0.1:1"]) {
    await assert.rejects(
      openTransport(new URL(url), { signal: AbortSignal.abort(reason) }),
      reason,
    );
  }
});

// ---------------------------------------------------------------------------------------------
// TCP

test(
  "openTransport - mqtt: and tcp: reach mosquitto: CONNECT gets CONNACK",
  withMosquitto,
  async () => {
    await using broker = await startMosquitto();
    for (const scheme of ["mqtt", "tcp"]) {
      await using(openTransport(new URL(`${scheme}://${HOST}:${broker.port}`)), assertConnack);
    }
  },
);

test("openTransport - a refused connection is a ConnectionClosedError naming the URL", async () => {
  const port = await refusingPort();
  for (const scheme of ["mqtt", "mqtts", "ws"]) {
    const url = new URL(`${scheme}://kite:secret@${HOST}:${port}`);
    await assert.rejects(openTransport(url), (error: Error) => {
      assert.ok(error instanceof ConnectionClosedError, `${scheme}: ${error}`);
      assert.match(error.message, new RegExp(`^could not connect to ${scheme}://127\\.0\\.0\\.1:`));
      assert.ok(!error.message.includes("secret"), "the password stays out of the message");
      return true;
    });
  }
});

test("openTransport - 8 MiB written over TCP come back intact and in order", slow, async () => {
  await withPeer((socket) => socket.pipe(socket), async (peer) => {
    await using(openTransport(new URL(`mqtt://${HOST}:${peer.port}`)), async (transport) => {
      const payload = pattern(8 * MiB);
      const reader = transport.readable.getReader();
      const received = readBytes(reader, payload.byteLength, 30_000);
      const writer = transport.writable.getWriter();
      // One large write, then many small ones.
      await writer.write(payload.subarray(0, 4 * MiB));
      for (let offset = 4 * MiB; offset < payload.byteLength; offset += 1000) {
        await writer.write(payload.subarray(offset, Math.min(offset + 1000, payload.byteLength)));
      }
      assertSameBytes(await received, payload);
    });
  });
});

test("openTransport - 8 MiB through mosquitto over TCP arrive intact", withMosquitto, async () => {
  await using broker = await startMosquitto();
  await using(openTransport(new URL(`mqtt://${HOST}:${broker.port}`)), async (transport) => {
    await assertRoundTrip(transport, pattern(8 * MiB, 1));
  });
});

test("openTransport - writes stop settling while the peer does not read", slow, async () => {
  await withPeer((socket) => socket.pause(), async (peer) => {
    const transport = await openTransport(new URL(`mqtt://${HOST}:${peer.port}`));
    const writer = transport.writable.getWriter();
    const chunk = new Uint8Array(256 * 1024);
    let accepted = 0;
    let stalled: Promise<void> | undefined;
    while (accepted < 256 * MiB) {
      const write = writer.write(chunk);
      if (!await settlesWithin(write, 500)) {
        stalled = write;
        break;
      }
      accepted += chunk.byteLength;
    }
    assert.ok(stalled, "a write stalled");
    // The kernel's socket buffers take a few MiB on loopback; nothing buffers beyond them.
    assert.ok(accepted < 64 * MiB, `${accepted / MiB} MiB were accepted before the stall`);
    transport.close?.();
    await assert.rejects(stalled, ConnectionClosedError);
  });
});

/**
 * Has the peer write 32 MiB as fast as the socket takes them to a transport nobody reads yet,
 * and reports whether the peer's writes stalled, and after how much; then reads everything and
 * checks it arrived in order, followed by the end of the stream.
 */
async function readerBackPressure(
  url: (port: number) => URL,
  options: TransportOptions,
  server?: net.Server,
): Promise<{ stalled: boolean; written: number }> {
  const total = 32 * MiB;
  const chunk = pattern(64 * 1024, 3);
  let written = 0;
  let stalled = false;
  let writing: Promise<void> | undefined;
  let before = { stalled, written };
  await withPeer((socket) => {
    writing = (async () => {
      while (written < total && !socket.destroyed) {
        written += chunk.byteLength;
        if (!socket.write(chunk)) {
          const drained = new Promise<void>((resolve) => socket.once("drain", resolve));
          if (!await settlesWithin(drained, 500)) {
            stalled = true;
            await drained;
          }
        }
      }
      socket.end();
    })();
  }, async (peer) => {
    await using(openTransport(url(peer.port), options), async (transport) => {
      const deadline = Date.now() + 20_000;
      while (!stalled && written < total && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      before = { stalled, written };
      let offset = 0;
      for await (const bytes of transport.readable) {
        for (let i = 0; i < bytes.byteLength; i++, offset++) {
          if (bytes[i] !== chunk[offset % chunk.byteLength]) assert.fail(`byte ${offset} differs`);
        }
      }
      assert.equal(offset, total);
      await writing;
    });
  }, server);
  return before;
}

test(
  "openTransport - a reader that does not read stops the peer's writes (TCP)",
  slow,
  async () => {
    const { stalled, written } = await readerBackPressure(
      (port) => new URL(`mqtt://${HOST}:${port}`),
      {},
    );
    assert.ok(stalled, "the peer's writes stalled");
    // The kernel's socket buffers take a few MiB on loopback; we buffer 64 KiB beyond them.
    assert.ok(written < 16 * MiB, `the peer wrote ${written / MiB} MiB before it stalled`);
  },
);

test(
  "openTransport - a reader that does not read stops the peer's writes (TLS)",
  slow,
  async () => {
    const { ca, ipCert, ipKey } = kiteTestPki();
    const url = (port: number) => new URL(`mqtts://${HOST}:${port}`);
    const server = () => tls.createServer({ cert: ipCert, key: ipKey });
    const verified = await readerBackPressure(url, { ca }, server());
    assert.ok(verified.stalled, "the peer's writes stalled");
    assert.ok(verified.written < 16 * MiB, `the peer wrote ${verified.written / MiB} MiB`);
    // On Deno this goes through node:tls, which is never paused there: its sockets lose the end
    // of the stream once paused (Deno 2.9). Everything still arrives, and the end too.
    const unverified = await readerBackPressure(url, { rejectUnauthorized: false }, server());
    if (runtime === "bun") {
      assert.ok(unverified.stalled, "the peer's writes stalled");
      assert.ok(unverified.written < 16 * MiB, `the peer wrote ${unverified.written / MiB} MiB`);
    }
  },
);

test(
  "openTransport - close() ends the readable side and fails writes (TCP)",
  withMosquitto,
  async () => {
    await using broker = await startMosquitto();
    const transport = await openTransport(new URL(`mqtt://${HOST}:${broker.port}`));
    await assertClosesBothStreams(transport);
  },
);

async function assertClosesBothStreams(transport: Transport): Promise<void> {
  const reader = transport.readable.getReader();
  const writer = transport.writable.getWriter();
  const pendingRead = reader.read();
  transport.close?.();
  transport.close?.(); // idempotent
  assert.deepEqual(await within(pendingRead, 2_000, "read after close()"), {
    value: undefined,
    done: true,
  });
  await assert.rejects(writer.write(CONNECT), ConnectionClosedError);
  await assert.rejects(writer.closed, ConnectionClosedError);
}

test(
  "openTransport - the broker ending the connection closes the readable side",
  withMosquitto,
  async () => {
    await using broker = await startMosquitto();
    await using(openTransport(new URL(`mqtt://${HOST}:${broker.port}`)), async (transport) => {
      await assertConnack(transport);
      // A second CONNECT is a protocol violation [MQTT-3.1.0-2]: mosquitto disconnects.
      const writer = transport.writable.getWriter();
      await writer.write(CONNECT);
      const reader = transport.readable.getReader();
      assert.deepEqual(await within(reader.read(), 5_000, "read"), {
        value: undefined,
        done: true,
      });
    });
  },
);

test("openTransport - abort while the TCP connect is pending", async () => {
  await withPeer((socket) => socket.resume(), async (peer) => {
    const controller = new AbortController();
    const reason = new Error("gave up");
    const opening = openTransport(new URL(`mqtt://${HOST}:${peer.port}`), {
      signal: controller.signal,
    });
    controller.abort(reason);
    await assert.rejects(opening, reason);
    // Whatever got through before the abort is closed again.
    if (peer.sockets.length > 0) await peer.closed(1);
  });
});

// ---------------------------------------------------------------------------------------------
// TLS

test("openTransport - mqtts: and tls: with the test CA", withMosquitto, async () => {
  await using broker = await startMosquitto({ tls: true });
  for (const scheme of ["mqtts", "tls"]) {
    const url = new URL(`${scheme}://${HOST}:${broker.tlsPort}`);
    await using(openTransport(url, { ca: broker.ca }), assertConnack);
    await using(openTransport(url, { ca: [broker.ca] }), assertConnack);
  }
});

test(
  "openTransport - TLS to an untrusted certificate is a ConnectionClosedError",
  withMosquitto,
  async () => {
    await using broker = await startMosquitto({ tls: true });
    const url = new URL(`mqtts://${HOST}:${broker.tlsPort}`);
    await assert.rejects(openTransport(url), (error: Error) => {
      assert.ok(error instanceof ConnectionClosedError, String(error));
      assert.match(error.message, /certificate|UnknownIssuer/i);
      return true;
    });
  },
);

test(
  "openTransport - rejectUnauthorized: false accepts an untrusted certificate",
  withMosquitto,
  async () => {
    await using broker = await startMosquitto({ tls: true });
    const url = new URL(`mqtts://${HOST}:${broker.tlsPort}`);
    await using(openTransport(url, { rejectUnauthorized: false }), assertConnack);
  },
);

test("openTransport - mutual TLS with a client certificate", withMosquitto, async () => {
  await using broker = await startMosquitto({ tls: true });
  const url = new URL(`mqtts://${HOST}:${broker.mtlsPort}`);
  const { ca, clientCert: cert, clientKey: key } = broker;
  await using(openTransport(url, { ca, cert, key }), assertConnack);
  // Also through node:tls on Deno, which servername with a client certificate takes there.
  await using(openTransport(url, { ca, cert, key, servername: "localhost" }), assertConnack);
});

test(
  "openTransport - mutual TLS without a client certificate gets no CONNACK",
  withMosquitto,
  async () => {
    await using broker = await startMosquitto({ tls: true });
    const url = new URL(`mqtts://${HOST}:${broker.mtlsPort}`);
    let transport: Transport;
    try {
      transport = await openTransport(url, { ca: broker.ca });
    } catch (error) {
      // TLS 1.2 fails the handshake itself.
      assert.ok(error instanceof ConnectionClosedError);
      return;
    }
    // With TLS 1.3 the client's handshake completes; the server's alert arrives on first read.
    await using(Promise.resolve(transport), async () => {
      const writer = transport.writable.getWriter();
      await writer.write(CONNECT).catch(() => {});
      const reader = transport.readable.getReader();
      const result = await within(reader.read().catch((error) => error), 5_000, "read");
      if (result instanceof Error) {
        assert.ok(result instanceof ConnectionClosedError);
        assert.match(result.message, /certificate/i);
      } else assert.deepEqual(result, { value: undefined, done: true });
    });
  },
);

test("openTransport - a cert without its key, or a key without its cert, is a TypeError", async () => {
  for (const options of [{ cert: "PEM" }, { key: "PEM" }]) {
    for (const url of ["mqtts://127.0.0.1:1", "wss://127.0.0.1:1"]) {
      await assert.rejects(openTransport(new URL(url), options), TypeError);
    }
  }
});

test(
  "openTransport - servername is sent in SNI and the certificate is checked against it",
  slow,
  async () => {
    const names: (string | false)[] = [];
    const { ca } = kiteTestPki();
    await withPeer(() => {}, async (peer) => {
      const url = new URL(`mqtts://${HOST}:${peer.port}`);
      // The certificate names kite.test, not 127.0.0.1.
      await assert.rejects(openTransport(url, { ca }), ConnectionClosedError);
      await assert.rejects(openTransport(url, { ca, servername: "other.test" }), (error: Error) => {
        assert.ok(error instanceof ConnectionClosedError);
        assert.match(error.message, /other\.test|altname|not valid for name/i);
        return true;
      });
      await using(openTransport(url, { ca, servername: "kite.test" }), assertConnack);
      assert.equal(names.at(-1), "kite.test");
      // servername also goes with rejectUnauthorized: false (node:tls on Deno too).
      await using(
        openTransport(url, { servername: "kite.test", rejectUnauthorized: false }),
        assertConnack,
      );
      assert.equal(names.at(-1), "kite.test");
    }, kiteTestTlsServer(names));
  },
);

test(
  "openTransport - mutual TLS over mqtts: and wss: presents the client certificate",
  slow,
  async () => {
    const pki = kiteTestPki();
    for (const scheme of ["mqtts", "wss"]) {
      const subjects: string[] = [];
      const server = tls.createServer({
        cert: pki.ipCert,
        key: pki.ipKey,
        ca: pki.ca,
        requestCert: true,
        rejectUnauthorized: true,
      });
      await withPeer((socket) => {
        subjects.push((socket as tls.TLSSocket).getPeerCertificate().subject?.CN ?? "");
        if (scheme === "wss") webSocketEcho(socket);
        else socket.pipe(socket);
      }, async (peer) => {
        const url = new URL(`${scheme}://${HOST}:${peer.port}`);
        const options = { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey };
        await using(openTransport(url, options), async (transport) => {
          const writer = transport.writable.getWriter();
          await writer.write(CONNECT);
          const reader = transport.readable.getReader();
          assert.deepEqual([...await readBytes(reader, CONNECT.byteLength)], [...CONNECT]);
        });
      }, server);
      assert.deepEqual(subjects, ["kite-client"], scheme);
    }
  },
);

test("openTransport - 8 MiB through mosquitto over TLS arrive intact", withMosquitto, async () => {
  await using broker = await startMosquitto({ tls: true });
  const url = new URL(`mqtts://${HOST}:${broker.tlsPort}`);
  await using(openTransport(url, { ca: broker.ca }), async (transport) => {
    await assertRoundTrip(transport, pattern(8 * MiB, 2));
  });
});

test(
  "openTransport - close() ends the readable side and fails writes (TLS)",
  withMosquitto,
  async () => {
    await using broker = await startMosquitto({ tls: true });
    const url = new URL(`mqtts://${HOST}:${broker.tlsPort}`);
    await assertClosesBothStreams(await openTransport(url, { ca: broker.ca }));
    await assertClosesBothStreams(
      await openTransport(url, { ca: broker.ca, servername: "localhost" }),
    );
    await assertClosesBothStreams(await openTransport(url, { rejectUnauthorized: false }));
  },
);

test("openTransport - abort during a TLS handshake the peer never answers", slow, async () => {
  await withPeer((socket) => socket.resume(), async (peer) => {
    const variants = [{}, { servername: "kite.test" }, { rejectUnauthorized: false }];
    for (const [i, options] of variants.entries()) {
      const controller = new AbortController();
      const opening = openTransport(new URL(`mqtts://${HOST}:${peer.port}`), {
        ...options,
        signal: controller.signal,
      });
      const early = await settlesWithin(opening, 200);
      assert.equal(early, false, "the handshake waits for the peer");
      const reason = new Error("handshake took too long");
      controller.abort(reason);
      await assert.rejects(within(opening, 2_000, "abort"), reason);
      // Deno.TlsConn.close() leaves the socket open while a handshake is pending (Deno 2.9):
      // it closes once the broker answers or drops it. node:tls closes it at once.
      const deno_native = runtime === "deno" && !("rejectUnauthorized" in options);
      if (!deno_native) await peer.closed(i + 1);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// WebSocket

test("openTransport - ws: reaches mosquitto", withMosquitto, async () => {
  await using broker = await startMosquitto({ websockets: true });
  await using(openTransport(new URL(`ws://${HOST}:${broker.wsPort}`)), assertConnack);
  await using(openTransport(new URL(`ws://${HOST}:${broker.wsPort}/mqtt`)), assertConnack);
});

test("openTransport - ws: asks for subprotocol mqtt on path /mqtt", async () => {
  const upgrades: Upgrade[] = [];
  await withPeer(
    (socket) => webSocketHandshake(socket, (upgrade) => upgrades.push(upgrade)),
    async (peer) => {
      await using(openTransport(new URL(`ws://${HOST}:${peer.port}`)), async () => {});
      await using(openTransport(new URL(`ws://${HOST}:${peer.port}/broker?id=7`)), async () => {});
      await using(
        openTransport(new URL(`ws://${HOST}:${peer.port}`), { protocols: ["mqttv3.1"] }),
        async () => {},
      );
    },
  );
  assert.deepEqual(upgrades, [
    { path: "/mqtt", protocol: "mqtt" },
    { path: "/broker?id=7", protocol: "mqtt" },
    { path: "/mqtt", protocol: "mqttv3.1" },
  ]);
});

test("openTransport - wss: with the test CA", withMosquitto, async () => {
  await using broker = await startMosquitto({ tls: true, websockets: true });
  const url = new URL(`wss://${HOST}:${broker.wssPort}/mqtt`);
  await using(openTransport(url, { ca: broker.ca }), assertConnack);
});

test(
  "openTransport - wss: to an untrusted certificate is a ConnectionClosedError",
  withMosquitto,
  async () => {
    await using broker = await startMosquitto({ tls: true, websockets: true });
    const url = new URL(`wss://${HOST}:${broker.wssPort}/mqtt`);
    await assert.rejects(openTransport(url), (error: Error) => {
      assert.ok(error instanceof ConnectionClosedError, String(error));
      assert.match(error.message, /certificate|UnknownIssuer/i);
      return true;
    });
  },
);

test(
  "openTransport - wss: with rejectUnauthorized: false and servername",
  withMosquitto,
  async () => {
    await using broker = await startMosquitto({ tls: true, websockets: true });
    const url = new URL(`wss://${HOST}:${broker.wssPort}/mqtt`);
    if (runtime === "bun") {
      await using(openTransport(url, { rejectUnauthorized: false }), assertConnack);
      await using(openTransport(url, { ca: broker.ca, servername: "localhost" }), assertConnack);
      await assert.rejects(
        openTransport(url, { ca: broker.ca, servername: "other.test" }),
        ConnectionClosedError,
      );
      return;
    }
    // Deno's WebSocket cannot skip verification or set SNI per connection; the failure says so.
    await assert.rejects(openTransport(url, { rejectUnauthorized: false }), (error: Error) => {
      assert.ok(error instanceof ConnectionClosedError);
      assert.match(error.message, /cannot apply rejectUnauthorized: false/);
      return true;
    });
  },
);

// mosquitto 2.0.11 reads websockets 4 KiB per pass of its main loop (100 KiB take 2.4 s), so
// large WebSocket writes go to an echo peer of our own.
test(
  "openTransport - 8 MiB written over ws: and wss: come back intact and in order",
  slow,
  async () => {
    const { ca, ipCert, ipKey } = kiteTestPki();
    const servers = [
      { scheme: "ws", server: net.createServer(), options: {} },
      { scheme: "wss", server: tls.createServer({ cert: ipCert, key: ipKey }), options: { ca } },
    ];
    for (const { scheme, server, options } of servers) {
      await withPeer(webSocketEcho, async (peer) => {
        const url = new URL(`${scheme}://${HOST}:${peer.port}`);
        await using(openTransport(url, options), async (transport) => {
          const payload = pattern(8 * MiB, 6);
          const reader = transport.readable.getReader();
          const received = readBytes(reader, payload.byteLength, 30_000);
          const writer = transport.writable.getWriter();
          await writer.write(payload.subarray(0, 4 * MiB));
          for (let offset = 4 * MiB; offset < payload.byteLength; offset += 64 * 1024) {
            await writer.write(payload.subarray(offset, offset + 64 * 1024));
          }
          assertSameBytes(await received, payload);
        });
      }, server);
    }
  },
);

test(
  "openTransport - a PUBLISH through mosquitto over ws: and wss: comes back",
  withMosquitto,
  async () => {
    await using broker = await startMosquitto({ tls: true, websockets: true });
    await using(openTransport(new URL(`ws://${HOST}:${broker.wsPort}`)), async (transport) => {
      await assertRoundTrip(transport, pattern(4000, 4));
    });
    const url = new URL(`wss://${HOST}:${broker.wssPort}`);
    await using(openTransport(url, { ca: broker.ca }), async (transport) => {
      await assertRoundTrip(transport, pattern(4000, 5));
    });
  },
);

test(
  "openTransport - WebSocket writes stop settling while the peer does not read",
  slow,
  async () => {
    await withPeer((socket) => webSocketHandshake(socket, () => {}), async (peer) => {
      const transport = await openTransport(new URL(`ws://${HOST}:${peer.port}`));
      const writer = transport.writable.getWriter();
      const chunk = new Uint8Array(256 * 1024);
      let accepted = 0;
      let stalled: Promise<void> | undefined;
      while (accepted < 256 * MiB) {
        const write = writer.write(chunk);
        if (!await settlesWithin(write, 500)) {
          stalled = write;
          break;
        }
        accepted += chunk.byteLength;
      }
      assert.ok(stalled, "a write stalled");
      assert.ok(accepted < 64 * MiB, `${accepted / MiB} MiB were accepted before the stall`);
      transport.close?.();
      await assert.rejects(within(stalled, 2_000, "stalled write"), ConnectionClosedError);
    });
  },
);

test(
  "openTransport - close() ends the readable side and fails writes (WebSocket)",
  withMosquitto,
  async () => {
    await using broker = await startMosquitto({ tls: true, websockets: true });
    await assertClosesBothStreams(await openTransport(new URL(`ws://${HOST}:${broker.wsPort}`)));
    const url = new URL(`wss://${HOST}:${broker.wssPort}`);
    await assertClosesBothStreams(await openTransport(url, { ca: broker.ca }));
  },
);

test("openTransport - abort during a WebSocket handshake the peer never answers", async () => {
  await withPeer((socket) => socket.resume(), async (peer) => {
    const controller = new AbortController();
    const opening = openTransport(new URL(`ws://${HOST}:${peer.port}`), {
      signal: controller.signal,
    });
    assert.equal(await settlesWithin(opening, 200), false, "the handshake waits for the peer");
    const reason = new Error("upgrade took too long");
    controller.abort(reason);
    await assert.rejects(within(opening, 2_000, "abort"), reason);
    await peer.closed(1);
  });
});

test("openTransport - localAddress: the connection comes from it, and works both ways", async () => {
  // Echoes what it reads, so the round trip shows both streams work over such a connection.
  await withPeer((socket) => socket.pipe(socket), async (peer) => {
    const transport = await openTransport(new URL(`mqtt://${HOST}:${peer.port}`), {
      localAddress: "127.0.0.2",
    });
    try {
      const writer = transport.writable.getWriter();
      const reader = transport.readable.getReader();
      const ping = Uint8Array.of(0xc0, 0x00);
      await writer.write(ping);
      assertSameBytes(await readBytes(reader, 2, 5_000), ping);
      // The echo came back, so the peer has accepted the connection by now.
      assert.equal(peer.sockets[0]?.remoteAddress, "127.0.0.2");
      writer.releaseLock();
      reader.releaseLock();
    } finally {
      await transport.close?.();
    }
    await peer.closed(1);
  });
});

test("denoTlsRoute - TLS on Deno goes through Deno.connect, where TCP_NODELAY can be set, then startTls; connectTls only for a client certificate, node:tls for what Deno's TLS cannot do", () => {
  const [cert, key] = ["-----BEGIN CERTIFICATE-----", "-----BEGIN PRIVATE KEY-----"];
  assert.equal(denoTlsRoute({}), "startTls");
  assert.equal(denoTlsRoute({ servername: "kite.test" }), "startTls");
  assert.equal(denoTlsRoute({ cert, key }), "connectTls");
  assert.equal(denoTlsRoute({ cert, key, servername: "kite.test" }), "node:tls");
  assert.equal(denoTlsRoute({ rejectUnauthorized: false }), "node:tls");
  assert.equal(denoTlsRoute({ cert, key, rejectUnauthorized: false }), "node:tls");
  assert.equal(denoTlsRoute({ rejectUnauthorized: true }), "startTls");
});
