/**
 * MQTT 5 enhanced authentication in the sans-I/O session (section 4.12): what CONNECT carries,
 * which AUTH the server may send when, what the session sends back and when it refuses to, at the
 * packet and byte level. No streams, no timers: the time is a number.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { LimitError, ProtocolError, StateError } from "../../src/errors.ts";
import { encode } from "../../src/packet/encode.ts";
import type { AuthPacket, ConnackPacket, Packet } from "../../src/packet/types.ts";
import { Session } from "../../src/session/session.ts";

const hex = (bytes: Uint8Array): string =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");

/** A v5 session; `null`: one that names no method. */
function session(method: string | null = "TOK"): Session<string> {
  return new Session<string>({
    protocolVersion: 5,
    clientId: "kite",
    clean: true,
    keepalive: 0,
    authenticationMethod: method ?? undefined,
  });
}

function auth(reasonCode: number, method = "TOK", data?: number[]): AuthPacket {
  const packet: AuthPacket = {
    type: "auth",
    reasonCode,
    properties: { authenticationMethod: method },
  };
  if (data !== undefined) packet.properties!.authenticationData = new Uint8Array(data);
  return packet;
}

function connack(method?: string, maximumPacketSize?: number): ConnackPacket {
  const packet: ConnackPacket = { type: "connack", sessionPresent: false, reasonCode: 0 };
  if (method !== undefined || maximumPacketSize !== undefined) {
    packet.properties = {};
    if (method !== undefined) packet.properties.authenticationMethod = method;
    if (maximumPacketSize !== undefined) packet.properties.maximumPacketSize = maximumPacketSize;
  }
  return packet;
}

function wire(packets: Packet[]): string[] {
  return packets.map((packet) => hex(encode(packet, 5)));
}

function refuses(action: () => void, statementId: string | undefined): void {
  assert.throws(action, (error: ProtocolError) => {
    assert.ok(error instanceof ProtocolError, String(error));
    assert.equal(error.statementId, statementId);
    assert.equal(error.reasonCode, 0x82);
    return true;
  });
}

