/**
 * Persistence (`src/store/`): keeps what a session must not lose across a lost connection or a
 * restart of the process, that is our QoS 1 and 2 publishes that have not completed (sent or
 * still queued) and the ids of incoming QoS 2 messages between PUBLISH and PUBREL.
 *
 * This file is the contract between the layer and the client: the {@linkcode Store} interface,
 * the records it keeps, and the journal of changes ({@linkcode StoreOperation}) a session hands
 * out for a store to apply.
 *
 * The client hands a publish to the store before `publish()` returns, each later change of its
 * flow before the packet that follows the change goes on the wire (its packet id before the
 * PUBLISH, the state "pubrel" before PUBREL), and its removal before the publish's promise
 * resolves. A method should have made its change safe from a killed process by the time it
 * returns (a store on disk writes it to the operating system synchronously, as `FileStore`
 * does): then a `publish()` that returned is never lost to a crash of the process. A method may
 * also return a promise that resolves once the change is durable in a stronger sense (flushed to
 * the disk); the client waits for it before it sends the packets that depend on the change. A
 * store that answers synchronously costs nothing.
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
 * Durable session state. `MemoryStore` (in `memory_store.ts`) is the default; a store on disk makes
 * publishes survive a restart of the process.
 *
 * Every change is made in call order. Calls whose changes become durable together may return the
 * same promise.
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
  /**
   * Optional: makes the changes of a journal, in order, as the calls one by one would, for a
   * store that does better at once (`FileStore` writes them with one system call). A client
   * hands its journal to this method when the store has it.
   */
  apply?(operations: readonly StoreOperation[]): void | Promise<void>;
  /** Flushes and closes. */
  close(): void | Promise<void>;
}

/**
 * A change the store must make durable before the packets that follow it are written: the
 * journal of a session.
 */
export type StoreOperation =
  | { op: "put"; record: StoredPublish }
  | { op: "update"; sequence: number; state: OutgoingState; packetId?: number }
  | { op: "delete"; sequence: number }
  | { op: "putIncoming"; packetId: number }
  | { op: "deleteIncoming"; packetId: number };

/**
 * Makes the call on `store` that a journal entry stands for.
 *
 * @returns What the store's method returned: a promise when the store writes asynchronously.
 *
 * @example
 * ```ts
 * import { applyOperation } from "./store.ts";
 * import { MemoryStore } from "./memory_store.ts";
 *
 * const store = new MemoryStore();
 * applyOperation(store, { op: "putIncoming", packetId: 7 });
 * console.log(store.open().incoming); // [7]
 * ```
 */
export function applyOperation(store: Store, operation: StoreOperation): void | Promise<void> {
  switch (operation.op) {
    case "put":
      return store.put(operation.record);
    case "update":
      return store.update(operation.sequence, operation.state, operation.packetId);
    case "delete":
      return store.delete(operation.sequence);
    case "putIncoming":
      return store.putIncoming(operation.packetId);
    case "deleteIncoming":
      return store.deleteIncoming(operation.packetId);
  }
}
