/**
 * Hands the session's journal to the store, in order, and tells when all of it is durable: the
 * client waits for that before it writes the packets that depend on it. The client applies the
 * journal synchronously whenever the session changed (so a store that writes synchronously has
 * a publish before `publish()` returns); only the packets wait for the promises.
 *
 * @module
 */

import { StoreError } from "../errors.ts";
import { applyOperation, type Store, type StoreOperation } from "../store/store.ts";

/** Applies journal operations to a store and tracks the last write that is not yet durable. */
export class StoreWriter {
  readonly #store: Store;
  readonly #take: () => StoreOperation[];
  readonly #onFail: (error: StoreError) => void;
  // The last store write not yet durable; writes are ordered, so it stands for all before it.
  #busy: Promise<void> | undefined;
  // The last promise the store returned. Calls that become durable together (one flush) may
  // return the same promise, and a store durable at once may return one resolved promise for
  // all: each is followed once, so that a call costs no promise of its own here.
  #last: Promise<void> | undefined;

  /**
   * @param store Where the operations go.
   * @param take Hands out the operations not yet applied (the session's journal).
   * @param onFail Told when a write fails later, whether or not anything waits for it.
   */
  constructor(
    store: Store,
    take: () => StoreOperation[],
    onFail: (error: StoreError) => void,
  ) {
    this.#store = store;
    this.#take = take;
    this.#onFail = onFail;
  }

  /**
   * Hands the operations not yet applied to the store.
   *
   * @throws {StoreError} When the store refuses one at once.
   */
  apply(): void {
    const operations = this.#take();
    if (operations.length === 0) return;
    const store = this.#store;
    try {
      if (store.apply !== undefined) {
        this.#follow(store.apply(operations));
        return;
      }
      for (let i = 0; i < operations.length; i++) {
        this.#follow(applyOperation(store, operations[i]));
      }
    } catch (error) {
      throw new StoreError(error);
    }
  }

  /** Waits, from now on, for what a store call returned, unless it is what the last call did. */
  #follow(result: void | Promise<void>): void {
    if (result === undefined || result === this.#last) return;
    this.#last = result;
    const busy = result.catch((error) => {
      throw new StoreError(error);
    });
    // Whether or not a write waits for it, a failing store ends the client.
    busy.catch(this.#onFail);
    this.#busy = busy;
  }

  /** Applies what is pending and resolves once all of it is durable; rejects with StoreError. */
  async durable(): Promise<void> {
    this.apply();
    while (this.#busy !== undefined) {
      const busy = this.#busy;
      await busy;
      if (this.#busy === busy) this.#busy = undefined;
      this.apply();
    }
  }
}
