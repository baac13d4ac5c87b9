/**
 * The floor for `cpu.ts`: the same exchange as a publisher and a subscriber at QoS 1 or 2, done
 * with no MQTT library at all. Every packet is pre-encoded; each chunk the socket reads is scanned
 * for packet boundaries and answered with one write (PUBACK, PUBREC, PUBREL, PUBCOMP, and a new
 * PUBLISH for each one settled, reusing its packet id). Nothing is allocated per message; per
 * chunk read, the answers are copied once for the write, and the scan makes a closure or two. It
 * runs on the runtime's own socket (`Deno.connect`, `Bun.connect`), so what it costs is mostly
 * what the kernel charges for moving the packets, which no client can avoid without reading less
 * often than it could (bench/README.md: holding writes back does not help).
 *
 * Only for `bench/`: it trusts mosquitto to send well-formed packets and checks nothing.
 *
 * @module
 */

/** A socket that writes bytes and hands every chunk it reads to `onData`. */
interface RawSocket {
  write(bytes: Uint8Array): void;
  close(): void;
}

interface BunSocket {
  write(bytes: Uint8Array): number;
  setNoDelay(on: boolean): boolean;
  end(): void;
}
interface BunRuntime {
  connect(options: {
    hostname: string;
    port: number;
    socket: {
      data(socket: BunSocket, chunk: Uint8Array): void;
      drain(socket: BunSocket): void;
    };
  }): Promise<BunSocket>;
}

async function openRaw(
  url: URL,
  onData: (chunk: Uint8Array) => void,
): Promise<RawSocket> {
  const hostname = url.hostname;
  const port = Number(url.port);
  const bun = (globalThis as { Bun?: BunRuntime }).Bun;
  if (bun !== undefined) {
    let pending: Uint8Array | undefined;
    const socket = await bun.connect({
      hostname,
      port,
      socket: {
        data: (_socket, chunk) => onData(chunk),
        drain: (s) => {
          if (pending === undefined) return;
          const written = s.write(pending);
          pending = written < pending.length ? pending.subarray(written) : undefined;
        },
      },
    });
    socket.setNoDelay(true);
    return {
      write(bytes) {
        if (pending !== undefined) {
          const joined = new Uint8Array(pending.length + bytes.length);
          joined.set(pending);
          joined.set(bytes, pending.length);
          pending = joined;
          return;
        }
        const written = socket.write(bytes);
        if (written < bytes.length) pending = bytes.subarray(written);
      },
      close: () => socket.end(),
    };
  }
  const conn = await Deno.connect({ hostname, port });
  conn.setNoDelay(true);
  (async () => {
    const buffer = new Uint8Array(64 * 1024);
    for (;;) {
      const count = await conn.read(buffer).catch(() => null);
      if (count === null) return;
      onData(buffer.subarray(0, count));
    }
  })();
  let writing: Promise<unknown> = Promise.resolve();
  return {
    write(bytes) {
      writing = writing.then(async () => {
        for (let at = 0; at < bytes.length;) {
          at += await conn.write(bytes.subarray(at));
        }
      });
    },
    close: () => conn.close(),
  };
}

const encoder = new TextEncoder();
function utf8(text: string): number[] {
  const bytes = encoder.encode(text);
  return [bytes.length >> 8, bytes.length & 0xff, ...bytes];
}
function packet(first: number, body: number[]): Uint8Array {
  if (body.length > 127) {
    throw new RangeError("floor packets have a one-byte remaining length");
  }
  return new Uint8Array([first, body.length, ...body]);
}

/** A CONNECT, MQTT 3.1.1, clean session, keepalive 60 s. */
function connectPacket(clientId: string): Uint8Array {
  return packet(0x10, [...utf8("MQTT"), 4, 2, 0, 60, ...utf8(clientId)]);
}

/**
 * Splits `data` into packets: calls `each(type and flags byte, offset of the body)` for every
 * whole packet and returns the offset where the unfinished rest begins.
 */
function scan(
  data: Uint8Array,
  each: (first: number, body: number) => void,
): number {
  let at = 0;
  while (at + 2 <= data.length) {
    let length = 0;
    let shift = 0;
    let i = at + 1;
    for (; i < data.length; i++) {
      length |= (data[i] & 0x7f) << shift;
      shift += 7;
      if ((data[i] & 0x80) === 0) break;
    }
    if (i >= data.length || i + 1 + length > data.length) break;
    each(data[at], i + 1);
    at = i + 1 + length;
  }
  return at;
}

