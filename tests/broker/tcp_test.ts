import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { test } from "node:test";
import { Broker } from "../../src/broker/mod.ts";
import { Clients } from "../helpers/clients.ts";
import type { Message } from "../../src/client/types.ts";
import type { QoS } from "../../src/packet/types.ts";
import { mosquittoClientsSkipReason } from "../helpers/mosquitto.ts";
import { pause, str, versionName, VERSIONS, waitFor } from "./helpers.ts";

for (const version of VERSIONS) {
  test(`Broker - ${versionName(version)} over TCP: QoS 0, 1 and 2 and retained`, async () => {
    await using broker = new Broker();
    const { port } = await broker.listen({ port: 0, hostname: "127.0.0.1" });
    assert.ok(port > 0);
    const url = `mqtt://127.0.0.1:${port}`;
    await using clients = new Clients();
    const sub = await clients.connect(url, {
      clientId: "tcp-sub",
      protocolVersion: version,
      reconnect: false,
    });
    const messages: Message[] = [];
    sub.setPublishHandler((message) => {
      messages.push({ ...message, payload: message.payload.slice() });
    });
    await sub.subscribe("tcp/#", { qos: 2 });
    const pub = await clients.connect(url, {
      clientId: "tcp-pub",
      protocolVersion: version,
      reconnect: false,
    });
    for (const qos of [0, 1, 2] as QoS[]) await pub.publish(`tcp/${qos}`, `q${qos}`, { qos });
    await pub.publish("tcp/kept", "retained", { qos: 1, retain: true });
    await waitFor(() => messages.length === 4, "four messages");
    assert.deepEqual(messages.map((m) => [m.topic, str(m.payload), m.qos]), [
      ["tcp/0", "q0", 0],
      ["tcp/1", "q1", 1],
      ["tcp/2", "q2", 2],
      ["tcp/kept", "retained", 1],
    ]);
    const late = await clients.connect(url, {
      clientId: "tcp-late",
      protocolVersion: version,
      reconnect: false,
    });
    const lateMessages: Message[] = [];
    late.setPublishHandler((message) => {
      lateMessages.push(message);
    });
    await late.subscribe("tcp/#", { qos: 1 });
    await waitFor(() => lateMessages.length === 1, "the retained message");
    assert.equal(lateMessages[0].retain, true);
  });
}

test("Broker - over TCP: dropClient publishes the will and close() ends connections", async () => {
  await using broker = new Broker();
  const { port } = await broker.listen();
  const url = `mqtt://127.0.0.1:${port}`;
  await using clients = new Clients();
  const watcher = await clients.connect(url, { clientId: "watcher", reconnect: false });
  const wills: Message[] = [];
  watcher.setPublishHandler((message) => {
    wills.push(message);
  });
  await watcher.subscribe("will/#", { qos: 1 });
  const dying = await clients.connect(url, {
    clientId: "dying",
    reconnect: false,
    will: { topic: "will/dying", payload: "lost", qos: 1 },
  });
  dying.addEventListener("error", () => {});
  assert.equal(broker.dropClient("dying"), true);
  await waitFor(() => wills.length === 1, "the will");
  await waitFor(() => dying.state === "closed", "the dropped client to notice");
  watcher.addEventListener("error", () => {});
  await broker.close();
  await waitFor(() => watcher.state === "closed", "the watcher to notice the close");
});

test("Broker - a malformed packet over TCP closes only that socket", async () => {
  await using broker = new Broker();
  const { port } = await broker.listen();
  const url = `mqtt://127.0.0.1:${port}`;
  await using clients = new Clients();
  const good = await clients.connect(url, { clientId: "good", reconnect: false });
  const got: Message[] = [];
  good.setPublishHandler((message) => {
    got.push(message);
  });
  await good.subscribe("t", { qos: 1 });
  const net = await import("node:net");
  const socket = net.connect({ port, host: "127.0.0.1" });
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  socket.on("error", () => {});
  socket.resume();
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  socket.write(new Uint8Array([0x10, 0x0d, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 0, 0, 1, 0x78]));
  socket.write(new Uint8Array([0x00, 0x00]));
  await closed;
  await good.publish("t", "still here", { qos: 1 });
  await waitFor(() => got.length === 1, "the message");
});

/** Runs a command; resolves with its exit code and output. */
function run(
  command: string,
  args: string[],
): { done: Promise<{ code: number | null; stdout: string }>; kill(signal?: "SIGKILL"): void } {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  child.stdout.on("data", (chunk: Uint8Array) => stdout += new TextDecoder().decode(chunk));
  return {
    done: new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout }))),
    kill: (signal) => child.kill(signal),
  };
}

const clientsSkip = mosquittoClientsSkipReason();

