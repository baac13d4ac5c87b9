/**
 * The sans-I/O session, driven with packets and numbers for time: what it puts in the outbox,
 * the events it reports, and its state across connections. No streams, no timers, no promises.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  ConnectionClosedError,
  LimitError,
  MqttError,
  ProtocolError,
  TimeoutError,
} from "../../src/errors.ts";
import type {
  ConnackPacket,
  Packet,
  Properties,
  ProtocolVersion,
  PublishPacket,
  QoS,
} from "../../src/packet/types.ts";
import {
  PublishError,
  requestPayloadSize,
  Session,
  type SessionOptions,
} from "../../src/session/session.ts";

const encoder = new TextEncoder();

/** A PUBLISH of ours, as the client builds it. */
function message(topic: string, qos: QoS, payload = ""): PublishPacket {
  return {
    type: "publish",
    topic,
    payload: encoder.encode(payload),
    qos,
    retain: false,
    dup: false,
  };
}

/** A PUBLISH from the server. */
function incoming(packetId: number | undefined, qos: QoS, extra: Partial<PublishPacket> = {}) {
  const packet: PublishPacket = { ...message("t", qos, "x"), ...extra };
  if (packetId !== undefined) packet.packetId = packetId;
  return packet;
}

function connack(sessionPresent = false, properties?: Properties): ConnackPacket {
  return {
    type: "connack",
    sessionPresent,
    reasonCode: 0,
    ...(properties ? { properties } : {}),
  };
}

/** A session whose connection was accepted; its outbox (the CONNECT) drained. */
function connectedSession(
  version: ProtocolVersion = 4,
  options: Partial<SessionOptions> = {},
  properties?: Properties,
): Session<string> {
  const session = new Session<string>({
    protocolVersion: version,
    clientId: "c",
    clean: true,
    keepalive: 0,
    ...options,
  });
  session.connect(0);
  session.receive(connack(false, properties), 0);
  session.takeOutbox(0);
  return session;
}

/** The outbox as short strings: `publish:1`, `pubrel:2`, `puback:3`, `pingreq`. */
function outbox(session: Session<string>, now = 0): string[] {
  return session.takeOutbox(now).map(describePacket);
}

function describePacket(packet: Packet): string {
  switch (packet.type) {
    case "publish":
      return `publish:${packet.packetId ?? "-"}${packet.dup ? ":dup" : ""}:${
        new TextDecoder().decode(packet.payload)
      }`;
    case "puback":
    case "pubrec":
    case "pubrel":
    case "pubcomp":
      return `${packet.type}:${packet.packetId}${
        packet.reasonCode !== undefined ? `:0x${packet.reasonCode.toString(16)}` : ""
      }`;
    case "subscribe":
    case "unsubscribe":
      return `${packet.type}:${packet.packetId}`;
    default:
      return packet.type;
  }
}

/** The events as short strings: `complete:token`, `failed:token:0x87`, `message:7`. */
function events(session: Session<string>): string[] {
  return session.takeEvents().map((event) => {
    switch (event.type) {
      case "message":
        return `message:${event.packet.packetId ?? "-"}`;
      case "complete":
        return `complete:${event.token}:${event.packet.type}`;
      case "sent":
        return `sent:${event.token}`;
      case "failed":
        return `failed:${event.token}:0x${(event.error as PublishError).reasonCode.toString(16)}`;
    }
  });
}

describe("Session connect and CONNACK", () => {
  test("Session connect puts CONNECT with every option in the outbox", () => {
    const will = { topic: "w", payload: encoder.encode("bye"), qos: 1 as const, retain: true };
    const session = new Session<string>({
      protocolVersion: 5,
      clientId: "c",
      clean: false,
      keepalive: 30,
      username: "u",
      password: encoder.encode("p"),
      will,
      properties: { sessionExpiryInterval: 60 },
    });
    assert.equal(session.hasOutput, false);
    session.connect(0);
    assert.deepEqual(session.takeOutbox(0), [{
      type: "connect",
      protocolVersion: 5,
      clientId: "c",
      clean: false,
      keepalive: 30,
      username: "u",
      password: encoder.encode("p"),
      will,
      properties: { sessionExpiryInterval: 60 },
    }]);
    assert.equal(session.connected, false);
  });

  test("Session CONNACK accepted: connected, with the server's limits, assigned id and keepalive", () => {
    const session = new Session<string>({
      protocolVersion: 5,
      clientId: "",
      clean: true,
      keepalive: 60,
    });
    session.connect(0);
    session.receive(
      connack(false, {
        receiveMaximum: 5,
        maximumPacketSize: 1000,
        maximumQoS: 1,
        retainAvailable: false,
        topicAliasMaximum: 3,
        assignedClientIdentifier: "given",
        serverKeepAlive: 10,
      }),
      0,
    );
    assert.equal(session.connected, true);
    assert.deepEqual(session.limits, {
      receiveMaximum: 5,
      maximumPacketSize: 1000,
      maximumQoS: 1,
      retainAvailable: false,
      topicAliasMaximum: 3,
    });
    assert.equal(session.clientId, "given");
    assert.equal(session.keepalive, 10);
    assert.equal(session.window, 5);
  });

  test("Session CONNACK refused: not connected, nothing sent, nothing reported", () => {
    const session = new Session<string>({
      protocolVersion: 4,
      clientId: "c",
      clean: true,
      keepalive: 0,
    });
    session.connect(0);
    session.takeOutbox(0);
    session.publish(message("t", 1), "p");
    session.receive({ type: "connack", sessionPresent: false, reasonCode: 5 }, 0);
    assert.equal(session.connected, false);
    assert.deepEqual(outbox(session), []);
    assert.deepEqual(events(session), []);
    assert.equal(session.waitingCount, 1);
  });

  test("Session a second CONNACK on one connection throws ProtocolError", () => {
    const session = connectedSession();
    assert.throws(() => session.receive(connack(), 0), ProtocolError);
  });

  test("Session packets a server never sends throw ProtocolError: CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ", () => {
    const session = connectedSession();
    for (
      const packet of [
        { type: "connect", protocolVersion: 4, clientId: "x", clean: true, keepalive: 0 },
        { type: "subscribe", packetId: 1, subscriptions: [{ topicFilter: "a", qos: 0 }] },
        { type: "unsubscribe", packetId: 1, topicFilters: ["a"] },
        { type: "pingreq" },
      ] as Packet[]
    ) {
      assert.throws(() => session.receive(packet, 0), ProtocolError, packet.type);
    }
  });
});

