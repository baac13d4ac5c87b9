/**
 * MQTT over TCP for the local broker: `Deno.listen` on Deno, `node:net` on Bun and Node. Each
 * accepted connection, with Nagle's algorithm off, is handed to the broker as a byte connection.
 *
 * @module
 */

import type * as Net from "node:net";
import { closeQuietly } from "../_async.ts";
import { brokerAddress } from "../transport/address.ts";
import { NodeSocketTransport } from "../transport/node.ts";
import type { BrokerTransport, ListenAddress } from "./types.ts";

/** A running TCP listener. */
export interface TcpListener {
  /** The bound address. */
  address: ListenAddress;
  /** Stops listening; on Node also destroys the open sockets. */
  close(): Promise<void>;
}

/**
 * Listens with `Deno.listen` and hands every connection to `serve`. Bound once it returns.
 *
 * @param hostname The address to bind.
 * @param port The port; 0 picks a free one.
 * @param serve Takes the broker's end of each connection.
 * @returns The running listener.
 *
 * @example
 * ```ts
 * import { listenDenoTcp } from "./tcp.ts";
 *
 * const listener = listenDenoTcp("127.0.0.1", 0, (transport) => transport.close?.());
 * console.log(`mqtt://127.0.0.1:${listener.address.port}`);
 * await listener.close();
 * ```
 */
export function listenDenoTcp(
  hostname: string,
  port: number,
  serve: (transport: BrokerTransport) => void,
): TcpListener {
  const listener = Deno.listen({ hostname, port, transport: "tcp" });
  const addr = listener.addr as Deno.NetAddr;
  const loop = (async () => {
    try {
      for await (const conn of listener) {
        try {
          conn.setNoDelay(true);
        } catch {
          // Not every connection supports it; the broker works without.
        }
        serve(conn);
      }
    } catch {
      // The listener was closed.
    }
  })();
  return {
    address: { port: addr.port, hostname: addr.hostname },
    close: async () => {
      closeQuietly(listener);
      await loop;
    },
  };
}

/**
 * Listens with `node:net` and hands every connection to `serve`.
 *
 * @param net The `node:net` module.
 * @param hostname The address to bind.
 * @param port The port; 0 picks a free one.
 * @param serve Takes the broker's end of each connection.
 * @returns The running listener, once bound.
 *
 * @example
 * ```ts
 * import * as net from "node:net";
 * import { listenNodeTcp } from "./tcp.ts";
 *
 * const listener = await listenNodeTcp(net, "127.0.0.1", 0, (transport) => transport.close?.());
 * console.log(`mqtt://127.0.0.1:${listener.address.port}`);
 * await listener.close();
 * ```
 */
export function listenNodeTcp(
  net: typeof Net,
  hostname: string,
  port: number,
  serve: (transport: BrokerTransport) => void,
): Promise<TcpListener> {
  const sockets = new Set<Net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.setNoDelay(true);
    const address = brokerAddress(new URL(`mqtt://127.0.0.1:${socket.localPort ?? 1883}`));
    serve(new NodeSocketTransport(socket, address));
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, hostname, () => {
      server.off("error", reject);
      const bound = server.address() as Net.AddressInfo;
      resolve({
        address: { port: bound.port, hostname: bound.address },
        close: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
