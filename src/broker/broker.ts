/**
 * The {@linkcode Broker}: the broker's protocol logic served over TCP and WebSocket listeners and
 * in-memory connection pairs, each connection's byte streams joined to its handler.
 *
 * The parts, each one job: `registry.ts` holds what all connections share (sessions by client
 * identifier, subscriptions, retained messages, wills) and routes messages; `client_handler.ts`
 * speaks MQTT with one client, with `inbox.ts` for what it publishes and `outbox.ts` for what it
 * is sent; `broker_session.ts` is the state kept per client identifier; `tcp.ts`,
 * `websocket.ts` and `memory.ts` carry the bytes.
 *
 * @module
 */

import { closeQuietly, Deferred } from "../_async.ts";
import { hasDenoSockets } from "../transport/deno.ts";
import { nodeSockets } from "../transport/node.ts";
import { ClientHandler, type ConnectionHooks } from "./client_handler.ts";
import { BrokerCore } from "./registry.ts";
import { memoryPair } from "./memory.ts";
import { listenDenoTcp, listenNodeTcp } from "./tcp.ts";
import { listenWebSocket, type WebSocketListenOptions } from "./websocket.ts";
import type {
  BrokerOptions,
  BrokerTransport,
  ListenAddress,
  ListenOptions,
  RetainedMessage,
  SessionInfo,
} from "./types.ts";

/** A listener the broker can stop. */
interface Listener {
  address: ListenAddress;
  close(): Promise<void>;
}

/**
 * A small MQTT 3.1, 3.1.1 and 5.0 broker that runs inside your process, for tests, demos and
 * local development, with shared subscriptions (`$share/{group}/{filter}`). Not a production
 * broker: no persistence to disk, no TLS, no clustering, and authentication and authorization only
 * as hooks you write (or `scramVerifier`); use mosquitto, EMQX or HiveMQ for that. A subscriber
 * that does not
 * read is bounded (`maxBufferedBytes`): its QoS 0 messages are dropped, its QoS 1 and 2 wait.
 *
 * @example An in-memory broker and a Kite client
 * ```ts
 * import { Broker } from "./broker.ts";
 * import { MqttClient } from "../client/clients.ts";
 *
 * const broker = new Broker();
 * const client = new MqttClient(broker.connectClient());
 * await client.connect({ clientId: "demo", keepalive: 0 });
 * await client.subscribe("greetings/#", { qos: 1 });
 * await client.publish("greetings/kite", "hello", { qos: 1, retain: true });
 * console.log(broker.retained().map((message) => message.topic)); // ["greetings/kite"]
 * await client.disconnect();
 * await broker.close();
 * ```
 */
export class Broker {
  readonly #core: BrokerCore;
  readonly #hooks: ConnectionHooks;
  readonly #links = new Set<{ handler: ClientHandler; done: Promise<void> }>();
  readonly #listeners = new Set<Listener>();
  #closed = false;

  /**
   * Creates a broker. It serves nothing until {@linkcode Broker.prototype.listen} or
   * {@linkcode Broker.prototype.connectClient} is called.
   *
   * @param options Limits, and a clock for tests.
   *
   * @example
   * ```ts
   * import { Broker } from "./broker.ts";
   *
   * const broker = new Broker({ maxQueuedMessages: 100, topicAliasMaximum: 5 });
   * await broker.close();
   * ```
   */
  constructor(options: BrokerOptions = {}) {
    this.#core = new BrokerCore(options);
    this.#hooks = { authenticate: options.authenticate, authorize: options.authorize };
  }

