/**
 * `deno task build:npm`: the npm package of Kite, in `dist/npm/`, for Node ≥ 20.16.
 *
 * TypeScript (`npm:typescript`, a build-time tool only) compiles each entry point of deno.json's
 * `exports` and everything it imports, file for file: ES2022 JavaScript (what Node 20 parses, so
 * `using` declarations become plain code) with the `.ts` of relative imports rewritten to `.js`,
 * and a `.d.ts` beside each file. Types are not checked here (`deno task check` does that, with
 * Deno's own types); instead the finished `.d.ts` files are checked as a Node user's compiler
 * sees them (see {@linkcode checkDeclarations}), so a broken declaration fails the build.
 *
 * Beside them: `package.json` (name and version from deno.json, `"type": "module"`, an `exports`
 * map with `types` and `default` for each entry point, `bin.kite`, `engines.node`, no
 * dependencies), `bin/kite.js` (runs the CLI's `main`), and README.md, LICENSE and CHANGELOG.md.
 * Node before 24.2 has no `import.meta.main`, with which `src/cli/mod.ts` runs when started as a
 * program: the build gives it an equivalent there.
 *
 *     deno task build:npm [--tests]
 *
 * With `--tests` it also makes `dist/node-test/`, what `.ci/test.ts` runs with `node --test`: the
 * package packed with `npm pack` and installed with `npm install` into
 * `dist/node-test/node_modules/@kite/mqtt` (so the tests import `@kite/mqtt` as a user does and
 * run the `kite` bin npm linked), and the files of `tests/node/` with the test helpers they
 * import, compiled the same way (`dist/node-test/tests/node/*.node.js`).
 *
 * @module
 */

// Build-time tools, pinned here rather than in deno.json, whose imports are the package's own.
// deno-lint-ignore no-import-prefix
import ts from "npm:typescript@5.9";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const DIST = `${ROOT}dist/`;
const PACKAGE = `${DIST}npm/`;
const TESTS = `${DIST}node-test/`;
/** `process.getBuiltinModule`, through which Kite finds `node:net` and `node:fs`, came in 20.16. */
const NODE_VERSION = ">=20.16";

interface DenoConfig {
  name: string;
  version: string;
  license: string;
  exports: Record<string, string>;
}

const config: DenoConfig = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));

/** What the compiler emits for Node 20: ES2022 modules, `.ts` imports rewritten to `.js`. */
const COMPILER_OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  lib: ["lib.es2022.d.ts", "lib.dom.d.ts", "lib.dom.iterable.d.ts", "lib.esnext.disposable.d.ts"],
  allowImportingTsExtensions: true,
  rewriteRelativeImportExtensions: true,
  declaration: true,
  // Deno checks the types (`deno task check`); here `Deno.*` and `node:*` have no types at all.
  noCheck: true,
  strict: true,
  types: [],
  rootDir: ROOT,
  newLine: ts.NewLineKind.LineFeed,
};

/** Relative `.ts` specifiers in declarations become `.js`, as in the JavaScript beside them. */
const declarationSpecifiers: ts.TransformerFactory<ts.SourceFile | ts.Bundle> = (context) => {
  const { factory } = context;
  const rewrite = (literal: ts.Expression | undefined) =>
    literal !== undefined && ts.isStringLiteral(literal) && /^\.\.?\/.*\.ts$/.test(literal.text)
      ? factory.createStringLiteral(literal.text.replace(/\.ts$/, ".js"))
      : undefined;
  const visit = (node: ts.Node): ts.Node => {
    if (ts.isImportDeclaration(node)) {
      const specifier = rewrite(node.moduleSpecifier);
      if (specifier !== undefined) {
        return factory.updateImportDeclaration(
          node,
          node.modifiers,
          node.importClause,
          specifier,
          node.attributes,
        );
      }
    } else if (ts.isExportDeclaration(node)) {
      const specifier = rewrite(node.moduleSpecifier);
      if (specifier !== undefined) {
        return factory.updateExportDeclaration(
          node,
          node.modifiers,
          node.isTypeOnly,
          node.exportClause,
          specifier,
          node.attributes,
        );
      }
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      const specifier = rewrite(node.argument.literal as ts.Expression);
      if (specifier !== undefined) {
        return factory.updateImportTypeNode(
          node,
          factory.createLiteralTypeNode(specifier),
          node.attributes,
          node.qualifier,
          node.typeArguments,
          node.isTypeOf,
        );
      }
    }
    return ts.visitEachChild(node, visit, context);
  };
  return (file) => ts.visitNode(file, visit) as ts.SourceFile | ts.Bundle;
};

/**
 * What `import.meta.main` becomes, so that `node .../src/cli/mod.js` runs the CLI on Node 20 to
 * 24.1 too, which have no `import.meta.main` (undefined there): whether this module is the file
 * Node was started with (`process.getBuiltinModule` came in 20.16, as `engines.node` says).
 */