describe("Session publish c2b", () => {
  test("Session publish qos0 connected: straight to the outbox, no id, no event", () => {
    const session = connectedSession();
    assert.equal(session.publish(message("t", 0, "a"), "p"), true);
    assert.deepEqual(outbox(session), ["publish:-:a"]);
    assert.deepEqual(events(session), []);
  });

  test("Session publish qos0 while disconnected: waits, then goes out after CONNACK with a sent event", () => {
    const session = new Session<string>({
      protocolVersion: 4,
      clientId: "c",
      clean: true,
      keepalive: 0,
    });
    assert.equal(session.publish(message("t", 0, "a"), "p0"), false);
    session.connect(0);
    session.receive(connack(), 0);
    assert.deepEqual(outbox(session), ["connect", "publish:-:a"]);
    assert.deepEqual(events(session), ["sent:p0"]);
  });

  test("Session publish qos1: PUBLISH with id 1, PUBACK completes it", () => {
    const session = connectedSession();
    session.publish(message("t", 1, "a"), "p");
    assert.deepEqual(outbox(session), ["publish:1:a"]);
    assert.equal(session.inflightCount, 1);
    session.receive({ type: "puback", packetId: 1 }, 0);
    assert.deepEqual(events(session), ["complete:p:puback"]);
    assert.equal(session.inflightCount, 0);
    assert.deepEqual(outbox(session), []);
  });

  test("Session publish qos2: PUBLISH, PUBREC, PUBREL, PUBCOMP; complete only on PUBCOMP", () => {
    const session = connectedSession();
    session.publish(message("t", 2, "a"), "p");
    assert.deepEqual(outbox(session), ["publish:1:a"]);
    session.receive({ type: "pubcomp", packetId: 1 }, 0); // too early: ignored
    assert.deepEqual(events(session), []);
    session.receive({ type: "pubrec", packetId: 1 }, 0);
    assert.deepEqual(outbox(session), ["pubrel:1"]);
    assert.deepEqual(events(session), []);
    assert.equal([...session.inflight()][0].state, "pubrel");
    session.receive({ type: "pubrec", packetId: 1 }, 0); // again: PUBREL again
    assert.deepEqual(outbox(session), ["pubrel:1"]);
    session.receive({ type: "pubcomp", packetId: 1 }, 0);
    assert.deepEqual(events(session), ["complete:p:pubcomp"]);
    assert.equal(session.inflightCount, 0);
  });

  test("Session publish v5: PUBACK 0x87 and PUBREC 0x80 fail with PublishError; no PUBREL", () => {
    const session = connectedSession(5);
    session.publish(message("t", 1, "a"), "one");
    session.publish(message("t", 2, "b"), "two");
    outbox(session);
    session.receive({ type: "puback", packetId: 1, reasonCode: 0x87 }, 0);
    session.receive({ type: "pubrec", packetId: 2, reasonCode: 0x80 }, 0);
    const reported = session.takeEvents();
    assert.deepEqual(reported.map((e) => e.type), ["failed", "failed"]);
    for (const event of reported) {
      assert.ok(event.type === "failed" && event.error instanceof PublishError);
    }
    assert.deepEqual(
      reported.map((e) => e.type === "failed" && (e.error as PublishError).reasonCode),
      [0x87, 0x80],
    );
    assert.deepEqual(outbox(session), []);
    assert.equal(session.inflightCount, 0);
  });

  test("Session publish v5: PUBACK 0x10 (No matching subscribers) completes", () => {
    const session = connectedSession(5);
    session.publish(message("t", 1), "p");
    outbox(session);
    session.receive({ type: "puback", packetId: 1, reasonCode: 0x10 }, 0);
    assert.deepEqual(events(session), ["complete:p:puback"]);
  });

  for (const version of [4, 5] as const) {
    test(
      `Session v${version}: acks for nothing in flight are ignored; PUBREC for nothing gets PUBREL${
        version === 5 ? " 0x92" : ""
      }`,
      () => {
        const session = connectedSession(version);
        session.publish(message("t", 2), "q2");
        outbox(session);
        session.receive({ type: "puback", packetId: 9 }, 0);
        session.receive({ type: "pubcomp", packetId: 9 }, 0);
        session.receive({ type: "puback", packetId: 1 }, 0); // a QoS 2 flow: not a PUBACK's
        assert.deepEqual(events(session), []);
        assert.deepEqual(outbox(session), []);
        session.receive({ type: "pubrec", packetId: 9 }, 0);
        assert.deepEqual(outbox(session), [version === 5 ? "pubrel:9:0x92" : "pubrel:9"]);
        assert.equal(session.inflightCount, 1);
      },
    );
  }

  test("Session window: 20 in flight by default; the 21st waits, goes out on any ack, order kept", () => {
    const session = connectedSession();
    for (let i = 0; i < 22; i++) session.publish(message("t", 1, `${i}`), `p${i}`);
    const first = outbox(session);
    assert.equal(first.length, 20);
    assert.equal(first[19], "publish:20:19");
    assert.equal(session.waitingCount, 2);
    // QoS 0 passes the window.
    session.publish(message("t", 0, "q0"), "q0");
    assert.deepEqual(outbox(session), ["publish:-:q0"]);
    session.receive({ type: "puback", packetId: 7 }, 0);
    assert.deepEqual(outbox(session), ["publish:21:20"]);
    session.receive({ type: "puback", packetId: 8 }, 0);
    assert.deepEqual(outbox(session), ["publish:22:21"]);
    assert.equal(session.waitingCount, 0);
  });

  test("Session window: inflightWindow 3, capped by a Receive Maximum of 2", () => {
    const session = connectedSession(5, { inflightWindow: 3 }, { receiveMaximum: 2 });
    assert.equal(session.window, 2);
    for (let i = 0; i < 3; i++) session.publish(message("t", 1, `${i}`), `p${i}`);
    assert.deepEqual(outbox(session), ["publish:1:0", "publish:2:1"]);
    const wide = connectedSession(5, { inflightWindow: 3 });
    for (let i = 0; i < 4; i++) wide.publish(message("t", 1, `${i}`), `p${i}`);
    assert.equal(outbox(wide).length, 3);
  });

  test("Session packet ids: SUBSCRIBE and PUBLISH share the counter; ids in use are skipped after the wrap", () => {
    const session = connectedSession(4, { inflightWindow: 65535 });
    session.publish(message("t", 1, "held"), "held");
    session.subscribe({ type: "subscribe", subscriptions: [{ topicFilter: "a", qos: 0 }] }, "s");
    assert.deepEqual(outbox(session), ["publish:1:held", "subscribe:2"]);
    for (let id = 3; id <= 65535; id++) {
      session.publish(message("t", 1), "x");
      session.takeOutbox(0);
      session.receive({ type: "puback", packetId: id }, 0);
    }
    session.takeEvents();
    session.publish(message("t", 1, "next"), "next");
    // 1 and 2 are taken: 3.
    assert.deepEqual(outbox(session), ["publish:3:next"]);
  });

  test("Session packet ids: with all 65535 in use, a SUBSCRIBE throws MqttError", () => {
    const session = connectedSession(4, { inflightWindow: 65535 });
    for (let i = 0; i < 65535; i++) session.publish(message("t", 1), "x");
    assert.equal(session.inflightCount, 65535);
    assert.throws(
      () =>
        session.subscribe(
          { type: "subscribe", subscriptions: [{ topicFilter: "a", qos: 0 }] },
          "s",
        ),
      MqttError,
    );
    session.receive({ type: "puback", packetId: 40_000 }, 0);
    session.takeOutbox(0);
    session.subscribe({ type: "subscribe", subscriptions: [{ topicFilter: "a", qos: 0 }] }, "s");
    assert.deepEqual(outbox(session), ["subscribe:40000"]);
  });
});

