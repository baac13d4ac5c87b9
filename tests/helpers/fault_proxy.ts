/**
 * A fault-injecting TCP proxy for tests: it sits on loopback between a client and a real broker
 * and can cut connections at an exact byte, at seeded random bytes, stall them, refuse new ones
 * and cut everything at once.
 *
 * Only `node:net` is used, so it behaves the same under `deno test` and `bun test`.
 *
 * How a fault looks from each side:
 * - A cut (`cutAfterBytes`, `cutRandomly`) forwards exactly the bytes up to the cut point, then
 *   ends the receiving side after those bytes (it reads them, then EOF) and destroys the sending
 *   side (EOF, or a reset if it had bytes we had not read). The broker sees its client vanish
 *   without DISCONNECT, so its will and session handling apply.
 * - `cutAll()` destroys both sockets of every connection at once: bytes not yet handed to the
 *   kernel are dropped, and each peer sees EOF or a reset.
 * - `stall()` holds everything, bytes and EOFs alike, and the sockets stay open; `resume()`
 *   passes on what was held, in order.
 * - `refuse(true)` closes the listening socket, so a connect fails with `ECONNREFUSED` like a
 *   broker that is down; open connections go on (add `cutAll()` for a broker that crashed).
 * - When the broker cannot be reached, the proxy has already accepted the client, so the
 *   client sees its connection accepted and then closed.
 *
 * @module
 */

import * as net from "node:net";
import { clearTimeout, setTimeout } from "node:timers";
import { atExit } from "./watchdog.ts";

const HOST = "127.0.0.1";
const EMPTY = new Uint8Array(0);
/**
 * How long a side that was ended after a cut may take to close its end too before it is
 * destroyed. Destroying it right away could reset it while our last bytes are still queued in
 * the kernel, and a reset throws those away.
 */
const LINGER_MS = 2_000;

/**
 * Which bytes count towards a cut: client to broker (`"up"`), broker to client (`"down"`), or
 * both directions together (`"both"`).
 */
export type CutDirection = "up" | "down" | "both";

/** What `onConnection` listeners are told about a newly accepted connection. */
export interface FaultConnectionInfo {
  /** 1 for the first connection this proxy accepted, then 2, 3, … */
  id: number;
  /** Settles once both the client's and the broker's socket of this connection have closed. */
  closed: Promise<void>;
  /**
   * Bytes forwarded so far, counted live: handed to the broker's socket (`up`) or the client's
   * (`down`), whether or not they have left its write buffer yet.
   */
  readonly forwarded: { readonly up: number; readonly down: number };
}

/** Options for `cutRandomly`. */
export interface RandomCutOptions {
  /** Seeds the generator; defaults to the proxy's `seed`. Print it when a test fails. */
  seed?: number;
  /** The fewest bytes a connection carries before its cut. */
  minBytes: number;
  /** The most bytes a connection carries before its cut. */
  maxBytes: number;
  /** Which bytes count; `"both"` unless told. */
  direction?: CutDirection;
}

/**
 * A running fault proxy, listening on loopback in front of one target. `await using` closes it at
 * the end of the scope.
 */
