/**
 * Several brokers and server redirection, against byte-scripted fake brokers on a fake clock:
 * the URLs tried in order or shuffled, a dead one skipped at once, the backoff once per round,
 * `connectTimeout` per attempt, every failure named when all fail, and an MQTT 5 Server
 * Reference followed (0x9C for this attempt, 0x9D for good), at most 5 in a row.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MqttClient } from "../../src/client/clients.ts";
import type { ReconnectEventDetail } from "../../src/client/events.ts";
import type { ClientOptions } from "../../src/client/types.ts";
import {
  BrokersFailedError,
  ConnectionClosedError,
  ConnectionRefusedError,
  RedirectError,
  TimeoutError,
} from "../../src/errors.ts";
import { Deferred } from "../../src/_async.ts";
import type { Transport } from "../../src/transport/types.ts";
import { FakeBroker, FakeClock, recordEvents, settle, UnhandledGuard, watch } from "./harness.ts";

/** How a scripted URL answers a dial. */
type Answer = "dead" | "hang" | "up";

/**
 * Brokers by host: each dial of a host takes the next answer of its script ("up" by default):
 * "dead" refuses the dial, "hang" never answers it, "up" hands the client a fresh fake broker.
 */
class Rig {
  readonly clock = new FakeClock();
  readonly dials: string[] = [];
  readonly up: { url: string; broker: FakeBroker }[] = [];
  readonly client: MqttClient;
  readonly #scripts = new Map<string, Answer[]>();
  #waiters: (() => void)[] = [];

  constructor(urls: string[], version: 4 | 5 = 5) {
    this.client = new MqttClient({
      urls,
      dial: (url, signal) => {
        this.dials.push(url.href);
        const answer = this.#scripts.get(url.host)?.shift() ?? "up";
        this.#waiters.splice(0).forEach((wake) => wake());
        if (answer === "dead") {
          return Promise.reject(new ConnectionClosedError(`cannot connect to ${url.href}`));
        }
        if (answer === "hang") {
          const never = new Deferred<Transport>();
          signal.addEventListener("abort", () => never.reject(signal.reason), { once: true });
          return never.promise;
        }
        const broker = new FakeBroker(version);
        this.up.push({ url: url.href, broker });
        return Promise.resolve(broker.transport);
      },
    });
  }

  /** The answers of the next dials of `host`. */
  script(host: string, ...answers: Answer[]): this {
    this.#scripts.set(host, answers);
    return this;
  }

  connect(options: ClientOptions = {}): Promise<boolean> {
    return this.client.connect({
      clientId: "kite",
      keepalive: 0,
      clock: this.clock,
      protocolVersion: 5,
      ...options,
    });
  }

