/**
 * What the command line of `kite pub`, `kite sub`, `kite broker` and `kite bench` asks for, once parsed, and
 * the error a wrong command line raises.
 *
 * @module
 */

import type { ProtocolVersion, QoS } from "../packet/types.ts";

/** The subcommands. */
export type Command = "pub" | "sub" | "broker";

/** What `kite bench` runs: connections only, publishers or subscribers. */
export type BenchMode = "conn" | "pub" | "sub";

/**
 * The command line is wrong: an unknown flag, a missing value, a missing topic. The CLI prints
 * its message as the one line on stderr and exits with status 2.
 *
 * @example
 * ```ts
 * import { UsageError } from "./settings.ts";
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

/** Who the client says it is, and how it checks the broker: `kite pub`, `sub` and `bench`. */
export interface Credentials {
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
}

/** How to reach and log in to the broker: the flags `pub` and `sub` share. */
export interface ConnectionSettings extends Credentials {
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

/** The settings of `kite bench conn`, `kite bench pub` and `kite bench sub`. */
export interface BenchSettings extends Credentials {
  /** Discriminates the settings. */
  command: "bench";
  /** Which benchmark. */
  mode: BenchMode;
  /** The brokers, `mqtt://` or `mqtts://` without a path; clients take them in turn. */
  urls: string[];
  /** `-c`: how many clients. */
  clients: number;
  /** `-i` or `-R`: milliseconds between the start of one connection and the next; 0 for none. */
  connectInterval: number;
  /** `--max-connecting`: connection attempts under way at once, at most. */
  maxConnecting: number;
  /** `--connect-timeout`, in milliseconds. */
  connectTimeout: number;
  /** `-k`, in seconds. */
  keepalive: number;
  /** `-V`. */
  protocolVersion: ProtocolVersion;
  /** `--prefix`: client ids are the prefix, a dash and the client number. */
  prefix: string;
  /** `--ifaddr`: local addresses to connect from, in turn; empty for the system's choice. */
  localAddresses: string[];
  /** `--duration`, in milliseconds: stop after this long. */
  duration?: number;
  /** `-t`: the topic (pub) or filter (sub); `%i` is the client number, `%c` the client id. */
  topic: string;
  /** `-q`. */
  qos: QoS;
  /** `-r` (pub). */
  retain: boolean;
  /** `-s` (pub): the payload size in bytes; 8 or more carries a timestamp. */
  size: number;
  /** `-I` or `--msg-rate` (pub): milliseconds between one publisher's messages; 0 flat out. */
  publishInterval: number;
  /** `--limit`: messages per publisher (pub), or in all (sub); stop then. */
  limit?: number;
  /** `--json`: print the result as JSON on stdout. */
  json: boolean;
  /** `--quiet`: no progress lines. */
  quiet: boolean;
}