const IMPORT_META_MAIN = "(import.meta.main ?? (() => {\n" +
  "  const process = globalThis.process;\n" +
  '  if (typeof process?.getBuiltinModule !== "function" || !process.argv[1]) return false;\n' +
  '  const { realpathSync } = process.getBuiltinModule("node:fs");\n' +
  '  const { pathToFileURL } = process.getBuiltinModule("node:url");\n' +
  "  try {\n" +
  "    return pathToFileURL(realpathSync(process.argv[1])).href === import.meta.url;\n" +
  "  } catch {\n" +
  "    return false;\n" +
  "  }\n" +
  "})())";

/** `import.meta.main` in code (not in comments) becomes {@linkcode IMPORT_META_MAIN}. */
const importMetaMain: ts.TransformerFactory<ts.SourceFile> = (context) => {
  const visit = (node: ts.Node): ts.Node => {
    if (
      ts.isPropertyAccessExpression(node) && ts.isMetaProperty(node.expression) &&
      node.expression.keywordToken === ts.SyntaxKind.ImportKeyword && node.name.text === "main"
    ) {
      // An identifier's text is printed as it is: the expression, verbatim.
      return context.factory.createIdentifier(IMPORT_META_MAIN);
    }
    return ts.visitEachChild(node, visit, context);
  };
  return (file) => ts.visitNode(file, visit) as ts.SourceFile;
};

/** Compiles `entries` (paths from the root) and what they import into `outDir`. */
function compile(entries: string[], outDir: string, declaration = true): void {
  const program = ts.createProgram(entries.map((entry) => `${ROOT}${entry}`), {
    ...COMPILER_OPTIONS,
    declaration,
    outDir,
  });
  const result = program.emit(undefined, undefined, undefined, undefined, {
    before: [importMetaMain],
    afterDeclarations: [declarationSpecifiers],
  });
  const problems = [...program.getSyntacticDiagnostics(), ...result.diagnostics];
  if (problems.length > 0 || result.emitSkipped) fail("the compiler", problems);
}

/**
 * Checks the package's `.d.ts` files as a TypeScript user on Node sees them: each entry point
 * imported by its name (so through the `types` of the exports map), strict, with `@types/node` 20,
 * every declaration file checked (`skipLibCheck` off); once with the ES2022 library alone, once
 * with the DOM library too.
 */
