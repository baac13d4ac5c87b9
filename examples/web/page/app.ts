/**
 * The web demo's page: a Kite client over `ws://` that subscribes to everything (`#`) and shows
 * the latest message of each topic, the message rate, the connection's state (reconnections
 * included) and the publishes in flight and queued, and publishes what the form says.
 *
 * `serve.ts` bundles this file, and Kite with it, into the one module the page loads. This folder
 * is a workspace member of its own (`deno.json` here) so that it is type-checked with the DOM's
 * types, and the rest of the repository without them.
 *
 * @module
 */

import {
  connect,
  type ConnectEventDetail,
  type DisconnectEventDetail,
  type Message,
  type MqttClient,
  type MqttError,
  type QoS,
  type ReconnectEventDetail,
} from "../../../mod.ts";
import { Rate, RateChart } from "./chart.ts";

/** What the server tells the page: where its broker is. */
interface Config {
  ws: string;
  mqtt: string;
}

/** One row of the topics table: the latest message of a topic. */
interface TopicRow {
  topic: string;
  payload: string;
  binary: boolean;
  qos: QoS;
  retain: boolean;
  count: number;
  /** When the latest message arrived (milliseconds since the epoch). */
  at: number;
  element: HTMLTableRowElement;
  cells: {
    payload: HTMLTableCellElement;
    qos: HTMLTableCellElement;
    count: HTMLTableCellElement;
    age: HTMLTableCellElement;
  };
}

const FRAME_MS = 100;
const FRESH_MS = 600;
const MAX_LOG = 60;
const PAYLOAD_CHARS = 160;

function element<T extends Element>(selector: string): T {
  const found = document.querySelector<T>(selector);
  if (found === null) throw new Error(`the page has no ${selector}`);
  return found;
}

const number = new Intl.NumberFormat("en");
const text = new TextDecoder("utf-8", { fatal: true });

const view = {
  state: element<HTMLElement>("#state"),
  stateText: element<HTMLElement>("#state span"),
  drop: element<HTMLButtonElement>("#drop"),
  wsUrl: element<HTMLElement>("#ws-url"),
  mqttUrl: element<HTMLElement>("#mqtt-url"),
  topics: element<HTMLTableSectionElement>("#topics"),
  chart: element<HTMLCanvasElement>("#chart"),
  form: element<HTMLFormElement>("#publish"),
  send: element<HTMLButtonElement>("#send"),
  result: element<HTMLElement>("#result"),
  log: element<HTMLOListElement>("#log"),
  stats: Object.fromEntries(
    [...document.querySelectorAll<HTMLElement>("[data-stat]")].map((node) => [
      node.dataset.stat!,
      node,
    ]),
  ),
};

const received = new Rate();
const sent = new Rate();
const chart = new RateChart(view.chart, [
  { rate: received, color: "#38bdf8", fill: true },
  { rate: sent, color: "#fbbf24", fill: false },
]);
const rows = new Map<string, TopicRow>();
const dirtyRows = new Set<TopicRow>();
const counts = { received: 0, sent: 0, reconnects: 0 };
let client: MqttClient | undefined;
let connectedSince: number | undefined;
let nextAttempt: { attempt: number; at: number } | undefined;

// ---- Showing it

function setStat(name: string, value: number, shown = number.format(value)): void {
  const node = view.stats[name];
  if (node === undefined || node.dataset.value === `${value}` && node.textContent === shown) return;
  node.dataset.value = `${value}`;
  node.textContent = shown;
}

function bytes(value: number): string {
  if (value < 1024) return `${value} B`;
  if (value < 1024 * 1024) return `${(value / 1024).toFixed(1)} kB`;
  return `${(value / 1024 / 1024).toFixed(1)} MB`;
}

