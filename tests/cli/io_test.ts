/**
 * The CLI's stdin helpers: `readLines` splits any chunking into the same lines, and a long line
 * arriving in many chunks comes out whole.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readAll, readLines } from "../../src/cli/io.ts";

/** A stream of `bytes` in chunks of `size`. */
function chunked(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
  let pos = 0;
  return new ReadableStream({
    pull(controller) {
      if (pos >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(pos, pos + size));
      pos += size;
    },
  });
}

async function lines(stream: ReadableStream<Uint8Array>): Promise<string[]> {
  const decoder = new TextDecoder();
  const out: string[] = [];
  for await (const line of readLines(stream)) out.push(decoder.decode(line));
  return out;
}

describe("readLines", () => {
  test("readLines - \\n and \\r\\n end lines, empty lines count, a last line needs no newline, in any chunking", async () => {
    const bytes = new TextEncoder().encode("a\r\nbb\n\nccc\r\nlast");
    for (const size of [1, 2, 3, 5, 100]) {
      assert.deepEqual(
        await lines(chunked(bytes, size)),
        ["a", "bb", "", "ccc", "last"],
        `${size}`,
      );
    }
  });

  test("readLines - a 4 MiB line in 64 KiB chunks comes out whole, then the next", async () => {
    const long = new Uint8Array(4 * 1024 * 1024 + 3).fill(0x61);
    const bytes = new Uint8Array(long.length + 4);
    bytes.set(long);
    bytes.set(new TextEncoder().encode("\nok\n"), long.length);
    const got: Uint8Array[] = [];
    for await (const line of readLines(chunked(bytes, 65536))) got.push(line);
    assert.equal(got.length, 2);
    assert.deepEqual(got[0], long);
    assert.equal(new TextDecoder().decode(got[1]), "ok");
  });
});

test("readAll - joins every chunk", async () => {
  const bytes = new TextEncoder().encode("one two three");
  assert.equal(new TextDecoder().decode(await readAll(chunked(bytes, 4))), "one two three");
});
