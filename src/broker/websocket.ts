/**
 * MQTT over WebSocket for the local broker: `Deno.serve` with `Deno.upgradeWebSocket` on Deno,
 * `Bun.serve` on Bun. Each binary WebSocket message carries MQTT bytes, in any chunking; the
 * subprotocol is `mqtt`.
 *
 * @module
 */

import type { BrokerTransport, ListenAddress } from "./types.ts";

/** Where and how a WebSocket listener listens. */
export interface WebSocketListenOptions {
  /** The TCP port; 0 (the default) picks a free one. */
  port?: number;
  /** The address to bind; default `127.0.0.1`. */
  hostname?: string;
  /** The path MQTT is served at; default `/mqtt`. */
  path?: string;
}

/** A running WebSocket listener. */
export interface WebSocketListener {
  /** The bound address. */
  address: ListenAddress;
  /** Stops listening and closes the open WebSockets. */
  close(): Promise<void>;
}

/** The part of Bun's server WebSocket the broker uses. */
interface BunSocket {
  data: { push(chunk: Uint8Array): void; end(): void };
  send(data: Uint8Array): number;
  close(code?: number): void;
}

/** The part of `Bun.serve` the broker uses. */
interface BunRuntime {
  serve(options: {
    port: number;
    hostname: string;
    fetch(request: Request, server: BunServer): Response | undefined;
    websocket: {
      open(ws: BunSocket): void;
      message(ws: BunSocket, message: string | Uint8Array): void;
      close(ws: BunSocket): void;
    };
  }): BunServer;
}

interface BunServer {
  port: number;
  hostname: string;
  upgrade(request: Request, options: { headers: HeadersInit; data: unknown }): boolean;
  stop(closeActive?: boolean): Promise<void> | void;
}

/** A readable side fed by pushes, and a way to end it. */
function pushedReadable(onCancel: () => void): {
  readable: ReadableStream<Uint8Array>;
  push(chunk: Uint8Array): void;
  end(): void;
} {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let done = false;
  const readable = new ReadableStream<Uint8Array>({
    start: (c) => {
      controller = c;
    },
    cancel: () => {
      done = true;
      onCancel();
    },
  });
  return {
    readable,
    push: (chunk) => {
      if (!done) controller.enqueue(chunk);
    },
    end: () => {
      if (done) return;
      done = true;
      controller.close();
    },
  };
}

/** Whether a request asks for the `mqtt` subprotocol (or none). */
function protocolHeaders(request: Request): HeadersInit {
  const asked = (request.headers.get("sec-websocket-protocol") ?? "").split(",").map((p) =>
    p.trim()
  );
  return asked.includes("mqtt") ? { "Sec-WebSocket-Protocol": "mqtt" } : {};
}

/**
 * Listens for MQTT over WebSocket and hands every connection to `serve`.
 *
 * @param options Port, address and path.
 * @param serve Takes the broker's end of each connection.
 * @returns The running listener.
 * @throws {Error} On a runtime with neither `Deno.serve` nor `Bun.serve` (such as Node).
 *
 * @example
 * ```ts
 * import { listenWebSocket } from "./websocket.ts";
 *
 * const listener = await listenWebSocket({ port: 0 }, (transport) => transport.close?.());
 * console.log(`ws://127.0.0.1:${listener.address.port}/mqtt`);
 * await listener.close();
 * ```
 */
export function listenWebSocket(
  options: WebSocketListenOptions,
  serve: (transport: BrokerTransport) => void,
): Promise<WebSocketListener> {
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port ?? 0;
  const path = options.path ?? "/mqtt";
  const deno = (globalThis as { Deno?: typeof Deno }).Deno;
  if (typeof deno?.serve === "function" && typeof deno.upgradeWebSocket === "function") {
    return listenDeno(deno, hostname, port, path, serve);
  }
  const bun = (globalThis as { Bun?: BunRuntime }).Bun;
  if (typeof bun?.serve === "function") {
    return Promise.resolve(listenBun(bun, hostname, port, path, serve));
  }
  return Promise.reject(new Error("WebSocket listening needs Deno.serve or Bun.serve"));
}