function duration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor(seconds / 60) % 60} min`;
}

function log(kind: "ok" | "warn" | "bad" | "info", message: string): void {
  const item = document.createElement("li");
  item.className = kind;
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString("en-GB", { hour12: false });
  const body = document.createElement("span");
  body.textContent = message;
  item.append(time, body);
  view.log.prepend(item);
  while (view.log.children.length > MAX_LOG) view.log.lastElementChild!.remove();
}

/** A topic with its levels' separators dimmed. */
function topicCell(topic: string): HTMLTableCellElement {
  const cell = document.createElement("td");
  cell.className = "topic";
  cell.title = topic;
  topic.split("/").forEach((level, i) => {
    if (i > 0) {
      const separator = document.createElement("span");
      separator.className = "sep";
      separator.textContent = "/";
      cell.append(separator);
    }
    cell.append(level);
  });
  return cell;
}

function newRow(topic: string): TopicRow {
  const element = document.createElement("tr");
  const cell = (className: string) => {
    const td = document.createElement("td");
    td.className = className;
    return td;
  };
  const cells = {
    payload: cell("payload"),
    qos: cell("num"),
    count: cell("num"),
    age: cell("num age"),
  };
  element.append(topicCell(topic), cells.payload, cells.qos, cells.count, cells.age);
  const row: TopicRow = {
    topic,
    payload: "",
    binary: false,
    qos: 0,
    retain: false,
    count: 0,
    at: 0,
    element,
    cells,
  };
  // Rows stay sorted by topic, so that they do not jump about.
  view.topics.querySelector("tr.empty")?.remove();
  const after = [...rows.values()].filter((other) => other.topic > topic)
    .sort((a, b) => a.topic < b.topic ? -1 : 1)[0];
  view.topics.insertBefore(element, after?.element ?? null);
  rows.set(topic, row);
  return row;
}

function showRow(row: TopicRow): void {
  row.cells.payload.textContent = row.payload;
  row.cells.payload.title = row.payload;
  row.cells.payload.className = row.binary ? "payload binary" : "payload";
  const badge = document.createElement("span");
  badge.className = `badge q${row.qos}`;
  badge.textContent = `${row.qos}`;
  row.cells.qos.replaceChildren(badge);
  if (row.retain) {
    const retained = document.createElement("span");
    retained.className = "badge retained";
    retained.title = "retained";
    retained.textContent = "R";
    row.cells.qos.append(retained);
  }
  row.cells.count.textContent = number.format(row.count);
}

function showState(now: number): void {
  const state = client?.state ?? "connecting";
  let label: string;
  switch (state) {
    case "connected":
      label = `connected · MQTT ${client!.protocolVersion === 5 ? "5.0" : "3.1.1"}`;
      break;
    case "reconnecting":
      label = nextAttempt !== undefined && nextAttempt.at > now
        ? `reconnecting · attempt ${nextAttempt.attempt} in ${
          ((nextAttempt.at - now) / 1000).toFixed(1)
        } s`
        : "reconnecting…";
      break;
    case "idle":
    case "connecting":
      label = "connecting…";
      break;
    default:
      label = "disconnected";
  }
  const shown = state === "idle" ? "connecting" : state;
  if (view.state.dataset.state !== shown) view.state.dataset.state = shown;
  if (view.stateText.textContent !== label) view.stateText.textContent = label;
  view.drop.disabled = state !== "connected";
  view.send.disabled = client === undefined || state === "closed";
}

let lastFrame = 0;
function frame(): void {
  requestAnimationFrame(frame);
  const now = Date.now();
  if (now - lastFrame < FRAME_MS) return;
  lastFrame = now;

  showState(now);
  const pending = client?.pending ?? { inflight: 0, waiting: 0 };
  setStat("received", counts.received);
  setStat("rate", received.at(Math.floor(now / 1000) - 1));
  setStat("topics", rows.size);
  setStat("sent", counts.sent);
  setStat("inflight", pending.inflight);
  setStat("waiting", pending.waiting);
  const buffered = client?.bufferedAmount ?? 0;
  setStat("buffered", buffered, `${bytes(buffered)} buffered`);
  setStat("reconnects", counts.reconnects);
  view.stats.uptime.textContent = connectedSince === undefined || client?.state !== "connected"
    ? "not connected"
    : `up ${duration(now - connectedSince)}`;

  for (const row of dirtyRows) showRow(row);
  dirtyRows.clear();
  for (const row of rows.values()) {
    const age = now - row.at;
    const shown = age < 1000 ? "now" : duration(age);
    if (row.cells.age.textContent !== shown) row.cells.age.textContent = shown;
    row.element.classList.toggle("fresh", age < FRESH_MS);
  }
  view.chart.dataset.points = `${chart.draw(now)}`;
}

// ---- Receiving

function payloadText(payload: Uint8Array): { text: string; binary: boolean } {
  try {
    const decoded = text.decode(payload);
    return {
      text: decoded.length > PAYLOAD_CHARS ? `${decoded.slice(0, PAYLOAD_CHARS)}…` : decoded,
      binary: false,
    };
  } catch {
    const shown = [...payload.subarray(0, 48)].map((byte) => byte.toString(16).padStart(2, "0"));
    return {
      text: `${shown.join(" ")}${payload.length > 48 ? " …" : ""} (${payload.length} bytes)`,
      binary: true,
    };
  }
}

function onMessage(message: Message): void {
  const now = Date.now();
  counts.received++;
  received.add(now);
  const row = rows.get(message.topic) ?? newRow(message.topic);
  const { text, binary } = payloadText(message.payload);
  row.payload = text;
  row.binary = binary;
  row.qos = message.qos;
  row.retain = message.retain;
  row.count++;
  row.at = now;
  dirtyRows.add(row);
}

// ---- Connecting

function watch(client: MqttClient): void {
  client.addEventListener("connect", (event) => {
    const { sessionPresent, reconnected } = (event as CustomEvent<ConnectEventDetail>).detail;
    if (!reconnected) return;
    counts.reconnects++;
    connectedSince = Date.now();
    nextAttempt = undefined;
    log("ok", `reconnected; the broker ${sessionPresent ? "resumed" : "had lost"} the session`);
    announce(client);
  });
  // An "error" event comes just before the "disconnect" it explains: one line says both.
  let unexplained: MqttError | undefined;
  client.addEventListener("error", (event) => {
    const error = (event as CustomEvent<MqttError>).detail;
    unexplained = error;
    queueMicrotask(() => {
      if (unexplained === error) log("bad", error.message);
      unexplained = undefined;
    });
  });
  client.addEventListener("disconnect", (event) => {
    const { error, reconnecting } = (event as CustomEvent<DisconnectEventDetail>).detail;
    if (error === unexplained) unexplained = undefined;
    const why = error === undefined ? "" : `: ${error.message}`;
    log(reconnecting ? "warn" : "info", `connection lost${why}`);
  });
  client.addEventListener("reconnect", (event) => {
    const { attempt, delay } = (event as CustomEvent<ReconnectEventDetail>).detail;
    nextAttempt = { attempt, at: Date.now() + delay };
    log("warn", `reconnecting: attempt ${attempt} in ${(delay / 1000).toFixed(1)} s`);
  });
}

/** Says this page is here, on a topic of its own (its will says when it is gone). */
function announce(client: MqttClient): void {
  client.publish(`web/${client.clientId}/status`, "online", { qos: 1 }).catch(() => {});
}

async function start(): Promise<void> {
  const config: Config = await (await fetch("/config.json")).json();
  view.wsUrl.textContent = config.ws;
  view.mqttUrl.textContent = config.mqtt;
  const clientId = `web-${Math.random().toString(36).slice(2, 8)}`;
  for (let attempt = 1;; attempt++) {
    try {
      log("info", `connecting to ${config.ws} as ${clientId}`);
      client = await connect(config.ws, {
        clientId,
        protocolVersion: 5,
        // A session the broker keeps for two minutes: a cut connection resumes it, and the
        // QoS 1 and 2 messages published meanwhile arrive after the reconnection.
        clean: false,
        properties: { sessionExpiryInterval: 120 },
        will: { topic: `web/${clientId}/status`, payload: "gone (its will)", qos: 1 },
        reconnect: { minDelay: 500, maxDelay: 5000 },
      });
      break;
    } catch (error) {
      const delay = Math.min(1000 * attempt, 5000);
      log("bad", `${(error as Error).message}; trying again in ${delay / 1000} s`);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
  connectedSince = Date.now();
  log(
    "ok",
    `connected over WebSocket with MQTT 5, ${
      client.sessionPresent ? "resuming its session" : "in a new session"
    }`,
  );
  watch(client);
  // For the DevTools console: `await client.publish("web/hello", "hi", { qos: 1 })`.
  (globalThis as { client?: MqttClient }).client = client;
  client.setPublishHandler(onMessage);
  // Retain As Published: the R badge says how a message was published, also when it is live.
  const granted = await client.subscribe("#", { qos: 2, retainAsPublished: true });
  log("info", `subscribed to # (granted QoS ${granted})`);
  announce(client);
  document.body.dataset.ready = "true";
}