export interface FaultProxy extends AsyncDisposable {
  /** The proxy listens on this loopback address only. */
  readonly host: "127.0.0.1";
  /** Where clients connect. */
  readonly port: number;
  /** `mqtt://127.0.0.1:port`, the proxy as a URL for `connect()`. */
  readonly url: string;
  /** The seed that `cutRandomly` uses when it is given none. */
  readonly seed: number;
  /** Proxied connections whose sockets are not both closed yet. */
  readonly connections: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /**
   * Bytes the proxy holds in memory: read but not yet forwarded, held by `stall()`, or queued
   * for writing. Stays small whatever the traffic, because a full writer pauses its reader.
   */
  readonly buffered: number;
  /** Destroys both sockets of every current connection, now. */
  cutAll(): void;
  /**
   * Cuts every current connection once `n` more bytes have passed in `direction`, and every new
   * connection once it has carried `n` bytes, until `stopCutting()`. The cut splits a chunk at
   * the exact byte, so it lands in the middle of a packet. Every byte forwarded before the cut
   * still arrives, even one waiting in the proxy's write buffer.
   *
   * @param n Bytes to let through before the cut; 0 cuts at once (a new connection is then
   * accepted and closed straight away; with `"both"`, each side of an open one gets EOF).
   * @param direction Which bytes count; `"both"` unless told.
   */
  cutAfterBytes(n: number, direction?: CutDirection): void;
  /**
   * Cuts every current and every new connection after a seeded random number of bytes in
   * `[minBytes, maxBytes]`, until `stopCutting()`. One generator serves the proxy: open
   * connections draw first, in the order of their ids, then each new one as it is accepted.
   * So connections made one after another get the same cuts for the same seed.
   */
  cutRandomly(options: RandomCutOptions): void;
  /** Stops `cutAfterBytes` and `cutRandomly`, for current and new connections. */
  stopCutting(): void;
  /** Stops forwarding: bytes and EOFs are held and the sockets stay open. */
  stall(): void;
  /** Forwards again, held bytes first, in order. */
  resume(): void;
  /**
   * While on, connecting fails with `ECONNREFUSED`: the listening socket is closed, as when the
   * broker is down. Turning it off listens on the same port again.
   *
   * @returns Settles once the proxy refuses, or accepts again; await it before connecting.
   */
  refuse(on: boolean): Promise<void>;
  /**
   * Calls `listener` for each accepted connection.
   *
   * @returns A function that removes the listener.
   */
  onConnection(listener: (info: FaultConnectionInfo) => void): () => void;
  /** Closes the listener and every connection, and settles once all are closed. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts a fault proxy on a free loopback port, forwarding to `target`.
 *
 * A proxy that is never closed is destroyed, with a warning, when the process exits.
 *
 * @param target Where to forward, usually a broker from `startMosquitto()`.
 * @param options `seed`: the default seed for `cutRandomly` (random unless given).
 * @returns The listening proxy.
 *
 * This is how a test puts a proxy in front of its broker: with `await using`, it is closed when
 * the test ends, passed or failed, before the broker declared ahead of it is stopped.
 *
 * @example Cut the connection in the middle of the client's first packet
 * ```ts ignore
 * await using broker = await startMosquitto();
 * await using proxy = await startFaultProxy(broker);
 * proxy.cutAfterBytes(5, "up");
 * // connect a client to proxy.url: the broker gets 5 bytes of its CONNECT, then EOF
 * ```
 */
export async function startFaultProxy(
  target: { host: string; port: number },
  options: { seed?: number } = {},
): Promise<FaultProxy> {
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 32);
  const proxy = new FaultProxyServer({ host: target.host, port: target.port }, seed);
  await proxy.start();
  return proxy;
}

/**
 * The mulberry32 generator: small, fast, and the same sequence for the same seed everywhere.
 *
 * @param seed Any number; only its low 32 bits are used.
 * @returns A function giving the next number in `[0, 1)`.
 *
 * @example
 * ```ts
 * import { mulberry32 } from "./fault_proxy.ts";
 * const random = mulberry32(42);
 * const first = random();
 * console.assert(first === mulberry32(42)());
 * ```
 */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface CutPolicy {
  direction: CutDirection;
  nextBudget: () => number;
}

/** Proxies not closed yet, for the process exit handler. */
const openProxies = new Set<FaultProxyServer>();

class FaultProxyServer implements FaultProxy {
  readonly host = HOST;
  readonly seed: number;
  #port = 0;
  readonly #target: { host: string; port: number };
  readonly #connections = new Set<ProxiedConnection>();
  readonly #listeners = new Set<(info: FaultConnectionInfo) => void>();
  /** Every server ever listened on, with a promise of its 'close'; refuse() makes new ones. */
  readonly #servers = new Map<net.Server, Promise<void>>();
  #listener: net.Server | undefined;
  #listening: Promise<void> | undefined;
  #accepted = 0;
  #refusing = false;
  #stalled = false;
  #policy: CutPolicy | undefined;
  #closing: Promise<void> | undefined;

  constructor(target: { host: string; port: number }, seed: number) {
    this.#target = target;
    this.seed = seed;
  }

  get port(): number {
    return this.#port;
  }

  get connections(): number {
    return this.#connections.size;
  }

  get accepted(): number {
    return this.#accepted;
  }

