/**
 * The flags of `kite bench conn|pub|sub`, in one table that parses them and writes the help, in
 * the manner of emqtt-bench where it does not clash with `kite pub` and `kite sub`.
 *
 * @module
 */

import type { ProtocolVersion } from "../packet/types.ts";
import { validateTopicFilter, validateTopicName } from "../packet/topic.ts";
import { hostPart, integer, mqttUrl, protocolVersion, qos, readFlags } from "./flags.ts";
import { type BenchMode, type BenchSettings, UsageError } from "./settings.ts";

/** The modes of `kite bench`, with what each does, for the help. */
export const BENCH_MODES: Readonly<Record<BenchMode, string>> = {
  conn: "open -c connections and hold them, with keepalive, until Ctrl-C or --duration",
  pub: "run -c publishers, each sending -s byte messages to -t every -I ms",
  sub: "run -c subscribers on -t; count messages, measure end-to-end latency",
};

type Draft = Omit<BenchSettings, "urls" | "prefix"> & {
  hosts: string[];
  port?: number;
  urls: string[];
  tls: boolean;
  prefix?: string;
  topicGiven: boolean;
};

interface BenchFlag {
  /** Every spelling: the short one first. */
  names: string[];
  /** The value's placeholder in the help; absent for a switch. */
  value?: string;
  /** The modes that take it. */
  modes: readonly BenchMode[];
  /** One line of help. */
  help: string;
  apply(draft: Draft, value: string, name: string): void;
}

const ALL = ["conn", "pub", "sub"] as const;
const MESSAGES = ["pub", "sub"] as const;
const MAX = Number.MAX_SAFE_INTEGER;

