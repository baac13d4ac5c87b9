/**
 * The persistence layer: keeps what a session must not lose across a lost connection or a
 * restart of the process — our QoS 1 and 2 publishes not yet completed and the ids of incoming
 * QoS 2 messages between PUBLISH and PUBREL — in memory ({@linkcode MemoryStore}), in an
 * append-only log on disk ({@linkcode FileStore}), or in a browser's IndexedDB
 * ({@linkcode IndexedDbStore}).
 *
 * @example A store that survives a restart
 * ```ts
 * import { FileStore } from "./mod.ts";
 *
 * const directory = await Deno.makeTempDir();
 * const store = new FileStore(directory);
 * console.log(await store.open()); // { outgoing: [], incoming: [] }
 * await store.close();
 * await Deno.remove(directory, { recursive: true });
 * ```
 *
 * @module
 */

export { FileStore, type FileStoreOptions } from "./file_store.ts";
export { IndexedDbStore, type IndexedDbStoreOptions } from "./indexeddb_store.ts";
export { MemoryStore } from "./memory_store.ts";
export {
  applyOperation,
  type OutgoingState,
  type Store,
  type StoreContents,
  type StoredPublish,
  type StoreOperation,
} from "./store.ts";
