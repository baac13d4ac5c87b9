/**
 * `openTransport`: dial a broker URL with whatever the running runtime offers.
 *
 * @module
 */

import { brokerAddress } from "./address.ts";
import { hasBunSockets, openBunTransport } from "./bun.ts";
import { hasDenoSockets, openDenoTransport } from "./deno.ts";
import { nodeSockets, openNodeTransport } from "./node.ts";
import type { Transport, TransportOptions } from "./types.ts";
import { openWebSocketTransport } from "./websocket.ts";

/**
 * Opens a byte connection to a broker: TCP for `mqtt:` and `tcp:` (port 1883 by default), TLS
 * for `mqtts:` and `tls:` (8883), a WebSocket with subprotocol `mqtt` for `ws:` (80) and `wss:`
 * (443), on path `/mqtt` when the URL names none.
 *
 * TCP and TLS use `Deno.connect` (then `Deno.startTls`, or `Deno.connectTls` for a client
 * certificate) where `Deno.connect` exists; TCP uses `Bun.connect` on Bun; else `node:net` and
 * `node:tls` (TLS on Bun, Node); WebSocket uses the global `WebSocket`. Once open, both streams
 * error with a `ConnectionClosedError` when the connection breaks, and the readable side closes
 * when the broker ends the connection or `close()` is called.
 *
 * @param url The broker, e.g. `mqtts://broker.example:8883` or `wss://broker.example/mqtt`.
 * @param options TLS options (for `mqtts:`, `tls:` and `wss:`), WebSocket subprotocols and a
 * signal that gives up the attempt.
 * @returns The open connection; for TLS, after the handshake succeeded.
 * @throws {TypeError} When the scheme is not one of those above, when only one of `cert` and
 * `key` is given, or when the runtime has no way to open that kind of connection (TCP in a
 * browser).
 * @throws {ConnectionClosedError} When the broker cannot be reached; the message names the URL
 * and the reason, `cause` holds the runtime's error.
 * @throws The signal's reason, when the signal aborts before the connection is open.
 *
 * @example Dial, send a CONNECT, read the CONNACK
 * ```ts
 * import { openTransport } from "./mod.ts";
 * import { ConnectionClosedError } from "../errors.ts";
 *
 * try {
 *   const transport = await openTransport(new URL("mqtt://127.0.0.1:1883"), {
 *     signal: AbortSignal.timeout(5_000),
 *   });
 *   const writer = transport.writable.getWriter();
 *   await writer.write(Uint8Array.of(0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 60, 0, 0));
 *   const { value } = await transport.readable.getReader().read();
 *   console.log(value); // Uint8Array(4) [ 32, 2, 0, 0 ]
 *   transport.close?.();
 * } catch (error) {
 *   if (!(error instanceof ConnectionClosedError)) throw error;
 *   console.log(error.message); // no broker listens there
 * }
 * ```
 *
 * @example TLS with a private CA and a client certificate
 * ```ts ignore
 * import { openTransport } from "./mod.ts";
 *
 * const transport = await openTransport(new URL("mqtts://broker.example"), {
 *   ca: await Deno.readTextFile("ca.pem"),
 *   cert: await Deno.readTextFile("client.pem"),
 *   key: await Deno.readTextFile("client-key.pem"),
 * });
 * transport.close?.();
 * ```
 */
export async function openTransport(url: URL, options: TransportOptions = {}): Promise<Transport> {
  const address = brokerAddress(url);
  if ((options.cert === undefined) !== (options.key === undefined)) {
    // Some runtimes would quietly connect without a client certificate.
    throw new TypeError(
      `cannot connect to ${address.display}: a client certificate needs both cert and key`,
    );
  }
  options.signal?.throwIfAborted();
  if (address.kind === "websocket") {
    if (typeof globalThis.WebSocket !== "function") {
      throw new TypeError(`cannot connect to ${address.display}: this runtime has no WebSocket`);
    }
    return await openWebSocketTransport(address, options);
  }
  if (hasDenoSockets()) return await openDenoTransport(address, options);
  // Bun's own TCP sockets cost half the memory of node:net's; TLS stays on node:tls, and so does
  // a chosen local address, which Bun.connect cannot bind.
  if (address.kind === "tcp" && options.localAddress === undefined && hasBunSockets()) {
    return await openBunTransport(address, options);
  }
  const sockets = nodeSockets();
  if (sockets !== undefined) return await openNodeTransport(sockets, address, options);
  throw new TypeError(
    `cannot connect to ${address.display}: this runtime has neither Deno.connect nor node:net, ` +
      "so it cannot open TCP connections; use a ws: or wss: URL",
  );
}
