/**
 * In-memory byte connections: two ends joined by web streams, no socket.
 *
 * @module
 */

import type { BrokerTransport } from "./types.ts";

/** A one-way pipe that copies each chunk, so a writer may reuse its buffer at once. */
function pipe(): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      controller.enqueue(chunk.slice());
    },
  });
}

/**
 * Two ends of an in-memory connection: what one writes, the other reads.
 *
 * @returns The client's end and the broker's end.
 *
 * @example
 * ```ts
 * import { memoryPair } from "./memory.ts";
 *
 * const [client, server] = memoryPair();
 * const writer = client.writable.getWriter();
 * writer.write(new Uint8Array([0xc0, 0x00]));
 * const { value } = await server.readable.getReader().read();
 * console.log(value); // Uint8Array(2) [ 192, 0 ]
 * ```
 */
export function memoryPair(): [BrokerTransport, BrokerTransport] {
  const toServer = pipe();
  const toClient = pipe();
  return [
    { readable: toClient.readable, writable: toServer.writable },
    { readable: toServer.readable, writable: toClient.writable },
  ];
}
