/**
 * The local broker's authentication and authorization hooks: `scramVerifier` with Kite's
 * `scramSha256` and `scramSha1` (success, wrong password, unknown user, re-authentication), plain
 * user name and password on 3.1.1 and 5, a custom multi-round method, refusals and their codes on
 * each version, packets a 3.1.1 client sends before CONNACK while an async hook decides, and the
 * `authorize` hook on PUBLISH (PUBACK / PUBREC 0x87 on v5, acknowledged and dropped on 3.1.1),
 * SUBSCRIBE (0x87 / 0x80) and wills; cross-checked with mosquitto_pub and mosquitto_sub.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { runToEnd } from "../helpers/run.ts";
import {
  type AuthenticationRequest,
  type AuthorizationRequest,
  Broker,
  scramSha256Verifier,
  scramVerifier,
} from "../../src/broker/mod.ts";
import { MqttClient } from "../../src/client/clients.ts";
import { scramSha1, scramSha256 } from "../../src/client/scram.ts";
import { AuthenticationError, ConnectionRefusedError, SubscribeError } from "../../src/errors.ts";
import { PublishError } from "../../src/session/mod.ts";
import { mosquittoClientsSkipReason } from "../helpers/mosquitto.ts";
import { connectKite, pause, RawClient, str, waitFor } from "./helpers.ts";

const users = { alice: "secret", "bob,=": "p\u00E4ss" };

async function refusal(promise: Promise<unknown>): Promise<ConnectionRefusedError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ConnectionRefusedError, String(error));
    return error;
  }
  throw new Error("connect resolved");
}

describe("Broker - authenticate with scramVerifier", () => {
  for (
    const [name, auth] of [["SCRAM-SHA-256", scramSha256], ["SCRAM-SHA-1", scramSha1]] as const
  ) {
    test(`${name}: the right password connects; the CONNACK names the method and carries the server signature`, async () => {
      await using broker = new Broker({ authenticate: scramVerifier({ users }) });
      for (const [username, password] of Object.entries(users)) {
        const { client } = await connectKite(broker, {
          clientId: `c-${name}`,
          protocolVersion: 5,
          auth: auth({ username, password }),
        });
        assert.equal(client.connack?.properties?.authenticationMethod, name);
        assert.match(str(client.connack!.properties!.authenticationData!), /^v=/);
        await client.disconnect();
      }
    });

    test(`${name}: a wrong password is refused with CONNACK 0x86`, async () => {
      await using broker = new Broker({ authenticate: scramVerifier({ users }) });
      const client = new MqttClient(broker.connectClient());
      const error = await refusal(client.connect({
        protocolVersion: 5,
        keepalive: 0,
        auth: auth({ username: "alice", password: "wrong" }),
      }));
      assert.equal(error.reasonCode, 0x86);
      assert.equal(broker.sessions().length, 0);
    });
  }

  test("an unknown user is refused with 0x86, a method the verifier does not offer with 0x8c", async () => {
    await using broker = new Broker({ authenticate: scramSha256Verifier({ users }) });
    const unknown = new MqttClient(broker.connectClient());
    const error = await refusal(unknown.connect({
      protocolVersion: 5,
      keepalive: 0,
      auth: scramSha256({ username: "mallory", password: "secret" }),
    }));
    assert.equal(error.reasonCode, 0x86);
    const sha1 = new MqttClient(broker.connectClient());
    assert.equal(
      (await refusal(sha1.connect({
        protocolVersion: 5,
        keepalive: 0,
        auth: scramSha1({ username: "alice", password: "secret" }),
      }))).reasonCode,
      0x8c,
    );
  });

  for (const version of [4, 5] as const) {
    test(`v${version === 4 ? "3.1.1" : "5"}: plain user name and password are checked against the same users`, async () => {
      await using broker = new Broker({ authenticate: scramVerifier({ users }) });
      const { client } = await connectKite(broker, {
        protocolVersion: version,
        username: "alice",
        password: "secret",
      });
      await client.disconnect();
      const wrong = new MqttClient(broker.connectClient());
      const error = await refusal(wrong.connect({
        protocolVersion: version,
        keepalive: 0,
        username: "alice",
        password: "nope",
      }));
      assert.equal(error.reasonCode, version === 5 ? 0x86 : 4);
    });
  }

  test("reauthenticate() runs SCRAM again on the live connection; traffic goes on", async () => {
    let requests = 0;
    const verifier = scramVerifier({ users });
    await using broker = new Broker({
      authenticate: (request) => {
        if (request.reauthentication) requests++;
        return verifier(request);
      },
    });
    const { client, messages } = await connectKite(broker, {
      clientId: "re",
      protocolVersion: 5,
      auth: scramSha256({ username: "alice", password: "secret" }),
    });
    await client.subscribe("t", { qos: 1 });
    const reauth = client.reauthenticate();
    await client.publish("t", "during", { qos: 1 });
    await reauth;
    await client.reauthenticate();
    assert.equal(requests, 2);
    await waitFor(() => messages.length === 1, "the message published during re-authentication");
    assert.equal(client.state, "connected");
    await client.disconnect();
  });

  test("a re-authentication the hook refuses ends with DISCONNECT: reauthenticate() rejects with AuthenticationError 0x87", async () => {
    const verifier = scramVerifier({ users });
    await using broker = new Broker({
      authenticate: (request) => request.reauthentication ? 0x87 : verifier(request),
    });
    const { client } = await connectKite(broker, {
      protocolVersion: 5,
      auth: scramSha256({ username: "alice", password: "secret" }),
    });
    await assert.rejects(
      client.reauthenticate(),
      (error: AuthenticationError) =>
        error instanceof AuthenticationError && error.reasonCode === 0x87,
    );
    await waitFor(() => client.state === "closed", "the client to close");
  });
});

describe("Broker - authenticate hook", () => {
  test("a custom method of three rounds, async: the hook sees each answer, the CONNACK carries its final data", async () => {
    const seen: string[] = [];
    await using broker = new Broker({
      authenticate: async (request) => {
        seen.push(`${request.method} ${request.clientId} ${request.data?.[0]}`);
        await pause(1);
        const round = (n: number): { data: Uint8Array; next(data?: Uint8Array): unknown } => ({
          data: new Uint8Array([n]),
          next: (data?: Uint8Array) => {
            seen.push(`answer ${data?.[0]}`);
            return n < 3 ? round(n + 1) : { data: new Uint8Array([99]) };
          },
        });
        return round(1) as never;
      },
    });
    const { client } = await connectKite(broker, {
      clientId: "rounds",
      protocolVersion: 5,
      auth: {
        method: "ROUNDS",
        start: () => ({
          data: new Uint8Array([7]),
          next: async (data) => {
            await pause(1);
            return new Uint8Array([data![0] * 10]);
          },
          done: (data) => assert.deepEqual(data, new Uint8Array([99])),
        }),
      },
    });
    assert.deepEqual(seen, ["ROUNDS rounds 7", "answer 10", "answer 20", "answer 30"]);
    await client.disconnect();
  });

  test("the hook is given the user name, password, client id and protocol version; false refuses (0x86 / 4), a code refuses with it", async () => {
    const requests: AuthenticationRequest[] = [];
    await using broker = new Broker({
      authenticate: (request) => {
        requests.push(request);
        if (request.clientId === "banned") return 0x8a;
        return request.username === "u" && str(request.password!) === "p";
      },
    });
    const { client } = await connectKite(broker, {
      clientId: "ok",
      protocolVersion: 4,
      username: "u",
      password: "p",
    });
    await client.disconnect();
    assert.equal(requests[0].clientId, "ok");
    assert.equal(requests[0].protocolVersion, 4);
    assert.equal(requests[0].reauthentication, false);
    for (
      const [version, clientId, code] of [
        [4, "bad", 4],
        [5, "bad", 0x86],
        [5, "banned", 0x8a],
        [4, "banned", 5],
      ] as const
    ) {
      const refused = new MqttClient(broker.connectClient());
      const error = await refusal(refused.connect({
        clientId,
        protocolVersion: version,
        keepalive: 0,
        username: "u",
        password: "x",
      }));
      assert.equal(error.reasonCode, code, `${clientId} v${version}`);
    }
  });

  test("3.1.1: packets sent right after CONNECT wait while an async hook decides, and are handled once it accepts", async () => {
    let accept!: (value: boolean) => void;
    await using broker = new Broker({
      authenticate: () => new Promise<boolean>((resolve) => accept = resolve),
    });
    const raw = new RawClient(broker, 4);
    await raw.send({
      type: "connect",
      protocolVersion: 4,
      clientId: "early",
      clean: true,
      keepalive: 0,
    });
    await raw.send({
      type: "subscribe",
      packetId: 1,
      subscriptions: [{ topicFilter: "a", qos: 0 }],
    });
    await pause(5);
    assert.deepEqual(raw.received, []);
    accept(true);
    assert.equal((await raw.expect("connack")).reasonCode, 0);
    assert.deepEqual((await raw.expect("suback")).reasonCodes, [0]);
    await raw.close();
  });

  test("v5: a packet other than AUTH before CONNACK from a client that named a method is refused with CONNACK 0x82 [MQTT-3.1.2-30]", async () => {
    await using broker = new Broker({ authenticate: () => ({ next: () => true }) });
    const raw = new RawClient(broker, 5);
    await raw.send({
      type: "connect",
      protocolVersion: 5,
      clientId: "eager",
      clean: true,
      keepalive: 0,
      properties: { authenticationMethod: "X" },
    });
    assert.equal((await raw.expect("auth")).reasonCode, 0x18);
    await raw.send({ type: "pingreq" });
    assert.equal((await raw.expect("connack")).reasonCode, 0x82);
    await raw.waitClosed();
  });

  test("v5: AUTH naming another method during re-authentication ends with DISCONNECT 0x8c [MQTT-4.12.1-1]", async () => {
    await using broker = new Broker({ authenticate: () => true });
    const raw = new RawClient(broker, 5);
    await raw.connect("m", { properties: { authenticationMethod: "X" } });
    await raw.send({ type: "auth", reasonCode: 0x19, properties: { authenticationMethod: "Y" } });
    assert.equal((await raw.expect("disconnect")).reasonCode, 0x8c);
    await raw.waitClosed();
  });

  test("without a hook, a CONNECT that names a method is refused with 0x8c, as before", async () => {
    await using broker = new Broker();
    const raw = new RawClient(broker, 5);
    const connack = await raw.connect("m", { properties: { authenticationMethod: "X" } });
    assert.equal(connack.reasonCode, 0x8c);
  });
});

describe("Broker - authorize hook", () => {
  const rule = (request: AuthorizationRequest): boolean =>
    !request.topic.startsWith("secret") || request.username === "admin";

  test("v5: a refused publish gets PUBACK / PUBREC 0x87 and reaches nobody; a refused filter SUBACK 0x87", async () => {
    await using broker = new Broker({ authorize: rule });
    const { client: admin, messages } = await connectKite(broker, {
      clientId: "admin",
      protocolVersion: 5,
      username: "admin",
    });
    await admin.subscribe("#", { qos: 2 });
    const { client } = await connectKite(broker, { clientId: "user", protocolVersion: 5 });
    for (const qos of [1, 2] as const) {
      await assert.rejects(
        client.publish("secret/x", "no", { qos }),
        (error: PublishError) => error instanceof PublishError && error.reasonCode === 0x87,
      );
    }
    await client.publish("secret/x", "dropped", { qos: 0 });
    await client.publish("open", "yes", { qos: 1 });
    await assert.rejects(
      client.subscribe("secret/#", { qos: 1 }),
      (error: SubscribeError) => error instanceof SubscribeError && error.reasonCodes[0] === 0x87,
    );
    await waitFor(() => messages.length === 1, "the allowed message");
    await pause(10);
    assert.deepEqual(messages.map((m) => m.topic), ["open"]);
    await client.disconnect();
    await admin.disconnect();
  });

  test("v3.1.1: a refused QoS 1 and 2 publish is acknowledged as usual and dropped [MQTT-3.3.5-2]; a refused filter gets SUBACK 0x80", async () => {
    const asked: AuthorizationRequest[] = [];
    await using broker = new Broker({
      authorize: (request) => {
        asked.push(request);
        return rule(request);
      },
    });
    const { client: admin, messages } = await connectKite(broker, {
      clientId: "admin",
      protocolVersion: 4,
      username: "admin",
    });
    await admin.subscribe("#", { qos: 2 });
    const { client } = await connectKite(broker, { clientId: "user", protocolVersion: 4 });
    await client.publish("secret/1", "no", { qos: 1 });
    await client.publish("secret/2", "no", { qos: 2 });
    await client.publish("open", "yes", { qos: 2 });
    await assert.rejects(
      client.subscribe("secret/#"),
      (error: SubscribeError) => error instanceof SubscribeError && error.reasonCodes[0] === 0x80,
    );
    await waitFor(() => messages.length === 1, "the allowed message");
    await pause(10);
    assert.deepEqual(messages.map((m) => m.topic), ["open"]);
    assert.ok(
      asked.some((r) =>
        r.action === "publish" && r.topic === "secret/2" && r.qos === 2 && r.clientId === "user"
      ),
    );
    await client.disconnect();
    await admin.disconnect();
  });

  test("a will on a refused topic refuses the CONNECT (0x87 / 5)", async () => {
    await using broker = new Broker({ authorize: rule });
    for (const [version, code] of [[5, 0x87], [4, 5]] as const) {
      const client = new MqttClient(broker.connectClient());
      const error = await refusal(client.connect({
        protocolVersion: version,
        keepalive: 0,
        will: { topic: "secret/will", payload: "x" },
      }));
      assert.equal(error.reasonCode, code);
    }
  });

  test("SCRAM's user is the identity authorize sees", async () => {
    await using broker = new Broker({
      authenticate: scramVerifier({ users: { admin: "pw" } }),
      authorize: rule,
    });
    const { client } = await connectKite(broker, {
      protocolVersion: 5,
      auth: scramSha256({ username: "admin", password: "pw" }),
    });
    await client.publish("secret/ok", "fine", { qos: 1 });
    await client.disconnect();
  });
});

const run = (command: string, args: string[]) => runToEnd(command, args, { timeoutMs: 10_000 });

// mosquitto's clients have no enhanced authentication (it needs a plugin on either side): they
// cross-check the user name and password path and authorization, on 3.1.1 and 5.
for (const [version, flag] of [[4, "mqttv311"], [5, "mqttv5"]] as const) {
  test(
    `Broker - cross-check: mosquitto_pub and mosquitto_sub against authenticate and authorize (${flag})`,
    { skip: mosquittoClientsSkipReason() },
    async () => {
      await using broker = new Broker({
        authenticate: scramVerifier({ users: { alice: "secret" } }),
        authorize: (request) => request.topic !== "forbidden",
      });
      const { port } = await broker.listen();
      const common = ["-h", "127.0.0.1", "-p", `${port}`, "-V", flag];
      const wrong = await run("mosquitto_pub", [
        ...common,
        "-u",
        "alice",
        "-P",
        "wrong",
        "-t",
        "t",
        "-m",
        "x",
      ]);
      assert.notEqual(wrong.code, 0);
      assert.match(wrong.stderr, /not authori[sz]ed|bad user ?name or password/i);
      const { client, messages } = await connectKite(broker, {
        protocolVersion: version,
        username: "alice",
        password: "secret",
      });
      await client.subscribe("#", { qos: 1 });
      for (const topic of ["forbidden", "allowed"]) {
        const pub = await run("mosquitto_pub", [
          ...common,
          "-u",
          "alice",
          "-P",
          "secret",
          "-t",
          topic,
          "-m",
          topic,
          "-q",
          "1",
        ]);
        assert.equal(pub.code, 0, topic);
      }
      await waitFor(() => messages.length === 1, "the allowed message");
      await pause(10);
      assert.deepEqual(messages.map((m) => str(m.payload)), ["allowed"]);
      // mosquitto_sub on a refused filter: 3.1.1 SUBACK 0x80 / v5 0x87; it says so and exits.
      const sub = await run("mosquitto_sub", [
        ...common,
        "-u",
        "alice",
        "-P",
        "secret",
        "-t",
        "forbidden",
        "-C",
        "1",
        "-W",
        "5",
      ]);
      assert.match(sub.stderr, /denied/i);
      await client.disconnect();
    },
  );
}