function listenDeno(
  deno: typeof Deno,
  hostname: string,
  port: number,
  path: string,
  serve: (transport: BrokerTransport) => void,
): Promise<WebSocketListener> {
  const sockets = new Set<WebSocket>();
  return new Promise((resolve) => {
    const server = deno.serve({
      hostname,
      port,
      onListen: () => {},
    }, (request) => {
      if (
        new URL(request.url).pathname !== path || request.headers.get("upgrade") !== "websocket"
      ) {
        return new Response("MQTT over WebSocket only", { status: 404 });
      }
      const asked = protocolHeaders(request);
      const { socket, response } = deno.upgradeWebSocket(
        request,
        "Sec-WebSocket-Protocol" in asked ? { protocol: "mqtt" } : {},
      );
      sockets.add(socket);
      socket.binaryType = "arraybuffer";
      const input = pushedReadable(() => socket.close());
      socket.onmessage = (event) => {
        if (event.data instanceof ArrayBuffer) input.push(new Uint8Array(event.data));
        else socket.close(1003, "MQTT needs binary messages"); // [MQTT-6.0.0-1]
      };
      socket.onclose = () => {
        sockets.delete(socket);
        input.end();
      };
      socket.onerror = () => input.end();
      const opened = new Promise<void>((resolve) => {
        if (socket.readyState === WebSocket.OPEN) resolve();
        else socket.addEventListener("open", () => resolve(), { once: true });
      });
      const writable = new WritableStream<Uint8Array>({
        write: async (chunk) => {
          await opened;
          if (socket.readyState !== WebSocket.OPEN) throw new Error("the WebSocket is closed");
          socket.send(chunk);
        },
        close: () => socket.close(),
        abort: () => socket.close(),
      });
      serve({ readable: input.readable, writable, close: () => socket.close() });
      return response;
    });
    const addr = server.addr as Deno.NetAddr;
    resolve({
      address: { port: addr.port, hostname: addr.hostname },
      close: async () => {
        for (const socket of sockets) socket.close();
        await server.shutdown();
      },
    });
  });
}

function listenBun(
  bun: BunRuntime,
  hostname: string,
  port: number,
  path: string,
  serve: (transport: BrokerTransport) => void,
): WebSocketListener {
  const sockets = new Set<BunSocket>();
  const server = bun.serve({
    port,
    hostname,
    fetch(request, server) {
      if (new URL(request.url).pathname !== path) {
        return new Response("MQTT over WebSocket only", { status: 404 });
      }
      const data = { push: (_chunk: Uint8Array) => {}, end: () => {} };
      if (server.upgrade(request, { headers: protocolHeaders(request), data })) return undefined;
      return new Response("a WebSocket upgrade is expected", { status: 400 });
    },
    websocket: {
      open(ws) {
        sockets.add(ws);
        const input = pushedReadable(() => ws.close());
        ws.data.push = input.push;
        ws.data.end = input.end;
        const writable = new WritableStream<Uint8Array>({
          write: (chunk) => {
            if (ws.send(chunk) === 0) throw new Error("the WebSocket is closed");
          },
          close: () => ws.close(),
          abort: () => ws.close(),
        });
        serve({ readable: input.readable, writable, close: () => ws.close() });
      },
      message(ws, message) {
        if (typeof message === "string") ws.close(1003);
        else ws.data.push(new Uint8Array(message));
      },
      close(ws) {
        sockets.delete(ws);
        ws.data.end();
      },
    },
  });
  return {
    address: { port: server.port, hostname: server.hostname },
    close: async () => {
      for (const ws of sockets) ws.close();
      await server.stop(true);
    },
  };
}