describe("Session publish b2c", () => {
  test("Session receive qos0 and qos1: message events; PUBACK only on acknowledge", () => {
    const session = connectedSession();
    session.receive(incoming(undefined, 0), 0);
    const packet = incoming(5, 1);
    session.receive(packet, 0);
    assert.deepEqual(events(session), ["message:-", "message:5"]);
    assert.deepEqual(outbox(session), []);
    session.acknowledge(packet);
    assert.deepEqual(outbox(session), ["puback:5"]);
    session.acknowledge(packet); // once only
    assert.deepEqual(outbox(session), []);
  });

  test("Session receive qos2: delivered once; PUBREC on acknowledge; a duplicate before PUBREL gets PUBREC, no event", () => {
    const session = connectedSession();
    const packet = incoming(7, 2);
    session.receive(packet, 0);
    assert.deepEqual(events(session), ["message:7"]);
    // A duplicate before delivery: silent, not delivered again.
    session.receive(incoming(7, 2, { dup: true }), 0);
    assert.deepEqual(events(session), []);
    assert.deepEqual(outbox(session), []);
    session.acknowledge(packet);
    assert.deepEqual(outbox(session), ["pubrec:7"]);
    session.receive(incoming(7, 2, { dup: true }), 0);
    assert.deepEqual(events(session), []);
    assert.deepEqual(outbox(session), ["pubrec:7"]);
    session.receive({ type: "pubrel", packetId: 7 }, 0);
    assert.deepEqual(outbox(session), ["pubcomp:7"]);
    // The id is free: the next PUBLISH with it is a new message.
    session.receive(incoming(7, 2), 0);
    assert.deepEqual(events(session), ["message:7"]);
  });

  for (const version of [4, 5] as const) {
    test(`Session v${version}: PUBREL for an unknown id gets PUBCOMP${version === 5 ? " 0x92" : ""}`, () => {
      const session = connectedSession(version);
      session.receive({ type: "pubrel", packetId: 3 }, 0);
      assert.deepEqual(outbox(session), [version === 5 ? "pubcomp:3:0x92" : "pubcomp:3"]);
    });
  }

  test("Session PUBREL before the PUBREC was sent throws ProtocolError", () => {
    const session = connectedSession();
    session.receive(incoming(7, 2), 0);
    assert.throws(() => session.receive({ type: "pubrel", packetId: 7 }, 0), ProtocolError);
  });

  test("Session v5 Receive Maximum 2: a third unacknowledged QoS 1 or 2 PUBLISH throws 0x93", () => {
    for (const qos of [1, 2] as const) {
      const session = connectedSession(5, { properties: { receiveMaximum: 2 } });
      session.receive(incoming(1, qos), 0);
      session.receive(incoming(2, qos), 0);
      assert.throws(() => session.receive(incoming(3, qos), 0), (error) => {
        assert.ok(error instanceof ProtocolError);
        assert.equal(error.reasonCode, 0x93);
        return true;
      });
    }
    // Acknowledged ones make room; a QoS 2 one only once PUBREL came.
    const session = connectedSession(5, { properties: { receiveMaximum: 2 } });
    const first = incoming(1, 1);
    session.receive(first, 0);
    session.receive(incoming(2, 2), 0);
    session.acknowledge(first);
    session.receive(incoming(3, 1), 0);
    assert.deepEqual(events(session), ["message:1", "message:2", "message:3"]);
  });

  test("Session v5 topic aliases: set, used, replaced; above the maximum or unknown throws", () => {
    const session = connectedSession(5, { properties: { topicAliasMaximum: 2 } });
    const set = incoming(undefined, 0, { topic: "a/b", properties: { topicAlias: 1 } });
    const used = incoming(undefined, 0, { topic: "", properties: { topicAlias: 1 } });
    session.receive(set, 0);
    session.receive(used, 0);
    assert.equal(used.topic, "a/b");
    session.receive(incoming(undefined, 0, { topic: "c", properties: { topicAlias: 1 } }), 0);
    const again = incoming(undefined, 0, { topic: "", properties: { topicAlias: 1 } });
    session.receive(again, 0);
    assert.equal(again.topic, "c");
    assert.throws(
      () => session.receive(incoming(undefined, 0, { properties: { topicAlias: 3 } }), 0),
      (error) => error instanceof ProtocolError && error.reasonCode === 0x94,
    );
    assert.throws(
      () =>
        session.receive(incoming(undefined, 0, { topic: "", properties: { topicAlias: 2 } }), 0),
      ProtocolError,
    );
    // [MQTT-3.3.2-7] a new connection starts with no aliases.
    session.disconnected();
    session.connect(0);
    session.receive(connack(), 0);
    assert.throws(
      () =>
        session.receive(incoming(undefined, 0, { topic: "", properties: { topicAlias: 1 } }), 0),
      ProtocolError,
    );
  });
});

describe("Session subscribe", () => {
  test("Session SUBSCRIBE and UNSUBSCRIBE: acks complete them; the subscriptions map follows what was granted", () => {
    const session = connectedSession(5);
    session.subscribe({
      type: "subscribe",
      subscriptions: [{ topicFilter: "a", qos: 1 }, { topicFilter: "b", qos: 2 }],
      properties: { subscriptionIdentifier: 4 },
    }, "s");
    assert.deepEqual(outbox(session), ["subscribe:1"]);
    session.receive({ type: "suback", packetId: 1, reasonCodes: [1, 0x87] }, 0);
    assert.deepEqual(events(session), ["complete:s:suback"]);
    assert.deepEqual([...session.subscriptions.keys()], ["a"]);
    assert.deepEqual(session.subscriptions.get("a"), {
      subscription: { topicFilter: "a", qos: 1 },
      properties: { subscriptionIdentifier: 4 },
    });
    session.unsubscribe({ type: "unsubscribe", topicFilters: ["a"] }, "u");
    assert.deepEqual(outbox(session), ["unsubscribe:2"]);
    session.receive({ type: "unsuback", packetId: 2, reasonCodes: [0] }, 0);
    assert.deepEqual(events(session), ["complete:u:unsuback"]);
    assert.equal(session.subscriptions.size, 0);
  });

  test("Session SUBACK with the wrong number of codes throws, and the request can still be abandoned", () => {
    const session = connectedSession();
    session.subscribe({ type: "subscribe", subscriptions: [{ topicFilter: "a", qos: 1 }] }, "s");
    outbox(session);
    assert.throws(
      () => session.receive({ type: "suback", packetId: 1, reasonCodes: [1, 1] }, 0),
      ProtocolError,
    );
    assert.deepEqual(session.abandon(), ["s"]);
  });

  test("Session v5 UNSUBACK with the wrong number of codes throws, and the request can still be abandoned (found by the fuzzer)", () => {
    for (const reasonCodes of [[0, 0x11], []]) {
      const session = connectedSession(5);
      session.unsubscribe({ type: "unsubscribe", topicFilters: ["a"] }, "u");
      outbox(session);
      assert.throws(
        () => session.receive({ type: "unsuback", packetId: 1, reasonCodes }, 0),
        (error) => error instanceof ProtocolError && error.statementId === "MQTT-3.11.3-1",
      );
      assert.deepEqual(session.abandon(), ["u"]);
    }
  });

  test("Session SUBACK answering an UNSUBSCRIBE throws ProtocolError; one for an unknown id is ignored", () => {
    const session = connectedSession();
    session.unsubscribe({ type: "unsubscribe", topicFilters: ["a"] }, "u");
    outbox(session);
    session.receive({ type: "suback", packetId: 9, reasonCodes: [0] }, 0);
    assert.deepEqual(events(session), []);
    assert.throws(
      () => session.receive({ type: "suback", packetId: 1, reasonCodes: [0] }, 0),
      ProtocolError,
    );
  });

  test("Session requests made while disconnected go out after CONNACK, in order, with ids", () => {
    const session = new Session<string>({
      protocolVersion: 4,
      clientId: "c",
      clean: true,
      keepalive: 0,
    });
    session.subscribe({ type: "subscribe", subscriptions: [{ topicFilter: "a", qos: 0 }] }, "s");
    session.unsubscribe({ type: "unsubscribe", topicFilters: ["b"] }, "u");
    session.connect(0);
    assert.deepEqual(outbox(session), ["connect"]);
    session.receive(connack(), 0);
    assert.deepEqual(outbox(session), ["subscribe:1", "unsubscribe:2"]);
  });
});

