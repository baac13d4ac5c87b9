/**
 * A {@linkcode Store} in the browser's IndexedDB, so that a page's unfinished QoS 1 and 2
 * publishes and the ids of its incoming QoS 2 messages survive a reload of the page (or closing
 * and reopening it): the browser's `FileStore`.
 *
 * The database (one per store name) holds three object stores: `publishes` (the PUBLISH of each
 * outgoing publish, by sequence), `states` (its state and packet id, by sequence: a change of
 * state writes a few bytes, not the payload again) and `incoming` (the arrival number of each
 * incoming QoS 2 packet id, by packet id).
 *
 * @module
 */

import { MqttError } from "../errors.ts";
import type { PublishPacket } from "../packet/types.ts";
import type {
  OutgoingState,
  Store,
  StoreContents,
  StoredPublish,
  StoreOperation,
} from "./store.ts";

/**
 * Options of an {@linkcode IndexedDbStore}.
 *
 * @example
 * ```ts
 * import type { IndexedDbStoreOptions } from "./indexeddb_store.ts";
 *
 * const options: IndexedDbStoreOptions = { durability: "relaxed" };
 * console.log(options.durability); // "relaxed"
 * ```
 */
export interface IndexedDbStoreOptions {
  /**
   * The durability hint of every write transaction, and so when the promise of a call resolves:
   * - `"strict"` (the default): once the browser reports the transaction written through to
   *   the disk, so a crash of the browser or of the machine after it loses none of it. The
   *   client waits for that before it sends the packet that depends on the change.
   * - `"relaxed"`: once the browser has the transaction committed, which may still be in the
   *   operating system's buffers: a reload or a crash of the page loses nothing after it, a
   *   power cut may. Faster where a flush is slow.
   * - `"default"`: the browser's own choice (Chromium: `"relaxed"`).
   */
  durability?: "strict" | "relaxed" | "default";
  /**
   * How long `open()` waits, in milliseconds, for another page (a tab, or the page before a
   * reload) to let go of the same store, held with the Web Locks API where the browser has it.
   * Default 10,000.
   */
  lockTimeout?: number;
}

// The parts of IndexedDB and Web Locks this store uses: Deno's and Bun's type libraries have
// neither, and the code must type-check there too.
interface IdbRequest<T = unknown> {
  result: T;
  error: DOMException | null;
  onsuccess: (() => void) | null;
  onerror: (() => void) | null;
}
interface IdbOpenRequest extends IdbRequest<IdbDatabase> {
  onupgradeneeded: (() => void) | null;
  onblocked: (() => void) | null;
}
interface IdbObjectStore {
  put(value: unknown, key: number): IdbRequest;
  delete(key: number): IdbRequest;
  clear(): IdbRequest;
  getAll(): IdbRequest<unknown[]>;
  getAllKeys(): IdbRequest<number[]>;
}
interface IdbTransaction {
  objectStore(name: string): IdbObjectStore;
  commit?(): void;
  error: DOMException | null;
  oncomplete: (() => void) | null;
  onabort: (() => void) | null;
  onerror: (() => void) | null;
}
interface IdbDatabase {
  objectStoreNames: { contains(name: string): boolean };
  createObjectStore(name: string): IdbObjectStore;
  transaction(
    names: string[],
    mode: "readonly" | "readwrite",
    options?: { durability: string },
  ): IdbTransaction;
  close(): void;
  onversionchange: (() => void) | null;
}
interface IdbFactory {
  open(name: string, version: number): IdbOpenRequest;
}
interface LockManager {
  request(
    name: string,
    options: { signal?: AbortSignal },
    callback: () => Promise<void>,
  ): Promise<void>;
}

const VERSION = 1;
const PUBLISHES = "publishes";
const STATES = "states";
const INCOMING = "incoming";
const ALL = [PUBLISHES, STATES, INCOMING];

/** What `states` holds for each outgoing publish. */
interface StateRecord {
  state: OutgoingState;
  packetId?: number;
}

const NEW = 0;
const OPENING = 1;
const OPEN = 2;
const CLOSED = 3;

