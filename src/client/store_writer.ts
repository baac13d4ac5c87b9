/**
 * A client's store: opened (what it holds handed to the session), given the session's journal in
 * order, waited on until all of it is durable (the client waits for that before it writes the
 * packets that depend on it), and closed. The client applies the journal synchronously whenever
 * the session changed (so a store that writes synchronously has a publish before `publish()`
 * returns); only the packets wait for the promises.
 *
 * @module
 */

import { StoreError } from "../errors.ts";
import {
  applyOperation,
  type Store,
  type StoreContents,
  type StoreOperation,
} from "../store/store.ts";

/** Applies journal operations to a store and tracks the last write that is not yet durable. */
export class StoreWriter {
  readonly #store: Store;
  readonly #take: () => StoreOperation[];
  readonly #onFail: (error: unknown) => void;
  // The last store write not yet durable; writes are ordered, so it stands for all before it.
  #busy: Promise<void> | undefined;
  // The last promise the store returned. Calls that become durable together (one flush) may
  // return the same promise, and a store durable at once may return one resolved promise for
  // all: each is followed once, so that a call costs no promise of its own here.
  #last: Promise<void> | undefined;
  // Settles once the store is open and what it held is restored (rejects if it cannot be
  // opened); until then the journal waits in the session, as the store takes nothing yet.
  #opening: Promise<void> | undefined;
  #open = false;

  /**
   * @param store Where the operations go.
   * @param take Hands out the operations not yet applied (the session's journal).
   * @param onFail Told when a write fails later, whether or not anything waits for it.
   */
  constructor(
    store: Store,
    take: () => StoreOperation[],
    onFail: (error: unknown) => void,
  ) {
    this.#store = store;
    this.#take = take;
    this.#onFail = onFail;
  }

  /**
   * Opens the store and hands what it holds to `restore`, then the journal to the store. Rejects
   * when the store cannot be opened.
   */
  open(restore: (contents: StoreContents) => void): Promise<void> {
    const opening = this.#opening = Promise.resolve(this.#store.open()).then((contents) => {
      restore(contents);
      this.#open = true;
      this.apply();
    });
    // Whoever waits for the store (durable()) hears of a failure; this is not the only one.
    opening.catch(() => {});
    return opening;
  }

  /** Hands the operations not yet applied to the store, once it is open; a failure is told. */
  apply(): void {
    if (!this.#open) return;
    try {
      this.#apply();
    } catch (error) {
      this.#onFail(error);
    }
  }

  /**
   * Hands the operations not yet applied to the store.
   *
   * @throws {StoreError} When the store refuses one at once.
   */
  #apply(): void {
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

  /**
   * Applies what is pending and resolves once all of it is durable; while the store opens, waits
   * for that first. Rejects with StoreError, or when the store cannot be opened.
   */
  durable(): Promise<void> {
    if (this.#open) return this.#durable();
    // Not open yet: it takes the journal once it is (or never, when it is never opened).
    return this.#opening?.then(() => this.#durable()) ?? Promise.resolve();
  }

  async #durable(): Promise<void> {
    this.#apply();
    while (this.#busy !== undefined) {
      const busy = this.#busy;
      await busy;
      if (this.#busy === busy) this.#busy = undefined;
      this.#apply();
    }
  }

  /** Closes the store once what it was given is durable (a failure was told already). */
  async close(): Promise<void> {
    try {
      await this.durable();
    } catch {
      // Told already.
    }
    await this.#store.close();
  }
}
