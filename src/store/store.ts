/**
 * Where a session keeps what must survive a lost connection or a killed process: our QoS 1 and
 * 2 publishes that have not completed (sent or still queued), and the ids of incoming QoS 2
 * messages between PUBLISH and PUBREL.
 *
 * The client writes a publish to the store before its PUBLISH goes on the wire, and removes it
 * when its flow completes. Every method may return a promise (a store on disk does); the client
 * waits for it before it acts on the change. A store that answers synchronously costs nothing.
 *
 * @module
 */

import type { PublishPacket } from "../packet/types.ts";

/** Where an outgoing publish is in its flow. */
export type OutgoingState =
  /** Accepted by `publish`, not sent yet. */
  | "queued"
  /** PUBLISH sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2). */
  | "publish"
  /** PUBREL sent; waiting for PUBCOMP (QoS 2). */
  | "pubrel";

/** An outgoing publish as the store keeps it. */
export interface StoredPublish {
  /** A number that orders publishes as `publish` accepted them; unique in the store. */
  sequence: number;
  /** The PUBLISH. `packetId` is set once it was sent. */
  packet: PublishPacket;
  /** Where it is in its flow. */
  state: OutgoingState;
}

/** What a store held when it was opened. */
export interface StoreContents {
  /** Outgoing publishes, ordered by `sequence`. */
  outgoing: StoredPublish[];
  /** Incoming QoS 2 packet ids whose PUBREL has not arrived, in the order they arrived. */
  incoming: number[];
}

/**
 * Durable session state. {@linkcode MemoryStore} is the default; a store on disk makes
 * publishes survive a restart of the process.
 */
export interface Store {
  /** Opens the store and returns what it holds. Called once, before anything else. */
  open(): StoreContents | Promise<StoreContents>;
  /** Adds a publish (state `"queued"` or `"publish"`). */
  put(record: StoredPublish): void | Promise<void>;
  /** Records a new state (and the packet id once assigned) of a stored publish. */
  update(sequence: number, state: OutgoingState, packetId?: number): void | Promise<void>;
  /** Removes a publish whose flow completed or was given up. */
  delete(sequence: number): void | Promise<void>;
  /** Records an incoming QoS 2 packet id whose message was received. */
  putIncoming(packetId: number): void | Promise<void>;
  /** Forgets an incoming QoS 2 packet id: its PUBREL arrived. */
  deleteIncoming(packetId: number): void | Promise<void>;
  /** Forgets everything: the session was discarded (clean start, or the broker lost it). */
  clear(): void | Promise<void>;
  /** Flushes and closes. */
  close(): void | Promise<void>;
}

/**
 * A store in memory: it survives a lost connection, not a restart. The default.
 *
 * @example
 * ```ts
 * import { MemoryStore } from "./store.ts";
 *
 * const store = new MemoryStore();
 * store.put({ sequence: 1, state: "queued", packet: { type: "publish", topic: "a", payload: new Uint8Array(), qos: 1, retain: false, dup: false } });
 * console.log(store.open().outgoing.length); // 1
 * ```
 */
export class MemoryStore implements Store {
  #outgoing = new Map<number, StoredPublish>();
  #incoming = new Set<number>();

  open(): StoreContents {
    const outgoing = [...this.#outgoing.values()].sort((a, b) => a.sequence - b.sequence);
    return { outgoing, incoming: [...this.#incoming] };
  }

  put(record: StoredPublish): void {
    this.#outgoing.set(record.sequence, record);
  }

  update(sequence: number, state: OutgoingState, packetId?: number): void {
    const record = this.#outgoing.get(sequence);
    if (record === undefined) return;
    record.state = state;
    if (packetId !== undefined) record.packet.packetId = packetId;
  }

  delete(sequence: number): void {
    this.#outgoing.delete(sequence);
  }

  putIncoming(packetId: number): void {
    this.#incoming.add(packetId);
  }

  deleteIncoming(packetId: number): void {
    this.#incoming.delete(packetId);
  }

  clear(): void {
    this.#outgoing.clear();
    this.#incoming.clear();
  }

  close(): void {}
}