const FLAGS: readonly BenchFlag[] = [
  {
    names: ["-h", "--host"],
    value: "HOST[,HOST...]",
    modes: ALL,
    help: "broker host(s), taken in turn (default localhost)",
    apply: (d, v, n) => d.hosts = list(n, v),
  },
  {
    names: ["-p", "--port"],
    value: "PORT",
    modes: ALL,
    help: "broker port (default 1883, 8883 with TLS)",
    apply: (d, v, n) => d.port = integer(n, v, 1, 65535),
  },
  {
    names: ["-L", "--url"],
    value: "URL",
    modes: ALL,
    help: "mqtt[s]://[user[:password]@]host[:port]; repeat for more brokers, taken in turn",
    apply: (d, v, n) => applyUrl(d, v, n),
  },
  {
    names: ["-c", "--count"],
    value: "N",
    modes: ALL,
    help: "how many clients (default 1)",
    apply: (d, v, n) => d.clients = integer(n, v, 1, 10_000_000),
  },
  {
    names: ["-R", "--conn-rate"],
    value: "N",
    modes: ALL,
    help: "start at most N connections a second (default: no pacing)",
    apply: (d, v, n) => d.connectInterval = 1000 / positive(n, v),
  },
  {
    names: ["-i", "--interval"],
    value: "MS",
    modes: ALL,
    help: "wait MS milliseconds between the start of one connection and the next",
    apply: (d, v, n) => d.connectInterval = nonNegative(n, v),
  },
  {
    names: ["--max-connecting"],
    value: "N",
    modes: ALL,
    help: "connection attempts under way at once, at most (default 100)",
    apply: (d, v, n) => d.maxConnecting = integer(n, v, 1, MAX),
  },
  {
    names: ["--connect-timeout"],
    value: "SECONDS",
    modes: ALL,
    help: "give up a connection attempt after this long (default 30)",
    apply: (d, v, n) => d.connectTimeout = positive(n, v) * 1000,
  },
  {
    names: ["--ifaddr"],
    value: "ADDR[,ADDR...]",
    modes: ALL,
    help: "connect from these local addresses, in turn (e.g. 127.0.0.1,127.0.0.2)",
    apply: (d, v, n) => d.localAddresses = list(n, v),
  },
  {
    names: ["-k", "--keepalive"],
    value: "SECONDS",
    modes: ALL,
    help: "keepalive (default 60, 0 turns it off)",
    apply: (d, v, n) => d.keepalive = integer(n, v, 0, 65535),
  },
  {
    names: ["-V", "--protocol-version"],
    value: "V",
    modes: ALL,
    help: "3 (MQTT 3.1), 4 (3.1.1, default) or 5; also mqttv31, mqttv311, mqttv5",
    apply: (d, v, n) => d.protocolVersion = version(n, v),
  },
  {
    names: ["--prefix"],
    value: "PREFIX",
    modes: ALL,
    help: "client ids are PREFIX-1, PREFIX-2, ... (default kite-MODE-RANDOM)",
    apply: (d, v) => d.prefix = v,
  },
  {
    names: ["-u", "--username"],
    value: "USER",
    modes: ALL,
    help: "user name",
    apply: (d, v) => d.username = v,
  },
  {
    names: ["-P", "--pw"],
    value: "PASSWORD",
    modes: ALL,
    help: "password",
    apply: (d, v) => d.password = v,
  },
  {
    names: ["--cafile"],
    value: "FILE",
    modes: ALL,
    help: "trust the CA certificates in FILE (PEM); turns TLS on",
    apply: (d, v) => {
      d.cafile = v;
      d.tls = true;
    },
  },
  {
    names: ["--cert"],
    value: "FILE",
    modes: ALL,
    help: "client certificate (PEM), with --key; turns TLS on",
    apply: (d, v) => {
      d.cert = v;
      d.tls = true;
    },
  },
  {
    names: ["--key"],
    value: "FILE",
    modes: ALL,
    help: "the client certificate's key (PEM)",
    apply: (d, v) => d.key = v,
  },
  {
    names: ["--insecure"],
    modes: ALL,
    help: "do not verify the broker's certificate",
    apply: (d) => d.insecure = true,
  },
  {
    names: ["--duration"],
    value: "SECONDS",
    modes: ALL,
    help: "stop after this long (default: at Ctrl-C, or once --limit is reached)",
    apply: (d, v, n) => d.duration = positive(n, v) * 1000,
  },
  {
    names: ["-t", "--topic"],
    value: "TOPIC",
    modes: MESSAGES,
    help: "topic (pub) or filter (sub); %i is the client number, %c the client id",
    apply: (d, v) => {
      d.topic = v;
      d.topicGiven = true;
    },
  },
  {
    names: ["-q", "--qos"],
    value: "QOS",
    modes: MESSAGES,
    help: "0 (default), 1 or 2",
    apply: (d, v, n) => d.qos = qos(n, v),
  },
  {
    names: ["-r", "--retain"],
    modes: ["pub"],
    help: "publish retained messages",
    apply: (d) => d.retain = true,
  },
  {
    names: ["-s", "--size"],
    value: "BYTES",
    modes: ["pub"],
    help: "payload size (default 256); from 8 up the first 8 bytes carry the send time",
    apply: (d, v, n) => d.size = integer(n, v, 0, 256 * 1024 * 1024),
  },
  {
    names: ["-I", "--pub-interval"],
    value: "MS",
    modes: ["pub"],
    help: "each publisher sends a message every MS milliseconds (default 1000; 0: flat out)",
    apply: (d, v, n) => d.publishInterval = nonNegative(n, v),
  },
  {
    names: ["--msg-rate"],
    value: "N",
    modes: ["pub"],
    help: "each publisher sends N messages a second (instead of -I)",
    apply: (d, v, n) => d.publishInterval = 1000 / positive(n, v),
  },
  {
    names: ["--limit"],
    value: "N",
    modes: MESSAGES,
    help: "stop after N messages: per publisher (pub), in all (sub)",
    apply: (d, v, n) => d.limit = integer(n, v, 1, MAX),
  },
  {
    names: ["--json"],
    modes: ALL,
    help: "print the result as one JSON object on stdout (progress goes to stderr)",
    apply: (d) => d.json = true,
  },
  {
    names: ["--quiet"],
    modes: ALL,
    help: "no progress lines while running",
    apply: (d) => d.quiet = true,
  },
];

