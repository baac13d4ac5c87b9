/**
 * The transport layer: opens the byte streams MQTT runs over, from a broker URL, on Deno, Bun,
 * Node and in browsers.
 *
 * | scheme | default port | stream |
 * |---|---|---|
 * | `mqtt:`, `tcp:` | 1883 | TCP |
 * | `mqtts:`, `tls:` | 8883 | TLS |
 * | `ws:` | 80 | WebSocket, subprotocol `mqtt`, path `/mqtt` when the URL names none |
 * | `wss:` | 443 | WebSocket over TLS, likewise |
 *
 * @example Open a connection and close it
 * ```ts
 * import { openTransport } from "./mod.ts";
 *
 * await openTransport(new URL("ws://127.0.0.1:8080"), { signal: AbortSignal.timeout(5_000) })
 *   .then(
 *     (transport) => transport.close?.(),
 *     (error) => console.log(error.message), // no broker listens there
 *   );
 * ```
 *
 * @module
 */

export { openTransport } from "./open_transport.ts";
export type { ByteSink, DirectTransport, Transport, TransportOptions } from "./types.ts";
export { isDirectTransport } from "./types.ts";