for (const [version, flag] of [[4, "mqttv311"], [5, "mqttv5"], [3, "mqttv31"]] as const) {
  test(
    `Broker - cross-check: mosquitto_sub and mosquitto_pub ${versionName(version)}`,
    { skip: clientsSkip },
    async () => {
      await using broker = new Broker();
      const { port } = await broker.listen();
      const common = ["-h", "127.0.0.1", "-p", `${port}`, "-V", flag];
      const sub = run("mosquitto_sub", [
        ...common,
        "-i",
        "msub",
        "-t",
        "x/#",
        "-q",
        "2",
        "-v",
        "-C",
        "3",
      ]);
      await waitFor(
        () => broker.sessions().some((s) => s.clientId === "msub" && s.subscriptions.length === 1),
        "mosquitto_sub to subscribe",
      );
      for (const qos of ["0", "1", "2"]) {
        const pub = run("mosquitto_pub", [
          ...common,
          "-i",
          `mpub${qos}`,
          "-t",
          `x/${qos}`,
          "-m",
          `m${qos}`,
          "-q",
          qos,
        ]);
        assert.equal((await pub.done).code, 0);
      }
      const result = await sub.done;
      assert.equal(result.code, 0);
      assert.deepEqual(result.stdout.trim().split("\n"), ["x/0 m0", "x/1 m1", "x/2 m2"]);
      // A retained message from Kite reaches a later mosquitto_sub.
      await using clients = new Clients();
      const kite = await clients.connect(`mqtt://127.0.0.1:${port}`, {
        clientId: "kite",
        protocolVersion: version,
        reconnect: false,
      });
      await kite.publish("x/kept", "from kite", { qos: 1, retain: true });
      const later = run("mosquitto_sub", [
        ...common,
        "-i",
        "later",
        "-t",
        "x/kept",
        "-v",
        "-C",
        "1",
      ]);
      const retained = await later.done;
      assert.equal(retained.stdout.trim(), "x/kept from kite");
      await kite.disconnect();
      await pause(10);
    },
  );
}

for (const [version, flag] of [[4, "mqttv311"], [5, "mqttv5"]] as const) {
  test(
    `Broker - cross-check: mosquitto_sub -c gets what was queued while away (${
      versionName(version)
    })`,
    { skip: clientsSkip },
    async () => {
      await using broker = new Broker();
      const { port } = await broker.listen();
      const common = ["-h", "127.0.0.1", "-p", `${port}`, "-V", flag, "-i", "persist", "-c"];
      // MQTT 5 needs a Session Expiry Interval for the session to outlive the connection.
      const expiry = version === 5 ? ["-x", "600"] : [];
      const first = run("mosquitto_sub", [...common, ...expiry, "-t", "q/#", "-q", "1", "-E"]);
      assert.equal((await first.done).code, 0);
      await using clients = new Clients();
      const kite = await clients.connect(`mqtt://127.0.0.1:${port}`, {
        clientId: "kite",
        protocolVersion: version,
        reconnect: false,
      });
      await kite.publish("q/1", "first", { qos: 1 });
      await kite.publish("q/2", "second", { qos: 1 });
      await pause(10);
      assert.equal(broker.sessions().find((s) => s.clientId === "persist")?.queued, 2);
      const second = run("mosquitto_sub", [
        ...common,
        ...expiry,
        "-t",
        "q/#",
        "-q",
        "1",
        "-v",
        "-C",
        "2",
      ]);
      const result = await second.done;
      assert.equal(result.code, 0);
      assert.deepEqual(result.stdout.trim().split("\n"), ["q/1 first", "q/2 second"]);
    },
  );
}

test(
  "Broker - cross-check: a killed mosquitto_sub's will reaches a Kite subscriber",
  { skip: clientsSkip },
  async () => {
    await using broker = new Broker();
    const { port } = await broker.listen();
    await using clients = new Clients();
    const kite = await clients.connect(`mqtt://127.0.0.1:${port}`, {
      clientId: "kite",
      reconnect: false,
    });
    const wills: Message[] = [];
    kite.setPublishHandler((message) => {
      wills.push({ ...message, payload: message.payload.slice() });
    });
    await kite.subscribe("will/#", { qos: 1 });
    const doomed = run("mosquitto_sub", [
      ...["-h", "127.0.0.1", "-p", `${port}`, "-i", "doomed", "-t", "nothing"],
      ...["--will-topic", "will/doomed", "--will-payload", "killed", "--will-qos", "1"],
    ]);
    await waitFor(
      () => broker.sessions().some((s) => s.clientId === "doomed" && s.subscriptions.length === 1),
      "mosquitto_sub to subscribe",
    );
    doomed.kill("SIGKILL");
    await doomed.done;
    await waitFor(() => wills.length === 1, "the will");
    assert.equal(wills[0].topic, "will/doomed");
    assert.equal(str(wills[0].payload), "killed");
  },
);
