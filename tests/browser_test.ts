/**
 * Kite in a real browser: `mod.ts` bundled for the browser (with `deno bundle --platform=browser`
 * under Deno, `Bun.build({ target: "browser" })` under Bun, see helpers/bundle.ts) and loaded by
 * a page that a loopback HTTP server serves to headless Chromium (helpers/chromium.ts, over the
 * DevTools protocol). The page connects over `ws://` to Kite's own broker and to mosquitto,
 * subscribes, publishes at QoS 0, 1 and 2 and receives, reconnects after the broker drops it, and
 * keeps QoS 1 and 2 publishes across a reload of the page in an `IndexedDbStore`. The test reads
 * the outcomes back with `page.evaluate`, and fails on any console error of the page.
 *
 * Where no Chromium is installed the tests are skipped, with one line that says how to install
 * it; with `CI=true` (or `KITE_REQUIRE_CHROMIUM=1`) a missing browser fails instead.
 */

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import {
  type Chromium,
  chromiumSkipReason,
  launchChromium,
  type Page,
} from "./helpers/chromium.ts";
import { bundleForBrowser, bundler } from "./helpers/bundle.ts";
import { mosquittoSkipReason, startMosquitto } from "./helpers/mosquitto.ts";
import { within } from "./helpers/wait.ts";
import { Broker } from "../src/broker/mod.ts";
import { MqttClient } from "../src/client/mod.ts";
import type { Message } from "../src/client/mod.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const slow = { timeout: 60_000 };
const WAIT_MS = 15_000;

const chromiumSkip = chromiumSkipReason();
if (chromiumSkip !== undefined) console.log(`kite: browser tests skipped: ${chromiumSkip}`);
const mosquittoSkip = mosquittoSkipReason();

