/**
 * The flags of `kite pub`, `kite sub` and `kite broker`, parsed the way mosquitto_pub and
 * mosquitto_sub users expect where the two overlap.
 *
 * @module
 */

import type { ProtocolVersion, QoS } from "../packet/types.ts";
import { validateTopicFilter, validateTopicName } from "../packet/topic.ts";

/** The subcommands. */
export type Command = "pub" | "sub" | "broker";

/**
 * The command line is wrong: an unknown flag, a missing value, a missing topic. The CLI prints
 * its message as the one line on stderr and exits with status 2.
 *
 * @example
 * ```ts
 * import { UsageError } from "./args.ts";
 *
 * console.log(new UsageError("unknown option -x").message); // "unknown option -x"
 * ```
 */
export class UsageError extends Error {
  /** Creates the error; `message` says what is wrong with the command line. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Where the payload of `kite pub` comes from. */
export type MessageSource =
  | { kind: "text"; text: string }
  | { kind: "null" }
  | { kind: "lines" }
  | { kind: "stdin" };

/** The will, as given by the `--will-*` flags. */
export interface WillSettings {
  /** `--will-topic`. */
  topic: string;
  /** `--will-payload`; default empty. */
  payload: string;
  /** `--will-qos`; default 0. */
  qos: QoS;
  /** `--will-retain`. */
  retain: boolean;
}

/** How to reach and log in to the broker: the flags `pub` and `sub` share. */
export interface ConnectionSettings {
  /** `-h`; default `localhost`, as mosquitto's. */
  host: string;
  /** `-p`; default 1883, or 8883 with TLS. */
  port: number;
  /** Whether to use TLS: `-L mqtts://`, `--cafile`, `--cert`, `--tls-use-os-certs`. */
  tls: boolean;
  /** `-i`; default: a random id. */
  clientId?: string;
  /** `-V`; default 4 (MQTT 3.1.1). */
  protocolVersion: ProtocolVersion;
  /** `-k`; default 60. */
  keepalive: number;
  /** `-c` turns it off (sub only); default true. */
  clean: boolean;
  /** `-u`. */
  username?: string;
  /** `-P`. */
  password?: string;
  /** `--cafile`: a PEM file of trusted CA certificates. */
  cafile?: string;
  /** `--cert`: the client certificate, PEM. */
  cert?: string;
  /** `--key`: the client key, PEM. */
  key?: string;
  /** `--insecure`: do not verify the broker's certificate. */
  insecure: boolean;
  /** `--will-*`. */
  will?: WillSettings;
  /** `-d`: report the connection and subscriptions on stderr. */
  debug: boolean;
}

/** The settings of `kite pub`. */
export interface PubSettings extends ConnectionSettings {
  /** Discriminates the settings. */
  command: "pub";
  /** `-t`. */
  topic: string;
  /** `-m`, `-n`, `-l` or `-s`. */
  message: MessageSource;
  /** `-q`; default 0. */
  qos: QoS;
  /** `-r`. */
  retain: boolean;
}

/** The settings of `kite sub`. */
export interface SubSettings extends ConnectionSettings {
  /** Discriminates the settings. */
  command: "sub";
  /** Every `-t`, and the topic of `-L`. */
  topics: string[];
  /** `-q`; default 0. */
  qos: QoS;
  /** `-C`: exit after this many messages. */
  count?: number;
  /** `-v`: print `topic payload`. */
  verbose: boolean;
}

/** The settings of `kite broker`. */
export interface BrokerSettings {
  /** Discriminates the settings. */
  command: "broker";
  /** `-h`; default `127.0.0.1`. */
  host: string;
  /** `-p`; default 1883; 0 picks a free port. */
  port: number;
}

/** What a command line asks for: a command's settings, or its help. */
export type Settings = PubSettings | SubSettings | BrokerSettings | {
  command: Command;
  help: true;
};

/** The flags as they are read: the connection's, with what is still open, and the rest. */
type Draft = Omit<ConnectionSettings, "host" | "port" | "will"> & {
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

interface Flag {
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
    apply: (d, v, n) => d.port = integer(n, v, 0, 65535),
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

const BY_NAME: ReadonlyMap<string, Flag> = new Map(
  FLAGS.flatMap((flag) => flag.names.map((name) => [name, flag] as const)),
);

/**
 * Parses the flags that follow a subcommand.
 *
 * @param command The subcommand.
 * @param args The flags after it.
 * @param env The environment: `MQTT_URL` (as `-L`, but without its topic) gives the broker
 * when no flag does.
 * @returns The settings, or `{ help: true }` for `--help`.
 * @throws {UsageError} When the flags are wrong or incomplete.
 *
 * @example
 * ```ts
 * import { parseArgs } from "./args.ts";
 *
 * const settings = parseArgs("sub", ["-t", "a/#", "-v", "-C", "1"], {});
 * console.log(settings); // { command: "sub", topics: ["a/#"], verbose: true, count: 1, ... }
 * ```
 */
export function parseArgs(
  command: Command,
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Settings {
  const draft: Draft = {
    tls: false,
    protocolVersion: 4,
    keepalive: 60,
    clean: true,
    insecure: false,
    willRetain: false,
    debug: false,
    topics: [],
    messages: [],
    qos: 0,
    retain: false,
    verbose: false,
  };
  const mqttUrl = env.MQTT_URL;
  if (command !== "broker" && mqttUrl !== undefined && mqttUrl !== "") {
    applyUrl(draft, mqttUrl, "MQTT_URL", false);
  }
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--help") return { command, help: true };
    let name = arg;
    let inline: string | undefined;
    const equals = arg.indexOf("=");
    if (arg.startsWith("--") && equals > 2) {
      name = arg.slice(0, equals);
      inline = arg.slice(equals + 1);
    }
    const flag = BY_NAME.get(name);
    if (flag === undefined || !flag.commands.includes(command)) {
      throw new UsageError(
        arg.startsWith("-") ? `unknown option ${name}` : `unexpected argument "${arg}"`,
      );
    }
    let value = "";
    if (flag.value) {
      if (inline !== undefined) {
        value = inline;
      } else if (i + 1 < args.length) {
        value = args[++i];
      } else {
        throw new UsageError(`${name} needs a value`);
      }
    } else if (inline !== undefined) {
      throw new UsageError(`${name} takes no value`);
    }
    flag.apply(draft, value, name);
  }
  if (command === "broker") {
    return { command, host: draft.host ?? "127.0.0.1", port: draft.port ?? 1883 };
  }
  const connection = finishConnection(draft);
  if (command === "pub") {
    if (draft.topics.length === 0) throw new UsageError("no topic given; use -t topic");
    if (draft.topics.length > 1) throw new UsageError("pub takes a single topic (-t)");
    const topic = draft.topics[0];
    const problem = topicNameProblemOf(topic);
    if (problem !== undefined) throw new UsageError(problem);
    if (draft.messages.length === 0) {
      throw new UsageError("no message given; use -m message, -n, -l or -s");
    }
    if (draft.messages.length > 1) {
      const flags = draft.messages.map((message) => message.flag).join(", ");
      throw new UsageError(`give only one of -m, -n, -l and -s (got ${flags})`);
    }
    return {
      command,
      ...connection,
      topic,
      message: draft.messages[0].source,
      qos: draft.qos,
      retain: draft.retain,
    };
  }
  if (draft.topics.length === 0) throw new UsageError("no topic given; use -t topic");
  for (const topic of draft.topics) {
    const problem = topicFilterProblemOf(topic);
    if (problem !== undefined) throw new UsageError(problem);
  }
  if (!draft.clean && draft.clientId === undefined) {
    throw new UsageError("-c needs a client id (-i) so the broker can find the session again");
  }
  return {
    command,
    ...connection,
    topics: draft.topics,
    qos: draft.qos,
    count: draft.count,
    verbose: draft.verbose,
  };
}

function finishConnection(draft: Draft): ConnectionSettings {
  if ((draft.cert === undefined) !== (draft.key === undefined)) {
    throw new UsageError("--cert and --key go together");
  }
  if (draft.password !== undefined && draft.username === undefined && draft.protocolVersion < 5) {
    throw new UsageError("a password (-P) needs a username (-u) before MQTT 5");
  }
  const willGiven = draft.willPayload !== undefined || draft.willQos !== undefined ||
    draft.willRetain;
  if (willGiven && draft.willTopic === undefined) {
    throw new UsageError("--will-payload, --will-qos and --will-retain need --will-topic");
  }
  if (draft.willTopic !== undefined) {
    const problem = topicNameProblemOf(draft.willTopic);
    if (problem !== undefined) {
      throw new UsageError(`--will-topic: ${problem}`);
    }
  }
  return {
    host: draft.host ?? "localhost",
    port: draft.port ?? (draft.tls ? 8883 : 1883),
    tls: draft.tls,
    clientId: draft.clientId,
    protocolVersion: draft.protocolVersion,
    keepalive: draft.keepalive,
    clean: draft.clean,
    username: draft.username,
    password: draft.password,
    cafile: draft.cafile,
    cert: draft.cert,
    key: draft.key,
    insecure: draft.insecure,
    will: draft.willTopic === undefined ? undefined : {
      topic: draft.willTopic,
      payload: draft.willPayload ?? "",
      qos: draft.willQos ?? 0,
      retain: draft.willRetain,
    },
    debug: draft.debug,
  };
}

/** `-L mqtt[s]://[user[:password]@]host[:port]/topic`, as mosquitto reads it. */
function applyUrl(draft: Draft, text: string, name: string, withTopic = true): void {
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

function topicNameProblemOf(topic: string): string | undefined {
  return problemOf(() => validateTopicName(topic));
}

function topicFilterProblemOf(filter: string): string | undefined {
  return problemOf(() => validateTopicFilter(filter));
}

function problemOf(validate: () => void): string | undefined {
  try {
    validate();
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

function integer(name: string, text: string, min: number, max: number): number {
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(value >= min && value <= max)) {
    throw new UsageError(`${name} needs a whole number from ${min} to ${max}, not "${text}"`);
  }
  return value;
}

function qos(name: string, text: string): QoS {
  if (text === "0" || text === "1" || text === "2") return Number(text) as QoS;
  throw new UsageError(`${name} needs a QoS of 0, 1 or 2, not "${text}"`);
}

function protocolVersion(name: string, text: string): ProtocolVersion {
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
