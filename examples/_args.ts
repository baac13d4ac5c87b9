/**
 * What the examples share: the broker URL (first argument, else `MQTT_URL`, else a local broker),
 * an optional `--count N` that stops after N rounds, and Ctrl-C handling.
 *
 * @module
 */

import process from "node:process";

/** The example's settings, read from the command line and the environment. */
export interface ExampleArgs {
  /** The broker to use. */
  url: string;
  /** How many rounds (publishes, messages) before stopping; `Infinity` runs until Ctrl-C. */
  count: number;
}

/** Reads the command line: `[url] [--count N]`. */
export function parseArgs(): ExampleArgs {
  const args = process.argv.slice(2);
  let url = process.env.MQTT_URL ?? "mqtt://127.0.0.1:1883";
  let count = Infinity;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--count") count = Number(args[++i]);
    else url = args[i];
  }
  return { url, count };
}

/** Calls `stop` on Ctrl-C (SIGINT) or SIGTERM, once. */
export function onInterrupt(stop: () => void): void {
  let stopped = false;
  const handler = () => {
    if (stopped) return;
    stopped = true;
    stop();
  };
  process.once("SIGINT", handler);
  process.once("SIGTERM", handler);
}