async function checkDeclarations(): Promise<void> {
  // Imported by a specifier held in a variable, so that `deno check` does not see @types/node
  // 20 in the module graph and check the whole project against it.
  const typesNodeSpecifier = "npm:@types/node@20/package.json";
  const typesNodePackage = (await import(typesNodeSpecifier, { with: { type: "json" } })).default;
  const typesNode = new URL(".", import.meta.resolve(typesNodeSpecifier)).pathname;
  const undiciRange = (typesNodePackage as { dependencies: Record<string, string> })
    .dependencies["undici-types"];
  const undiciSpecifier = `npm:undici-types@${undiciRange}/package.json`;
  await import(undiciSpecifier, { with: { type: "json" } });
  const undici = new URL(".", import.meta.resolve(undiciSpecifier)).pathname;
  // A node_modules as npm would lay it out, linking into Deno's npm cache.
  const dir = `${DIST}types-check/`;
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(`${dir}node_modules/@types`, { recursive: true });
  await Deno.mkdir(`${dir}node_modules/@kite`, { recursive: true });
  await Deno.symlink(typesNode, `${dir}node_modules/@types/node`);
  await Deno.symlink(undici, `${dir}node_modules/undici-types`);
  await Deno.symlink(PACKAGE, `${dir}node_modules/${config.name}`);
  await Deno.writeTextFile(`${dir}package.json`, '{ "type": "module" }\n');
  // Each entry point by its name, so the `types` of the exports map are what is checked.
  const imports = Object.keys(config.exports).map((key, i) => {
    const specifier = key === "." ? config.name : `${config.name}/${key.slice(2)}`;
    return `import type * as entry${i} from ${JSON.stringify(specifier)};\n` +
      `export type Entry${i} = typeof entry${i};\n`;
  }).join("");
  await Deno.writeTextFile(`${dir}consumer.ts`, imports);
  try {
    // A Node project's usual libraries, and the same with the DOM's (whose globals overlap).
    for (
      const lib of [["lib.es2022.d.ts"], [
        "lib.es2022.d.ts",
        "lib.dom.d.ts",
        "lib.dom.iterable.d.ts",
      ]]
    ) {
      const program = ts.createProgram([`${dir}consumer.ts`], {
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.NodeNext,
        moduleResolution: ts.ModuleResolutionKind.NodeNext,
        lib,
        strict: true,
        skipLibCheck: false,
        noEmit: true,
        types: ["node"],
        typeRoots: [`${dir}node_modules/@types`],
        preserveSymlinks: true,
      });
      const problems = ts.getPreEmitDiagnostics(program).filter((diagnostic) =>
        !/\/node_modules\/(@types\/node|undici-types)\//.test(diagnostic.file?.fileName ?? "")
      );
      const checked = program.getSourceFiles()
        .filter((file) => file.fileName.includes(`/node_modules/${config.name}/`)).length;
      const what = `the check of the .d.ts files with lib ${lib.join(", ")}`;
      if (checked === 0) fail(`${what} (none of the package's files was found)`, []);
      if (problems.length > 0) fail(what, problems);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** `./src/cli/mod.ts` → `src/cli/mod.js`. */
function entryFile(source: string): string {
  return source.replace(/^\.\//, "").replace(/\.ts$/, ".js");
}

function fail(what: string, problems: readonly ts.Diagnostic[]): never {
  const text = ts.formatDiagnostics(problems, {
    getCanonicalFileName: (name) => name,
    getCurrentDirectory: () => ROOT,
    getNewLine: () => "\n",
  });
  console.error(`build:npm: ${what} failed:\n${text}`);
  Deno.exit(1);
}

/** The package.json of the package. */
function packageJson(): Record<string, unknown> {
  const exports: Record<string, unknown> = {};
  for (const [key, source] of Object.entries(config.exports)) {
    const file = `./${entryFile(source)}`;
    exports[key] = { types: file.replace(/\.js$/, ".d.ts"), default: file };
  }
  exports["./package.json"] = "./package.json";
  return {
    name: config.name,
    version: config.version,
    description: "A zero-dependency MQTT 3.1, 3.1.1 and 5.0 client, local broker and CLI, " +
      "built on web standards only",
    keywords: ["mqtt", "mqtt5", "iot", "client", "broker", "websocket"],
    license: config.license,
    type: "module",
    exports,
    types: `./${entryFile(config.exports["."]).replace(/\.js$/, ".d.ts")}`,
    bin: { kite: "./bin/kite.js" },
    engines: { node: NODE_VERSION },
  };
}

const BIN = `#!/usr/bin/env node
// The \`kite\` command: the CLI's main() with the process's arguments.
import process from "node:process";
import { main } from "../${entryFile(config.exports["./cli"])}";

process.exit(await main(process.argv.slice(2)));
`;

/** Builds `dist/npm/`. */
async function buildPackage(): Promise<void> {
  await Deno.remove(PACKAGE, { recursive: true }).catch(() => {});
  compile(Object.values(config.exports).map((source) => source.replace(/^\.\//, "")), PACKAGE);
  await Deno.writeTextFile(`${PACKAGE}package.json`, JSON.stringify(packageJson(), null, 2) + "\n");
  await Deno.mkdir(`${PACKAGE}bin`, { recursive: true });
  await Deno.writeTextFile(`${PACKAGE}bin/kite.js`, BIN, { mode: 0o755 });
  for (const file of ["README.md", "LICENSE", "CHANGELOG.md"]) {
    await Deno.copyFile(`${ROOT}${file}`, `${PACKAGE}${file}`);
  }
  await checkDeclarations();
}

/** Runs a command in `cwd`; its output is shown only when it fails. */
async function run(command: string, args: string[], cwd: string): Promise<string> {
  const { success, stdout, stderr } = await new Deno.Command(command, { args, cwd, stdin: "null" })
    .output();
  const decoder = new TextDecoder();
  if (!success) {
    console.error(decoder.decode(stdout) + decoder.decode(stderr));
    console.error(`build:npm: ${command} ${args.join(" ")} failed (in ${cwd})`);
    Deno.exit(1);
  }
  return decoder.decode(stdout);
}

/** Builds `dist/node-test/` from the package in `dist/npm/`. */
async function buildTests(): Promise<void> {
  await Deno.remove(TESTS, { recursive: true }).catch(() => {});
  // The tests and the helpers they import (tests/helpers/mosquitto.ts, wait.ts); `@kite/mqtt`
  // stays a bare import, which Node resolves to the package installed below.
  const tests: string[] = [];
  for await (const entry of Deno.readDir(`${ROOT}tests/node`)) {
    if (entry.isFile && entry.name.endsWith(".ts")) tests.push(`tests/node/${entry.name}`);
  }
  compile(tests, TESTS, false);
  await Deno.writeTextFile(
    `${TESTS}package.json`,
    JSON.stringify({ name: "kite-node-tests", private: true, type: "module" }, null, 2) + "\n",
  );
  // Packed and installed as a user gets it: only what npm packs, and the bin linked by npm.
  const tarball = (await run("npm", ["pack", "--silent", "--pack-destination", TESTS], PACKAGE))
    .trim().split("\n").at(-1)!;
  await run(
    "npm",
    ["install", "--offline", "--no-audit", "--no-fund", "--no-save", "--silent", `./${tarball}`],
    TESTS,
  );
  await Deno.remove(`${TESTS}${tarball}`);
}

if (import.meta.main) {
  await buildPackage();
  console.log(`build:npm: ${config.name}@${config.version} in ${PACKAGE}`);
  if (Deno.args.includes("--tests")) {
    await buildTests();
    console.log(`build:npm: the Node tests in ${TESTS}`);
  }
}