const BY_NAME: ReadonlyMap<string, BenchFlag> = new Map(
  FLAGS.flatMap((flag) => flag.names.map((name) => [name, flag] as const)),
);

/**
 * Parses the flags of `kite bench MODE`.
 *
 * @param mode The benchmark.
 * @param args The flags after it.
 * @param env The environment: `MQTT_URL` gives the broker when no flag does.
 * @returns The settings, or `{ help: true }` for `--help`.
 * @throws {UsageError} When the flags are wrong or incomplete.
 *
 * @example
 * ```ts
 * import { parseBenchArgs } from "./bench_args.ts";
 *
 * const settings = parseBenchArgs("conn", ["-c", "1000", "-R", "500"], {});
 * console.log(settings); // { command: "bench", mode: "conn", clients: 1000, connectInterval: 2, ... }
 * ```
 */
export function parseBenchArgs(
  mode: BenchMode,
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): BenchSettings | { command: "bench"; mode: BenchMode; help: true } {
  const draft: Draft = {
    command: "bench",
    mode,
    hosts: [],
    urls: [],
    tls: false,
    clients: 1,
    connectInterval: 0,
    maxConnecting: 100,
    connectTimeout: 30_000,
    keepalive: 60,
    protocolVersion: 4,
    insecure: false,
    localAddresses: [],
    topic: "",
    topicGiven: false,
    qos: 0,
    retain: false,
    size: 256,
    publishInterval: 1000,
    json: false,
    quiet: false,
  };
  const help = readFlags(args, draft, (name) => {
    const flag = BY_NAME.get(name);
    return flag?.modes.includes(mode) ? flag : undefined;
  });
  if (help) return { command: "bench", mode, help: true };
  if ((draft.cert === undefined) !== (draft.key === undefined)) {
    throw new UsageError("--cert and --key go together");
  }
  if (draft.password !== undefined && draft.username === undefined && draft.protocolVersion < 5) {
    throw new UsageError("a password (-P) needs a username (-u) before MQTT 5");
  }
  if (draft.urls.length > 0 && (draft.hosts.length > 0 || draft.port !== undefined)) {
    throw new UsageError("give the brokers either with -L or with -h and -p, not both");
  }
  if (draft.urls.length === 0) {
    const mqttUrl = env.MQTT_URL;
    if (draft.hosts.length === 0 && draft.port === undefined && mqttUrl) {
      applyUrl(draft, mqttUrl, "MQTT_URL");
    } else {
      const scheme = draft.tls ? "mqtts" : "mqtt";
      const port = draft.port ?? (draft.tls ? 8883 : 1883);
      for (const host of draft.hosts.length > 0 ? draft.hosts : ["localhost"]) {
        draft.urls.push(`${scheme}://${hostPart(host)}:${port}`);
      }
    }
  }
  if (mode !== "conn") {
    if (!draft.topicGiven) throw new UsageError("no topic given; use -t topic");
    // Checked with a sample client id and number, as each client's topic will be.
    const sample = draft.topic.replaceAll("%i", "1").replaceAll("%c", "client-1");
    try {
      if (mode === "pub") validateTopicName(sample);
      else validateTopicFilter(sample);
    } catch (error) {
      throw new UsageError(`-t: ${(error as Error).message}`);
    }
  }
  const { hosts: _hosts, port: _port, tls: _tls, topicGiven: _topicGiven, ...settings } = draft;
  return {
    ...settings,
    prefix: draft.prefix ?? `kite-${mode}-${Math.random().toString(16).slice(2, 8)}`,
  };
}

/**
 * Every spelling of every flag a mode takes.
 *
 * @param mode The benchmark.
 * @returns The names, such as `-c` and `--count`.
 *
 * @example
 * ```ts
 * import { benchFlagNames } from "./bench_args.ts";
 *
 * console.log(benchFlagNames("conn").includes("--ifaddr")); // true
 * ```
 */
export function benchFlagNames(mode: BenchMode): string[] {
  return FLAGS.filter((flag) => flag.modes.includes(mode)).flatMap((flag) => flag.names);
}

