/**
 * What the command line of `kite pub`, `kite sub` and `kite broker` asks for, once parsed, and
 * the error a wrong command line raises.
 *
 * @module
 */

import type { ProtocolVersion, QoS } from "../packet/types.ts";

/** The subcommands. */
export type Command = "pub" | "sub" | "broker";

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