// ---- Publishing

function countSent(): void {
  counts.sent++;
  sent.add(Date.now());
}

async function publish(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  const publisher = client;
  if (publisher === undefined) return;
  const form = new FormData(view.form);
  const topic = String(form.get("topic") ?? "");
  const payload = String(form.get("payload") ?? "");
  const qos = Number(form.get("qos") ?? 0) as QoS;
  const retain = form.get("retain") !== null;
  const times = Math.max(1, Math.min(100_000, Math.floor(Number(form.get("times")) || 1)));
  view.result.className = "result";
  view.result.textContent = `publishing ${number.format(times)}…`;
  const started = performance.now();
  const results: Promise<void>[] = [];
  try {
    for (let i = 0; i < times; i++) {
      // Back-pressure: wait while the client holds more than its high-water mark.
      await publisher.ready();
      const body = times === 1 ? payload : `${payload} #${i + 1}`;
      results.push(publisher.publish(topic, body, { qos, retain }).then(countSent));
    }
  } catch (error) {
    results.push(Promise.reject(error));
  }
  const outcomes = await Promise.allSettled(results);
  const ms = Math.round(performance.now() - started);
  const failed = outcomes.filter((outcome) => outcome.status === "rejected");
  const done = qos === 0 ? "written" : "acknowledged";
  if (failed.length === 0) {
    view.result.className = "result ok";
    view.result.textContent = `✓ ${number.format(times)} ${
      times === 1 ? "message" : "messages"
    } to ${topic} at QoS ${qos}${retain ? ", retained," : ""} ${done} in ${ms} ms`;
  } else {
    const reason = (failed[0] as PromiseRejectedResult).reason;
    view.result.className = "result bad";
    view.result.textContent = `✗ ${number.format(failed.length)} of ${
      number.format(times)
    } failed: ${reason instanceof Error ? reason.message : reason}`;
  }
}

view.form.addEventListener("submit", (event) => void publish(event));
view.drop.addEventListener("click", async () => {
  if (client?.clientId === undefined) return;
  log("info", "asking the broker to cut this page's connection");
  const response = await fetch(`/drop?client=${encodeURIComponent(client.clientId)}`, {
    method: "POST",
  });
  if (!response.ok) log("bad", `the broker did not find this client (${response.status})`);
});

requestAnimationFrame(frame);
start().catch((error) => log("bad", `stopped: ${error instanceof Error ? error.message : error}`));
