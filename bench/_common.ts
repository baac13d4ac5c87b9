/**
 * What the end-to-end benchmarks share: their `--name value` options, the name of the runtime
 * they run on, and a mosquitto set up for load.
 *
 * @module
 */

import process from "node:process";
import { LOAD_CONFIG, type Mosquitto, startMosquitto } from "../tests/helpers/mosquitto.ts";

const args = process.argv.slice(2);

/** The value given as `--name value` on the command line, if any. */
export function option(name: string): string | undefined {
  const at = args.indexOf(`--${name}`);
  return at < 0 ? undefined : args[at + 1];
}

/** "Deno 2.9.6" or "Bun 1.4.5". */
export const runtime: string = process.versions.bun !== undefined
  ? `Bun ${process.versions.bun}`
  : `Deno ${(globalThis as unknown as { Deno: { version: { deno: string } } }).Deno.version.deno}`;

/** A mosquitto on a free loopback port, set up with {@linkcode LOAD_CONFIG}. */
export function startLoadedMosquitto(): Promise<Mosquitto> {
  return startMosquitto({ extraConfig: LOAD_CONFIG });
}
