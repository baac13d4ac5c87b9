/**
 * The import check of `deno task check`: reads the static `import` and `export … from`
 * statements (`import type` too) of `mod.ts` and of every `.ts` file under `src/`, and fails
 * when
 *
 * - a file under `src/packet/` imports anything outside `src/packet/`: the codec stands on its
 *   own (`jsr:@kite/mqtt/packet`), so it may not reach into the rest of Kite, nor into `node:`
 *   or any other non-relative specifier;
 * - a file imports upward or sideways: each file belongs to one layer of `LAYERS`, and may
 *   import its own layer's files and those of the layers below, never a layer above nor another
 *   layer on its own floor (the client and the broker do not know each other);
 * - the files import each other in a cycle. Only relative specifiers make edges.
 *
 * It prints one line per problem and exits with 1, or prints nothing and exits with 0.
 * No dependencies: `deno run --allow-read .ci/imports.ts`.
 *
 * @module
 */

const ROOT = new URL("../", import.meta.url);
const CODEC = "src/packet/";

/** The layers, floor by floor from the ground up; a layer is a folder or a file of `src/`. */
const LAYERS: readonly (readonly string[])[] = [
  ["src/packet/", "src/_async.ts", "src/_queue.ts"],
  ["src/errors.ts", "src/topic.ts"],
  ["src/transport/", "src/store/", "src/scram.ts"],
  ["src/session/"],
  ["src/client/", "src/broker/"],
  ["src/cli/"],
  ["mod.ts"],
];

/** The floor and the layer a file belongs to; a file of no layer is a problem of its own. */
function layerOf(file: string): { floor: number; layer: string } | undefined {
  for (let floor = 0; floor < LAYERS.length; floor++) {
    for (const layer of LAYERS[floor]) {
      if (layer.endsWith("/") ? file.startsWith(layer) : file === layer) return { floor, layer };
    }
  }
  return undefined;
}

/** The code of a TypeScript file with its comments blanked out; strings are kept. */
function withoutComments(source: string): string {
  let out = "";
  // One entry per template literal we are inside the `${…}` of: the braces open in it.
  const templates: number[] = [];
  let i = 0;
  const copyString = (quote: string) => {
    const start = i++;
    while (i < source.length && source[i] !== quote) {
      // A quote in a regular expression literal must not swallow more than its line.
      if (quote !== "`" && source[i] === "\n") break;
      if (source[i] === "\\") i++;
      else if (quote === "`" && source.startsWith("${", i)) {
        templates.push(0);
        i += 2;
        out += source.slice(start, i);
        return;
      }
      i++;
    }
    out += source.slice(start, ++i);
  };
  while (i < source.length) {
    const c = source[i];
    if (source.startsWith("//", i)) {
      while (i < source.length && source[i] !== "\n") i++;
    } else if (source.startsWith("/*", i)) {
      const end = source.indexOf("*/", i + 2);
      i = end < 0 ? source.length : end + 2;
      out += " ";
    } else if (c === '"' || c === "'" || c === "`") {
      copyString(c);
    } else if (c === "}" && templates.length > 0 && templates[templates.length - 1] === 0) {
      // The end of a `${…}`: the template literal goes on.
      templates.pop();
      copyString("`");
    } else {
      if (templates.length > 0 && c === "{") templates[templates.length - 1]++;
      if (templates.length > 0 && c === "}") templates[templates.length - 1]--;
      out += c;
      i++;
    }
  }
  return out;
}

// `import x from "…"`, `import type { x } from "…"`, `import "…"`, `export * from "…"`,
// `export { x } from "…"`: the keyword, then an import clause of names, braces, `*` and commas.
const STATEMENT =
  /\b(?:import|export)\s+(?:type\s+)?(?:[\w$*\s{},]*?\s*\bfrom\s*)?(["'])([^"'\n]+)\1/g;

/** The specifiers a file's static imports and re-exports name, in order. */
function specifiers(source: string): string[] {
  return [...withoutComments(source).matchAll(STATEMENT)].map((match) => match[2]);
}

/** The `.ts` files under `dir` (relative to the root), sorted, as paths relative to the root. */
async function tsFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(new URL(dir, ROOT))) {
    const path = `${dir}${entry.name}`;
    if (entry.isDirectory) files.push(...await tsFiles(`${path}/`));
    else if (entry.isFile && entry.name.endsWith(".ts")) files.push(path);
  }
  return files.sort();
}

/** `specifier`, relative to the file `from`, as a path relative to the root. */
function resolve(from: string, specifier: string): string {
  return new URL(specifier, new URL(from, ROOT)).href.slice(ROOT.href.length);
}

const files = ["mod.ts", ...await tsFiles("src/")];
const problems: string[] = [];
const edges = new Map<string, string[]>();
for (const file of files) {
  const targets: string[] = [];
  for (const specifier of specifiers(await Deno.readTextFile(new URL(file, ROOT)))) {
    const relative = specifier.startsWith("./") || specifier.startsWith("../");
    const target = relative ? resolve(file, specifier) : undefined;
    if (file.startsWith(CODEC) && !target?.startsWith(CODEC)) {
      problems.push(`${file} imports "${specifier}", which is outside ${CODEC}`);
    }
    if (target !== undefined && !targets.includes(target)) targets.push(target);
    const from = layerOf(file);
    const to = target === undefined ? undefined : layerOf(target);
    if (
      from !== undefined && to !== undefined && from.layer !== to.layer && to.floor >= from.floor
    ) {
      problems.push(
        `${file} imports "${specifier}": ${to.layer} is ${
          to.floor > from.floor ? "above" : "beside"
        } ${from.layer}; imports run downward only`,
      );
    }
  }
  if (layerOf(file) === undefined) problems.push(`${file} belongs to no layer of .ci/imports.ts`);
  edges.set(file, targets.sort());
}

// Depth-first search: each edge back to a file on the current path closes a cycle.
const seen = new Set<string>();
const onPath: string[] = [];
const cycles = new Set<string>();
function visit(file: string): void {
  seen.add(file);
  onPath.push(file);
  for (const target of edges.get(file) ?? []) {
    const at = onPath.indexOf(target);
    if (at >= 0) {
      const cycle = onPath.slice(at);
      // The same cycle reached from another file is reported once, from its smallest file.
      const first = cycle.indexOf([...cycle].sort()[0]);
      const rotated = [...cycle.slice(first), ...cycle.slice(0, first)];
      cycles.add([...rotated, rotated[0]].join(" → "));
    } else if (!seen.has(target)) {
      visit(target);
    }
  }
  onPath.pop();
}
for (const file of files) if (!seen.has(file)) visit(file);
for (const cycle of cycles) problems.push(`import cycle: ${cycle}`);

for (const problem of problems) console.log(problem);
if (problems.length > 0) Deno.exit(1);