describe("Session offline queue", () => {
  test("Session restore: queued publishes count in waitingBytes, which is 0 again once they are sent", () => {
    const session = new Session<string>({
      protocolVersion: 4,
      clientId: "c",
      clean: false,
      keepalive: 0,
      journal: true,
    });
    session.restore({
      outgoing: [
        { sequence: 1, packet: { ...message("t", 2, "sent"), packetId: 7 }, state: "publish" },
        { sequence: 2, packet: message("t", 1, "hello"), state: "queued" },
        { sequence: 3, packet: message("t", 1, "abc"), state: "queued" },
      ],
      incoming: [],
    }, (record) => `r${record.sequence}`);
    assert.equal(session.waitingCount, 2);
    assert.equal(session.waitingBytes, 8);
    session.connect(0);
    session.receive(connack(true), 0);
    assert.deepEqual(outbox(session), [
      "connect",
      "publish:7:dup:sent",
      "publish:1:hello",
      "publish:2:abc",
    ]);
    assert.equal(session.waitingCount, 0);
    assert.equal(session.waitingBytes, 0);
    session.receive({ type: "puback", packetId: 1 }, 0);
    session.receive({ type: "puback", packetId: 2 }, 0);
    assert.deepEqual(events(session), ["complete:r2:puback", "complete:r3:puback"]);
    assert.equal(session.waitingBytes, 0);
  });

  test("Session requests made while disconnected are counted, with their payload bytes, until they are sent or abandoned", () => {
    const session = new Session<string>({
      protocolVersion: 4,
      clientId: "c",
      clean: true,
      keepalive: 0,
    });
    assert.equal(requestPayloadSize({ type: "unsubscribe", topicFilters: ["a/b"] }), 5);
    session.subscribe(
      {
        type: "subscribe",
        subscriptions: [{ topicFilter: "a/é", qos: 1 }, { topicFilter: "b", qos: 0 }],
      },
      "s",
    );
    session.unsubscribe({ type: "unsubscribe", topicFilters: ["a/b"] }, "u");
    assert.equal(session.queuedRequestCount, 2);
    assert.equal(session.queuedRequestBytes, (3 + 4) + (3 + 1) + (2 + 3));
    session.connect(0);
    session.receive(connack(), 0);
    assert.deepEqual(outbox(session), ["connect", "subscribe:1", "unsubscribe:2"]);
    assert.equal(session.queuedRequestCount, 0);
    assert.equal(session.queuedRequestBytes, 0);
    session.disconnected();
    session.unsubscribe({ type: "unsubscribe", topicFilters: ["c"] }, "later");
    assert.equal(session.queuedRequestBytes, 3);
    assert.deepEqual(session.abandon(), ["s", "u", "later"]);
    assert.equal(session.queuedRequestCount, 0);
    assert.equal(session.queuedRequestBytes, 0);
  });
});

describe("Session across connections", () => {
  /** A session with, in flight: A (QoS 1, id 1), B (QoS 2 past PUBREC, id 2), D (QoS 2, id 4); C done; E waiting. */
  function interrupted(): Session<string> {
    const session = connectedSession(4, { clean: false, inflightWindow: 4 });
    session.publish(message("t", 1, "A"), "A");
    session.publish(message("t", 2, "B"), "B");
    session.publish(message("t", 1, "C"), "C");
    session.publish(message("t", 2, "D"), "D");
    session.publish(message("t", 1, "E"), "E");
    assert.deepEqual(outbox(session), ["publish:1:A", "publish:2:B", "publish:3:C", "publish:4:D"]);
    session.receive({ type: "pubrec", packetId: 2 }, 0);
    session.receive({ type: "puback", packetId: 3 }, 0);
    assert.deepEqual(outbox(session), ["pubrel:2", "publish:5:E"]);
    assert.deepEqual(events(session), ["complete:C:puback"]);
    session.publish(message("t", 1, "F"), "F");
    // The window is full (A, B, D, E): F waits.
    assert.deepEqual(outbox(session), []);
    session.disconnected();
    assert.equal(session.connected, false);
    return session;
  }

  test("Session resume with session present: PUBLISH (DUP) and PUBREL again with their ids, in the order first sent [MQTT-4.4.0-1]", () => {
    const session = interrupted();
    session.connect(100);
    session.receive(connack(true), 100);
    assert.deepEqual(outbox(session, 100), [
      "connect",
      "publish:1:dup:A",
      "pubrel:2",
      "publish:4:dup:D",
      "publish:5:dup:E",
    ]);
    session.receive({ type: "puback", packetId: 1 }, 100);
    assert.deepEqual(outbox(session, 100), ["publish:6:F"]);
    session.receive({ type: "pubcomp", packetId: 2 }, 100);
    assert.deepEqual(events(session), ["complete:A:puback", "complete:B:pubcomp"]);
  });

  test("Session resume under a smaller Receive Maximum: no more unacknowledged PUBLISHes than it allows; the rest go, in order and with their ids, as acks make room [MQTT-3.3.4-7]", () => {
    const session = connectedSession(5, { clean: false, inflightWindow: 10 });
    for (const [payload, qos] of [["A", 1], ["B", 2], ["C", 1], ["D", 1], ["E", 1]] as const) {
      session.publish(message("t", qos, payload), payload);
    }
    session.receive({ type: "pubrec", packetId: 2 }, 0);
    assert.deepEqual(outbox(session), [
      "publish:1:A",
      "publish:2:B",
      "publish:3:C",
      "publish:4:D",
      "publish:5:E",
      "pubrel:2",
    ]);
    session.disconnected();
    session.connect(100);
    session.receive(connack(true, { receiveMaximum: 2 }), 100);
    // A and B's PUBREL fill the two places; C, D and E wait.
    assert.deepEqual(outbox(session, 100), ["connect", "publish:1:dup:A", "pubrel:2"]);
    session.publish(message("t", 1, "F"), "F");
    assert.deepEqual(outbox(session, 100), []);
    // The server acknowledges D, which it had: D needs no resend.
    session.receive({ type: "puback", packetId: 4 }, 100);
    assert.deepEqual(outbox(session, 100), []);
    session.receive({ type: "puback", packetId: 1 }, 100);
    assert.deepEqual(outbox(session, 100), ["publish:3:dup:C"]);
    session.receive({ type: "pubcomp", packetId: 2 }, 100);
    assert.deepEqual(outbox(session, 100), ["publish:5:dup:E"]);
    session.receive({ type: "puback", packetId: 3 }, 100);
    assert.deepEqual(outbox(session, 100), ["publish:6:F"]);
    assert.deepEqual(events(session), [
      "complete:D:puback",
      "complete:A:puback",
      "complete:B:pubcomp",
      "complete:C:puback",
    ]);
  });

  test("Session resume without a session: what was in flight is sent again as new, first, with new ids and no DUP", () => {
    const session = interrupted();
    session.connect(100);
    session.receive(connack(false), 100);
    // B was past PUBREC, but the server forgot it: the PUBLISH goes again.
    assert.deepEqual(outbox(session, 100), [
      "connect",
      "publish:6:A",
      "publish:7:B",
      "publish:8:D",
      "publish:9:E",
    ]);
    assert.equal(session.waitingCount, 1);
    session.receive({ type: "puback", packetId: 6 }, 100);
    assert.deepEqual(outbox(session, 100), ["publish:10:F"]);
  });

  test("Session incoming QoS 2 across connections: kept with a session (a re-sent PUBLISH gets PUBREC), forgotten without", () => {
    const session = connectedSession(4, { clean: false });
    const packet = incoming(7, 2);
    session.receive(packet, 0);
    session.acknowledge(packet);
    assert.deepEqual(outbox(session), ["pubrec:7"]);
    events(session);
    session.disconnected();
    session.connect(0);
    session.receive(connack(true), 0);
    outbox(session);
    session.receive(incoming(7, 2, { dup: true }), 0);
    assert.deepEqual(events(session), []);
    assert.deepEqual(outbox(session), ["pubrec:7"]);
    session.disconnected();
    session.connect(0);
    session.receive(connack(false), 0);
    outbox(session);
    session.receive(incoming(7, 2), 0);
    assert.deepEqual(events(session), ["message:7"]);
  });

  test("Session QoS 1 from a lost connection is not acknowledged on the next one", () => {
    const session = connectedSession(4, { clean: false });
    const packet = incoming(5, 1);
    session.receive(packet, 0);
    session.disconnected();
    session.connect(0);
    session.receive(connack(true), 0);
    outbox(session);
    session.acknowledge(packet);
    assert.deepEqual(outbox(session), []);
  });

  test("Session requests in flight when the connection was lost are sent again after CONNACK", () => {
    const session = connectedSession();
    session.subscribe({ type: "subscribe", subscriptions: [{ topicFilter: "a", qos: 0 }] }, "s");
    outbox(session);
    session.disconnected();
    session.connect(0);
    session.receive(connack(true), 0);
    assert.deepEqual(outbox(session), ["connect", "subscribe:2"]);
    session.receive({ type: "suback", packetId: 2, reasonCodes: [0] }, 0);
    assert.deepEqual(events(session), ["complete:s:suback"]);
  });

  test("Session a reconnection to a server that lost the session subscribes again first, with no token", () => {
    const session = connectedSession(5);
    session.subscribe({ type: "subscribe", subscriptions: [{ topicFilter: "a", qos: 1 }] }, "s");
    outbox(session);
    session.receive({ type: "suback", packetId: 1, reasonCodes: [1] }, 0);
    events(session);
    session.disconnected();
    session.subscribe({ type: "subscribe", subscriptions: [{ topicFilter: "b", qos: 0 }] }, "s2");
    session.connect(0);
    session.receive(connack(false), 0);
    const packets = session.takeOutbox(0);
    assert.deepEqual(packets.map(describePacket), ["connect", "subscribe:2", "subscribe:3"]);
    assert.deepEqual(
      packets.slice(1).map((p) => p.type === "subscribe" && p.subscriptions[0].topicFilter),
      ["a", "b"],
    );
    session.receive({ type: "suback", packetId: 2, reasonCodes: [1] }, 0);
    const [event] = session.takeEvents();
    assert.ok(event.type === "complete" && event.token === undefined);
  });

  test("Session disconnected drops the outbox; abandon returns every token, oldest first, and empties the session", () => {
    const session = connectedSession(4, { inflightWindow: 1 });
    session.publish(message("t", 1, "a"), "inflight");
    session.publish(message("t", 1, "b"), "waiting");
    session.subscribe({ type: "subscribe", subscriptions: [{ topicFilter: "a", qos: 0 }] }, "sub");
    session.disconnected();
    assert.equal(session.hasOutput, false);
    session.unsubscribe({ type: "unsubscribe", topicFilters: ["a"] }, "queued");
    assert.deepEqual(session.abandon(), ["inflight", "waiting", "sub", "queued"]);
    assert.deepEqual(session.abandon(), []);
    assert.equal(session.inflightCount, 0);
    assert.equal(session.waitingCount, 0);
  });
});

