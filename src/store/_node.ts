/**
 * The runtime's file system modules (`node:fs`, `node:fs/promises`, `node:path`, `node:process`,
 * `node:timers`), for the modules of {@linkcode FileStore} only, found when a store is first
 * made rather than imported.
 *
 * Why not `import ... from "node:fs/promises"`: `mod.ts` exports `FileStore`, so a static
 * `node:` import anywhere under it reaches every bundle of `"."`, and a bundle for the browser
 * then either fails (`bun build --target=browser`: its `node:process` polyfill has no default
 * export) or keeps an import a browser refuses to load. A dynamic `import("./disk.ts")` does not
 * help: bundlers follow a literal specifier into the same failure, and a specifier they leave
 * alone (a variable) is left unresolved in every bundle, for Node too, and is not rewritten to
 * `.js` in the package JSR makes for npm. So the modules are asked of the runtime, through
 * `process.getBuiltinModule` (Bun, Deno, Node >= 20.16: the runtimes Kite supports, and how
 * `src/transport/node.ts` finds `node:net`), with nothing for a bundler to follow and nothing
 * loaded until a `FileStore` is made. Only type imports of `node:` modules remain, which
 * compile to nothing.
 *
 * The bindings below are live: {@linkcode loadNodeBuiltins} fills them, and every module that
 * imported them sees the values from then on. Each entry point into the file system code (the
 * constructors of `FileStore`, `PidLock` and `Compactor`, and `openLog`) calls it first.
 *
 * @module
 */

import type * as FsPromises from "node:fs/promises";
import type * as FsSync from "node:fs";
import type * as Path from "node:path";
import type * as Timers from "node:timers";
import type Process from "node:process";
import { MqttError } from "../errors.ts";

/** `node:fs/promises`, once {@linkcode loadNodeBuiltins} has run. */
export let fs: typeof FsPromises = undefined as never;
/** `writeSync` of `node:fs`, once {@linkcode loadNodeBuiltins} has run. */
export let writeSync: typeof FsSync.writeSync = undefined as never;
/** `renameSync` of `node:fs`, once {@linkcode loadNodeBuiltins} has run. */
export let renameSync: typeof FsSync.renameSync = undefined as never;
/** `join` of `node:path`, once {@linkcode loadNodeBuiltins} has run. */
export let join: typeof Path.join = undefined as never;
/** `setImmediate` of `node:timers`, once {@linkcode loadNodeBuiltins} has run. */
export let setImmediate: typeof Timers.setImmediate = undefined as never;
/** `node:process`, once {@linkcode loadNodeBuiltins} has run. */
export let process: typeof Process = undefined as never;

let loaded = false;

/**
 * Fills the bindings of this module from the runtime's `node:` modules; does nothing once they
 * are filled.
 *
 * @throws {MqttError} Where the runtime has no `node:fs` (a browser): a `FileStore` cannot work
 *   there.
 *
 * @example
 * ```ts
 * import { join, loadNodeBuiltins } from "./_node.ts";
 *
 * loadNodeBuiltins();
 * console.log(join("a", "b")); // "a/b"
 * ```
 */
export function loadNodeBuiltins(): void {
  if (loaded) return;
  const runtime = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } })
    .process;
  const get = runtime?.getBuiltinModule;
  if (typeof get !== "function") {
    throw new MqttError(
      "FileStore needs the file system (node:fs), which this runtime does not offer " +
        "(process.getBuiltinModule is missing: a browser, or Node before 20.16); use MemoryStore",
    );
  }
  const need = <T>(id: string): T => {
    const module = get.call(runtime, id) as T | undefined;
    if (module === undefined) {
      throw new MqttError(`FileStore needs ${id}, which this runtime does not offer`);
    }
    return module;
  };
  const modules = {
    fs: need<typeof FsPromises>("node:fs/promises"),
    fsSync: need<typeof FsSync>("node:fs"),
    path: need<typeof Path>("node:path"),
    timers: need<typeof Timers>("node:timers"),
    process: need<typeof Process>("node:process"),
  };
  fs = modules.fs;
  writeSync = modules.fsSync.writeSync;
  renameSync = modules.fsSync.renameSync;
  join = modules.path.join;
  setImmediate = modules.timers.setImmediate;
  process = modules.process;
  loaded = true;
}
