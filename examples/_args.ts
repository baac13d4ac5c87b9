/**
 * What the examples share: the broker URL (first argument, else `MQTT_URL`, else a local broker),
 * an optional `--count N` that stops after N rounds, and Ctrl-C handling.
 *
 * Ctrl-C (SIGINT) or SIGTERM makes an example disconnect cleanly and exit with status 0, as
 * `kite sub` does; a second one ends it at once with status 130. Nothing an example awaits is
 * left pending by the interrupt: its waits end through the signal, so no top-level `await` is
 * left unsettled (on Bun such an `await` spins a core and ignores SIGTERM).
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

/** Ctrl-C handling: a signal that aborts on the first SIGINT or SIGTERM. */
export interface Interrupt {
  /** Aborts on the first SIGINT or SIGTERM. */
  readonly signal: AbortSignal;
  /** Removes the process's signal listeners, so they keep nothing alive. */
  release(): void;
}

/**
 * Listens for SIGINT and SIGTERM until released: the first aborts the returned signal, a second
 * one exits at once with status 130.
 */
export function interrupt(): Interrupt {
  const controller = new AbortController();
  const onSignal = (name: string) => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort(new Error(`interrupted (${name})`));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const release = () => {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  };
  return { signal: controller.signal, release };
}

/** Waits `ms` milliseconds, or less when `signal` aborts first; never rejects. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
