// The state the three socket transports share (SocketTransport): the end before `listen`, a
// break, `close`, the lazily made streams, and pausing reads; each over a stand-in socket, so
// that every order of events is produced on purpose, on Deno and Bun alike.
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import type * as Net from "node:net";
import { ConnectionClosedError } from "../../src/errors.ts";
import { brokerAddress } from "../../src/transport/address.ts";
import { type BunSocket, BunSocketTransport } from "../../src/transport/bun.ts";
import { DenoConnTransport } from "../../src/transport/deno.ts";
import { NodeSocketTransport } from "../../src/transport/node.ts";
import type { ByteSink } from "../../src/transport/types.ts";
import { within } from "../helpers/wait.ts";

const address = brokerAddress(new URL("mqtt://127.0.0.1:1883"));
const LOST = /^the connection to mqtt:\/\/127\.0\.0\.1:1883\/? closed: /;

/** A sink that records what it is handed; `pause` is returned from `data` while set. */
class RecordingSink implements ByteSink {
  chunks: number[][] = [];
  ends: unknown[] = [];
  pause: Promise<void> | undefined;
  data(chunk: Uint8Array): Promise<void> | undefined {
    this.chunks.push([...chunk]);
    return this.pause;
  }
  end(error?: unknown): void {
    this.ends.push(error);
  }
}

/** A `Bun.connect` socket stand-in; `takes` is how many bytes each write takes. */
class FakeBunSocket {
  data!: BunSocketTransport;
  calls: string[] = [];
  takes = Infinity;
  write(bytes: Uint8Array): number {
    this.calls.push("write");
    return Math.min(bytes.byteLength, this.takes);
  }
  end(): void {
    this.calls.push("end");
  }
  terminate(): void {
    this.calls.push("terminate");
  }
  pause(): void {
    this.calls.push("pause");
  }
  resume(): void {
    this.calls.push("resume");
  }
  setNoDelay(): boolean {
    return true;
  }
}

function bunTransport(): { transport: BunSocketTransport; socket: FakeBunSocket } {
  const transport = new BunSocketTransport(address);
  const socket = new FakeBunSocket();
  socket.data = transport;
  transport.attach(socket as BunSocket);
  return { transport, socket };
}

test("BunSocketTransport - paused until listen, then each chunk goes to the sink as it is", () => {
  const { transport, socket } = bunTransport();
  assert.deepEqual(socket.calls, ["pause"]);
  const sink = new RecordingSink();
  transport.listen(sink);
  assert.deepEqual(socket.calls, ["pause", "resume"]);
  transport.onData(Uint8Array.of(1, 2));
  transport.onData(Uint8Array.of(3));
  assert.deepEqual(sink.chunks, [[1, 2], [3]]);
});

test("BunSocketTransport - listen twice is a TypeError", () => {
  const { transport } = bunTransport();
  transport.listen(new RecordingSink());
  assert.throws(() => transport.listen(new RecordingSink()), {
    name: "TypeError",
    message: "the transport is read already",
  });
});

test("BunSocketTransport - a pause the sink asks for stops the socket until it settles", async () => {
  const { transport, socket } = bunTransport();
  const sink = new RecordingSink();
  transport.listen(sink);
  for (const settle of ["resolve", "reject"] as const) {
    socket.calls = [];
    const pause = Promise.withResolvers<void>();
    sink.pause = pause.promise;
    transport.onData(Uint8Array.of(1));
    sink.pause = undefined;
    assert.deepEqual(socket.calls, ["pause"]);
    pause[settle]();
    await pause.promise.catch(() => {});
    assert.deepEqual(socket.calls, ["pause", "resume"], `after the pause ${settle}s`);
  }
});

test("BunSocketTransport - a pause that settles after reading ended does not resume", async () => {
  const { transport, socket } = bunTransport();
  const sink = new RecordingSink();
  transport.listen(sink);
  const pause = Promise.withResolvers<void>();
  sink.pause = pause.promise;
  transport.onData(Uint8Array.of(1));
  transport.onEnd();
  socket.calls = [];
  pause.resolve();
  await pause.promise;
  assert.deepEqual(socket.calls, []);
  assert.deepEqual(sink.ends, [undefined]);
});

test("BunSocketTransport - the broker's end before listen reaches the sink at listen, once", () => {
  const { transport } = bunTransport();
  transport.onEnd();
  transport.onClose("the socket closed");
  const sink = new RecordingSink();
  transport.listen(sink);
  assert.deepEqual(sink.ends, [undefined]);
});

test("BunSocketTransport - a break before listen ends reading with it, and refuses writes", async () => {
  const { transport } = bunTransport();
  const cause = new Error("read ECONNRESET");
  transport.onClose(cause);
  transport.onClose("the socket closed");
  const sink = new RecordingSink();
  transport.listen(sink);
  assert.equal(sink.ends.length, 1);
  const error = sink.ends[0];
  assert.ok(error instanceof ConnectionClosedError);
  assert.match(error.message, LOST);
  assert.match(error.message, /read ECONNRESET$/);
  assert.equal(error.cause, cause);
  await assert.rejects(transport.write(Uint8Array.of(1)), (refused) => refused === error);
  await assert.rejects(transport.end(), (refused) => refused === error);
});

