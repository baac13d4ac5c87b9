/**
 * The web demo (`deno task demo:web`, `bun run examples/web/serve.ts`) in a real headless
 * Chromium: it starts as a user starts it (a child process of the runtime running this file, on
 * free ports), its page loads and connects with Kite over `ws://`, shows live messages per topic
 * and a rate chart with data in it, publishes from its form, shows a reconnection after the
 * broker drops it, renders a screenshot with all that in it, and logs no console error; then
 * SIGTERM stops the demo with status 0 while the page is still connected.
 *
 * Set `KITE_SCREENSHOT=/some/file.png` to keep the screenshot. Skipped, saying so, where no
 * Chromium is installed (except in CI, where that fails: see `chromiumSkipReason`).
 */

import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";
import {
  type Chromium,
  chromiumSkipReason,
  launchChromium,
  type Page,
} from "./helpers/chromium.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const WIDTH = 1360;
const HEIGHT = 900;
const slow = { timeout: 60_000 };

/** The demo, running as a child process; its output so far. */
class Demo {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  output = "";
  #wake: (() => void) | undefined;

  constructor() {
    const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
    const [command, args] = deno !== undefined
      ? [deno.execPath(), ["run", "-A", "--quiet", "examples/web/serve.ts"]]
      : [process.execPath, ["run", "examples/web/serve.ts"]];
    this.child = spawn(command, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    for (const stream of [this.child.stdout!, this.child.stderr!]) {
      stream.setEncoding("utf8").on("data", (text: string) => {
        this.output += text;
        this.#wake?.();
      });
    }
    this.exited = new Promise((resolve) => {
      this.child.once("close", (code, signal) => {
        this.#wake?.();
        resolve({ code, signal });
      });
    });
  }

  /** The page's address, once the demo printed it; rejects if it exits first or after 30 s. */
  async url(): Promise<string> {
    const deadline = Date.now() + 30_000;
    let exited = false;
    this.exited.then(() => exited = true);
    for (;;) {
      const match = /Kite web demo\s+(http:\/\/127\.0\.0\.1:\d+\/)/.exec(this.output);
      if (match !== null && /Ctrl-C stops/.test(this.output)) return match[1];
      assert.ok(!exited, `the demo exited before printing its address:\n${this.output}`);
      assert.ok(Date.now() < deadline, `no address after 30 s:\n${this.output}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Kills it, if it still runs. */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill("SIGKILL");
    }
  }
}

/** The raw value of a counter of the page (`data-stat`). */
const stat = (name: string) =>
  `Number(document.querySelector('[data-stat="${name}"]').dataset.value)`;

/** A PNG's width and height, from its IHDR chunk. */
function pngSize(png: Uint8Array): { width: number; height: number } {
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  assert.deepEqual([...png.subarray(0, 8)], signature, "not a PNG");
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  assert.equal(new TextDecoder().decode(png.subarray(12, 16)), "IHDR");
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

describe("the web demo in headless Chromium", { skip: chromiumSkipReason() }, () => {
  let demo: Demo | undefined;
  let browser: Chromium | undefined;
  let page: Page;

  after(async () => {
    await browser?.close();
    demo?.kill();
    await demo?.exited;
  });

  test("loads, connects over ws:// and shows live messages per topic", slow, async () => {
    demo = new Demo();
    const url = await demo.url();
    browser = await launchChromium();
    page = await browser.newPage({ width: WIDTH, height: HEIGHT });
    await page.goto(url);
    // Connected and subscribed, and the state shown.
    await page.waitFor(
      `document.body.dataset.ready === "true" &&
        document.querySelector("#state").dataset.state === "connected"`,
      20_000,
    );
    // The simulated devices publish about 20 messages a second to 11 topics.
    await page.waitFor(`${stat("received")} >= 50 && ${stat("topics")} >= 8`, 20_000);
    const rows = await page.evaluate<{ topic: string; count: number }[]>(
      `[...document.querySelectorAll("#topics tr:not(.empty)")].map((row) => ({
        topic: row.cells[0].textContent,
        count: Number(row.cells[3].textContent.replaceAll(",", "")),
      }))`,
    );
    const rpm = rows.find((row) => row.topic === "factory/press-7/rpm");
    assert.ok(rpm !== undefined && rpm.count > 0, JSON.stringify(rows));
    // Sorted by topic, so that rows do not jump about.
    const topics = rows.map((row) => row.topic);
    assert.deepEqual(topics, [...topics].sort());
  });

  test("draws the rate chart with data in it", slow, async () => {
    // Seconds with messages in the chart's window (a second counts once it is over).
    await page.waitFor(`Number(document.querySelector("#chart").dataset.points) >= 3`, 20_000);
    // The devices publish every second: the last second's count is never 0 for long.
    await page.waitFor(`${stat("rate")} > 0`, 5_000);
    // The received line and its area, in the chart's blue, are on the canvas.
    const blue = await page.evaluate<number>(`(() => {
      const canvas = document.querySelector("#chart");
      const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
      let count = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] > 200 && data[i + 2] > 200 && data[i] < 120) count++;
      }
      return count;
    })()`);
    assert.ok(blue > 100, `only ${blue} pixels of the received line`);
  });

  test("publishes from the form, and shows the in-flight and queued counts", slow, async () => {
    await page.evaluate(`(() => {
      const form = document.querySelector("#publish");
      form.elements.topic.value = "web/test/screenshot";
      form.elements.payload.value = "hello from the test";
      form.querySelector('input[name="qos"][value="2"]').checked = true;
      form.elements.retain.checked = true;
      form.elements.times.value = "2000";
      document.querySelector("#send").click();
    })()`);
    // 2,000 at QoS 2 through a window of 20: some wait while others are in flight.
    const busiest = await page.waitFor<number>(
      `${stat("inflight")} + ${stat("waiting")}`,
      10_000,
    );
    assert.ok(busiest > 0);
    const result = await page.waitFor<string>(
      `document.querySelector("#result").textContent.startsWith("✓") &&
        document.querySelector("#result").textContent`,
      20_000,
    );
    assert.match(
      result,
      /^✓ 2,000 messages to web\/test\/screenshot at QoS 2, retained, acknowledged/,
    );
    await page.waitFor(`${stat("sent")} === 2000`, 5_000);
    // The page subscribes to everything: its own messages come back.
    const row = await page.waitFor<string[]>(
      `(() => {
        const row = [...document.querySelectorAll("#topics tr")]
          .find((row) => row.cells[0].textContent === "web/test/screenshot");
        return row && row.cells[3].textContent === "2,000" && [...row.cells].map((c) => c.textContent);
      })()`,
      10_000,
    );
    assert.equal(row[1], "hello from the test #2000");
    assert.equal(row[2], "2R");
    await page.waitFor(`${stat("inflight")} === 0 && ${stat("waiting")} === 0`, 10_000);
  });

  test("shows a reconnection after the broker drops the page", slow, async () => {
    await page.evaluate(`document.querySelector("#drop").click()`);
    await page.waitFor(
      `${
        stat("reconnects")
      } === 1 && document.querySelector("#state").dataset.state === "connected"`,
      20_000,
    );
    const log = await page.evaluate<string>(`document.querySelector("#log").textContent`);
    assert.match(log, /connection lost/);
    assert.match(log, /reconnected; the broker resumed the session/);
    // Messages keep coming on the new connection.
    const before = await page.evaluate<number>(stat("received"));
    await page.waitFor(`${stat("received")} > ${before}`, 10_000);
  });

  test("renders a screenshot with data in it, and no console error", slow, async () => {
    const png = await page.screenshot();
    const keep = process.env.KITE_SCREENSHOT;
    if (keep !== undefined && keep !== "") fs.writeFileSync(keep, png);
    assert.deepEqual(pngSize(png), { width: WIDTH, height: HEIGHT });
    // A dark page with nothing in it compresses to a few kilobytes; this one is full of text.
    assert.ok(png.length > 60_000, `the screenshot is only ${png.length} bytes`);
    assert.deepEqual(page.consoleErrors, []);
  });

  test("SIGTERM stops the demo with status 0 within 2 s, the page connected", slow, async () => {
    assert.ok(demo !== undefined);
    process.kill(demo.child.pid!, "SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exit = await Promise.race([
      demo.exited,
      new Promise<undefined>((resolve) => timer = setTimeout(() => resolve(undefined), 2000)),
    ]);
    clearTimeout(timer);
    assert.deepEqual(exit, { code: 0, signal: null }, demo.output);
    assert.match(demo.output, /stopped/);
  });
});
