/**
 * IndexedDbStore where there is no IndexedDB (Deno, Bun, Node): the constructor refuses with an
 * error that says what to use instead. Its behaviour in a browser is tested in Chromium, by
 * tests/browser_test.ts.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { IndexedDbStore } from "../../src/store/indexeddb_store.ts";
import { MqttError } from "../../src/errors.ts";

test(
  "IndexedDbStore - without IndexedDB the constructor throws, naming FileStore and MemoryStore",
  {
    skip: "indexedDB" in globalThis ? "this runtime has IndexedDB" : undefined,
  },
  () => {
    assert.throws(
      () => new IndexedDbStore("kite-test"),
      (error: unknown) =>
        error instanceof MqttError &&
        /^IndexedDbStore needs IndexedDB, which only browsers have: use FileStore .*MemoryStore$/
          .test(error.message),
    );
  },
);

test("IndexedDbStore - an unknown durability is a TypeError", () => {
  const saved = Object.getOwnPropertyDescriptor(globalThis, "indexedDB");
  // Only the constructor's checks run: nothing is opened.
  Object.defineProperty(globalThis, "indexedDB", { value: {}, configurable: true });
  try {
    assert.throws(
      () => new IndexedDbStore("kite-test", { durability: "eventual" as "strict" }),
      /durability must be "strict", "relaxed" or "default", not eventual/,
    );
    assert.ok(new IndexedDbStore("kite-test", { durability: "relaxed" }) instanceof IndexedDbStore);
  } finally {
    if (saved) Object.defineProperty(globalThis, "indexedDB", saved);
    else delete (globalThis as { indexedDB?: unknown }).indexedDB;
  }
});