describe("Session tick", () => {
  test("Session tick: Infinity with keepalive 0 or before CONNACK", () => {
    assert.equal(connectedSession(4, { keepalive: 0 }).tick(1e9), Infinity);
    const session = new Session<string>({
      protocolVersion: 4,
      clientId: "c",
      clean: true,
      keepalive: 10,
    });
    session.connect(0);
    assert.equal(session.tick(1e9), Infinity);
  });

  test("Session tick: PINGREQ once 10 s passed since the last packet sent; sending moves the deadline", () => {
    const session = connectedSession(4, { keepalive: 10 });
    assert.equal(session.tick(0), 10_000);
    assert.equal(session.tick(9999), 10_000);
    assert.deepEqual(outbox(session), []);
    session.publish(message("t", 0), "p");
    session.takeOutbox(6000);
    assert.equal(session.tick(9999), 16_000);
    // The period ran out with a packet still waiting to go: PINGREQ goes with it, so that a
    // write that never finishes (a dead connection) is found by the ping timeout.
    session.publish(message("t", 0), "p");
    assert.equal(session.tick(16_000), 26_000);
    assert.deepEqual(outbox(session, 16_000), ["publish:-:", "pingreq"]);
    session.receive({ type: "pingresp" }, 16_500);
    assert.equal(session.tick(16_500), 26_000);
    assert.equal(session.tick(26_000), 36_000);
    assert.deepEqual(outbox(session, 26_000), ["pingreq"]);
  });

  test("Session tick: no PINGRESP within the ping timeout throws TimeoutError; PINGRESP in time clears it", () => {
    const session = connectedSession(4, { keepalive: 10, pingTimeout: 3000 });
    assert.equal(session.tick(10_000), 13_000);
    assert.deepEqual(outbox(session, 10_000), ["pingreq"]);
    assert.equal(session.tick(12_999), 13_000);
    session.receive({ type: "pingresp" }, 12_999);
    assert.equal(session.tick(13_000), 20_000);
    assert.equal(session.tick(20_000), 23_000);
    outbox(session, 20_000);
    assert.throws(() => session.tick(23_000), TimeoutError);
  });

  test("Session tick: while the reader is paused a missing PINGRESP is no timeout, and PINGREQ still goes every period [MQTT-3.1.2-23]", () => {
    const session = connectedSession(4, { keepalive: 10 });
    assert.equal(session.tick(10_000), 20_000);
    assert.deepEqual(outbox(session, 10_000), ["pingreq"]);
    // The PINGRESP is behind messages the user has not taken yet.
    session.readerPaused();
    assert.equal(session.tick(20_000), 30_000);
    assert.deepEqual(outbox(session, 20_000), ["pingreq"]);
    assert.equal(session.tick(29_999), 30_000);
    assert.deepEqual(outbox(session, 29_999), []);
    // A write that does not finish leaves the outbox untaken: one PINGREQ waits, not one a period.
    assert.equal(session.tick(30_000), 40_000);
    assert.equal(session.tick(40_000), 50_000);
    assert.deepEqual(outbox(session, 40_000), ["pingreq"]);
    assert.equal(session.tick(1_000_000), 1_010_000);
    outbox(session, 1_000_000);
    // Reading again: the PINGRESP read right away clears the wait.
    session.readerResumed(1_000_500);
    session.receive({ type: "pingresp" }, 1_000_500);
    assert.equal(session.tick(1_000_500), 1_010_000);
    assert.equal(session.connected, true);
  });

  test("Session tick: once the reader resumes, the ping timeout counts again from then and still finds a dead broker", () => {
    const session = connectedSession(4, { keepalive: 10, pingTimeout: 3000 });
    assert.equal(session.tick(10_000), 13_000);
    assert.deepEqual(outbox(session, 10_000), ["pingreq"]);
    session.readerPaused();
    assert.equal(session.tick(13_000), 20_000);
    assert.equal(session.tick(19_000), 20_000);
    session.readerResumed(19_000);
    assert.equal(session.tick(19_000), 22_000);
    assert.equal(session.tick(21_999), 22_000);
    assert.throws(() => session.tick(22_000), TimeoutError);
  });

  test("Session tick: a reader paused and resumed with no PINGREQ out changes nothing", () => {
    const session = connectedSession(4, { keepalive: 10 });
    session.readerPaused();
    assert.equal(session.tick(5000), 10_000);
    session.readerResumed(6000);
    assert.equal(session.tick(6000), 10_000);
    assert.equal(session.tick(10_000), 20_000);
    assert.deepEqual(outbox(session, 10_000), ["pingreq"]);
  });

  test("Session tick: the Server Keep Alive replaces the keepalive", () => {
    const session = connectedSession(5, { keepalive: 60 }, { serverKeepAlive: 5 });
    assert.equal(session.tick(0), 5000);
    session.tick(5000);
    assert.deepEqual(outbox(session, 5000), ["pingreq"]);
  });
});

