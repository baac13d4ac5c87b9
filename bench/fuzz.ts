/**
 * The hostile-broker fuzzer, in full: `deno task fuzz` (1,000,000 frames), or
 * `deno run -A bench/fuzz.ts --seed 7 --frames 50000`, or the same under `bun run`. Prints
 * frames/s and every distinct ProtocolError statement id and message hit; exits 1 on any failure,
 * printing the seed, frame number and bytes that caused it.
 *
 * @module
 */

import process from "node:process";
import { fuzz, type FuzzReport } from "../tests/fuzz/fuzz.ts";

/** `--name N` or `--name=N`. */
function option(name: string, fallback: number): number {
  const args = process.argv;
  const at = args.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (at < 0) return fallback;
  const value = Number(args[at] === `--${name}` ? args[at + 1] : args[at].slice(name.length + 3));
  if (!Number.isInteger(value) || value < 0) throw new TypeError(`--${name} must be an integer`);
  return value;
}

const seed = option("seed", 1);
const frames = option("frames", 1_000_000);
const runtime = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined"
  ? `Bun ${process.versions.bun}`
  : `Deno ${(globalThis as unknown as { Deno: { version: { deno: string } } }).Deno.version.deno}`;

function rate(report: FuzzReport): string {
  return `${Math.round(report.frames / (report.ms / 1000)).toLocaleString("en")} frames/s`;
}

console.log(`fuzz: ${frames.toLocaleString("en")} frames, seed ${seed}, ${runtime}`);
const report = await fuzz({
  seed,
  frames,
  progressEvery: 50_000,
  onProgress: (r) =>
    console.log(
      `  ${r.frames.toLocaleString("en")} frames, ${(r.ms / 1000).toFixed(1)} s, ${
        rate(r)
      }, ${r.statementIds.size} statement ids, ${r.failures.length} failures`,
    ),
});

const sorted = (map: Map<string, number>) => [...map].sort((a, b) => b[1] - a[1]);
console.log(
  `\nframes          ${report.frames.toLocaleString("en")} in ${(report.ms / 1000).toFixed(1)} s: ${
    rate(report)
  }`,
);
console.log(
  `packets decoded ${report.packets.toLocaleString("en")} (one-chunk decoders, all versions)`,
);
console.log(`decoder errors  ${report.decoderErrors.toLocaleString("en")} ProtocolErrors`);
console.log(
  `clients         ${report.clients.toLocaleString("en")}: ${
    report.clientProtocolErrors.toLocaleString("en")
  } closed by a ProtocolError, ${
    report.clientsSurvived.toLocaleString("en")
  } survived their frames, ${report.reconnects.toLocaleString("en")} reconnections`,
);
console.log(`\n${report.statementIds.size} distinct statement ids (- is none):`);
for (const [id, n] of sorted(report.statementIds)) console.log(`  ${id.padEnd(16)} ${n}`);
console.log(`\n${report.messages.size} distinct messages:`);
for (const [message, n] of sorted(report.messages)) {
  console.log(`  ${String(n).padStart(9)}  ${message}`);
}
console.log(`\npackets decoded that the encoder refuses to write back:`);
for (const [message, n] of sorted(report.reencodeRefused)) {
  console.log(`  ${String(n).padStart(9)}  ${message}`);
}
console.log(`\nhow the clients' promises were rejected:`);
for (const [message, n] of sorted(report.rejections)) {
  console.log(`  ${String(n).padStart(9)}  ${message}`);
}
console.log(`\nframes by kind:`);
for (const [kind, n] of sorted(report.kinds)) console.log(`  ${kind.padEnd(32)} ${n}`);
if (report.failures.length > 0) {
  console.log(`\n${report.failures.length} FAILURES (seed ${seed}):`);
  for (const f of report.failures) {
    console.log(`frame ${f.frame}: ${f.what}\n  ${f.frames.join("\n  ")}`);
  }
  process.exit(1);
}
console.log("\nno failures");