  get buffered(): number {
    let total = 0;
    for (const connection of this.#connections) total += connection.buffered;
    return total;
  }

  async start(): Promise<void> {
    const server = await this.#listen(0);
    this.#listener = server;
    this.#port = (server.address() as net.AddressInfo).port;
    openProxies.add(this);
    atExit(destroyOpenProxies);
  }

  cutAll(): void {
    for (const connection of this.#connections) connection.cutNow();
  }

  cutAfterBytes(n: number, direction: CutDirection = "both"): void {
    checkByteCount("n", n);
    checkDirection(direction);
    this.#applyPolicy({ direction, nextBudget: () => n });
  }

  cutRandomly(options: RandomCutOptions): void {
    const { minBytes, maxBytes, direction = "both" } = options;
    checkByteCount("minBytes", minBytes);
    checkByteCount("maxBytes", maxBytes);
    if (maxBytes < minBytes) {
      throw new RangeError(`maxBytes (${maxBytes}) is less than minBytes (${minBytes})`);
    }
    checkDirection(direction);
    const random = mulberry32(options.seed ?? this.seed);
    const span = maxBytes - minBytes + 1;
    this.#applyPolicy({ direction, nextBudget: () => minBytes + Math.floor(random() * span) });
  }

  stopCutting(): void {
    this.#policy = undefined;
    for (const connection of this.#connections) connection.setCut(undefined, "both");
  }

  stall(): void {
    this.#stalled = true;
    for (const connection of this.#connections) connection.stall();
  }

  resume(): void {
    this.#stalled = false;
    for (const connection of this.#connections) connection.resume();
  }

  refuse(on: boolean): Promise<void> {
    if (this.#closing) return Promise.resolve();
    this.#refusing = on;
    if (on) {
      // Closing the listening socket takes effect at once: the next connect is refused.
      if (this.#listener) this.#stopListening(this.#listener);
      this.#listener = undefined;
      return this.#listening ?? Promise.resolve();
    }
    if (this.#listener) return Promise.resolve();
    this.#listening ??= this.#listen(this.#port).then(
      (server) => {
        this.#listening = undefined;
        if (this.#refusing || this.#closing) this.#stopListening(server);
        else this.#listener = server;
      },
      (error: Error) => {
        this.#listening = undefined;
        throw new Error(`fault proxy could not listen on port ${this.#port} again`, {
          cause: error,
        });
      },
    );
    return this.#listening;
  }

  onConnection(listener: (info: FaultConnectionInfo) => void): () => void {
    // A wrapper, so one function subscribed twice is two subscriptions.
    const entry = (info: FaultConnectionInfo) => listener(info);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  get url(): string {
    return `mqtt://${HOST}:${this.port}`;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      openProxies.delete(this);
      this.#refusing = true;
      this.#policy = undefined;
      if (this.#listener) this.#stopListening(this.#listener);
      this.#listener = undefined;
      await this.#listening?.catch(() => {});
      const closed = [...this.#connections].map((connection) => connection.closed);
      this.cutAll();
      await Promise.all([...closed, ...this.#servers.values()]);
    })();
    return this.#closing;
  }

  /** Destroys everything at once, for the process exit handler. */
  destroyNow(): void {
    openProxies.delete(this);
    this.#refusing = true;
    for (const server of this.#servers.keys()) {
      if (server.listening) server.close();
    }
    this.cutAll();
  }

  #listen(port: number): Promise<net.Server> {
    // pauseOnConnect: the client's bytes wait in the kernel until the broker is connected.
    const server = net.createServer(
      { allowHalfOpen: true, pauseOnConnect: true },
      (socket) => this.#accept(socket),
    );
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, HOST, () => {
        server.off("error", reject);
        // Errors after listening (e.g. EMFILE on accept) must not crash the test process.
        server.on("error", () => {});
        this.#servers.set(server, new Promise((closed) => server.once("close", () => closed())));
        resolve(server);
      });
    });
  }

  #stopListening(server: net.Server): void {
    // The 'close' event waits for this server's connections; #servers keeps its promise.
    if (server.listening) server.close();
  }

  #accept(client: net.Socket): void {
    if (this.#refusing || this.#closing) {
      // Accepted in the moment before the listener closed.
      client.destroy();
      return;
    }
    const id = ++this.#accepted;
    const connection = new ProxiedConnection(id, client, this.#target, this.#stalled, () => {
      this.#connections.delete(connection);
    });
    this.#connections.add(connection);
    if (this.#policy) connection.setCut(this.#policy.nextBudget(), this.#policy.direction);
    const info = { id, closed: connection.closed, forwarded: connection.forwarded };
    for (const listener of this.#listeners) listener(info);
  }

  #applyPolicy(policy: CutPolicy): void {
    this.#policy = policy;
    // Sets iterate in insertion order, which is id order. Connections already cut draw
    // nothing: how many of them are still closing depends on timing, not on the test.
    for (const connection of this.#connections) {
      if (connection.cuttable) connection.setCut(policy.nextBudget(), policy.direction);
    }
  }
}

/** One direction of a connection: bytes read from `source` are written to `target`. */
class Flow {
  readonly direction: "up" | "down";
  readonly source: net.Socket;
  readonly target: net.Socket;
  /** Bytes read while stalled, or before the broker was connected, in order. */
  held: Uint8Array[] = [];
  heldBytes = 0;
  /** The source sent EOF; pass it on once the held bytes are through. */
  ended = false;
  /** The source closed; the target is ended and then destroyed once the held bytes are through. */
  vanished = false;
  endPassed = false;
  /** The target's buffer is full: the source is paused until the target drains. */
  blocked = false;
  /** The target can no longer be written to: read the source only to drop what it sends. */
  discarding = false;

  constructor(direction: "up" | "down", source: net.Socket, target: net.Socket) {
    this.direction = direction;
    this.source = source;
    this.target = target;
  }
}

/**
 * One client connection and its connection to the target. It forwards chunk by chunk, so at
 * most about one chunk per direction waits in memory beyond the sockets' own write buffers.
 */
class ProxiedConnection {
  readonly id: number;
  readonly closed: Promise<void>;
  readonly forwarded = { up: 0, down: 0 };
  readonly #client: net.Socket;
  readonly #upstream: net.Socket;
  readonly #up: Flow;
  readonly #down: Flow;
  #state: "connecting" | "open" | "cut" = "connecting";
  #stalled: boolean;
  /** Bytes still allowed before the cut, counted over `#budgetDirection`. */
  #budget: number | undefined;
  #budgetDirection: CutDirection = "both";
  #lingerTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    id: number,
    client: net.Socket,
    target: { host: string; port: number },
    stalled: boolean,
    onClosed: () => void,
  ) {
    this.id = id;
    this.#stalled = stalled;
    this.#client = client;
    this.#upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    this.#up = new Flow("up", client, this.#upstream);
    this.#down = new Flow("down", this.#upstream, client);
    let open = 2;
    this.closed = new Promise((resolve) => {
      const onSocketClosed = () => {
        if (--open > 0) return;
        clearTimeout(this.#lingerTimer);
        onClosed();
        resolve();
      };
      client.once("close", onSocketClosed);
      this.#upstream.once("close", onSocketClosed);
    });
    for (const flow of [this.#up, this.#down]) {
      flow.source.setNoDelay(true);
      // Errors are seen through 'close'; a reset of one side reaches the other as EOF.
      flow.source.on("error", () => {});
      flow.source.on("data", (chunk: Uint8Array) => this.#receive(flow, chunk));
      flow.source.on("end", () => this.#sourceEnded(flow, false));
      flow.source.on("close", () => this.#sourceEnded(flow, true));
    }
    this.#upstream.once("connect", () => {
      if (this.#state !== "connecting") return;
      this.#state = "open";
      if (!this.#stalled) this.resume();
    });
    client.pause();
  }

  get cuttable(): boolean {
    return this.#state !== "cut";
  }

  get buffered(): number {
    let total = 0;
    for (const socket of [this.#client, this.#upstream]) {
      total += socket.readableLength + socket.writableLength;
    }
    return total + this.#up.heldBytes + this.#down.heldBytes;
  }

  /** Cuts after `budget` more bytes in `direction`; `undefined` cancels a pending cut. */
  setCut(budget: number | undefined, direction: CutDirection): void {
    if (this.#state === "cut") return;
    this.#budget = budget;
    this.#budgetDirection = direction;
    if (budget !== 0) return;
    // Nothing forwarded yet: nothing to deliver first.
    if (this.#state === "connecting") this.cutNow();
    else if (direction === "up") this.#cutAfter(this.#up, EMPTY);
    else if (direction === "down") this.#cutAfter(this.#down, EMPTY);
    else {
      // Neither side is the sender: each gets what was forwarded to it, then EOF.
      this.#state = "cut";
      this.#dropHeld();
      this.#endAndLinger(this.#client);
      this.#endAndLinger(this.#upstream);
    }
  }

  cutNow(): void {
    this.#state = "cut";
    this.#dropHeld();
    this.#client.destroy();
    this.#upstream.destroy();
  }

  stall(): void {
    this.#stalled = true;
    if (this.#state !== "open") return;
    for (const flow of [this.#up, this.#down]) {
      if (!flow.discarding) flow.source.pause();
    }
  }

  resume(): void {
    this.#stalled = false;
    if (this.#state !== "open") return;
    for (const flow of [this.#up, this.#down]) {
      const held = flow.held;
      flow.held = [];
      flow.heldBytes = 0;
      for (const chunk of held) {
        this.#forward(flow, chunk);
        if (this.#state !== "open") return;
      }
      if (flow.ended) this.#passEnd(flow);
      if (!flow.blocked) flow.source.resume();
    }
  }

  #receive(flow: Flow, chunk: Uint8Array): void {
    if (this.#state === "cut" || flow.discarding) return;
    if (this.#state === "connecting" || this.#stalled) {
      flow.held.push(chunk);
      flow.heldBytes += chunk.length;
      flow.source.pause();
      return;
    }
    this.#forward(flow, chunk);
  }

  #forward(flow: Flow, chunk: Uint8Array): void {
    let part = chunk;
    let cutHere = false;
    if (
      this.#budget !== undefined &&
      (this.#budgetDirection === "both" || this.#budgetDirection === flow.direction)
    ) {
      if (chunk.length >= this.#budget) {
        part = chunk.subarray(0, this.#budget);
        cutHere = true;
      } else {
        this.#budget -= chunk.length;
      }
    }
    if (cutHere) {
      this.#cutAfter(flow, part);
      return;
    }
    if (flow.endPassed || flow.target.writableEnded || flow.target.destroyed) return;
    this.forwarded[flow.direction] += part.length;
    if (!flow.target.write(part) && !flow.blocked) {
      flow.blocked = true;
      flow.source.pause();
      flow.target.once("drain", () => {
        flow.blocked = false;
        if (this.#state === "open" && !this.#stalled) flow.source.resume();
      });
    }
  }

  /** The cut: `last` reaches the target, then EOF; the source vanishes at once. */
  #cutAfter(flow: Flow, last: Uint8Array): void {
    this.#state = "cut";
    this.#dropHeld();
    flow.source.destroy();
    if (flow.endPassed || flow.target.destroyed) {
      flow.target.destroy();
      return;
    }
    this.forwarded[flow.direction] += last.length;
    if (last.length > 0) flow.target.write(last);
    this.#endAndLinger(flow.target);
  }

  #sourceEnded(flow: Flow, closed: boolean): void {
    if (closed && this.#state === "connecting") {
      // The target refused or the client left first: nothing was forwarded, so close both.
      this.cutNow();
      return;
    }
    flow.ended = true;
    if (closed) flow.vanished = true;
    if (this.#state === "open" && !this.#stalled && flow.held.length === 0) this.#passEnd(flow);
  }

  #passEnd(flow: Flow): void {
    if (flow.vanished) {
      // The source is gone, so nothing written to it arrives: the other way is dead too.
      const back = flow === this.#up ? this.#down : this.#up;
      back.discarding = true;
      this.#endAndLinger(flow.target);
      return;
    }
    if (flow.endPassed) return;
    flow.endPassed = true;
    flow.target.end();
  }

  /**
   * Ends `socket` after what is queued for it, keeps reading it so that closing it later sends
   * no reset (a reset would throw away bytes still in the kernel's send queue), and destroys it
   * when its peer closes too, or after LINGER_MS.
   */
  #endAndLinger(socket: net.Socket): void {
    if (socket.destroyed) return;
    if (!socket.writableEnded) socket.end();
    for (const flow of [this.#up, this.#down]) {
      if (flow.source === socket) flow.discarding = true;
    }
    socket.resume();
    if (this.#lingerTimer === undefined) {
      this.#lingerTimer = setTimeout(() => {
        this.#client.destroy();
        this.#upstream.destroy();
      }, LINGER_MS);
      this.#lingerTimer.unref();
    }
  }

  #dropHeld(): void {
    for (const flow of [this.#up, this.#down]) {
      flow.held = [];
      flow.heldBytes = 0;
    }
  }
}

function checkByteCount(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a whole number of bytes, not ${value}`);
  }
}

function checkDirection(direction: CutDirection): void {
  if (direction !== "up" && direction !== "down" && direction !== "both") {
    throw new RangeError(`direction must be "up", "down" or "both", not ${direction}`);
  }
}

function destroyOpenProxies(): void {
  for (const proxy of [...openProxies]) {
    console.error(
      `fault proxy on port ${proxy.port} was never closed (seed ${proxy.seed}); destroying it`,
    );
    proxy.destroyNow();
  }
}