  /** Resolves once `count` dials have been made. */
  async dialed(count: number): Promise<void> {
    while (this.dials.length < count) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /** The fake broker of the last dial that reached one. */
  get last(): FakeBroker {
    return this.up[this.up.length - 1].broker;
  }
}

const accept = { type: "connack", sessionPresent: false, reasonCode: 0 } as const;

function redirecting(reasonCode: 0x9c | 0x9d, serverReference: string) {
  return {
    type: "connack" as const,
    sessionPresent: false,
    reasonCode,
    properties: { serverReference },
  };
}

describe("several brokers", () => {
  test("the first URL dead: the second is dialed at once, no timer waited on, and connect resolves there", async () => {
    const rig = new Rig(["mqtt://a.test", "mqtt://b.test"]).script("a.test", "dead");
    const connecting = rig.connect();
    await rig.dialed(2);
    await rig.last.accept(false);
    assert.equal(await connecting, false);
    assert.deepEqual(rig.dials, ["mqtt://a.test", "mqtt://b.test"]);
    assert.equal(rig.clock.now(), 0);
    await rig.client.disconnect();
  });

  test("a broker that refuses CONNACK (server unavailable) is passed over for the next", async () => {
    const rig = new Rig(["mqtt://a.test", "mqtt://b.test"]);
    const connecting = rig.connect();
    await rig.dialed(1);
    await rig.last.expect("connect");
    await rig.last.sendPacket({ type: "connack", sessionPresent: false, reasonCode: 0x88 });
    await rig.dialed(2);
    await rig.last.accept(false);
    await connecting;
    assert.equal(rig.client.state, "connected");
    await rig.client.disconnect();
  });

  test("every URL failing on the first connection rejects with BrokersFailedError naming each URL and its error, and the client closes", async () => {
    const guard = new UnhandledGuard();
    const rig = new Rig(["mqtt://a.test", "mqtt://b.test:1884", "mqtt://u:secret@c.test"])
      .script("a.test", "dead").script("b.test:1884", "dead");
    const connecting = watch(rig.connect());
    await rig.dialed(3);
    await rig.last.expect("connect");
    await rig.last.sendPacket({ type: "connack", sessionPresent: false, reasonCode: 0x86 });
    await settle();
    const error = connecting.reason as BrokersFailedError;
    assert.ok(error instanceof BrokersFailedError, String(error));
    assert.deepEqual(error.failures.map((f) => f.url), [
      "mqtt://a.test",
      "mqtt://b.test:1884",
      "mqtt://c.test",
    ]);
    assert.ok(error.errors[0] instanceof ConnectionClosedError);
    assert.ok(error.errors[2] instanceof ConnectionRefusedError);
    assert.match(error.message, /mqtt:\/\/a\.test \(cannot connect/);
    assert.doesNotMatch(error.message, /secret/, "no password in the message");
    assert.equal(rig.client.state, "closed");
    assert.equal(rig.clock.pending, 0);
    await guard.check();
  });

  test("one URL: a failure rejects with that error itself, as before", async () => {
    const rig = new Rig(["mqtt://a.test"]).script("a.test", "dead");
    await assert.rejects(rig.connect(), (error) => {
      assert.ok(error instanceof ConnectionClosedError && !(error instanceof BrokersFailedError));
      return true;
    });
  });

  test("the signal aborting the first connection ends the round: connect rejects with its reason, and no other URL is dialed", async () => {
    const rig = new Rig(["mqtt://a.test", "mqtt://b.test"]).script("a.test", "hang");
    const controller = new AbortController();
    const connecting = watch(rig.connect({ signal: controller.signal }));
    await rig.dialed(1);
    const reason = new Error("the user gave up");
    controller.abort(reason);
    await settle();
    assert.equal(connecting.reason, reason);
    assert.deepEqual(rig.dials, ["mqtt://a.test"]);
    assert.equal(rig.client.state, "closed");
  });

  test("disconnect() during a round stops it: the dial under way is aborted and no other URL is dialed", async () => {
    const rig = new Rig(["mqtt://a.test", "mqtt://b.test"]).script("a.test", "hang");
    const connecting = watch(rig.connect());
    await rig.dialed(1);
    await rig.client.disconnect();
    await settle();
    assert.ok(connecting.reason instanceof ConnectionClosedError);
    assert.deepEqual(rig.dials, ["mqtt://a.test"]);
    assert.equal(rig.clock.pending, 0);
  });

  test("connectTimeout applies to each attempt: a hanging dial gives way after 5 s, and the next URL has 5 s of its own", async () => {
    const rig = new Rig(["mqtt://a.test", "mqtt://b.test"]).script("a.test", "hang");
    const connecting = watch(rig.connect({ connectTimeout: 5000 }));
    await rig.dialed(1);
    await rig.clock.advance(4999);
    assert.equal(rig.dials.length, 1);
    await rig.clock.advance(1);
    assert.equal(rig.dials.length, 2);
    await rig.last.expect("connect");
    await rig.clock.advance(4999);
    assert.equal(connecting.settled, false);
    await rig.clock.advance(1);
    const error = connecting.reason as BrokersFailedError;
    assert.ok(error instanceof BrokersFailedError);
    assert.ok(error.errors.every((each) => each instanceof TimeoutError));
  });

  test('urlOrder "shuffle": each round in a new order drawn from the random source (Fisher-Yates), every URL once', async () => {
    // Round 1 draws 0, 0: [a b c] -> [c b a] -> [b c a]. Round 2 draws 0.99, 0.99: no swap.
    const draws = [0, 0, 0.99, 0.99];
    const rig = new Rig(["mqtt://a.test", "mqtt://b.test", "mqtt://c.test"])
      .script("b.test", "dead").script("c.test", "dead");
    const connecting = rig.connect({
      urlOrder: "shuffle",
      reconnect: { minDelay: 10, maxDelay: 10, random: () => draws.shift() ?? 0 },
    });
    await rig.dialed(3);
    assert.deepEqual(rig.dials, ["mqtt://b.test", "mqtt://c.test", "mqtt://a.test"]);
    await rig.last.accept(false);
    await connecting;
    await rig.last.hangUp();
    await settle();
    await rig.clock.advance(10);
    await rig.dialed(4);
    assert.equal(rig.dials[3], "mqtt://a.test", "round 2 in its own order");
    await rig.client.disconnect();
  });

  test('"ordered" is the default; another urlOrder is a TypeError', async () => {
    const rig = new Rig(["mqtt://a.test", "mqtt://b.test"]).script("a.test", "dead");
    const connecting = rig.connect();
    await rig.dialed(2);
    assert.deepEqual(rig.dials, ["mqtt://a.test", "mqtt://b.test"]);
    await rig.last.accept(false);
    await connecting;
    await rig.client.disconnect();
    await assert.rejects(
      new Rig(["mqtt://a.test"]).connect({ urlOrder: "random" as "shuffle" }),
      TypeError,
    );
  });

  test("backoff per round: a lost connection waits once, then every URL is tried at once; the next round waits the next delay; the reconnect event names each URL", async () => {
    const rig = new Rig(["mqtt://a.test", "mqtt://b.test", "mqtt://c.test"]);
    const connecting = rig.connect({
      reconnect: { minDelay: 100, maxDelay: 10_000, random: () => 1 },
    });
    await rig.dialed(1);
    await rig.last.accept(false);
    await connecting;
    const events = recordEvents(rig.client, ["reconnect"]);
    rig.script("a.test", "dead", "dead").script("b.test", "dead", "dead").script(
      "c.test",
      "dead",
    );
    await rig.last.hangUp();
    await settle();
    const detail = (i: number) => events[i][1] as ReconnectEventDetail;
    assert.equal(events.length, 1);
    assert.deepEqual([detail(0).attempt, detail(0).delay, detail(0).url], [
      1,
      200,
      "mqtt://a.test",
    ]);
    await rig.clock.advance(199);
    assert.equal(rig.dials.length, 1, "nothing before the backoff");
    await rig.clock.advance(1);
    // a, b and c at once, then the second round is scheduled with the next delay.
    assert.deepEqual(rig.dials.slice(1), ["mqtt://a.test", "mqtt://b.test", "mqtt://c.test"]);
    assert.deepEqual(
      events.map(([, d]) => {
        const { attempt, delay, url } = d as ReconnectEventDetail;
        return [attempt, delay, url];
      }),
      [
        [1, 200, "mqtt://a.test"],
        [1, 0, "mqtt://b.test"],
        [1, 0, "mqtt://c.test"],
        [2, 400, "mqtt://a.test"],
      ],
    );
    assert.ok(detail(3).error instanceof BrokersFailedError);
    await rig.clock.advance(399);
    assert.equal(rig.dials.length, 4);
    await rig.clock.advance(1);
    await rig.dialed(7);
    assert.deepEqual(rig.dials.slice(4), ["mqtt://a.test", "mqtt://b.test", "mqtt://c.test"]);
    await rig.last.accept(true);
    await settle();
    assert.equal(rig.client.state, "connected");
    await rig.client.disconnect();
  });
});

describe("server redirection (MQTT 5 Server Reference)", () => {
  test("CONNACK 0x9C with a reference: the referenced server is dialed with the same scheme, its port the scheme's default; 0x9C holds for this attempt only", async () => {
    const rig = new Rig(["mqtts://a.test:8884/x"]);
    const connecting = rig.connect({ reconnect: { minDelay: 10, maxDelay: 10, random: () => 0 } });
    await rig.dialed(1);
    await rig.last.accept(false, redirecting(0x9c, "b.test"));
    await rig.dialed(2);
    assert.equal(rig.dials[1], "mqtts://b.test/x");
    await rig.last.accept(false);
    await connecting;
    // The next loss goes back to the list.
    await rig.last.hangUp();
    await settle();
    await rig.clock.advance(10);
    await rig.dialed(3);
    assert.equal(rig.dials[2], "mqtts://a.test:8884/x");
    await rig.client.disconnect();
  });

  test("CONNACK 0x9D: the reference (a list, IPv6 in brackets) replaces the URL list for later reconnections", async () => {
    const rig = new Rig(["mqtt://a.test"]).script("b.test:1884", "up", "dead");
    const connecting = rig.connect({ reconnect: { minDelay: 10, maxDelay: 10, random: () => 0 } });
    await rig.dialed(1);
    await rig.last.accept(false, redirecting(0x9d, "b.test:1884 [::1]:1885"));
    await rig.dialed(2);
    assert.equal(rig.dials[1], "mqtt://b.test:1884");
    await rig.last.accept(false);
    await connecting;
    await rig.last.hangUp();
    await settle();
    await rig.clock.advance(10);
    await rig.dialed(4);
    assert.deepEqual(rig.dials.slice(2), ["mqtt://b.test:1884", "mqtt://[::1]:1885"]);
    await rig.client.disconnect();
  });

  test("byte script: CONNACK 20 0c 00 9d 09 1c 00 06 'b.test' (Server moved, Server Reference b.test) sends the client to mqtt://b.test", async () => {
    const rig = new Rig(["mqtt://a.test"]);
    const connecting = rig.connect();
    await rig.dialed(1);
    await rig.last.expect("connect");
    await rig.last.send("20 0c 00 9d 09 1c 00 06 62 2e 74 65 73 74");
    await rig.dialed(2);
    assert.equal(rig.dials[1], "mqtt://b.test");
    assert.equal(rig.last.transport.closed, false);
    assert.equal(rig.up[0].broker.transport.closed, true, "the first connection is closed");
    await rig.last.accept(false);
    await connecting;
    await rig.client.disconnect();
  });

  test("a DISCONNECT 0x9D with a reference on a live connection: the client goes there at once, no backoff, and the event says where", async () => {
    const rig = new Rig(["mqtt://a.test"]);
    const connecting = rig.connect({ reconnect: { minDelay: 1000, random: () => 0 } });
    await rig.dialed(1);
    await rig.last.accept(false);
    await connecting;
    const events = recordEvents(rig.client, ["reconnect"]);
    await rig.last.sendPacket({
      type: "disconnect",
      reasonCode: 0x9d,
      properties: { serverReference: "b.test" },
    });
    await rig.dialed(2);
    assert.equal(rig.dials[1], "mqtt://b.test");
    assert.equal(rig.clock.now(), 0);
    const detail = events[0][1] as ReconnectEventDetail;
    assert.deepEqual([detail.attempt, detail.delay, detail.url], [1, 0, "mqtt://b.test"]);
    await rig.last.accept(true);
    await settle();
    assert.equal(rig.client.state, "connected");
    await rig.client.disconnect();
  });

  test("while reconnecting, each failed attempt is told (error, disconnect) before the next one (reconnect), whether a refusal's Server Reference or the next URL comes next", async () => {
    const rig = new Rig(["mqtt://a.test", "mqtt://c.test"]);
    const connecting = rig.connect({ reconnect: { minDelay: 10, maxDelay: 10, random: () => 0 } });
    await rig.dialed(1);
    await rig.last.accept(false);
    await connecting;
    // After the loss: a.test redirects to b.test (0x9C), b.test is dead, c.test accepts.
    rig.script("b.test", "dead");
    await rig.last.hangUp();
    await settle();
    const events = recordEvents(rig.client, ["error", "disconnect", "reconnect"]);
    await rig.clock.advance(10);
    await rig.dialed(2);
    await rig.last.accept(false, redirecting(0x9c, "b.test"));
    await rig.dialed(4);
    assert.deepEqual(rig.dials.slice(1), ["mqtt://a.test", "mqtt://b.test", "mqtt://c.test"]);
    await rig.last.accept(false);
    await settle();
    assert.equal(rig.client.state, "connected");
    assert.deepEqual(
      events.map(([type, detail]) =>
        type === "reconnect" ? `reconnect ${(detail as ReconnectEventDetail).url}` : type
      ),
      [
        "error", // a.test refused with 0x9C
        "disconnect",
        "reconnect mqtt://b.test",
        "error", // b.test dead
        "disconnect",
        "reconnect mqtt://c.test",
      ],
    );
    await rig.client.disconnect();
  });

  test("two brokers pointing at each other: after 5 redirects the 6th fails connect with RedirectError listing them", async () => {
    const rig = new Rig(["mqtt://a.test"]);
    const connecting = watch(rig.connect());
    for (let i = 0; i < 6; i++) {
      await rig.dialed(i + 1);
      await rig.last.accept(false, redirecting(0x9c, i % 2 === 0 ? "b.test" : "a.test"));
    }
    await settle();
    const error = connecting.reason as RedirectError;
    assert.ok(error instanceof RedirectError, String(error));
    assert.deepEqual(error.redirects, [
      "mqtt://b.test",
      "mqtt://a.test",
      "mqtt://b.test",
      "mqtt://a.test",
      "mqtt://b.test",
    ]);
    assert.equal(rig.dials.length, 6);
    assert.equal(rig.client.state, "closed");
  });

  test("followServerReference: false: 0x9C is a plain refusal", async () => {
    const rig = new Rig(["mqtt://a.test"]);
    const connecting = watch(rig.connect({ followServerReference: false }));
    await rig.dialed(1);
    await rig.last.accept(false, redirecting(0x9c, "b.test"));
    await settle();
    assert.ok(connecting.reason instanceof ConnectionRefusedError);
    assert.equal((connecting.reason as ConnectionRefusedError).reasonCode, 0x9c);
    assert.equal(rig.dials.length, 1);
  });

  test("a reference that names no server (empty, bad port) is a plain refusal", async () => {
    const rig = new Rig(["mqtt://a.test"]);
    const connecting = watch(rig.connect());
    await rig.dialed(1);
    await rig.last.accept(false, redirecting(0x9d, "b.test:99999"));
    await settle();
    assert.ok(connecting.reason instanceof ConnectionRefusedError);
    assert.equal(rig.dials.length, 1);
  });

  test("accepted: the accepting CONNACK is kept, and a later redirect counts from 0 again", async () => {
    const rig = new Rig(["mqtt://a.test"]);
    const connecting = rig.connect({ reconnect: { minDelay: 10, random: () => 0 } });
    await rig.dialed(1);
    await rig.last.accept(false, redirecting(0x9c, "b.test"));
    await rig.dialed(2);
    await rig.last.accept(false, accept);
    await connecting;
    assert.equal(rig.client.connack?.reasonCode, 0);
    await rig.client.disconnect();
  });
});
