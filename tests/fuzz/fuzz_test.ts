/**
 * The hostile-broker fuzzer, a fixed-seed slice of it: 24,000 frames in eight runs of 3,000, each
 * frame through the decoders at every protocol version and through a connected client. The
 * whole million runs with `deno task fuzz` (see bench/README.md).
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { fuzz, type FuzzReport } from "./fuzz.ts";

const SEEDS = [0x6b697465, 2, 3, 4, 5, 6, 7, 8];
const FRAMES = 3_000;

function failures(report: FuzzReport): string {
  return report.failures
    .map((f) => `frame ${f.frame}: ${f.what}\n  ${f.frames.join("\n  ")}`)
    .join("\n");
}

for (const seed of SEEDS) {
  test(
    `fuzz - ${FRAMES} hostile frames (seed ${seed}) give packets or ProtocolErrors, never a crash, a hang or an unsettled promise`,
    {
      // Seconds on an idle machine; a loaded one must not fail it on time alone.
      timeout: 120_000,
    },
    async () => {
      const report = await fuzz({ seed, frames: FRAMES });
      assert.equal(report.failures.length, 0, failures(report));
      assert.equal(report.frames, FRAMES);
      // The frames reach deep: many rules broken, clients both closed by them and surviving them.
      assert.ok(
        report.statementIds.size >= 15,
        `statement ids hit: ${[...report.statementIds.keys()]}`,
      );
      assert.ok(report.clientProtocolErrors > 100, `${report.clientProtocolErrors} clients closed`);
      assert.ok(report.clientsSurvived > 100, `${report.clientsSurvived} clients survived`);
      assert.ok(report.reconnects > 10, `${report.reconnects} reconnections`);
    },
  );
}
