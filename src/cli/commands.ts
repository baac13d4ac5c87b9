/**
 * What `kite pub`, `kite sub` and `kite broker` do once their flags are parsed.
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import { within } from "../_async.ts";
import { Broker } from "../broker/broker.ts";
import { connect, type ConnectOptions } from "../client/connect.ts";
import type { MqttClient } from "../client/clients.ts";
import type { DisconnectEventDetail, ReconnectEventDetail } from "../client/events.ts";
import type { MqttError } from "../errors.ts";
import type {
  BrokerSettings,
  ConnectionSettings,
  Credentials,
  PubSettings,
  SubSettings,
} from "./settings.ts";
import { type CliIo, readAll, readLines, writeTo } from "./io.ts";
import { hostPart } from "./flags.ts";

/**
 * A command failed in a way the user can act on; the CLI prints its message as the one line on
 * stderr and exits with status 1.
 *
 * @example
 * ```ts
 * import { CommandError } from "./commands.ts";
 *
 * console.log(new CommandError("cannot read --cafile ca.pem").message);
 * ```
 */
export class CommandError extends Error {
  /** Creates the error; `message` says what went wrong. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CommandError";
  }
}

/** The I/O a command runs with: every stream present. */
export type CommandIo = Required<Omit<CliIo, "signal">> & Pick<CliIo, "signal">;

/** Publishes that may be in flight at once with `pub -l`, before the next line is read. */
const LINE_WINDOW = 64;

const NULL_PAYLOAD = new TextEncoder().encode("(null)");

/** How long `sub -C` waits for UNSUBACK before it disconnects anyway. */
const UNSUBSCRIBE_WAIT_MS = 5000;

const PROTOCOL_NAMES = { 3: "MQTT 3.1", 4: "MQTT 3.1.1", 5: "MQTT 5.0" } as const;

/**
 * `kite pub`: connect, publish the message (or each line of stdin), disconnect.
 *
 * @param settings The parsed flags.
 * @param io The streams and the interrupt signal.
 * @returns The exit status: 0 when every message was published.
 * @throws {CommandError} When the broker cannot be reached, refuses, or a publish fails.
 *
 * @example
 * ```ts ignore
 * import { parseArgs } from "./args.ts";
 * import { runPub } from "./commands.ts";
 * import { processIo } from "./io.ts";
 *
 * const settings = parseArgs("pub", ["-t", "a/b", "-m", "hello"], {});
 * if (settings.command === "pub" && !("help" in settings)) await runPub(settings, processIo());
 * ```
 */
export async function runPub(settings: PubSettings, io: CommandIo): Promise<number> {
  const client = await open(settings, io, false);
  const options = { qos: settings.qos, retain: settings.retain };
  try {
    const source = settings.message;
    switch (source.kind) {
      case "text":
        await client.publish(settings.topic, source.text, options);
        break;
      case "null":
        await client.publish(settings.topic, new Uint8Array(0), options);
        break;
      case "stdin": {
        const payload = await readAll(io.stdin, io.signal);
        if (io.signal?.aborted) {
          throw new CommandError("interrupted before the end of stdin; nothing was published");
        }
        await client.publish(settings.topic, payload, options);
        break;
      }
      case "lines": {
        // Keep a few publishes in flight rather than one round trip per line, but no more, so
        // a fast stdin cannot fill the client's queue.
        const inFlight: Promise<void>[] = [];
        for await (const line of readLines(io.stdin, io.signal)) {
          const published = client.publish(settings.topic, line, options);
          // Awaited below; until then a failure must not count as unhandled.
          published.catch(() => {});
          inFlight.push(published);
          if (inFlight.length >= LINE_WINDOW) await inFlight.shift();
        }
        await Promise.all(inFlight);
        break;
      }
    }
    if (settings.debug) await report(io, "pub", `published to ${settings.topic}`);
  } catch (error) {
    throw describe(error);
  } finally {
    await client.disconnect();
  }
  return 0;
}

/**
 * `kite sub`: connect, subscribe, print every message until `-C` messages arrived or the
 * signal aborts, then disconnect. It reconnects after a lost connection, as mosquitto_sub does.
 *
 * @param settings The parsed flags.
 * @param io The streams and the interrupt signal.
 * @returns The exit status: 0 after `-C` messages, or after an interrupt.
 * @throws {CommandError} When the broker cannot be reached, refuses the connection or a
 * subscription, or the connection ends for good.
 *
 * @example
 * ```ts ignore
 * import { parseArgs } from "./args.ts";
 * import { runSub } from "./commands.ts";
 * import { processIo } from "./io.ts";
 *
 * const settings = parseArgs("sub", ["-t", "a/#", "-v", "-C", "1"], {});
 * if (settings.command === "sub" && !("help" in settings)) await runSub(settings, processIo());
 * ```
 */
export async function runSub(settings: SubSettings, io: CommandIo): Promise<number> {
  const client = await open(settings, io, true);
  let finalError: MqttError | undefined;
  client.addEventListener("disconnect", (event) => {
    const detail = (event as CustomEvent<DisconnectEventDetail>).detail;
    if (!detail.reconnecting && detail.error !== undefined) finalError = detail.error;
  });
  const stop = () => void client.disconnect();
  io.signal?.addEventListener("abort", stop, { once: true });
  // With -C, the loop stops at a count; what waits in the iterator then is handed back unseen,
  // not acknowledged, so the broker sends it again to whoever takes the session next.
  const messages = client.messages();
  const writer = io.stdout.getWriter();
  const encoder = new TextEncoder();
  const space = Uint8Array.of(0x20);
  const newline = Uint8Array.of(0x0a);
  let received = 0;
  try {
    const granted = await client.subscribe(
      settings.topics.map((topic) => ({ topic, qos: settings.qos })),
    );
    if (settings.debug) {
      await report(
        io,
        "sub",
        `subscribed to ${settings.topics.join(", ")} (granted QoS ${granted.join(", ")})`,
      );
    }
    if (io.signal?.aborted) stop();
    for await (const message of messages) {
      if (settings.verbose) {
        await writer.write(encoder.encode(message.topic));
        await writer.write(space);
      }
      // As mosquitto_sub -v does, so that a line always has a payload after the topic.
      const payload = settings.verbose && message.payload.length === 0
        ? NULL_PAYLOAD
        : message.payload;
      await writer.write(payload);
      await writer.write(newline);
      if (settings.count !== undefined && ++received >= settings.count) break;
    }
    const countReached = settings.count !== undefined && received >= settings.count;
    if (countReached && settings.qos === 2 && settings.clean && !io.signal?.aborted) {
      // A QoS 2 message is delivered on PUBLISH, and its PUBREL may still be on the way. The
      // broker answers our PUBREC before this UNSUBSCRIBE, so once UNSUBACK is here the PUBCOMP
      // is queued and goes out before DISCONNECT. (A kept session, -c, gets the PUBREL again
      // on the next connection; unsubscribing there would end the subscription.)
      // Bounded: if the broker went away meanwhile, the messages are printed all the same.
      await within(client.unsubscribe(settings.topics), UNSUBSCRIBE_WAIT_MS);
    }
  } catch (error) {
    if (!io.signal?.aborted) throw describe(error);
  } finally {
    io.signal?.removeEventListener("abort", stop);
    writer.releaseLock();
    await client.disconnect();
  }
  const done = io.signal?.aborted || (settings.count !== undefined && received >= settings.count);
  if (!done) {
    throw new CommandError(
      finalError === undefined ? "the connection to the broker ended" : oneLine(finalError.message),
    );
  }
  return 0;
}

/**
 * `kite broker`: start Kite's local broker and serve until the signal aborts.
 *
 * @param settings The parsed flags.
 * @param io The streams and the interrupt signal; without a signal it serves forever.
 * @returns The exit status: 0 once the broker closed after an interrupt.
 * @throws {CommandError} When the broker cannot listen on the address.
 *
 * @example
 * ```ts ignore
 * import { runBroker } from "./commands.ts";
 * import { processIo } from "./io.ts";
 *
 * await runBroker({ command: "broker", host: "127.0.0.1", port: 1883 }, processIo());
 * ```
 */
export async function runBroker(settings: BrokerSettings, io: CommandIo): Promise<number> {
  // Listen for Ctrl-C before saying we listen: a signal sent on reading that line must find it.
  const signal = io.signal;
  const broker = new Broker();
  let port: number;
  try {
    ({ port } = await broker.listen({ port: settings.port, hostname: settings.host }));
  } catch (error) {
    await broker.close();
    throw describe(error, `could not listen on ${settings.host}:${settings.port}`);
  }
  try {
    await writeTo(io.stdout, `listening on mqtt://${hostPart(settings.host)}:${port}\n`);
    if (signal === undefined) {
      await new Promise(() => {});
    } else if (!signal.aborted) {
      await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
    }
  } finally {
    await broker.close();
  }
  return 0;
}

/** Connects as the settings say; a failure becomes a one-line `CommandError`. */
async function open(
  settings: ConnectionSettings,
  io: CommandIo,
  reconnect: boolean,
): Promise<MqttClient> {
  const url = `${settings.tls ? "mqtts" : "mqtt"}://${hostPart(settings.host)}:${settings.port}`;
  const options: ConnectOptions = {
    protocolVersion: settings.protocolVersion,
    keepalive: settings.keepalive,
    clean: settings.clean,
    reconnect,
    signal: io.signal,
  };
  if (settings.clientId !== undefined) options.clientId = settings.clientId;
  if (settings.will !== undefined) options.will = { ...settings.will };
  await applyCredentials(options, settings);
  const command = "topics" in settings ? "sub" : "pub";
  let client: MqttClient;
  try {
    client = await connect(url, options);
  } catch (error) {
    if (io.signal?.aborted) throw new CommandError("interrupted while connecting");
    throw describe(error);
  }
  if (settings.debug) {
    await report(
      io,
      command,
      `connected to ${url} (${PROTOCOL_NAMES[settings.protocolVersion]}, ` +
        `session present: ${client.sessionPresent})`,
    );
    client.addEventListener("reconnect", (event) => {
      const { attempt, delay, error } = (event as CustomEvent<ReconnectEventDetail>).detail;
      void report(
        io,
        command,
        `${oneLine(error.message)}; reconnecting in ${delay} ms (attempt ${attempt})`,
      ).catch(() => {});
    });
  }
  return client;
}

/**
 * Puts the user name, password and TLS files of the command line into connect options, reading
 * the PEM files named by `--cafile`, `--cert` and `--key`.
 *
 * @throws {CommandError} When one of those files cannot be read; the message names the flag.
 *
 * @example
 * ```ts ignore
 * import { applyCredentials } from "./commands.ts";
 *
 * const options = {};
 * await applyCredentials(options, { username: "u", cafile: "ca.pem", insecure: false });
 * ```
 */
export async function applyCredentials(
  options: ConnectOptions,
  credentials: Credentials,
): Promise<void> {
  if (credentials.username !== undefined) options.username = credentials.username;
  if (credentials.password !== undefined) options.password = credentials.password;
  if (credentials.cafile !== undefined) options.ca = await readPem("--cafile", credentials.cafile);
  if (credentials.cert !== undefined) options.cert = await readPem("--cert", credentials.cert);
  if (credentials.key !== undefined) options.key = await readPem("--key", credentials.key);
  if (credentials.insecure) options.rejectUnauthorized = false;
}

/** Reads a PEM file named by a flag; a failure says which flag and why. */
async function readPem(flag: string, path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    const reason = (error as { code?: string }).code ?? (error as Error).message;
    throw new CommandError(`cannot read ${flag} ${path}: ${reason}`, { cause: error });
  }
}

/** Writes one `-d` line to stderr. */
function report(io: CommandIo, command: string, line: string): Promise<void> {
  return writeTo(io.stderr, `kite ${command}: ${line}\n`);
}

/** An error as a `CommandError` with a one-line message. */
function describe(error: unknown, context?: string): CommandError {
  if (error instanceof CommandError) return error;
  const message = error instanceof Error ? (error.message || error.name) : String(error);
  return new CommandError(oneLine(context ? `${context}: ${message}` : message), {
    cause: error,
  });
}

/**
 * Joins the lines of a message into one.
 *
 * @param message Any text.
 * @returns The text with every line break and the space around it replaced by one space.
 *
 * @example
 * ```ts
 * import { oneLine } from "./commands.ts";
 *
 * console.log(oneLine("failed:\n  refused")); // "failed: refused"
 * ```
 */
export function oneLine(message: string): string {
  return message.trim().replace(/\s*[\r\n]+\s*/g, " ");
}
