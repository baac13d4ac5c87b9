/**
 * Delivery through connections cut at random bytes: 10,000 QoS 1 messages arrive at least once
 * with the publisher's connection cut again and again, and 10,000 QoS 2 messages arrive exactly
 * once with both the publisher's and the subscriber's connections cut.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { FileStore } from "../../src/store/file_store.ts";
import { startFaultProxy } from "../helpers/fault_proxy.ts";
import { mosquittoSkipReason, startMosquitto } from "../helpers/mosquitto.ts";
import { Clients } from "../helpers/clients.ts";
import { countLosses, indexOf, payloadOf, seedFor, Tally, within } from "./support.ts";

const TOTAL = 10_000;
const BATCH = 500;
// Every byte range below gives a cut every 2 to 12 KB of traffic: dozens of cuts per run.
const MIN_BYTES = 2_000;
const MAX_BYTES = 12_000;

interface Run {
  qos: 1 | 2;
  cutSubscriber: boolean;
  name: string;
  /** MQTT 5 (with a session expiry, so the sessions outlive a cut) instead of 3.1.1. */
  v5?: boolean;
  /** The publisher keeps its in-flight state in a FileStore. */
  fileStore?: boolean;
}

async function throughCuts({ qos, cutSubscriber, name, v5, fileStore }: Run): Promise<void> {
  const seed = seedFor(name);
  const topic = `reliability/${seed}/cuts`;
  const storeDir = fileStore ? fs.mkdtempSync(path.join(os.tmpdir(), "kite-cuts-")) : undefined;
  const version = v5
    ? { protocolVersion: 5, properties: { sessionExpiryInterval: 300 } } as const
    : {};
  try {
    // No cap on what mosquitto queues for the persistent subscriber while it is cut off.
    await using broker = await startMosquitto({ extraConfig: "max_queued_messages 0" });
    await using publisherProxy = await startFaultProxy(broker, { seed });
    await using subscriberProxy = await startFaultProxy(broker, {
      seed: seed ^ 0x5bd1e995,
    });
    const tally = new Tally(TOTAL);
    let wrongQos = 0;
    await using clients = new Clients();
    const subscriber = await clients.connect(subscriberProxy.url, {
      ...version,
      clientId: `sub-${seed}`,
      clean: false,
      keepalive: 10,
      reconnect: { minDelay: 5, maxDelay: 50 },
    });
    subscriber.setPublishHandler((message) => {
      if (message.qos !== qos) wrongQos++;
      tally.add(indexOf(message.payload));
    });
    assert.equal(await subscriber.subscribe(topic, { qos }), qos);
    const subscriberLosses = countLosses(subscriber);

    const publisher = await clients.connect(publisherProxy.url, {
      ...version,
      clientId: `pub-${seed}`,
      clean: false,
      store: storeDir === undefined ? undefined : new FileStore(storeDir),
      keepalive: 10,
      reconnect: { minDelay: 5, maxDelay: 50 },
    });
    const publisherLosses = countLosses(publisher);
    publisherProxy.cutRandomly({ minBytes: MIN_BYTES, maxBytes: MAX_BYTES });
    if (cutSubscriber) {
      // Counted on the subscriber's own bytes (its PUBRECs and PUBCOMPs, 4 bytes each): on a
      // resumed session mosquitto re-sends its whole backlog at once (tens of KB), so a budget
      // that counted the broker's bytes would cut every connection before one acknowledgement
      // got out, and no connection would ever make progress.
      subscriberProxy.cutRandomly({
        minBytes: 400,
        maxBytes: 4_000,
        direction: "up",
      });
    }

    const started = performance.now();
    for (let first = 0; first < TOTAL; first += BATCH) {
      const batch: Promise<void>[] = [];
      for (let index = first; index < Math.min(TOTAL, first + BATCH); index++) {
        batch.push(publisher.publish(topic, payloadOf(index), { qos }));
      }
      // Every publish promise resolves: none rejects, none hangs.
      await within(
        Promise.all(batch),
        60_000,
        `the publishes ${first}…${first + BATCH - 1}`,
      );
    }
    await within(
      tally.complete,
      30_000,
      `all ${TOTAL} messages at the subscriber (have ${tally.distinct}, first missing ${
        tally.missing().join(", ")
      })`,
    ).catch((error) => {
      throw new Error(
        `${error.message}; subscriber ${subscriber.state}, cut ${subscriberLosses.lost} times, ` +
          `${subscriberProxy.connections} open connections; seed ${seed}`,
      );
    });
    const elapsed = performance.now() - started;
    publisherProxy.stopCutting();
    subscriberProxy.stopCutting();
    console.log(
      `[reliability] ${name}: ${TOTAL} QoS ${qos} delivered in ${elapsed.toFixed(0)} ms; ` +
        `publisher connection cut ${publisherLosses.lost} times (${publisherProxy.accepted} ` +
        `connections), subscriber cut ${subscriberLosses.lost} times ` +
        `(${subscriberProxy.accepted} connections); duplicates ${tally.duplicates}; seed ${seed}`,
    );
    assert.equal(tally.strays, 0, "messages that were never published arrived");
    assert.equal(tally.distinct, TOTAL);
    assert.equal(
      wrongQos,
      0,
      "every message arrives with the QoS it was published with",
    );
    assert.ok(
      publisherLosses.lost >= 10,
      `only ${publisherLosses.lost} cuts; seed ${seed}`,
    );
    if (cutSubscriber) {
      assert.ok(
        subscriberLosses.lost >= 3,
        `only ${subscriberLosses.lost} subscriber cuts`,
      );
    }
    if (qos === 2) {
      assert.deepEqual(
        tally.repeated(),
        [],
        `QoS 2 messages delivered more than once (${tally.duplicates} duplicates); seed ${seed}`,
      );
    }
  } finally {
    if (storeDir !== undefined) fs.rmSync(storeDir, { recursive: true, force: true });
  }
}

test(
  "reliability - 10,000 QoS 1 publishes through random cuts of the publisher all arrive",
  { timeout: 120_000, skip: mosquittoSkipReason() },
  () => throughCuts({ qos: 1, cutSubscriber: false, name: "qos1 publisher cuts" }),
);

test(
  "reliability - 10,000 QoS 2 publishes through random cuts of both sides arrive exactly once",
  { timeout: 120_000, skip: mosquittoSkipReason() },
  () => throughCuts({ qos: 2, cutSubscriber: true, name: "qos2 both cuts" }),
);

test(
  "reliability - MQTT 5: 10,000 QoS 2 publishes through random cuts of both sides arrive exactly once",
  { timeout: 120_000, skip: mosquittoSkipReason() },
  () => throughCuts({ qos: 2, cutSubscriber: true, v5: true, name: "v5 qos2 both cuts" }),
);

test(
  "reliability - a publisher on a FileStore: 10,000 QoS 2 through random cuts arrive exactly once",
  { timeout: 120_000, skip: mosquittoSkipReason() },
  () =>
    throughCuts({ qos: 2, cutSubscriber: true, fileStore: true, name: "filestore qos2 both cuts" }),
);