  /**
   * Listens for MQTT over TCP: `Deno.listen` on Deno, `node:net` on Bun and Node.
   *
   * @param options The port (0, the default, picks a free one) and address (default
   * `127.0.0.1`).
   * @returns The address bound, with the port picked.
   *
   * @example
   * ```ts
   * import { Broker } from "./broker.ts";
   *
   * const broker = new Broker();
   * const { port } = await broker.listen({ port: 0 });
   * console.log(`mqtt://127.0.0.1:${port}`);
   * await broker.close();
   * ```
   */
  async listen(options: ListenOptions = {}): Promise<ListenAddress> {
    if (this.#closed) throw new Error("the broker is closed");
    const hostname = options.hostname ?? "127.0.0.1";
    const port = options.port ?? 0;
    const serve = (transport: BrokerTransport) => this.#serve(transport);
    if (hasDenoSockets()) return this.#track(listenDenoTcp(hostname, port, serve));
    const sockets = nodeSockets();
    if (sockets === undefined) {
      throw new Error("this runtime offers neither Deno.listen nor node:net");
    }
    return this.#track(await listenNodeTcp(sockets.net, hostname, port, serve));
  }

  /**
   * Listens for MQTT over WebSocket (binary messages, subprotocol `mqtt`): `Deno.serve` on Deno,
   * `Bun.serve` on Bun. Not available on Node.
   *
   * @param options The port (0, the default, picks a free one), address (default `127.0.0.1`)
   * and path (default `/mqtt`).
   * @returns The address bound, with the port picked.
   *
   * @example
   * ```ts
   * import { Broker } from "./broker.ts";
   *
   * const broker = new Broker();
   * const { port } = await broker.listenWebSocket({ port: 0 });
   * console.log(`ws://127.0.0.1:${port}/mqtt`);
   * await broker.close();
   * ```
   */
  async listenWebSocket(options: WebSocketListenOptions = {}): Promise<ListenAddress> {
    if (this.#closed) throw new Error("the broker is closed");
    return this.#track(await listenWebSocket(options, (transport) => this.#serve(transport)));
  }

  /** Keeps a listener to stop on close. */
  #track(listener: Listener): ListenAddress {
    this.#listeners.add(listener);
    return listener.address;
  }

  /**
   * Opens an in-memory connection to the broker, no socket involved: hand the result to a
   * client (`new MqttClient(broker.connectClient())`).
   *
   * @returns The client's end of the connection.
   *
   * @example
   * ```ts
   * import { Broker } from "./broker.ts";
   * import { MqttClient } from "../client/clients.ts";
   *
   * const broker = new Broker();
   * const client = new MqttClient(broker.connectClient());
   * console.log(await client.connect({ clientId: "memory", keepalive: 0 })); // false: no session
   * await client.disconnect();
   * await broker.close();
   * ```
   */
  connectClient(): BrokerTransport {
    if (this.#closed) throw new Error("the broker is closed");
    const [client, server] = memoryPair();
    this.#serve(server);
    return client;
  }

  /**
   * Serves one connection: an accepted socket, an in-memory pair, or any other
   * `{ readable, writable }` byte connection to a client.
   *
   * @param transport The broker's end of the connection.
   *
   * @example
   * ```ts
   * import { Broker } from "./broker.ts";
   *
   * const broker = new Broker();
   * const toBroker = new TransformStream<Uint8Array, Uint8Array>();
   * const fromBroker = new TransformStream<Uint8Array, Uint8Array>();
   * broker.serve({ readable: toBroker.readable, writable: fromBroker.writable });
   * await broker.close();
   * ```
   */
  serve(transport: BrokerTransport): void {
    if (this.#closed) throw new Error("the broker is closed");
    this.#serve(transport);
  }

  #serve(transport: BrokerTransport): void {
    if (this.#closed) {
      // A connection accepted while the listeners were stopping.
      closeQuietly(transport);
      transport.readable.cancel().catch(() => {});
      transport.writable.abort().catch(() => {});
      return;
    }
    const writer = transport.writable.getWriter();
    const reader = transport.readable.getReader();
    const clock = this.#core.clock;
    let ended = false;
    // Bytes handed to the writer whose write has not settled: what the client has not taken.
    let buffered = 0;
    const closed = new Deferred<void>();
    const abort = () => {
      writer.abort().catch(() => {});
      // A write the client never takes would hold the abort back: closing the transport fails it.
      closeQuietly(transport);
      closed.resolve();
    };
    const handler = new ClientHandler(this.#core, {
      write: (bytes) => {
        if (ended) return;
        const size = bytes.length;
        buffered += size;
        writer.write(bytes).then(() => {
          buffered -= size;
          handler.flushed();
        }, () => {
          buffered -= size;
        });
      },
      get buffered() {
        return buffered;
      },
      end: (graceful) => {
        if (ended) return;
        ended = true;
        reader.cancel().catch(() => {});
        if (!graceful) return abort();
        // A client that does not read would hold a graceful close open for ever.
        const deadline = clock.setTimeout(abort, this.#core.closeTimeout);
        writer.close().catch(() => {}).finally(() => {
          clock.clearTimeout(deadline);
          closeQuietly(transport);
          closed.resolve();
        });
      },
    }, this.#hooks);
    const done = (async () => {
      try {
        while (true) {
          const { done, value } = await reader.read();
          if (done || handler.closed) break;
          handler.receive(value);
        }
      } catch {
        // A broken connection is a lost one.
      }
      handler.lost();
      await closed.promise;
    })();
    const link = { handler, done };
    this.#links.add(link);
    done.then(() => this.#links.delete(link));
  }

  /**
   * Test hook: cuts a client's connection as if the network failed. Its will is published.
   *
   * @param clientId The client identifier.
   * @returns Whether a connected client had that identifier.
   *
   * @example
   * ```ts
   * import { Broker } from "./broker.ts";
   *
   * const broker = new Broker();
   * console.log(broker.dropClient("nobody")); // false
   * await broker.close();
   * ```
   */
  dropClient(clientId: string): boolean {
    let found = false;
    for (const { handler } of this.#links) {
      if (handler.clientId === clientId && handler.connected) {
        handler.drop();
        found = true;
      }
    }
    return found;
  }

  /**
   * Test hook: while on, every CONNECT is answered with "server unavailable" (3.x return code 3,
   * v5 reason code 0x88) and the connection closed.
   *
   * @param on Whether to refuse.
   *
   * @example
   * ```ts
   * import { Broker } from "./broker.ts";
   *
   * const broker = new Broker();
   * broker.refuseConnections(true);
   * broker.refuseConnections(false);
   * await broker.close();
   * ```
   */
  refuseConnections(on: boolean): void {
    this.#core.refusing = on;
  }

  /**
   * Test hook: MQTT 5 server redirection (section 4.11). While set, every v5 CONNECT is answered
   * with CONNACK 0x9D (Server moved, when `permanent`) or 0x9C (Use another server) carrying the
   * Server Reference, and the connection closed; 3.x clients are refused with "server
   * unavailable". With `disconnect`, clients already connected are sent DISCONNECT with the same
   * code and reference (3.x clients are cut). `undefined` turns it off.
   *
   * @param redirect Where to send clients, such as `"127.0.0.1:1884"`, or `undefined`.
   *
   * @example
   * ```ts
   * import { Broker } from "./broker.ts";
   *
   * const broker = new Broker();
   * broker.redirect({ serverReference: "127.0.0.1:1884", permanent: true });
   * broker.redirect(undefined);
   * await broker.close();
   * ```
   */
  redirect(
    redirect: { serverReference: string; permanent?: boolean; disconnect?: boolean } | undefined,
  ): void {
    this.#core.redirecting = redirect && {
      serverReference: redirect.serverReference,
      permanent: redirect.permanent ?? false,
    };
    if (redirect?.disconnect !== true) return;
    for (const { handler } of this.#links) {
      handler.redirect(redirect.serverReference, redirect.permanent ?? false);
    }
  }

  /**
   * Test hook: while on, the broker does not send PUBACK, PUBREC or PUBCOMP for the client's
   * publishes (it still routes them), so a client's timeouts and redelivery can be tested.
   *
   * @param on Whether to withhold.
   *
   * @example
   * ```ts
   * import { Broker } from "./broker.ts";
   *
   * const broker = new Broker();
   * broker.withholdAcks(true);
   * await broker.close();
   * ```
   */
  withholdAcks(on: boolean): void {
    this.#core.withholdingAcks = on;
  }

  /**
   * Inspection: every session the broker holds, connected or not.
   *
   * @returns A snapshot of the sessions.
   *
   * @example
   * ```ts
   * import { Broker } from "./broker.ts";
   *
   * const broker = new Broker();
   * console.log(broker.sessions()); // []
   * await broker.close();
   * ```
   */
  sessions(): SessionInfo[] {
    return this.#core.sessionInfo();
  }

  /**
   * Inspection: every retained message.
   *
   * @returns A snapshot of the retained messages, with copied payloads.
   *
   * @example
   * ```ts
   * import { Broker } from "./broker.ts";
   *
   * const broker = new Broker();
   * console.log(broker.retained()); // []
   * await broker.close();
   * ```
   */
  retained(): RetainedMessage[] {
    return this.#core.retainedInfo();
  }

  /**
   * Ends every connection (v5 clients get DISCONNECT 0x8B), stops the listeners and clears every
   * timer. A client that does not read what is left for it is cut after `closeTimeout`.
   * Idempotent.
   *
   * @example
   * ```ts
   * import { Broker } from "./broker.ts";
   *
   * const broker = new Broker();
   * await broker.listen();
   * await broker.close();
   * ```
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const listeners = [...this.#listeners].map((listener) => listener.close());
    this.#listeners.clear();
    const links = [...this.#links];
    for (const { handler } of links) handler.shutdown();
    this.#core.clearAllTimers();
    await Promise.all([...listeners, ...links.map((link) => link.done)]);
    this.#core.clearAllTimers();
  }

  /**
   * Closes the broker at the end of an `await using` block.
   *
   * @example
   * ```ts
   * import { Broker } from "./broker.ts";
   *
   * await using broker = new Broker();
   * await broker.listen();
   * ```
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