describe("Session gate: what publish, subscribe and unsubscribe refuse before changing anything", () => {
  /** Asserts that nothing changed: no packet id used, no journal entry, no packet, no event. */
  function assertUnchanged(session: Session<string>): void {
    assert.deepEqual(session.takeJournal(), []);
    assert.deepEqual(outbox(session), []);
    assert.deepEqual(events(session), []);
    assert.equal(session.waitingCount, 0);
    assert.equal(session.inflightCount, 0);
    assert.equal(session.queuedRequestCount, 0);
    // The first packet id is still free.
    session.publish(message("t", 1, "ok"), "ok");
    assert.deepEqual(outbox(session), ["publish:1:ok"]);
  }

  const limits: [string, Properties, PublishPacket, string][] = [
    [
      "QoS above Maximum QoS",
      { maximumQoS: 1 },
      message("t", 2),
      "the broker supports QoS 1 at most; this publish asks for 2",
    ],
    [
      "retain without Retain Available",
      { retainAvailable: false },
      { ...message("t", 1), retain: true },
      "the broker does not support retained messages",
    ],
    [
      "a topic alias above Topic Alias Maximum",
      { topicAliasMaximum: 2 },
      { ...message("t", 1), properties: { topicAlias: 3 } },
      "topic alias 3 exceeds the broker's Topic Alias Maximum of 2",
    ],
    [
      "a topic alias never given a topic",
      { topicAliasMaximum: 2 },
      { ...message("", 1), properties: { topicAlias: 2 } },
      "topic alias 2 has not been given a topic yet; publish with the topic and the alias first",
    ],
    [
      "more bytes than Maximum Packet Size",
      { maximumPacketSize: 32 },
      message("t", 1, "x".repeat(25)),
      "the PUBLISH is 33 bytes; the broker accepts at most 32",
    ],
  ];
  for (const [what, properties, packet, text] of limits) {
    test(`Session publish refuses ${what} with LimitError; nothing changes`, () => {
      const session = connectedSession(5, { journal: true }, properties);
      session.takeJournal();
      assert.throws(
        () => session.publish(packet, "refused"),
        (error: unknown) => error instanceof LimitError && error.message === text,
      );
      assertUnchanged(session);
    });
  }

  test("Session publish: a refused publish with a topic and an alias does not give the alias its topic", () => {
    const session = connectedSession(5, {}, { topicAliasMaximum: 2, maximumPacketSize: 32 });
    const large = { ...message("a/b", 1, "x".repeat(40)), properties: { topicAlias: 1 } };
    assert.throws(() => session.publish(large, "large"), LimitError);
    assert.throws(
      () => session.publish({ ...message("", 1), properties: { topicAlias: 1 } }, "after"),
      /topic alias 1 has not been given a topic yet/,
    );
    assertUnchanged(session);
  });

  test("Session publish with an alias resolves it once: a topic-less publish after a declared one carries the topic on a new connection", () => {
    const session = connectedSession(5, {}, { topicAliasMaximum: 2 });
    session.publish({ ...message("a/b", 1, "1"), properties: { topicAlias: 1 } }, "declared");
    const later = { ...message("", 1, "2"), properties: { topicAlias: 1 } };
    session.publish(later, "topic-less");
    // The packet now holds the whole topic; this connection's server knows the alias.
    assert.equal(later.topic, "a/b");
    assert.deepEqual(
      session.takeOutbox(0).map((p) => p.type === "publish" && p.topic),
      ["a/b", ""],
    );
    session.disconnected();
    const offline = { ...message("", 1, "3"), properties: { topicAlias: 1 } };
    session.publish(offline, "offline");
    assert.equal(offline.topic, "a/b");
    session.connect(0);
    session.receive(connack(true, { topicAliasMaximum: 2 }), 0);
    // A new connection knows no alias [MQTT-3.3.2-7]: the first PUBLISH with it carries the topic.
    assert.deepEqual(
      session.takeOutbox(0).map((p) =>
        p.type === "publish" ? `${p.topic}:${p.properties?.topicAlias}:${p.packetId}` : p.type
      ),
      ["connect", "a/b:1:1", ":1:2", ":1:3"],
    );
  });

  test("Session queue bound by count: publishes and requests waiting while disconnected share maxQueuedMessages", () => {
    const session = new Session<string>({
      protocolVersion: 4,
      clientId: "c",
      clean: true,
      keepalive: 0,
      maxQueuedMessages: 3,
    });
    session.publish(message("t", 0, "a"), "qos0");
    session.publish(message("t", 1, "b"), "qos1");
    session.subscribe({ type: "subscribe", subscriptions: [{ topicFilter: "f", qos: 0 }] }, "s");
    const full =
      "the queue of operations waiting to be sent is full (2 publishes, 1 subscribe or unsubscribe requests, 6 bytes; see the queue option)";
    assert.throws(() => session.publish(message("t", 0, "c"), "c"), { message: full });
    assert.throws(() => session.publish(message("t", 2, "c"), "c"), { message: full });
    assert.throws(
      () => session.unsubscribe({ type: "unsubscribe", topicFilters: ["f"] }, "u"),
      (error: unknown) => error instanceof LimitError && error.message === full,
    );
    assert.equal(session.waitingCount, 2);
    assert.equal(session.queuedRequestCount, 1);
    session.connect(0);
    session.receive(connack(), 0);
    assert.deepEqual(outbox(session), ["connect", "subscribe:1", "publish:-:a", "publish:2:b"]);
    assert.deepEqual(events(session), ["sent:qos0"]);
  });

  test("Session queue bound by bytes: publish payloads and request payloads share maxQueuedBytes", () => {
    const session = new Session<string>({
      protocolVersion: 4,
      clientId: "c",
      clean: true,
      keepalive: 0,
      maxQueuedBytes: 10,
    });
    session.publish(message("t", 1, "123456"), "six");
    // 3 + 2 bytes: the filter, its length and its options byte; 11 would be too many.
    const subscribe = {
      type: "subscribe" as const,
      subscriptions: [{ topicFilter: "ab", qos: 1 as const }],
    };
    assert.throws(() => session.subscribe(subscribe, "s"), LimitError);
    session.unsubscribe({ type: "unsubscribe", topicFilters: ["ab"] }, "u"); // 4 bytes: 10
    assert.equal(session.waitingBytes + session.queuedRequestBytes, 10);
    assert.throws(() => session.publish(message("t", 0, "x"), "x"), LimitError);
    // An empty payload still fits the bytes.
    session.publish(message("t", 0), "empty");
    assert.equal(session.waitingCount, 2);
  });

  test("Session queue bound while connected: a publish waiting behind a full window counts; QoS 0 and requests go at once", () => {
    const session = connectedSession(4, { inflightWindow: 1, maxQueuedMessages: 1 });
    session.publish(message("t", 1, "a"), "a"); // in flight
    session.publish(message("t", 1, "b"), "b"); // waits: the queue is full now
    assert.throws(() => session.publish(message("t", 1, "c"), "c"), LimitError);
    session.publish(message("t", 0, "d"), "d");
    session.subscribe({ type: "subscribe", subscriptions: [{ topicFilter: "f", qos: 0 }] }, "s");
    assert.deepEqual(outbox(session), ["publish:1:a", "publish:-:d", "subscribe:2"]);
  });

  test("Session dropQos0Offline: a QoS 0 publish while disconnected throws ConnectionClosedError; QoS 1 waits; connected, QoS 0 goes", () => {
    const session = new Session<string>({
      protocolVersion: 4,
      clientId: "c",
      clean: true,
      keepalive: 0,
      dropQos0Offline: true,
    });
    assert.throws(
      () => session.publish(message("t", 0, "a"), "a"),
      (error: unknown) =>
        error instanceof ConnectionClosedError &&
        error.message ===
          'not connected, and QoS 0 publishes are dropped while offline (queue.qos0: "drop")',
    );
    assert.equal(session.waitingCount, 0);
    session.publish(message("t", 1, "b"), "b");
    session.connect(0);
    session.receive(connack(), 0);
    assert.equal(session.publish(message("t", 0, "c"), "c"), true);
    assert.deepEqual(outbox(session), ["connect", "publish:1:b", "publish:-:c"]);
  });

  test("Session SUBSCRIBE and UNSUBSCRIBE larger than Maximum Packet Size throw LimitError; invalid ones throw what encoding throws; nothing changes", () => {
    const session = connectedSession(5, { journal: true }, { maximumPacketSize: 32 });
    session.takeJournal();
    assert.throws(
      () =>
        session.subscribe(
          { type: "subscribe", subscriptions: [{ topicFilter: "f".repeat(25), qos: 1 }] },
          "s",
        ),
      (error: unknown) =>
        error instanceof LimitError &&
        error.message === "the SUBSCRIBE is 33 bytes; the broker accepts at most 32",
    );
    assert.throws(
      () => session.unsubscribe({ type: "unsubscribe", topicFilters: ["f".repeat(26)] }, "u"),
      (error: unknown) =>
        error instanceof LimitError &&
        error.message === "the UNSUBSCRIBE is 33 bytes; the broker accepts at most 32",
    );
    assert.throws(
      () => session.subscribe({ type: "subscribe", subscriptions: [] }, "empty"),
      ProtocolError,
    );
    assert.throws(
      () =>
        session.subscribe(
          { type: "subscribe", subscriptions: [{ topicFilter: "a/#/b", qos: 0 }] },
          "bad filter",
        ),
      ProtocolError,
    );
    assertUnchanged(session);
  });
});

