/**
 * The DevTools driver in tests/helpers/chromium.ts, against the real headless Chromium: it
 * loads a page, evaluates, waits, records console errors, takes a screenshot, and leaves no
 * process or profile behind.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { chromiumSkipReason, launchChromium } from "./chromium.ts";

const skip = chromiumSkipReason();
const slow = { timeout: 60_000 };
// Named after why it skips, so that `deno task test` does not count it as skipped for mosquitto.
const block = skip === undefined ? "tests/helpers/chromium.ts" : `not run: ${skip}`;

/** Serves `pages` (path → HTML) on a free loopback port; 404 for anything else. */
async function serve(pages: Record<string, string>): Promise<http.Server & AsyncDisposable> {
  const server = http.createServer((request, response) => {
    const body = pages[request.url ?? ""];
    response.writeHead(body === undefined ? 404 : 200, { "content-type": "text/html" });
    response.end(body ?? "not found");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return Object.assign(server, {
    [Symbol.asyncDispose]: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

function origin(server: http.Server): string {
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe(block, { skip }, () => {
  test("chromium - loads a page, evaluates, waits, and records every kind of console error", {
    skip,
    ...slow,
  }, async () => {
    await using server = await serve({
      "/": `<!doctype html><link rel="icon" href="data:,"><title>t</title>
      <script>globalThis.later = false; setTimeout(() => globalThis.later = 42, 100);</script>`,
      "/broken": `<!doctype html><link rel="icon" href="data:,">
      <script>console.error("one", 2); throw new Error("boom");</script>
      <script src="/missing.js"></script>`,
    });
    await using browser = await launchChromium();
    assert.match(browser.version, /Chrom/);
    const page = await browser.newPage({ width: 640, height: 480 });
    await page.goto(`${origin(server)}/`);
    assert.equal(await page.evaluate<string>("document.title"), "t");
    assert.equal(await page.evaluate<number>("Promise.resolve(1 + 1)"), 2);
    assert.deepEqual(await page.evaluate("({ a: [1, 'b'] })"), { a: [1, "b"] });
    assert.equal(await page.waitFor<number>("globalThis.later", 5_000), 42);
    await assert.rejects(page.evaluate("nope.nope"), /ReferenceError: nope is not defined/);
    await assert.rejects(page.waitFor("false", 100), /timed out after 100 ms waiting for false/);
    assert.deepEqual(page.consoleErrors, []);

    await page.goto(`${origin(server)}/broken`);
    const errors = page.consoleErrors.join("\n");
    assert.match(errors, /console\.error: one 2/);
    assert.match(errors, /uncaught: .*Error: boom/);
    assert.match(errors, /missing\.js/);

    const png = await page.screenshot();
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    // The IHDR chunk: width and height, big-endian, at bytes 16 and 20.
    const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
    assert.deepEqual([view.getUint32(16), view.getUint32(20)], [640, 480]);
    await page.close();
  });

  test("chromium - reload keeps the page's origin and storage, and runs the page again", {
    skip,
    ...slow,
  }, async () => {
    await using server = await serve({
      "/": `<!doctype html><link rel="icon" href="data:,">
      <script>localStorage.loads = String(Number(localStorage.loads ?? 0) + 1);</script>`,
    });
    await using browser = await launchChromium();
    const page = await browser.newPage();
    await page.goto(`${origin(server)}/`);
    assert.equal(await page.evaluate("localStorage.loads"), "1");
    await page.reload();
    assert.equal(await page.evaluate("localStorage.loads"), "2");
    assert.deepEqual(page.consoleErrors, []);
  });

  test("chromium - a failed navigation rejects; close() ends the browser and removes its profile", {
    skip,
    ...slow,
  }, async () => {
    const browser = await launchChromium();
    const page = await browser.newPage();
    // A port that was free a moment ago: nothing listens there.
    const closed = await serve({});
    const url = `${origin(closed)}/`;
    await closed[Symbol.asyncDispose]();
    await assert.rejects(page.goto(url), /could not load .*ERR_CONNECTION_REFUSED/);
    const profiles = () =>
      fs.readdirSync("/proc").filter((pid) => /^\d+$/.test(pid)).filter((pid) => {
        try {
          return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(browser.dir);
        } catch {
          return false;
        }
      });
    assert.ok(profiles().length > 0, "Chromium's processes are found by their profile");
    await browser.close();
    assert.deepEqual(profiles(), []);
    assert.equal(fs.existsSync(browser.dir), false);
    await browser.close();
    await assert.rejects(browser.newPage(), /not open|closed/);
  });
});
