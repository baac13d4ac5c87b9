/**
 * The table of flags, each with its spellings, the commands that take it and how it changes the
 * draft of the settings; and the readers of their values (numbers, QoS, protocol versions, URLs).
 *
 * @module
 */

import type { ProtocolVersion, QoS } from "../packet/types.ts";
import {
  type Command,
  type ConnectionSettings,
  type MessageSource,
  UsageError,
} from "./settings.ts";

/** The flags as they are read: the connection's, with what is still open, and the rest. */
export type Draft = Omit<ConnectionSettings, "host" | "port" | "will"> & {
  command: Command;
  host?: string;
  port?: number;
  willTopic?: string;
  willPayload?: string;
  willQos?: QoS;
  willRetain: boolean;
  topics: string[];
  messages: { flag: string; source: MessageSource }[];
  qos: QoS;
  retain: boolean;
  count?: number;
  verbose: boolean;
};

export interface Flag {
  /** Every spelling: the short one first. */
  names: string[];
  /** Whether the flag takes a value. */
  value: boolean;
  /** The commands that accept it. */
  commands: readonly Command[];
  apply(draft: Draft, value: string, name: string): void;
}

const CLIENTS = ["pub", "sub"] as const;
const ALL = ["pub", "sub", "broker"] as const;

const FLAGS: readonly Flag[] = [
  {
    names: ["-h", "--host"],
    value: true,
    commands: ALL,
    apply: (d, v) => d.host = v,
  },
  {
    names: ["-p", "--port"],
    value: true,
    commands: ALL,
    // A client dials a port from 1 to 65535; `kite broker -p 0` listens on a free one.
    apply: (d, v, n) => d.port = integer(n, v, d.command === "broker" ? 0 : 1, 65535),
  },
  {
    names: ["-t", "--topic"],
    value: true,
    commands: CLIENTS,
    apply: (d, v) => d.topics.push(v),
  },
  {
    names: ["-m", "--message"],
    value: true,
    commands: ["pub"],
    apply: (d, v, n) => d.messages.push({ flag: n, source: { kind: "text", text: v } }),
  },
  {
    names: ["-n", "--null-message"],
    value: false,
    commands: ["pub"],
    apply: (d, _, n) => d.messages.push({ flag: n, source: { kind: "null" } }),
  },
  {
    names: ["-l", "--stdin-line"],
    value: false,
    commands: ["pub"],
    apply: (d, _, n) => d.messages.push({ flag: n, source: { kind: "lines" } }),
  },
  {
    names: ["-s", "--stdin-file"],
    value: false,
    commands: ["pub"],
    apply: (d, _, n) => d.messages.push({ flag: n, source: { kind: "stdin" } }),
  },
  {
    names: ["-q", "--qos"],
    value: true,
    commands: CLIENTS,
    apply: (d, v, n) => d.qos = qos(n, v),
  },
  {
    names: ["-r", "--retain"],
    value: false,
    commands: ["pub"],
    apply: (d) => d.retain = true,
  },
  {
    names: ["-i", "--id"],
    value: true,
    commands: CLIENTS,
    apply: (d, v) => d.clientId = v,
  },
  {
    names: ["-u", "--username"],
    value: true,
    commands: CLIENTS,
    apply: (d, v) => d.username = v,
  },
  {
    names: ["-P", "--pw"],
    value: true,
    commands: CLIENTS,
    apply: (d, v) => d.password = v,
  },
  {
    names: ["-V", "--protocol-version"],
    value: true,
    commands: CLIENTS,
    apply: (d, v, n) => d.protocolVersion = protocolVersion(n, v),
  },
  {
    names: ["-k", "--keepalive"],
    value: true,
    commands: CLIENTS,
    apply: (d, v, n) => d.keepalive = integer(n, v, 0, 65535),
  },
  {
    names: ["-c", "--disable-clean-session"],
    value: false,
    commands: ["sub"],
    apply: (d) => d.clean = false,
  },
  {
    names: ["-C", "--count"],
    value: true,
    commands: ["sub"],
    apply: (d, v, n) => d.count = integer(n, v, 1, Number.MAX_SAFE_INTEGER),
  },
  {
    names: ["-v", "--verbose"],
    value: false,
    commands: ["sub"],
    apply: (d) => d.verbose = true,
  },
  {
    names: ["-d", "--debug"],
    value: false,
    commands: CLIENTS,
    apply: (d) => d.debug = true,
  },
  {
    names: ["-L", "--url"],
    value: true,
    commands: CLIENTS,
    apply: (d, v, n) => applyUrl(d, v, n),
  },
  {
    names: ["--cafile"],
    value: true,
    commands: CLIENTS,
    apply: (d, v) => {
      d.cafile = v;
      d.tls = true;
    },
  },
  {
    names: ["--cert"],
    value: true,
    commands: CLIENTS,
    apply: (d, v) => {
      d.cert = v;
      d.tls = true;
    },
  },
  {
    names: ["--key"],
    value: true,
    commands: CLIENTS,
    apply: (d, v) => d.key = v,
  },
  {
    names: ["--tls-use-os-certs"],
    value: false,
    commands: CLIENTS,
    apply: (d) => d.tls = true,
  },
  {
    names: ["--insecure"],
    value: false,
    commands: CLIENTS,
    apply: (d) => d.insecure = true,
  },
  {
    names: ["--will-topic"],
    value: true,
    commands: CLIENTS,
    apply: (d, v) => d.willTopic = v,
  },
  {
    names: ["--will-payload"],
    value: true,
    commands: CLIENTS,
    apply: (d, v) => d.willPayload = v,
  },
  {
    names: ["--will-qos"],
    value: true,
    commands: CLIENTS,
    apply: (d, v, n) => d.willQos = qos(n, v),
  },
  {
    names: ["--will-retain"],
    value: false,
    commands: CLIENTS,
    apply: (d) => d.willRetain = true,
  },
];