describe("Session acknowledgements after processing", () => {
  /** A session with a resumed connection: disconnected, CONNECT, CONNACK with a session. */
  function reconnect(session: Session<string>, sessionPresent = true): void {
    session.disconnected();
    session.connect(0);
    session.receive(connack(sessionPresent), 0);
    outbox(session);
    events(session);
  }

  test("Session QoS 1 acknowledged out of order: each PUBACK waits for those of earlier PUBLISHes [MQTT-4.6.0-2]", () => {
    const session = connectedSession();
    const packets = [1, 2, 3].map((id) => incoming(id, 1));
    for (const packet of packets) session.receive(packet, 0);
    session.acknowledge(packets[2]);
    assert.deepEqual(outbox(session), []);
    session.acknowledge(packets[1]);
    assert.deepEqual(outbox(session), []);
    session.acknowledge(packets[0]);
    assert.deepEqual(outbox(session), ["puback:1", "puback:2", "puback:3"]);
    session.acknowledge(packets[2]); // once only
    assert.deepEqual(outbox(session), []);
  });

  test("Session QoS 1 and 2 interleaved: PUBACKs and PUBRECs leave in arrival order, whatever the order of acknowledgement [MQTT-4.6.0-3]", () => {
    const session = connectedSession();
    const packets = [incoming(1, 1), incoming(2, 2), incoming(3, 1), incoming(4, 2)];
    for (const packet of packets) session.receive(packet, 0);
    session.acknowledge(packets[3]);
    session.acknowledge(packets[1]);
    assert.deepEqual(outbox(session), []);
    session.acknowledge(packets[0]);
    assert.deepEqual(outbox(session), ["puback:1", "pubrec:2"]);
    session.acknowledge(packets[2]);
    assert.deepEqual(outbox(session), ["puback:3", "pubrec:4"]);
  });

  test("Session a re-sent QoS 2 PUBLISH answered with PUBREC waits behind an earlier unacknowledged message", () => {
    const session = connectedSession();
    const qos2 = incoming(2, 2);
    session.receive(qos2, 0);
    session.acknowledge(qos2);
    assert.deepEqual(outbox(session), ["pubrec:2"]);
    const qos1 = incoming(1, 1);
    session.receive(qos1, 0);
    session.receive(incoming(2, 2, { dup: true }), 0);
    assert.deepEqual(outbox(session), []);
    session.acknowledge(qos1);
    assert.deepEqual(outbox(session), ["puback:1", "pubrec:2"]);
  });

  test("Session v5 Receive Maximum 2: a message acknowledged behind an unacknowledged one still counts", () => {
    const session = connectedSession(5, { properties: { receiveMaximum: 2 } });
    const first = incoming(1, 1);
    const second = incoming(2, 1);
    session.receive(first, 0);
    session.receive(second, 0);
    session.acknowledge(second);
    assert.deepEqual(outbox(session), []);
    assert.throws(() => session.receive(incoming(3, 1), 0), (error) => {
      assert.ok(error instanceof ProtocolError);
      assert.equal(error.reasonCode, 0x93);
      return true;
    });
    session.acknowledge(first);
    assert.deepEqual(outbox(session), ["puback:1", "puback:2"]);
    session.receive(incoming(3, 1), 0);
    session.receive(incoming(4, 1), 0);
  });

  test("Session QoS 1 acknowledged after a reconnect: nothing for the old message, even when the new connection uses its id", () => {
    const session = connectedSession(4, { clean: false });
    const old = incoming(5, 1);
    session.receive(old, 0);
    reconnect(session);
    const resent = incoming(5, 1, { dup: true });
    session.receive(resent, 0);
    assert.deepEqual(events(session), ["message:5"]);
    session.acknowledge(old);
    assert.deepEqual(outbox(session), []);
    session.acknowledge(resent);
    assert.deepEqual(outbox(session), ["puback:5"]);
  });

  test("Session QoS 1 acknowledgements held at a disconnect are dropped: the server re-sends those messages", () => {
    const session = connectedSession(4, { clean: false });
    const first = incoming(1, 1);
    const second = incoming(2, 1);
    session.receive(first, 0);
    session.receive(second, 0);
    session.acknowledge(second);
    reconnect(session);
    session.acknowledge(first);
    assert.deepEqual(outbox(session), []);
    const again = incoming(2, 1, { dup: true });
    session.receive(again, 0);
    session.acknowledge(again);
    assert.deepEqual(outbox(session), ["puback:2"]);
  });

  test("Session QoS 2 delivered before a reconnect and acknowledged after: PUBREC answers the re-sent copy, in the new connection's order", () => {
    const session = connectedSession(4, { clean: false });
    const original = incoming(7, 2);
    session.receive(original, 0);
    assert.deepEqual(events(session), ["message:7"]);
    reconnect(session);
    const qos1 = incoming(1, 1);
    session.receive(qos1, 0);
    session.receive(incoming(7, 2, { dup: true }), 0);
    // The copy is not delivered again: the user still has the original.
    assert.deepEqual(events(session), ["message:1"]);
    session.acknowledge(original);
    assert.deepEqual(outbox(session), []);
    session.acknowledge(qos1);
    assert.deepEqual(outbox(session), ["puback:1", "pubrec:7"]);
    session.receive({ type: "pubrel", packetId: 7 }, 0);
    assert.deepEqual(outbox(session), ["pubcomp:7"]);
  });

  test("Session QoS 2 acknowledged while disconnected: the re-sent copy gets PUBREC at once", () => {
    const session = connectedSession(4, { clean: false });
    const original = incoming(7, 2);
    session.receive(original, 0);
    assert.deepEqual(events(session), ["message:7"]);
    session.disconnected();
    session.acknowledge(original);
    assert.equal(session.hasOutput, false);
    session.connect(0);
    session.receive(connack(true), 0);
    outbox(session);
    session.receive(incoming(7, 2, { dup: true }), 0);
    assert.deepEqual(events(session), []);
    assert.deepEqual(outbox(session), ["pubrec:7"]);
  });

  test("Session QoS 2 acknowledged after the server lost the session: nothing, also for a new message with its id", () => {
    const session = connectedSession(4, { clean: false });
    const old = incoming(7, 2);
    session.receive(old, 0);
    reconnect(session, false);
    const fresh = incoming(7, 2);
    session.receive(fresh, 0);
    assert.deepEqual(events(session), ["message:7"]);
    session.acknowledge(old);
    assert.deepEqual(outbox(session), []);
    assert.throws(() => session.receive({ type: "pubrel", packetId: 7 }, 0), ProtocolError);
  });

  test("Session 3,000 QoS 1 messages acknowledged newest first: all PUBACKs at the end, in arrival order", () => {
    const session = connectedSession();
    const packets = Array.from({ length: 3000 }, (_, i) => incoming((i % 65535) + 1, 1));
    for (const packet of packets) session.receive(packet, 0);
    for (let i = packets.length - 1; i > 0; i--) session.acknowledge(packets[i]);
    assert.deepEqual(outbox(session), []);
    session.acknowledge(packets[0]);
    assert.deepEqual(outbox(session), packets.map((p) => `puback:${p.packetId}`));
  });

  test("Session a queue of acknowledgements never empty: PUBACKs still leave one by one, in arrival order", () => {
    const session = connectedSession();
    const sent: string[] = [];
    let previous = incoming(1, 1);
    session.receive(previous, 0);
    // The newest message is always unacknowledged: each acknowledgement sends exactly one.
    for (let i = 2; i <= 5000; i++) {
      const packet = incoming(i, 1);
      session.receive(packet, 0);
      session.acknowledge(previous);
      const out = outbox(session);
      assert.deepEqual(out, [`puback:${i - 1}`]);
      sent.push(...out);
      previous = packet;
    }
    session.acknowledge(previous);
    sent.push(...outbox(session));
    assert.deepEqual(sent, Array.from({ length: 5000 }, (_, i) => `puback:${i + 1}`));
  });
});