// The page: the bundle as `kite`, and a few helpers the tests call with page.evaluate. Every
// outcome is kept in globals the tests read back.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>kite browser test</title><link rel="icon" href="data:,">
<script type="module">
import * as kite from "/kite.js";
const decoder = new TextDecoder();
Object.assign(globalThis, {
  kite,
  client: undefined,
  received: [],
  events: [],
  outcomes: {},
  async start(url, options) {
    const client = await kite.connect(url, options);
    globalThis.client = client;
    for (const type of ["connect", "disconnect", "reconnect"]) {
      client.addEventListener(type, () => globalThis.events.push(type));
    }
    client.setPublishHandler((message) => {
      globalThis.received.push({
        topic: message.topic,
        payload: decoder.decode(message.payload),
        qos: message.qos,
      });
    });
    return client.sessionPresent;
  },
  // Publishes without waiting; the outcome lands in outcomes[payload].
  publish(topic, payload, qos) {
    globalThis.outcomes[payload] = "pending";
    globalThis.client.publish(topic, payload, { qos }).then(
      () => globalThis.outcomes[payload] = "done",
      (error) => globalThis.outcomes[payload] = error.name + ": " + error.message,
    );
  },
  // The records in a store's database, read with IndexedDB itself.
  async storedCount(name) {
    const db = await new Promise((resolve, reject) => {
      const request = indexedDB.open("kite-mqtt:" + name);
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    try {
      const transaction = db.transaction(["publishes", "states", "incoming"], "readonly");
      const counts = ["publishes", "states", "incoming"].map((name) =>
        transaction.objectStore(name).count()
      );
      await new Promise((resolve) => transaction.oncomplete = resolve);
      return counts.map((request) => request.result);
    } finally {
      db.close();
    }
  },
});
globalThis.ready = true;
</script></head><body>kite</body></html>`;

/** Serves the page at `/` and the bundle at `/kite.js` on a free loopback port. */
async function servePage(bundle: string): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((request, response) => {
    if (request.url === "/") {
      response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      response.end(PAGE);
    } else if (request.url === "/kite.js") {
      response.writeHead(200, { "content-type": "text/javascript; charset=utf-8" });
      response.end(bundle);
    } else {
      response.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

interface Received {
  topic: string;
  payload: string;
  qos: number;
}

/** Messages a page received, by topic, for comparing without regard to arrival order. */
function byTopic(received: Received[]): Received[] {
  return [...received].sort((a, b) => a.topic.localeCompare(b.topic));
}

/** Counts what an observer in this process receives, by payload. */
class Observer {
  readonly counts = new Map<string, number>();
  readonly #client: MqttClient;
  #waiters: (() => void)[] = [];

  constructor(client: MqttClient) {
    this.#client = client;
    client.setPublishHandler((message: Message) => {
      const payload = new TextDecoder().decode(message.payload);
      this.counts.set(payload, (this.counts.get(payload) ?? 0) + 1);
      for (const wake of this.#waiters.splice(0)) wake();
    });
  }

  /** Resolves once every payload of `payloads` arrived at least once. */
  async received(payloads: string[], what: string): Promise<void> {
    const all = () => payloads.every((payload) => this.counts.has(payload));
    await within(
      (async () => {
        while (!all()) await new Promise<void>((resolve) => this.#waiters.push(resolve));
      })(),
      WAIT_MS,
      what,
    );
  }

  /**
   * Publishes a marker to itself and waits for it: whatever the broker routed to the observer
   * before the marker has arrived by then.
   */
  async settle(marker: string): Promise<void> {
    await this.#client.publish("kite/browser/reload", marker, { qos: 1 });
    await this.received([marker], `the marker ${marker}`);
  }
}

describe(chromiumSkip === undefined ? "in headless Chromium" : `not run: ${chromiumSkip}`, {
  skip: chromiumSkip,
}, () => {
  let browser: Chromium;
  let site: { url: string; close(): Promise<void> };
  let broker: Broker;
  let wsUrl = "";
  const pages: Page[] = [];

  before(async () => {
    const bundle = await bundleForBrowser(path.join(ROOT, "mod.ts"));
    site = await servePage(bundle);
    browser = await launchChromium();
    broker = new Broker();
    const { port } = await broker.listenWebSocket({ port: 0, hostname: "127.0.0.1" });
    wsUrl = `ws://127.0.0.1:${port}/mqtt`;
  }, { timeout: 120_000 });

  after(async () => {
    await browser?.close();
    await broker?.close();
    await site?.close();
  });

  /** A new page with the bundle loaded; its console errors are checked by `done`. */
  async function openPage(): Promise<Page> {
    const page = await browser.newPage();
    pages.push(page);
    await page.goto(site.url);
    await page.waitFor("globalThis.ready", WAIT_MS);
    return page;
  }

  /** Closes the page, having checked that it logged no error. */
  async function done(page: Page): Promise<void> {
    try {
      await page.evaluate("globalThis.client?.disconnect()");
      assert.deepEqual(page.consoleErrors, [], "the page logged errors");
    } finally {
      await page.close();
    }
  }

  test(
    `the bundle (${bundler}) loads; a page publishes and receives at QoS 0, 1 and 2 over ws:// to Kite's broker`,
    slow,
    async () => {
      const page = await openPage();
      assert.equal(
        await page.evaluate(`start(${JSON.stringify(wsUrl)}, { clientId: "kite-page-qos" })`),
        false,
      );
      assert.deepEqual(
        await page.evaluate(`client.subscribe("page/qos/#", { qos: 2 })`),
        2,
      );
      await page.evaluate(`Promise.all([0, 1, 2].map((qos) =>
      client.publish("page/qos/" + qos, "at QoS " + qos, { qos })))`);
      await page.waitFor("received.length >= 3", WAIT_MS);
      assert.deepEqual(byTopic(await page.evaluate<Received[]>("received")), [
        { topic: "page/qos/0", payload: "at QoS 0", qos: 0 },
        { topic: "page/qos/1", payload: "at QoS 1", qos: 1 },
        { topic: "page/qos/2", payload: "at QoS 2", qos: 2 },
      ]);
      await done(page);
    },
  );

  test(
    "a page reconnects after Kite's broker drops it, resubscribes, and goes on",
    slow,
    async () => {
      const page = await openPage();
      await page.evaluate(`start(${JSON.stringify(wsUrl)}, {
      clientId: "kite-page-drop",
      reconnect: { minDelay: 20, maxDelay: 200 },
    })`);
      await page.evaluate(`client.subscribe("page/drop/#", { qos: 1 })`);
      assert.equal(broker.dropClient("kite-page-drop"), true);
      await page.waitFor(`events.includes("reconnect") && client.state === "connected"`, WAIT_MS);
      await page.evaluate(`client.publish("page/drop/after", "after the drop", { qos: 1 })`);
      await page.waitFor("received.length >= 1", WAIT_MS);
      assert.deepEqual(await page.evaluate("received"), [
        { topic: "page/drop/after", payload: "after the drop", qos: 1 },
      ]);
      const events = await page.evaluate<string[]>("events");
      assert.deepEqual(events.filter((event) => event !== "reconnect"), ["disconnect", "connect"]);
      await done(page);
    },
  );

  test("a page publishes and receives at QoS 0, 1 and 2 over ws:// to mosquitto", {
    skip: mosquittoSkip,
    ...slow,
  }, async () => {
    await using mosquitto = await startMosquitto({ websockets: true });
    const page = await openPage();
    const url = `ws://127.0.0.1:${mosquitto.wsPort}/`;
    await page.evaluate(`start(${JSON.stringify(url)}, { clientId: "kite-page-mosquitto" })`);
    assert.equal(await page.evaluate(`client.subscribe("page/mosquitto/#", { qos: 2 })`), 2);
    await page.evaluate(`Promise.all([0, 1, 2].map((qos) =>
      client.publish("page/mosquitto/" + qos, "at QoS " + qos, { qos })))`);
    await page.waitFor("received.length >= 3", WAIT_MS);
    assert.deepEqual(byTopic(await page.evaluate<Received[]>("received")), [
      { topic: "page/mosquitto/0", payload: "at QoS 0", qos: 0 },
      { topic: "page/mosquitto/1", payload: "at QoS 1", qos: 1 },
      { topic: "page/mosquitto/2", payload: "at QoS 2", qos: 2 },
    ]);
    await done(page);
  });

  test(
    "IndexedDbStore keeps puts, updates, deletes and incoming ids across a reload",
    slow,
    async () => {
      const page = await openPage();
      const first = await page.evaluate(`(async () => {
      const store = new kite.IndexedDbStore("unit");
      const contents = await store.open();
      const encoder = new TextEncoder();
      const packet = (topic, payload, qos) =>
        ({ type: "publish", topic, payload, qos, retain: false, dup: false });
      await store.put({ sequence: 1, state: "queued", packet: packet("a", encoder.encode("one"), 1) });
      // A payload that views part of a larger buffer.
      const view = encoder.encode("..two..").subarray(2, 5);
      await store.apply([
        { op: "put", record: { sequence: 2, state: "queued", packet: packet("b", view, 2) } },
        { op: "update", sequence: 2, state: "publish", packetId: 7 },
        { op: "update", sequence: 99, state: "pubrel" },
        { op: "put", record: { sequence: 3, state: "queued", packet: packet("c", encoder.encode("three"), 1) } },
        { op: "delete", sequence: 3 },
        { op: "putIncoming", packetId: 40 },
        { op: "putIncoming", packetId: 5 },
        { op: "putIncoming", packetId: 12 },
        { op: "deleteIncoming", packetId: 5 },
      ]);
      await store.update(2, "pubrel");
      // Left open: the reload takes the page away with the store still open.
      return contents;
    })()`);
      assert.deepEqual(first, { outgoing: [], incoming: [] });
      await page.reload();
      await page.waitFor("globalThis.ready", WAIT_MS);
      const again = await page.evaluate(`(async () => {
      const store = new kite.IndexedDbStore("unit");
      const { outgoing, incoming } = await store.open();
      const records = outgoing.map(({ sequence, state, packet }) => ({
        sequence,
        state,
        topic: packet.topic,
        payload: new TextDecoder().decode(packet.payload),
        bufferBytes: packet.payload.buffer.byteLength,
        qos: packet.qos,
        packetId: packet.packetId ?? null,
      }));
      await store.clear();
      await store.close();
      const closed = await store.put({ sequence: 4, state: "queued", packet: {} })
        .then(() => "accepted", (error) => error.message);
      const reopened = new kite.IndexedDbStore("unit");
      const empty = await reopened.open();
      await reopened.close();
      return { records, incoming, closed, empty };
    })()`);
      assert.deepEqual(again, {
        records: [
          {
            sequence: 1,
            state: "queued",
            topic: "a",
            payload: "one",
            bufferBytes: 3,
            qos: 1,
            packetId: null,
          },
          // The packet id of the update to "publish" is kept by the update without one.
          {
            sequence: 2,
            state: "pubrel",
            topic: "b",
            payload: "two",
            bufferBytes: 3,
            qos: 2,
            packetId: 7,
          },
        ],
        incoming: [40, 12],
        closed: "the store is closed",
        empty: { outgoing: [], incoming: [] },
      });
      await done(page);
    },
  );

  test(
    "IndexedDbStore: a second store of the same name waits for the first to close",
    slow,
    async () => {
      const page = await openPage();
      const outcome = await page.evaluate(`(async () => {
      const first = new kite.IndexedDbStore("lock");
      await first.open();
      const refused = await new kite.IndexedDbStore("lock", { lockTimeout: 100 }).open()
        .then(() => "opened", (error) => error.message);
      const waiting = new kite.IndexedDbStore("lock");
      const opened = waiting.open();
      await first.close();
      await opened;
      await waiting.close();
      return refused;
    })()`);
      assert.match(
        String(outcome),
        /^the store kite-mqtt:lock is held by another page \(tab\) for more than 100 ms/,
      );
      await done(page);
    },
  );

  test(
    "QoS 1 and 2 publishes survive a page reload in IndexedDbStore and are sent after it, QoS 2 once",
    slow,
    async () => {
      const observer = new MqttClient(broker.connectClient());
      await observer.connect({ clientId: "kite-observer", keepalive: 0 });
      const counts = new Observer(observer);
      await observer.subscribe("kite/browser/reload", { qos: 2 });
      const page = await openPage();
      const options = `{
      clientId: "kite-page-reload",
      clean: false,
      reconnect: { minDelay: 20, maxDelay: 100 },
      store: new kite.IndexedDbStore("kite-page-reload"),
    }`;
      try {
        assert.equal(await page.evaluate(`start(${JSON.stringify(wsUrl)}, ${options})`), false);

        // Packet ids 1 to 3 are used and free again: a client that lost the ids of the messages
        // in flight would give them other ones after the reload, and the broker would route the
        // QoS 2 one again.
        await page.evaluate(`Promise.all([1, 2, 3].map((n) =>
        client.publish("kite/browser/warm-up", String(n), { qos: 1 })))`);

        // In flight: the broker routes them but withholds PUBACK and PUBREC.
        broker.withholdAcks(true);
        await page.evaluate(`publish("kite/browser/reload", "in flight 1", 1),
        publish("kite/browser/reload", "in flight 2", 2)`);
        await counts.received(["in flight 1", "in flight 2"], "the publishes in flight");

        // Queued: the connection is dropped and every new one refused.
        broker.refuseConnections(true);
        assert.equal(broker.dropClient("kite-page-reload"), true);
        await page.waitFor(`events.includes("reconnect")`, WAIT_MS);
        await page.evaluate(`publish("kite/browser/reload", "queued 1", 1),
        publish("kite/browser/reload", "queued 2", 2)`);
        // The promise the page waits for before it lets itself be reloaded.
        await page.evaluate("client.persisted()");
        assert.deepEqual(await page.evaluate("storedCount('kite-page-reload')"), [4, 4, 0]);
        assert.deepEqual(await page.evaluate("outcomes"), {
          "in flight 1": "pending",
          "in flight 2": "pending",
          "queued 1": "pending",
          "queued 2": "pending",
        });
        assert.deepEqual(page.consoleErrors, []);

        await page.reload();
        await page.waitFor("globalThis.ready", WAIT_MS);
        broker.withholdAcks(false);
        broker.refuseConnections(false);
        // The new page's client, over the same store: it sends what the old page left.
        assert.equal(await page.evaluate(`start(${JSON.stringify(wsUrl)}, ${options})`), true);
        await counts.received(["queued 1", "queued 2"], "the queued publishes after the reload");
        await page.evaluate("client.persisted()");
        await page.waitFor(
          `storedCount("kite-page-reload").then(([publishes]) => publishes === 0)`,
          WAIT_MS,
        );
        await counts.settle("marker");
        // QoS 2: exactly once, across the reload. QoS 1: at least once (sent again after it).
        assert.equal(counts.counts.get("in flight 2"), 1);
        assert.equal(counts.counts.get("queued 2"), 1);
        assert.equal(counts.counts.get("queued 1"), 1);
        assert.ok((counts.counts.get("in flight 1") ?? 0) >= 1);
        assert.deepEqual(await page.evaluate("storedCount('kite-page-reload')"), [0, 0, 0]);
        await done(page);
      } finally {
        broker.withholdAcks(false);
        broker.refuseConnections(false);
        await observer.disconnect();
      }
    },
  );
});
