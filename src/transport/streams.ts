/**
 * Web streams over a {@linkcode DirectTransport}: for whoever reads a transport as a stream,
 * where the client itself does not.
 *
 * @module
 */

import type { ByteSink, DirectTransport } from "./types.ts";

/** How many bytes the readable side reads ahead of its reader. */
export const READ_HIGH_WATER_MARK = 64 * 1024;

/**
 * A readable stream over a direct transport, for whoever wants one: pulled by its reader, so a
 * reader that stops stops the reads. Chunks are not split or joined.
 *
 * @param transport A transport nobody has called `listen` on.
 * @returns The stream; it closes when reading ends cleanly and errors when the connection breaks.
 *
 * @example
 * ```ts
 * import { streamFrom } from "./streams.ts";
 * import type { ByteSink } from "./types.ts";
 *
 * let sink: ByteSink | undefined;
 * const readable = streamFrom({
 *   listen: (s) => sink = s,
 *   write: () => Promise.resolve(),
 *   end: () => Promise.resolve(),
 *   close: () => sink?.end(),
 *   get readable() { return readable; },
 *   writable: new WritableStream(),
 * });
 * sink?.data(new Uint8Array([0xd0, 0x00]));
 * sink?.end();
 * for await (const chunk of readable) console.log(chunk); // Uint8Array(2) [ 208, 0 ]
 * ```
 */
export function streamFrom(transport: DirectTransport): ReadableStream<Uint8Array> {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let wanted: (() => void) | undefined;
  let done = false;
  const sink: ByteSink = {
    data(chunk) {
      if (done) return undefined;
      controller.enqueue(chunk);
      if ((controller.desiredSize ?? 0) > 0) return undefined;
      return new Promise<void>((resolve) => wanted = resolve);
    },
    end(error) {
      if (done) return;
      done = true;
      if (error === undefined) controller.close();
      else controller.error(error);
      wanted?.();
    },
  };
  return new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
      transport.listen(sink);
    },
    pull() {
      const resume = wanted;
      wanted = undefined;
      resume?.();
    },
    cancel() {
      done = true;
      wanted?.();
      transport.close();
    },
  }, { highWaterMark: READ_HIGH_WATER_MARK, size: (chunk) => chunk.byteLength });
}

/**
 * A writable stream over a direct transport: each chunk is one `write`, closing the stream ends
 * the connection (`end`), aborting it closes the connection (`close`).
 *
 * @param transport The transport to write to.
 * @param started Given the stream's controller as it starts, so that the transport can error the
 * stream when the connection breaks.
 * @returns The stream.
 *
 * @example
 * ```ts
 * import { streamTo } from "./streams.ts";
 *
 * const written: Uint8Array[] = [];
 * const writable = streamTo({
 *   write: (bytes) => (written.push(bytes), Promise.resolve()),
 *   end: () => Promise.resolve(),
 *   close: () => {},
 * }, () => {});
 * const writer = writable.getWriter();
 * await writer.write(new Uint8Array([0xc0, 0x00]));
 * await writer.close();
 * console.log(written.length); // 1
 * ```
 */
export function streamTo(
  transport: Pick<DirectTransport, "write" | "end" | "close">,
  started: (controller: WritableStreamDefaultController) => void,
): WritableStream<Uint8Array> {
  return new WritableStream<Uint8Array>({
    start: started,
    write: (chunk) => transport.write(chunk),
    close: () => transport.end(),
    abort: () => transport.close(),
  });
}
