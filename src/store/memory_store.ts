/**
 * The default {@linkcode Store}: it keeps the session in memory, so it survives a lost
 * connection but not a restart of the process.
 *
 * @module
 */

import type { OutgoingState, Store, StoreContents, StoredPublish } from "./store.ts";

/**
 * A store in memory: it survives a lost connection, not a restart. The default.
 *
 * @example
 * ```ts
 * import { MemoryStore } from "./memory_store.ts";
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