/** Joins what was left of the last chunk with the new one, without a copy when nothing was left. */
class Reassembly {
  #rest: Uint8Array | undefined;
  next(chunk: Uint8Array): Uint8Array {
    if (this.#rest === undefined) return chunk;
    const joined = new Uint8Array(this.#rest.length + chunk.length);
    joined.set(this.#rest);
    joined.set(chunk, this.#rest.length);
    return joined;
  }
  keep(data: Uint8Array, from: number): void {
    this.#rest = from < data.length ? data.slice(from) : undefined;
  }
}

/** A publisher and a subscriber with no library; `send(n)` resolves once `n` have arrived. */
export interface Floor {
  send(n: number): Promise<void>;
  close(): void;
}

/** Opens the floor's subscriber and publisher to `url` for `qos` 1 or 2 at `window`. */
export async function openFloor(
  url: string,
  qos: 1 | 2,
  window: number,
): Promise<Floor> {
  const address = new URL(url);
  const topic = `bench/floor/${qos}`;
  const publishBody = [...utf8(topic), 0, 0, ...new Array(64).fill(0x61)];
  const publish = packet(0x30 | (qos << 1), publishBody);
  const idAt = 2 + 2 + encoder.encode(topic).length;
  // Room for one answer to every packet a chunk can hold (the smallest packet is 4 bytes).
  const out = new Uint8Array(64 * 1024 / 4 * publish.length);

  let handshake: (() => void) | undefined;
  const shaken = () => new Promise<void>((resolve) => handshake = resolve);

  if (window > 255) {
    throw new RangeError("the floor numbers its first window in one byte");
  }
  // `send(n)` is done once n messages have arrived and the publisher has seen all n settle.
  let arrived = 0;
  let settled = 0;
  let target = Infinity;
  let finished: (() => void) | undefined;
  const checkDone = () => {
    if (arrived >= target && settled >= target) finished!();
  };

  // Subscriber: PUBLISH → PUBACK (QoS 1) or PUBREC (QoS 2); PUBREL → PUBCOMP.
  const subIn = new Reassembly();
  const onSubscriber = (chunk: Uint8Array) => {
    const data = subIn.next(chunk);
    let length = 0;
    const answer = (first: number, body: number) => {
      out[length] = first;
      out[length + 1] = 2;
      out[length + 2] = data[body];
      out[length + 3] = data[body + 1];
      length += 4;
    };
    subIn.keep(
      data,
      scan(data, (first, body) => {
        const type = first >> 4;
        if (type === 3) {
          arrived++;
          answer(
            qos === 1 ? 0x40 : 0x50,
            body + 2 + ((data[body] << 8) | data[body + 1]),
          );
        } else if (type === 6) answer(0x70, body);
        else if (type === 9) handshake!();
      }),
    );
    if (length > 0) subscriber.write(out.slice(0, length));
    checkDone();
  };

  // Publisher: PUBACK or PUBCOMP settles a message, and its packet id goes to the next PUBLISH;
  // PUBREC → PUBREL.
  let toSend = 0;
  const pubIn = new Reassembly();
  const onPublisher = (chunk: Uint8Array) => {
    const data = pubIn.next(chunk);
    let length = 0;
    pubIn.keep(
      data,
      scan(data, (first, body) => {
        const type = first >> 4;
        if (type === 5) {
          out[length] = 0x62;
          out[length + 1] = 2;
          out[length + 2] = data[body];
          out[length + 3] = data[body + 1];
          length += 4;
        } else if (type === 4 || type === 7) {
          settled++;
          if (toSend === 0) return;
          toSend--;
          out.set(publish, length);
          out[length + idAt] = data[body];
          out[length + idAt + 1] = data[body + 1];
          length += publish.length;
        } else if (type === 2) handshake!();
      }),
    );
    if (length > 0) publisher.write(out.slice(0, length));
    checkDone();
  };

  const subscriber = await openRaw(address, onSubscriber);
  let ready = shaken();
  subscriber.write(connectPacket(`cpu-floor-sub-${qos}`));
  subscriber.write(packet(0x82, [0, 1, ...utf8(topic), qos]));
  await ready;
  const publisher = await openRaw(address, onPublisher);
  ready = shaken();
  publisher.write(connectPacket(`cpu-floor-pub-${qos}`));
  await ready;

  return {
    send(n) {
      arrived = 0;
      settled = 0;
      target = n;
      const done = new Promise<void>((resolve) => finished = resolve);
      const first = Math.min(window, n);
      toSend = n - first;
      const burst = new Uint8Array(first * publish.length);
      for (let i = 0; i < first; i++) {
        burst.set(publish, i * publish.length);
        burst[i * publish.length + idAt + 1] = i + 1;
      }
      publisher.write(burst);
      return done;
    },
    close() {
      publisher.close();
      subscriber.close();
    },
  };
}