/**
 * A {@linkcode Store} in IndexedDB, for pages: a QoS 1 or 2 publish a page handed to the client
 * is sent after a reload of the page, by the client the new page makes over the same store name
 * (with `clean: false` and the same `clientId`, so that the broker keeps the session too).
 *
 * Each call (or each journal handed to `apply`) issues one read-write IndexedDB transaction
 * before it returns, which copies the data then; transactions are committed in call order. Its
 * promise resolves once the transaction has completed, with the
 * {@linkcode IndexedDbStoreOptions.durability} asked for (by default `"strict"`: written through
 * to the disk). What is promised is bound to that promise: a change whose promise resolved
 * survives a reload, closing the tab and a crash of the browser; a page that goes away before it
 * resolves may lose the change, as the browser aborts a transaction that has not completed when
 * its page is torn down. The client sends no packet that depends on a change before the change's
 * promise resolved, so a PUBLISH that went out is in the store, and `client.persisted()` resolves
 * once every publish so far is: a page that awaits it before it may be reloaded loses none.
 *
 * Where the browser has the Web Locks API, the store holds a lock named after the database while
 * it is open, so that two tabs never use one store at once: `open()` waits for the other to let
 * go (see {@linkcode IndexedDbStoreOptions.lockTimeout}).
 *
 * A failed transaction (the storage quota is exhausted, the user cleared the site's data) makes
 * the store fail for good: the promise of that call and every later call rejects.
 *
 * Deno, Bun and Node have no IndexedDB: there the constructor throws; use `FileStore`.
 *
 * @example Where there is IndexedDB, else in memory
 * ```ts
 * import { IndexedDbStore } from "./indexeddb_store.ts";
 * import { MemoryStore } from "./memory_store.ts";
 *
 * // In a page; on Deno, Bun and Node the constructor would throw.
 * const store = "indexedDB" in globalThis ? new IndexedDbStore("kite-page") : new MemoryStore();
 * console.log((await store.open()).outgoing); // []
 * await store.close();
 * ```
 *
 * @example In a page: publishes survive a reload
 * ```ts ignore
 * import { connect, IndexedDbStore } from "@kite/mqtt";
 *
 * const client = await connect("wss://broker.example/mqtt", {
 *   clientId: "dashboard-7",
 *   clean: false,
 *   store: new IndexedDbStore("dashboard-7"),
 * });
 * client.publish("orders/new", JSON.stringify({ id: 42 }), { qos: 1 }).catch(console.error);
 * await client.persisted(); // in IndexedDB: sent after a reload if not acknowledged before
 * ```
 */
export class IndexedDbStore implements Store {
  readonly #factory: IdbFactory;
  readonly #name: string;
  readonly #durability: "strict" | "relaxed" | "default";
  readonly #lockTimeout: number;
  #phase = NEW;
  #db: IdbDatabase | undefined;
  #opening: Promise<StoreContents> | undefined;
  #closing: Promise<void> | undefined;
  #failure: MqttError | undefined;
  // The packet id of each outgoing sequence held (undefined before one is assigned): an update
  // without a packet id keeps it, and an update of a sequence not held is ignored, as by the
  // other stores.
  readonly #packetIds = new Map<number, number | undefined>();
  // The arrival number the next incoming QoS 2 packet id gets.
  #nextArrival = 0;
  // The promise of the last transaction issued: close() waits for it.
  #last: Promise<void> = Promise.resolve();
  // Lets go of the Web Lock, once held.
  #unlock: (() => void) | undefined;

  /**
   * Creates a store over the IndexedDB database `kite-mqtt:<name>`, which `open()` creates if
   * needed. Nothing touches the database before `open()`.
   *
   * @param name The store's name: one per client (its `clientId` is a good one).
   * @param options The durability of the writes, and how long to wait for another tab's lock.
   * @throws {MqttError} Where there is no IndexedDB (Deno, Bun, Node): use `FileStore` there.
   * @throws {TypeError} When `durability` is none of the hints.
   */
  constructor(name: string, options: IndexedDbStoreOptions = {}) {
    const factory = (globalThis as { indexedDB?: IdbFactory }).indexedDB;
    if (factory === undefined) {
      throw new MqttError(
        "IndexedDbStore needs IndexedDB, which only browsers have: use FileStore on Deno, Bun " +
          "and Node, or MemoryStore",
      );
    }
    const { durability = "strict", lockTimeout = 10_000 } = options;
    if (durability !== "strict" && durability !== "relaxed" && durability !== "default") {
      throw new TypeError(
        `durability must be "strict", "relaxed" or "default", not ${String(durability)}`,
      );
    }
    this.#factory = factory;
    this.#name = `kite-mqtt:${name}`;
    this.#durability = durability;
    this.#lockTimeout = lockTimeout;
  }

  /**
   * Opens (and creates if needed) the database, takes its lock, and reads what it holds.
   *
   * @returns The outgoing publishes ordered by sequence, the incoming ids in arrival order.
   * @throws {MqttError} When the database cannot be opened, another tab holds the store past
   *   `lockTimeout`, or the store was opened before.
   */
  open(): Promise<StoreContents> {
    if (this.#phase !== NEW) {
      return Promise.reject(
        new MqttError(
          this.#phase === CLOSED ? "the store is closed" : "the store was already opened",
        ),
      );
    }
    this.#phase = OPENING;
    this.#opening = this.#open();
    return this.#opening;
  }

