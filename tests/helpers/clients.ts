/**
 * Clients a test connects to a broker, all disconnected when the test ends, passed or failed.
 *
 * @module
 */

import { connect, type ConnectOptions, type MqttClient } from "../../mod.ts";

/** Anything that is disconnected at the end: a client from `connect()` or one built by hand. */
interface Disconnectable {
  disconnect(): Promise<void>;
}

/**
 * The clients of one test: `connect()`-ed through it, they are disconnected when its scope ends
 * (`await using`), the last connected first, however the test ended.
 *
 * @example Two clients of a broker, disconnected at the end of the test
 * ```ts ignore
 * test("a round trip", async () => {
 *   await using broker = await startMosquitto();
 *   await using clients = new Clients({ reconnect: false });
 *   const subscriber = await clients.connect(broker.url, { clientId: "sub" });
 *   const publisher = await clients.connect(broker.url);
 * });
 * ```
 */
export class Clients implements AsyncDisposable {
  readonly #defaults: ConnectOptions;
  readonly #clients: Disconnectable[] = [];

  /** @param defaults Options for every `connect()`; each call's own options win. */
  constructor(defaults: ConnectOptions = {}) {
    this.#defaults = defaults;
  }

  /**
   * Connects a client to `url` and keeps it to disconnect at the end.
   *
   * @param url The broker, e.g. `broker.url` of a mosquitto or of a fault proxy.
   * @param options The client's options, over the defaults given to the constructor.
   * @returns The connected client.
   */
  async connect(url: string, options: ConnectOptions = {}): Promise<MqttClient> {
    return this.add(await connect(url, { ...this.#defaults, ...options }));
  }

  /**
   * Keeps a client connected another way (`new MqttClient(transport)`) to disconnect at the end.
   *
   * @param client The client.
   * @returns The same client.
   */
  add<C extends Disconnectable>(client: C): C {
    this.#clients.push(client);
    return client;
  }

  /** Disconnects every client, the last one first; `disconnect()` is idempotent. */
  async [Symbol.asyncDispose](): Promise<void> {
    const errors: unknown[] = [];
    for (const client of this.#clients.splice(0).reverse()) {
      await client.disconnect().catch((error: unknown) => errors.push(error));
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, "clients failed to disconnect");
  }
}