export const BY_NAME: ReadonlyMap<string, Flag> = new Map(
  FLAGS.flatMap((flag) => flag.names.map((name) => [name, flag] as const)),
);

/**
 * Reads the command line `args` flag by flag, in order, into `draft`: `-x value`, `--name value`
 * or `--name=value`. An argument `find` knows no flag for (unknown, or not for this command) is a
 * `UsageError`, as is a missing value or a value given to a switch.
 *
 * @returns `true` when `--help` came (what follows it is not read).
 */
export function readFlags<D>(
  args: readonly string[],
  draft: D,
  find: (name: string) => CommandLineFlag<D> | undefined,
): boolean {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--help") return true;
    let name = arg;
    let inline: string | undefined;
    const equals = arg.indexOf("=");
    if (arg.startsWith("--") && equals > 2) {
      name = arg.slice(0, equals);
      inline = arg.slice(equals + 1);
    }
    const flag = find(name);
    if (flag === undefined) {
      throw new UsageError(
        arg.startsWith("-") ? `unknown option ${name}` : `unexpected argument "${arg}"`,
      );
    }
    let value = "";
    if (flag.value !== undefined && flag.value !== false) {
      if (inline !== undefined) value = inline;
      else if (i + 1 < args.length) value = args[++i];
      else throw new UsageError(`${name} needs a value`);
    } else if (inline !== undefined) {
      throw new UsageError(`${name} takes no value`);
    }
    flag.apply(draft, value, name);
  }
  return false;
}

/** What {@linkcode readFlags} needs of a flag. */
export interface CommandLineFlag<D> {
  /** Whether it takes a value: `true` or a placeholder for the help; absent or `false`: a switch. */
  value?: boolean | string;
  apply(draft: D, value: string, name: string): void;
}

/**
 * An `mqtt:` or `mqtts:` URL given as `name` (`-L`, `MQTT_URL`), with a host and no port 0; else
 * the `UsageError` that says what is wrong with it.
 */
export function mqttUrl(text: string, name: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`${name} is not a URL: "${text}"`);
  }
  if (url.protocol !== "mqtt:" && url.protocol !== "mqtts:") {
    throw new UsageError(`${name} must be an mqtt:// or mqtts:// URL, not "${url.protocol}//"`);
  }
  if (url.hostname === "") throw new UsageError(`${name} names no host: "${text}"`);
  if (url.port === "0") throw new UsageError(`${name} needs a port from 1 to 65535, not 0`);
  return url;
}

/** A host as it goes in a URL: an IPv6 address in brackets. */
export function hostPart(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/** `-L mqtt[s]://[user[:password]@]host[:port]/topic`, as mosquitto reads it. */
export function applyUrl(draft: Draft, text: string, name: string, withTopic = true): void {
  const url = mqttUrl(text, name);
  draft.tls = url.protocol === "mqtts:";
  draft.host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  draft.port = url.port === "" ? undefined : Number(url.port);
  if (url.username !== "") draft.username = decodeURIComponent(url.username);
  if (url.password !== "") draft.password = decodeURIComponent(url.password);
  if (withTopic) {
    const topic = decodeURIComponent(url.pathname.slice(1));
    if (topic !== "") draft.topics.push(topic);
  }
}

/** Reads a whole number from `min` to `max`, or throws the `UsageError` that names the flag. */
export function integer(name: string, text: string, min: number, max: number): number {
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(value >= min && value <= max)) {
    throw new UsageError(`${name} needs a whole number from ${min} to ${max}, not "${text}"`);
  }
  return value;
}

/** Reads a QoS, or throws the `UsageError` that names the flag. */
export function qos(name: string, text: string): QoS {
  if (text === "0" || text === "1" || text === "2") return Number(text) as QoS;
  throw new UsageError(`${name} needs a QoS of 0, 1 or 2, not "${text}"`);
}

/** Reads a protocol version, or throws the `UsageError` that names the flag. */
export function protocolVersion(name: string, text: string): ProtocolVersion {
  switch (text) {
    case "mqttv31":
    case "31":
      return 3;
    case "mqttv311":
    case "311":
      return 4;
    case "mqttv5":
    case "5":
      return 5;
  }
  throw new UsageError(`${name} needs mqttv31, mqttv311 or mqttv5 (or 31, 311, 5), not "${text}"`);
}