  async #open(): Promise<StoreContents> {
    try {
      await this.#lock();
      const db = this.#db = await this.#openDatabase();
      // Another page upgrades or deletes the database: let it, this store fails from now on.
      db.onversionchange = () => {
        db.close();
        this.#fail(new Error("the database was deleted or upgraded by another page"));
      };
      const contents = await this.#read(db);
      if (this.#phase === OPENING) this.#phase = OPEN;
      return contents;
    } catch (error) {
      this.#phase = CLOSED;
      this.#db?.close();
      this.#db = undefined;
      this.#unlock?.();
      throw error instanceof MqttError ? error : this.#error("open", error);
    }
  }

  /** Takes the Web Lock of this database, where the browser has the API. */
  async #lock(): Promise<void> {
    const locks = (globalThis as { navigator?: { locks?: LockManager } }).navigator?.locks;
    if (locks === undefined) return;
    const held = new Promise<void>((resolve, reject) => {
      const signal = AbortSignal.timeout(this.#lockTimeout);
      locks.request(this.#name, { signal }, () => {
        resolve();
        // Held until close().
        return new Promise<void>((release) => this.#unlock = release);
      }).catch((error) => {
        reject(
          signal.aborted
            ? new MqttError(
              `the store ${this.#name} is held by another page (tab) for more than ` +
                `${this.#lockTimeout} ms: close it, or give each page a store name of its own`,
            )
            : error,
        );
      });
    });
    await held;
  }

  #openDatabase(): Promise<IdbDatabase> {
    return new Promise((resolve, reject) => {
      const request = this.#factory.open(this.#name, VERSION);
      request.onupgradeneeded = () => {
        const db = request.result;
        for (const name of ALL) {
          if (!db.objectStoreNames.contains(name)) db.createObjectStore(name);
        }
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
      request.onblocked = () =>
        reject(new MqttError(`the database ${this.#name} is blocked by an older version`));
    });
  }

