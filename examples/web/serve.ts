/**
 * The live web demo behind `deno task demo:web`: Kite's local broker (MQTT over TCP and over
 * WebSocket), a few simulated devices publishing to it, and a page that connects to it with Kite
 * from the browser. It prints the page's address and opens nothing; Ctrl-C (or SIGTERM) stops it
 * cleanly with status 0, a second Ctrl-C at once with status 130.
 *
 *     deno task demo:web
 *     bun run examples/web/serve.ts
 *     deno run -A examples/web/serve.ts --port 8080 --mqtt-port 1883 --ws-port 8081
 *
 * Every port is a free one unless given; everything listens on 127.0.0.1 only. The page's
 * script (`page/app.ts`, with `mod.ts`) is bundled for the browser at start: `deno bundle
 * --platform=browser` on Deno, `Bun.build` on Bun. No file is written.
 *
 * @module
 */

import * as fs from "node:fs";
import process from "node:process";
import { Broker } from "../../src/broker/mod.ts";
import { interrupt } from "../_args.ts";
import { type Devices, startDevices } from "./devices.ts";

// What the browser gets: the page, its style sheet, and its script (bundled here).
const PAGE = new URL("./page/", import.meta.url);
const HOSTNAME = "127.0.0.1";

/** The command line: `[--port N] [--mqtt-port N] [--ws-port N]`, each 0 (a free port) unless given. */
function parsePorts(args: string[]): { http: number; mqtt: number; ws: number } {
  const ports = { http: 0, mqtt: 0, ws: 0 };
  const flags: Record<string, keyof typeof ports> = {
    "--port": "http",
    "--mqtt-port": "mqtt",
    "--ws-port": "ws",
  };
  for (let i = 0; i < args.length; i++) {
    const key = flags[args[i]];
    const value = Number(args[i + 1]);
    if (key === undefined || !Number.isInteger(value) || value < 0 || value > 65535) {
      console.error(
        `usage: serve.ts [--port N] [--mqtt-port N] [--ws-port N] (ports 0-65535, 0 picks a free one); got "${
          args.slice(i).join(" ")
        }"`,
      );
      process.exit(2);
    }
    ports[key] = value;
    i++;
  }
  return ports;
}

/** The page's script bundled for the browser, with Kite in it: one ES module, no import. */
async function bundlePage(): Promise<string> {
  const entry = new URL("app.ts", PAGE);
  const bun = (globalThis as { Bun?: BunBuild }).Bun;
  if (bun !== undefined) {
    const result = await bun.build({
      entrypoints: [decodeURIComponent(entry.pathname)],
      target: "browser",
      format: "esm",
    });
    if (!result.success) throw new Error(`Bun.build failed:\n${result.logs.join("\n")}`);
    return await result.outputs[0].text();
  }
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--quiet", "--platform=browser", decodeURIComponent(entry.pathname)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(`deno bundle failed:\n${new TextDecoder().decode(output.stderr)}`);
  }
  return new TextDecoder().decode(output.stdout);
}

/** The part of `Bun.build` used here. */
interface BunBuild {
  build(options: { entrypoints: string[]; target: "browser"; format: "esm" }): Promise<{
    success: boolean;
    logs: unknown[];
    outputs: { text(): Promise<string> }[];
  }>;
}

/** The part of `Bun.serve` used here. */
interface BunServe {
  serve(options: {
    hostname: string;
    port: number;
    fetch(request: Request): Response | Promise<Response>;
  }): { port: number; stop(closeActive?: boolean): Promise<void> | void };
}

/** A running HTTP server. */
interface HttpServer {
  port: number;
  close(): Promise<void>;
}

/** Serves `handler` over HTTP: `Deno.serve` on Deno, `Bun.serve` on Bun. */
function serveHttp(
  port: number,
  handler: (request: Request) => Response | Promise<Response>,
): HttpServer {
  const bun = (globalThis as { Bun?: BunServe }).Bun;
  if (bun !== undefined) {
    const server = bun.serve({ hostname: HOSTNAME, port, fetch: handler });
    return { port: server.port, close: async () => await server.stop(true) };
  }
  const server = Deno.serve({ hostname: HOSTNAME, port, onListen: () => {} }, handler);
  return { port: server.addr.port, close: () => server.shutdown() };
}

/** Runs the demo until SIGINT or SIGTERM; resolves with the exit status. */
async function main(): Promise<number> {
  const { signal, release } = interrupt();
  // Ends a connection that keeps its data to itself within a second, so that stopping is quick.
  const broker = new Broker({ closeTimeout: 1000 });
  let http: HttpServer | undefined;
  let devices: Devices | undefined;
  try {
    const ports = parsePorts(process.argv.slice(2));
    const files: Record<string, { body: string; type: string }> = {
      "/": {
        body: fs.readFileSync(new URL("index.html", PAGE), "utf8"),
        type: "text/html; charset=utf-8",
      },
      "/style.css": {
        body: fs.readFileSync(new URL("style.css", PAGE), "utf8"),
        type: "text/css; charset=utf-8",
      },
      "/app.js": { body: await bundlePage(), type: "text/javascript; charset=utf-8" },
    };
    const mqtt = await broker.listen({ hostname: HOSTNAME, port: ports.mqtt });
    const ws = await broker.listenWebSocket({ hostname: HOSTNAME, port: ports.ws });
    const mqttUrl = `mqtt://${HOSTNAME}:${mqtt.port}`;
    const wsUrl = `ws://${HOSTNAME}:${ws.port}/mqtt`;
    files["/config.json"] = {
      body: JSON.stringify({ ws: wsUrl, mqtt: mqttUrl }),
      type: "application/json",
    };
    http = serveHttp(ports.http, (request) => {
      const url = new URL(request.url);
      // The page's "Drop connection" button: the broker cuts that client, which reconnects.
      if (url.pathname === "/drop" && request.method === "POST") {
        const dropped = broker.dropClient(url.searchParams.get("client") ?? "");
        return new Response(null, { status: dropped ? 204 : 404 });
      }
      const file = request.method === "GET" ? files[url.pathname] : undefined;
      if (file === undefined) return new Response("not found", { status: 404 });
      return new Response(file.body, {
        headers: { "content-type": file.type, "cache-control": "no-store" },
      });
    });
    devices = await startDevices(mqttUrl);

    console.log(`Kite web demo   http://${HOSTNAME}:${http.port}/`);
    console.log(`  broker        ${mqttUrl}  (try: deno task kite sub -p ${mqtt.port} -t '#' -v)`);
    console.log(`                ${wsUrl}  (MQTT over WebSocket, what the page uses)`);
    console.log(`  devices       ${devices.names.join(", ")}`);
    console.log("Open the address in a browser; Ctrl-C stops.");

    // Settles on the first SIGINT or SIGTERM, and on nothing else.
    if (!signal.aborted) {
      await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
    }
    console.log("stopping…");
    return 0;
  } catch (error) {
    console.error(
      `the web demo failed: ${error instanceof Error ? error.message : error}`,
    );
    return 1;
  } finally {
    await devices?.stop();
    await http?.close();
    await broker.close();
    release();
  }
}

const status = await main();
if (status !== 0) process.exit(status);
console.log("stopped");