test("BunSocketTransport - close(): reading ends cleanly, waiting writes and later ones fail", async () => {
  const { transport, socket } = bunTransport();
  const sink = new RecordingSink();
  transport.listen(sink);
  socket.takes = 1;
  const waiting = transport.write(Uint8Array.of(1, 2, 3));
  const ending = transport.end();
  transport.close();
  transport.close(); // idempotent
  assert.equal(socket.calls.filter((call) => call === "terminate").length, 1);
  assert.deepEqual(sink.ends, [undefined]);
  for (const settled of [waiting, ending, transport.write(Uint8Array.of(4))]) {
    await assert.rejects(settled, (error: Error) => {
      assert.ok(error instanceof ConnectionClosedError);
      assert.match(error.message, LOST);
      assert.match(error.message, /the transport was closed$/);
      return true;
    });
  }
});

test("BunSocketTransport - a write before the socket is attached is refused", async () => {
  const transport = new BunSocketTransport(address);
  await assert.rejects(transport.write(Uint8Array.of(1)), /closed: not connected$/);
});

test("BunSocketTransport - the streams: chunks come out of readable, a break errors writable", async () => {
  const { transport } = bunTransport();
  assert.equal(transport.readable, transport.readable, "made once");
  assert.equal(transport.writable, transport.writable, "made once");
  const reader = transport.readable.getReader();
  const writer = transport.writable.getWriter();
  transport.onData(Uint8Array.of(7, 8));
  assert.deepEqual([...(await reader.read()).value!], [7, 8]);
  transport.onClose(new Error("write EPIPE"));
  await assert.rejects(within(reader.read(), 2_000, "the readable to error"), /write EPIPE$/);
  await assert.rejects(within(writer.closed, 2_000, "the writable to error"), /write EPIPE$/);
});

test("BunSocketTransport - a writable made after the connection closed is errored at once", async () => {
  const { transport } = bunTransport();
  transport.close();
  const writer = transport.writable.getWriter();
  await assert.rejects(
    within(writer.closed, 2_000, "the writable to error"),
    /the transport was closed$/,
  );
});

/** A `node:net` socket stand-in: the events are emitted by the test. */
class FakeNodeSocket extends EventEmitter {
  calls: string[] = [];
  destroyed = false;
  pause(): this {
    this.calls.push("pause");
    return this;
  }
  resume(): this {
    this.calls.push("resume");
    return this;
  }
  destroy(): this {
    this.destroyed = true;
    this.calls.push("destroy");
    return this;
  }
}

test("NodeSocketTransport - a socket that never pauses keeps what it read before listen, then the end", () => {
  const socket = new FakeNodeSocket();
  const transport = new NodeSocketTransport(socket as unknown as Net.Socket, address, false);
  socket.emit("data", Uint8Array.of(1));
  socket.emit("data", Uint8Array.of(2, 3));
  socket.emit("end");
  socket.emit("close");
  const sink = new RecordingSink();
  transport.listen(sink);
  assert.deepEqual(sink.chunks, [[1], [2, 3]]);
  assert.deepEqual(sink.ends, [undefined]);
  assert.deepEqual(socket.calls, []);
});

test("NodeSocketTransport - a pause the sink asks for stops the socket until it settles", async () => {
  const socket = new FakeNodeSocket();
  const transport = new NodeSocketTransport(socket as unknown as Net.Socket, address);
  const sink = new RecordingSink();
  transport.listen(sink);
  const pause = Promise.withResolvers<void>();
  sink.pause = pause.promise;
  socket.emit("data", Uint8Array.of(1));
  assert.deepEqual(socket.calls, ["pause"]);
  pause.resolve();
  await pause.promise;
  assert.deepEqual(socket.calls, ["pause", "resume"]);
  socket.emit("error", new Error("read ECONNRESET"));
  assert.equal(sink.ends.length, 1);
  assert.match(String(sink.ends[0]), /read ECONNRESET$/);
});

/** A `Deno.Conn` stand-in whose reads never complete and whose writes fail with `writeError`. */
function fakeConn(writeError: Error): { conn: Deno.Conn; reads: number } {
  const state = { conn: undefined as unknown as Deno.Conn, reads: 0 };
  state.conn = {
    read: () => {
      state.reads++;
      return new Promise<number | null>(() => {});
    },
    write: () => Promise.reject(writeError),
    closeWrite: () => Promise.reject(writeError),
    close: () => {},
  } as unknown as Deno.Conn;
  return state;
}

test("DenoConnTransport - closed before listen: reading ends cleanly at listen, nothing read", () => {
  const state = fakeConn(new Error("unused"));
  const transport = new DenoConnTransport(state.conn, address);
  transport.close();
  const sink = new RecordingSink();
  transport.listen(sink);
  assert.deepEqual(sink.ends, [undefined]);
  assert.equal(state.reads, 0);
});

test("DenoConnTransport - a failed write ends reading with it, and later writes reject with it", async () => {
  const cause = new Error("Broken pipe (os error 32)");
  const state = fakeConn(cause);
  const transport = new DenoConnTransport(state.conn, address);
  const sink = new RecordingSink();
  transport.listen(sink);
  assert.equal(state.reads, 1);
  await assert.rejects(transport.write(Uint8Array.of(1)), /Broken pipe \(os error 32\)$/);
  assert.equal(sink.ends.length, 1);
  const error = sink.ends[0];
  assert.ok(error instanceof ConnectionClosedError);
  assert.equal(error.cause, cause);
  await assert.rejects(transport.write(Uint8Array.of(2)), (refused) => refused === error);
  await assert.rejects(transport.end(), (refused) => refused === error);
  transport.close();
  assert.deepEqual(sink.ends, [error], "close after the break ends nothing again");
});