  /** Reads the whole store in one read-only transaction. */
  #read(db: IdbDatabase): Promise<StoreContents> {
    return new Promise((resolve, reject) => {
      const transaction = db.transaction(ALL, "readonly");
      const publishes = transaction.objectStore(PUBLISHES);
      const states = transaction.objectStore(STATES);
      const incoming = transaction.objectStore(INCOMING);
      const publishKeys = publishes.getAllKeys();
      const publishValues = publishes.getAll();
      const stateKeys = states.getAllKeys();
      const stateValues = states.getAll();
      const incomingKeys = incoming.getAllKeys();
      const incomingValues = incoming.getAll();
      transaction.onabort = () => reject(transaction.error);
      transaction.oncomplete = () => {
        const stateOf = new Map<number, StateRecord>();
        stateKeys.result.forEach((key, i) =>
          stateOf.set(key, stateValues.result[i] as StateRecord)
        );
        // Keys come in ascending order: the outgoing publishes are ordered by sequence.
        const outgoing: StoredPublish[] = [];
        publishKeys.result.forEach((sequence, i) => {
          const packet = publishValues.result[i] as PublishPacket;
          const state = stateOf.get(sequence) ?? { state: "queued" };
          if (state.packetId !== undefined) packet.packetId = state.packetId;
          outgoing.push({ sequence, packet, state: state.state });
          this.#packetIds.set(sequence, packet.packetId);
        });
        const arrivals = incomingKeys.result.map((packetId, i) => ({
          packetId,
          arrival: incomingValues.result[i] as number,
        })).sort((a, b) => a.arrival - b.arrival);
        this.#nextArrival = arrivals.length === 0 ? 0 : arrivals[arrivals.length - 1].arrival + 1;
        resolve({ outgoing, incoming: arrivals.map((entry) => entry.packetId) });
      };
    });
  }

  /** Adds a publish. The transaction is issued when this returns; the promise: see the class. */
  put(record: StoredPublish): Promise<void> {
    return this.apply([{ op: "put", record }]);
  }

  /** Records a new state, and the packet id once assigned; a sequence not held is ignored. */
  update(sequence: number, state: OutgoingState, packetId?: number): Promise<void> {
    return this.apply([{ op: "update", sequence, state, packetId }]);
  }

  /** Removes a publish. */
  delete(sequence: number): Promise<void> {
    return this.apply([{ op: "delete", sequence }]);
  }

  /** Records an incoming QoS 2 packet id. */
  putIncoming(packetId: number): Promise<void> {
    return this.apply([{ op: "putIncoming", packetId }]);
  }

  /** Forgets an incoming QoS 2 packet id. */
  deleteIncoming(packetId: number): Promise<void> {
    return this.apply([{ op: "deleteIncoming", packetId }]);
  }

  /** Forgets everything. */
  clear(): Promise<void> {
    return this.#transact((publishes, states, incoming) => {
      publishes.clear();
      states.clear();
      incoming.clear();
      this.#packetIds.clear();
    });
  }

  /**
   * Makes the changes of a journal, in order, in one transaction, issued when this returns; its
   * promise resolves once the transaction completed (see the class).
   *
   * @example
   * ```ts ignore
   * import { IndexedDbStore } from "./indexeddb_store.ts";
   *
   * const store = new IndexedDbStore("kite-page");
   * await store.open();
   * const payload = new TextEncoder().encode("hi");
   * const packet = { type: "publish", topic: "a/b", payload, qos: 1, retain: false, dup: false } as const;
   * await store.apply([
   *   { op: "put", record: { sequence: 1, state: "queued", packet } },
   *   { op: "update", sequence: 1, state: "publish", packetId: 7 },
   * ]);
   * await store.close();
   * ```
   */
  apply(operations: readonly StoreOperation[]): Promise<void> {
    return this.#transact((publishes, states, incoming) => {
      for (let i = 0; i < operations.length; i++) {
        const operation = operations[i];
        switch (operation.op) {
          case "put": {
            const { sequence, packet, state } = operation.record;
            publishes.put(storable(packet), sequence);
            states.put(stateRecord(state, packet.packetId), sequence);
            this.#packetIds.set(sequence, packet.packetId);
            break;
          }
          case "update": {
            const { sequence, state } = operation;
            if (!this.#packetIds.has(sequence)) break;
            const packetId = operation.packetId ?? this.#packetIds.get(sequence);
            this.#packetIds.set(sequence, packetId);
            states.put(stateRecord(state, packetId), sequence);
            break;
          }
          case "delete":
            publishes.delete(operation.sequence);
            states.delete(operation.sequence);
            this.#packetIds.delete(operation.sequence);
            break;
          case "putIncoming":
            incoming.put(this.#nextArrival++, operation.packetId);
            break;
          case "deleteIncoming":
            incoming.delete(operation.packetId);
            break;
        }
      }
    });
  }

  /**
   * Waits for the transactions issued so far, closes the database and lets go of the lock.
   * Calling it again returns the same promise; every other call rejects from now on.
   */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    const phase = this.#phase;
    this.#phase = CLOSED;
    const shutDown = async () => {
      await this.#last.catch(() => {});
      this.#db?.close();
      this.#db = undefined;
      this.#unlock?.();
    };
    if (phase === OPENING) {
      this.#closing = this.#opening!.then(shutDown, () => {});
    } else if (phase === OPEN) {
      this.#closing = shutDown();
    } else {
      this.#closing = Promise.resolve();
    }
    return this.#closing;
  }

  /**
   * Issues one read-write transaction over the three object stores, in which `write` makes its
   * requests synchronously, and commits it; resolves once it completed.
   */
  #transact(
    write: (publishes: IdbObjectStore, states: IdbObjectStore, incoming: IdbObjectStore) => void,
  ): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const db = this.#db;
    if (this.#phase !== OPEN || db === undefined) {
      return Promise.reject(
        new MqttError(
          this.#phase === CLOSED
            ? "the store is closed"
            : "the store is not open: call open() and wait for it first",
        ),
      );
    }
    let transaction: IdbTransaction;
    try {
      transaction = db.transaction(ALL, "readwrite", { durability: this.#durability });
      write(
        transaction.objectStore(PUBLISHES),
        transaction.objectStore(STATES),
        transaction.objectStore(INCOMING),
      );
      // Sent for commit now, not after this turn of the event loop.
      transaction.commit?.();
    } catch (error) {
      // A value that cannot be cloned, or a database closed under us.
      return Promise.reject(this.#fail(error));
    }
    const done = new Promise<void>((resolve, reject) => {
      transaction.oncomplete = () => resolve();
      transaction.onabort = () => reject(this.#fail(transaction.error ?? "aborted"));
    });
    this.#last = done;
    return done;
  }

  /** Makes the store fail for good; returns the failure every call rejects with from now on. */
  #fail(error: unknown): MqttError {
    this.#failure ??= this.#error("write", error);
    return this.#failure;
  }

  #error(what: "open" | "write", error: unknown): MqttError {
    const message = error instanceof Error || error instanceof DOMException
      ? `${error.name}: ${error.message}`
      : String(error);
    return new MqttError(
      `the session store could not ${what} IndexedDB ${this.#name}: ${message}`,
      {
        cause: error,
      },
    );
  }
}

function stateRecord(state: OutgoingState, packetId: number | undefined): StateRecord {
  return packetId === undefined ? { state } : { state, packetId };
}

/**
 * The packet as it is cloned into the database. A payload that views part of a larger buffer
 * (a slice of the bytes a message was decoded from) is copied alone: a structured clone of a view
 * copies its whole buffer.
 */
function storable(packet: PublishPacket): PublishPacket {
  const payload = packet.payload;
  if (payload.byteOffset === 0 && payload.byteLength === payload.buffer.byteLength) return packet;
  return { ...packet, payload: payload.slice() };
}
