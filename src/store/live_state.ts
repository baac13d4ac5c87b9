/**
 * The live state of a `FileStore`'s log: the records a change makes, encoded into the store's
 * write buffer, and what the records so far leave live — the outgoing publishes and the incoming
 * QoS 2 packet ids — with the size of a log that held only them, and that log itself, which
 * compaction writes.
 *
 * @module
 */

import { Writer } from "../packet/bytes.ts";
import type { OutgoingState, StoredPublish, StoreOperation } from "./store.ts";
import {
  appendClear,
  appendDelete,
  appendIncoming,
  appendPut,
  appendUpdate,
  DELETE_INCOMING,
  INCOMING_RECORD,
  type LivePublish,
  MAGIC,
  PUT_INCOMING,
  writeLog,
} from "./log_format.ts";

/**
 * What the records of a log leave live. Each change encodes its record into a writer and makes
 * the change here, or throws (and changes nothing, writes nothing) when the log cannot hold it.
 *
 * @example
 * ```ts
 * import { Writer } from "../packet/bytes.ts";
 * import { LiveState } from "./live_state.ts";
 *
 * const live = new LiveState();
 * const writer = new Writer();
 * live.apply(writer, { op: "putIncoming", packetId: 7 });
 * console.log(writer.pos > 0, live.bytes() === live.snapshot().pos); // true true
 * ```
 */
export class LiveState {
  #outgoing: Map<number, LivePublish>;
  #incoming: Set<number>;
  // The bytes of the put records in #outgoing.
  #outgoingBytes: number;

  /**
   * @param outgoing The live outgoing publishes, by sequence.
   * @param outgoingBytes The bytes of their put records.
   * @param incoming The live incoming QoS 2 packet ids, in arrival order.
   */
  constructor(
    outgoing: Map<number, LivePublish> = new Map(),
    outgoingBytes = 0,
    incoming: Set<number> = new Set(),
  ) {
    this.#outgoing = outgoing;
    this.#outgoingBytes = outgoingBytes;
    this.#incoming = incoming;
  }

  /** Encodes the record of one change of a journal into `w`, and makes the change. */
  apply(w: Writer, operation: StoreOperation): void {
    switch (operation.op) {
      case "put":
        return this.put(w, operation.record);
      case "update":
        return this.update(w, operation.sequence, operation.state, operation.packetId);
      case "delete":
        return this.delete(w, operation.sequence);
      case "putIncoming":
        return this.putIncoming(w, operation.packetId);
      case "deleteIncoming":
        return this.deleteIncoming(w, operation.packetId);
    }
  }

  /** Adds (or replaces) a publish. */
  put(w: Writer, record: StoredPublish): void {
    const { sequence, packet } = record;
    const entry = appendPut(w, sequence, record.state, packet.packetId ?? 0, packet);
    const previous = this.#outgoing.get(sequence);
    if (previous !== undefined) this.#outgoingBytes -= previous.size;
    this.#outgoing.set(sequence, entry);
    this.#outgoingBytes += entry.size;
  }

  /** Records a new state, and the packet id once assigned; an unknown sequence is ignored. */
  update(w: Writer, sequence: number, state: OutgoingState, packetId: number | undefined): void {
    const code = appendUpdate(w, sequence, state, packetId);
    const entry = this.#outgoing.get(sequence);
    if (entry !== undefined) {
      entry.state = code;
      if (packetId !== undefined) entry.packetId = packetId;
    }
  }

  /** Removes a publish. */
  delete(w: Writer, sequence: number): void {
    appendDelete(w, sequence);
    const entry = this.#outgoing.get(sequence);
    if (entry !== undefined) {
      this.#outgoing.delete(sequence);
      this.#outgoingBytes -= entry.size;
    }
  }

  /** Adds an incoming QoS 2 packet id. */
  putIncoming(w: Writer, packetId: number): void {
    appendIncoming(w, PUT_INCOMING, packetId);
    this.#incoming.add(packetId);
  }

  /** Forgets an incoming QoS 2 packet id. */
  deleteIncoming(w: Writer, packetId: number): void {
    appendIncoming(w, DELETE_INCOMING, packetId);
    this.#incoming.delete(packetId);
  }

  /** Forgets everything. */
  clear(w: Writer): void {
    appendClear(w);
    this.#outgoing.clear();
    this.#incoming.clear();
    this.#outgoingBytes = 0;
  }

  /** The size of a log that holds exactly the live records. */
  bytes(): number {
    return MAGIC.length + this.#outgoingBytes + this.#incoming.size * INCOMING_RECORD;
  }

  /** A whole log that holds exactly the live records, as they are now. */
  snapshot(): Writer {
    const live = new Writer(new Uint8Array(this.bytes()));
    this.#outgoingBytes = writeLog(live, this.#outgoing, this.#incoming);
    return live;
  }
}