describe("Session - enhanced authentication", () => {
  test("CONNECT carries the method and the initial data; nothing else leaves before CONNACK [MQTT-3.1.2-30]", () => {
    const s = session();
    s.publish(
      { type: "publish", topic: "a", payload: new Uint8Array(), qos: 1, retain: false, dup: false },
      "p",
    );
    s.connect(0, new Uint8Array([1, 2]));
    assert.deepEqual(wire(s.takeOutbox(0)), [
      "10 1c 00 04 4d 51 54 54 05 02 00 00 0b 15 00 03 54 4f 4b 16 00 02 01 02 00 04 6b 69 74 65",
    ]);
    assert.equal(s.authenticationExchange, "connect");
    s.receive(auth(0x18, "TOK", [5]), 0);
    assert.equal(s.authenticationChallenged, true);
    assert.deepEqual(s.takeOutbox(0), []);
    s.answerAuthentication(new Uint8Array([10]));
    // [MQTT-4.12.0-3] AUTH 0x18, method TOK, data 0a.
    assert.deepEqual(wire(s.takeOutbox(0)), ["f0 0c 18 0a 15 00 03 54 4f 4b 16 00 01 0a"]);
    s.receive(connack("TOK"), 0);
    assert.equal(s.authenticationExchange, "none");
    assert.deepEqual(s.takeOutbox(0).map((p) => p.type), ["publish"]);
  });

  test("the server's AUTH must name the method of CONNECT [MQTT-4.12.0-5]", () => {
    const s = session();
    s.connect(0);
    refuses(() => s.receive(auth(0x18, "OTHER"), 0), "MQTT-4.12.0-5");
    refuses(() => s.receive({ type: "auth", reasonCode: 0x18 }, 0), "MQTT-4.12.0-5");
  });

  test("an accepting CONNACK must name the method; a refusing one need not [MQTT-4.12.0-5] [MQTT-4.12.0-4]", () => {
    const s = session();
    s.connect(0);
    refuses(() => s.receive(connack(), 0), "MQTT-4.12.0-5");
    const refused = session();
    refused.connect(0);
    refused.receive({ type: "connack", sessionPresent: false, reasonCode: 0x87 }, 0);
    assert.equal(refused.connected, false);
  });

  test("without a method, an AUTH or a CONNACK naming one is a protocol error [MQTT-4.12.0-6]", () => {
    const s = session(null);
    s.connect(0);
    refuses(() => s.receive(auth(0x18), 0), "MQTT-4.12.0-6");
    refuses(() => s.receive(connack("TOK"), 0), "MQTT-4.12.0-6");
  });

  test("the server may not send AUTH 0x00 before CONNACK, AUTH 0x19 ever, or two challenges in a row [MQTT-3.15.2-1]", () => {
    const s = session();
    s.connect(0);
    refuses(() => s.receive(auth(0x00), 0), "MQTT-3.15.2-1");
    refuses(() => s.receive(auth(0x19), 0), "MQTT-3.15.2-1");
    s.receive(auth(0x18), 0);
    refuses(() => s.receive(auth(0x18), 0), undefined);
  });

  test("answering without a challenge is refused before anything is sent", () => {
    const s = session();
    s.connect(0);
    s.takeOutbox(0);
    assert.throws(() => s.answerAuthentication(new Uint8Array([1])), StateError);
    assert.deepEqual(s.takeOutbox(0), []);
  });

  test("re-authentication: AUTH 0x19 only after CONNACK, one exchange at a time, ended by AUTH 0x00 [MQTT-4.12.1-1]", () => {
    const s = session();
    assert.throws(() => s.reauthenticate(undefined), StateError);
    s.connect(0);
    assert.throws(() => s.reauthenticate(undefined), StateError);
    s.receive(connack("TOK"), 0);
    s.takeOutbox(0);
    s.reauthenticate(new Uint8Array([3]));
    assert.deepEqual(wire(s.takeOutbox(0)), ["f0 0c 19 0a 15 00 03 54 4f 4b 16 00 01 03"]);
    assert.throws(() => s.reauthenticate(undefined), StateError);
    s.receive(auth(0x18, "TOK", [1]), 0);
    s.answerAuthentication(undefined);
    assert.deepEqual(wire(s.takeOutbox(0)), ["f0 08 18 06 15 00 03 54 4f 4b"]);
    s.receive(auth(0x00), 0);
    assert.equal(s.authenticationExchange, "none");
    assert.equal(s.authenticationChallenged, false);
    // An AUTH 0x00 with no re-authentication running.
    refuses(() => s.receive(auth(0x00), 0), undefined);
  });

  test("a session that named no method never sends AUTH [MQTT-4.12.0-7]", () => {
    const s = session(null);
    s.connect(0);
    s.receive(connack(), 0);
    s.takeOutbox(0);
    assert.throws(() => s.reauthenticate(undefined), StateError);
    assert.deepEqual(s.takeOutbox(0), []);
  });

  test("a re-authentication AUTH larger than the server's Maximum Packet Size is refused, and none starts [MQTT-3.2.2-15]", () => {
    const s = session();
    s.connect(0);
    s.receive(connack("TOK", 20), 0);
    s.takeOutbox(0);
    assert.throws(() => s.reauthenticate(new Uint8Array(30)), LimitError);
    assert.equal(s.authenticationExchange, "none");
    assert.deepEqual(s.takeOutbox(0), []);
    s.reauthenticate(new Uint8Array(2));
    assert.equal(s.takeOutbox(0).length, 1);
  });

  test("a lost connection ends the exchange: the next CONNECT starts a new one", () => {
    const s = session();
    s.connect(0, new Uint8Array([1]));
    s.receive(auth(0x18), 0);
    s.disconnected();
    assert.equal(s.authenticationExchange, "none");
    assert.equal(s.authenticationChallenged, false);
    s.connect(1, new Uint8Array([1]));
    assert.equal(s.authenticationExchange, "connect");
    assert.deepEqual(s.takeOutbox(1)[0].type, "connect");
  });

  test("checkConnack refuses what receive would refuse, and changes nothing", () => {
    const s = session();
    s.connect(0);
    assert.throws(() => s.checkConnack(connack()), ProtocolError);
    s.checkConnack(connack("TOK"));
    assert.equal(s.connected, false);
    s.receive(connack("TOK"), 0);
    assert.throws(() => s.checkConnack(connack("TOK")), ProtocolError);
  });

  test("MQTT 3.1 and 3.1.1 have no enhanced authentication: a method is refused with TypeError", () => {
    for (const protocolVersion of [3, 4] as const) {
      assert.throws(
        () =>
          new Session({
            protocolVersion,
            clientId: "c",
            clean: true,
            keepalive: 0,
            authenticationMethod: "TOK",
          }),
        TypeError,
      );
    }
  });
});