describe("Session acknowledgements after processing, odd servers", () => {
  test("Session a QoS 1 id sent again before its PUBACK (a retry): both copies are delivered, and acknowledging either, in any order, sends both PUBACKs in arrival order", () => {
    const session = connectedSession(3);
    const first = incoming(4, 1);
    const retry = incoming(4, 1, { dup: true });
    session.receive(first, 0);
    session.receive(retry, 0);
    assert.deepEqual(events(session), ["message:4", "message:4"]);
    session.acknowledge(retry);
    assert.deepEqual(outbox(session), []);
    session.acknowledge(first);
    assert.deepEqual(outbox(session), ["puback:4", "puback:4"]);
  });
});

describe("Session automatic topic aliases (topicAliases: auto)", () => {
  const A = "factory/line-1/temperature";
  const B = "factory/line-2/temperature";
  const C = "factory/line-3/temperature";

  /** A v5 session with automatic aliases, connected to a server with this Topic Alias Maximum. */
  function autoSession(maximum: number | undefined, options: Partial<SessionOptions> = {}) {
    return connectedSession(
      5,
      { topicAliases: "auto", ...options },
      maximum === undefined ? undefined : { topicAliasMaximum: maximum },
    );
  }

  /** The PUBLISHes written, as `topic|alias` (`-` for none). */
  function wire(session: Session<string>): string[] {
    return session.takeOutbox(0).filter((packet) => packet.type === "publish").map((packet) => {
      const publish = packet as PublishPacket;
      return `${publish.topic}|${publish.properties?.topicAlias ?? "-"}`;
    });
  }

  test("the first publish to a topic sends it with a new alias, later ones an empty topic and the alias", () => {
    const session = autoSession(3);
    const qos1 = message(A, 1);
    session.publish(message(A, 0), "p1");
    session.publish(message(B, 0), "p2");
    session.publish(qos1, "p3");
    session.publish(message(B, 2), "p4");
    assert.deepEqual(wire(session), [`${A}|1`, `${B}|2`, "|1", "|2"]);
    // The queued, in-flight packet keeps its topic and gets no alias.
    assert.equal(qos1.topic, A);
    assert.equal(qos1.properties, undefined);
  });

  test("other properties go along with the alias", () => {
    const session = autoSession(3);
    const properties: Properties = { contentType: "text/plain" };
    session.publish({ ...message(A, 1), properties }, "p1");
    session.publish({ ...message(A, 1), properties }, "p2");
    const sent = session.takeOutbox(0) as PublishPacket[];
    assert.deepEqual(sent.map((p) => [p.topic, p.properties]), [
      [A, { contentType: "text/plain", topicAlias: 1 }],
      ["", { contentType: "text/plain", topicAlias: 1 }],
    ]);
    assert.deepEqual(properties, { contentType: "text/plain" });
  });

  test("never more aliases than the Topic Alias Maximum: the least recently used topic gives way", () => {
    const session = autoSession(2);
    for (const topic of [A, B, A, C, B, C, A]) session.publish(message(topic, 0), "p");
    // A=1, B=2; A used; C takes B's 2 (B least recently used); B takes A's 1; C used, so B is
    // the least recently used and A takes its 1.
    assert.deepEqual(wire(session), [`${A}|1`, `${B}|2`, "|1", `${C}|2`, `${B}|1`, "|2", `${A}|1`]);
  });

  test("a new connection forgets every alias", () => {
    const session = autoSession(3);
    session.publish(message(A, 0), "p1");
    session.publish(message(A, 0), "p2");
    assert.deepEqual(wire(session), [`${A}|1`, "|1"]);
    session.disconnected();
    session.connect(0);
    session.receive(connack(false, { topicAliasMaximum: 3 }), 0);
    session.publish(message(A, 0), "p3");
    assert.deepEqual(wire(session), [`${A}|1`]);
  });

  test("PUBLISHes re-sent after a reconnect carry their topic the first time on the new connection", () => {
    const session = autoSession(3, { journal: true });
    session.publish(message(A, 1, "x"), "p1");
    session.publish(message(A, 1, "y"), "p2");
    assert.deepEqual(wire(session), [`${A}|1`, "|1"]);
    // Nothing with an alias or an empty topic reaches the store.
    for (const operation of session.takeJournal()) {
      if (operation.op === "put") {
        assert.equal(operation.record.packet.topic, A);
        assert.equal(operation.record.packet.properties, undefined);
      }
    }
    session.disconnected();
    session.connect(0);
    session.takeOutbox(0);
    // A server with fewer aliases, and a resumed session: both go again, the first with its topic.
    session.receive(connack(true, { topicAliasMaximum: 1 }), 0);
    const sent = session.takeOutbox(0) as PublishPacket[];
    assert.deepEqual(
      sent.map((p) => `${p.topic}|${p.properties?.topicAlias ?? "-"}|${p.dup}`),
      [`${A}|1|true`, "|1|true"],
    );
  });

  test("a re-sent PUBLISH after a server that allows no aliases goes with its topic alone", () => {
    const session = autoSession(3);
    session.publish(message(A, 1), "p1");
    session.publish(message(A, 1), "p2");
    assert.deepEqual(wire(session), [`${A}|1`, "|1"]);
    session.disconnected();
    session.connect(0);
    session.takeOutbox(0);
    session.receive(connack(false), 0);
    assert.deepEqual(wire(session), [`${A}|-`, `${A}|-`]);
  });

  test("Topic Alias Maximum 0 (or none announced): no aliases", () => {
    for (const maximum of [0, undefined]) {
      const session = autoSession(maximum);
      session.publish(message(A, 0), "p1");
      session.publish(message(A, 1), "p2");
      assert.deepEqual(wire(session), [`${A}|-`, `${A}|-`]);
    }
  });

  test("MQTT 3.1.1: no aliases", () => {
    const session = connectedSession(4, { topicAliases: "auto" });
    session.publish(message(A, 0), "p1");
    session.publish(message(A, 1), "p2");
    assert.deepEqual(wire(session), [`${A}|-`, `${A}|-`]);
  });

  test("topics of 3 characters or fewer go without an alias", () => {
    const session = autoSession(3);
    for (const topic of ["a/b", "a/b", "a/bc", "a/bc"]) session.publish(message(topic, 0), "p");
    assert.deepEqual(wire(session), ["a/b|-", "a/b|-", "a/bc|1", "|1"]);
  });

  test("a topic whose PUBLISH would pass the server's Maximum Packet Size with the alias goes without", () => {
    const session = connectedSession(5, { topicAliases: "auto" }, {
      topicAliasMaximum: 3,
      maximumPacketSize: 2 + 2 + A.length + 1 + 10, // fixed header, topic, properties, payload
    });
    session.publish(message(A, 0, "0123456789"), "p1");
    session.publish(message(A, 0, "012345"), "p2");
    session.publish(message(A, 0, "012345"), "p3");
    assert.deepEqual(wire(session), [`${A}|-`, `${A}|1`, "|1"]);
  });

  test("a publish that sets its own topicAlias is refused with TypeError", () => {
    const session = autoSession(3);
    assert.throws(
      () => session.publish({ ...message(A, 1), properties: { topicAlias: 1 } }, "p"),
      TypeError,
    );
    assert.equal(session.inflightCount, 0);
    assert.deepEqual(wire(session), []);
  });
});