/**
 * The help of `kite bench MODE`, listing every flag it takes.
 *
 * @param mode The benchmark, or `undefined` for `kite bench --help`.
 * @returns The help text.
 *
 * @example
 * ```ts
 * import { benchUsage } from "./bench_args.ts";
 *
 * console.log(benchUsage("conn").includes("--ifaddr")); // true
 * ```
 */
export function benchUsage(mode?: BenchMode): string {
  if (mode === undefined) {
    const modes = Object.entries(BENCH_MODES).map(([name, what]) =>
      `  kite bench ${name.padEnd(5)} ${what}\n`
    );
    return "Usage: kite bench MODE [options]\n\n" +
      "Load-tests a broker with Kite's own client, in the manner of emqtt-bench.\n\n" +
      modes.join("") +
      "\nkite bench MODE --help shows the options of a mode. The exit status is 0 when the run\n" +
      "ended (at Ctrl-C, --duration or --limit), 2 when the command line is wrong, and 1 when no\n" +
      "connection succeeded or every one was lost; failures are counted and reported either way.\n";
  }
  const lines = FLAGS.filter((flag) => flag.modes.includes(mode)).map((flag) => {
    const spelled = flag.names.join(", ") + (flag.value === undefined ? "" : ` ${flag.value}`);
    const help = wrap(flag.help, 78 - HELP_COLUMN).join(`\n${"".padEnd(HELP_COLUMN)}`);
    return spelled.length < HELP_COLUMN - 3
      ? `  ${spelled.padEnd(HELP_COLUMN - 3)} ${help}\n`
      : `  ${spelled}\n${"".padEnd(HELP_COLUMN)}${help}\n`;
  });
  const usage = mode === "conn"
    ? "kite bench conn [-c N] [-R RATE] [options]"
    : `kite bench ${mode} -t TOPIC [-c N] [options]`;
  const what = BENCH_MODES[mode];
  return `Usage: ${usage}\n\n${what[0].toUpperCase()}${what.slice(1)}.\n\n${lines.join("")}` +
    `\nEnvironment:\n  ${
      "MQTT_URL".padEnd(HELP_COLUMN - 3)
    } the broker when no -h, -p or -L names one\n`;
}

/** Where the help of a flag starts on its line. */
const HELP_COLUMN = 30;

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  lines.push(line);
  return lines;
}

function applyUrl(draft: Draft, text: string, name: string): void {
  const url = mqttUrl(text, name);
  if (url.pathname !== "" && url.pathname !== "/") {
    throw new UsageError(`${name}: kite bench takes the topic from -t, not from the URL`);
  }
  if (url.username !== "") draft.username ??= decodeURIComponent(url.username);
  if (url.password !== "") draft.password ??= decodeURIComponent(url.password);
  if (url.protocol === "mqtts:") draft.tls = true;
  const port = url.port === "" ? (url.protocol === "mqtts:" ? 8883 : 1883) : Number(url.port);
  draft.urls.push(`${url.protocol}//${url.hostname}:${port}`);
}

function list(name: string, text: string): string[] {
  const items = text.split(",").map((item) => item.trim());
  if (items.some((item) => item === "")) {
    throw new UsageError(`${name} needs a comma-separated list, not "${text}"`);
  }
  return items;
}

function positive(name: string, text: string): number {
  const value = /^\d+(\.\d+)?$/.test(text) ? Number(text) : NaN;
  if (!(value > 0)) throw new UsageError(`${name} needs a number above 0, not "${text}"`);
  return value;
}

function nonNegative(name: string, text: string): number {
  const value = /^\d+(\.\d+)?$/.test(text) ? Number(text) : NaN;
  if (!(value >= 0)) throw new UsageError(`${name} needs a number, 0 or more, not "${text}"`);
  return value;
}

function version(name: string, text: string): ProtocolVersion {
  if (text === "3" || text === "4" || text === "5") return Number(text) as ProtocolVersion;
  try {
    return protocolVersion(name, text);
  } catch {
    throw new UsageError(`${name} needs 3, 4 or 5 (or mqttv31, mqttv311, mqttv5), not "${text}"`);
  }
}
