/**
 * `kite`: publish, subscribe, run a local broker and load-test a broker from the command line,
 * with the flags mosquitto_pub and mosquitto_sub users know.
 *
 * ```sh
 * deno run -A jsr:@kite/mqtt/cli sub -h 127.0.0.1 -t 'sensors/#' -v
 * deno run -A jsr:@kite/mqtt/cli pub -h 127.0.0.1 -t sensors/a -m 21.5 -q 1 -r
 * bun run src/cli/mod.ts pub -L mqtt://user:pass@127.0.0.1:1883/sensors/a -l < readings.txt
 * deno run -A jsr:@kite/mqtt/cli bench conn -h 127.0.0.1 -c 1000 -R 200 --duration 30
 * ```
 *
 * The exit status is 0 on success, 2 when the command line is wrong and 1 when the command
 * failed; either way stderr gets exactly one line that says what went wrong. Ctrl-C makes
 * `kite sub` and `kite pub -l` disconnect cleanly and exit 0.
 *
 * @example Run the CLI in-process
 * ```ts ignore
 * import { main } from "jsr:@kite/mqtt/cli";
 *
 * const status = await main(["pub", "-h", "127.0.0.1", "-t", "greetings", "-m", "hello"]);
 * console.log(status); // 0
 * ```
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "./args.ts";
import { type BenchMode, type Command, UsageError } from "./settings.ts";
import { BENCH_MODES, benchUsage, parseBenchArgs } from "./bench_args.ts";
import { runBench } from "./bench.ts";
import { CommandError, type CommandIo, oneLine, runBroker, runPub, runSub } from "./commands.ts";
import { type CliIo, processIo, writeTo } from "./io.ts";

export type { CliIo } from "./io.ts";

const COMMON = `
Connection:
  -h, --host HOST            broker host (default localhost)
  -p, --port PORT            broker port, 1 to 65535 (default 1883, 8883 with TLS)
  -L, --url URL              mqtt[s]://[user[:password]@]host[:port]/topic
  -i, --id ID                client id (default: a random one)
  -u, --username USER        user name
  -P, --pw PASSWORD          password
  -V, --protocol-version V   mqttv31, mqttv311 (default) or mqttv5; also 31, 311, 5
  -k, --keepalive SECONDS    keepalive (default 60, 0 turns it off)
  -d, --debug                report the connection on stderr
TLS:
  --cafile FILE              trust the CA certificates in FILE (PEM); turns TLS on
  --cert FILE, --key FILE    client certificate and key (PEM) for mutual TLS
  --tls-use-os-certs         turn TLS on, trusting the system's CAs
  --insecure                 do not verify the broker's certificate
Will:
  --will-topic TOPIC         publish a will to TOPIC if we vanish without DISCONNECT
  --will-payload TEXT        its payload (default empty)
  --will-qos QOS             its QoS (default 0)
  --will-retain              retain it
Environment:
  MQTT_URL                   mqtt[s]://[user[:password]@]host[:port]: the broker when no flag
                             names one; -h, -p, -L, -u and -P override its parts
`;

const USAGE: Record<Command | "kite", string> = {
  kite: `kite: an MQTT 3.1, 3.1.1 and 5.0 command line

Usage:
  kite pub -t TOPIC (-m MESSAGE | -n | -l | -s) [options]    publish
  kite sub -t FILTER [-t FILTER...] [options]                subscribe and print
  kite broker [-h HOST] [-p PORT]                            run Kite's local broker
  kite bench conn|pub|sub [options]                          load-test a broker

kite COMMAND --help shows the options of a command. The exit status is 0 on success,
2 when the command line is wrong and 1 when the command failed.
`,
  pub: `Usage: kite pub -t TOPIC (-m MESSAGE | -n | -l | -s) [options]

Publishes one message, or one per line of stdin, then disconnects.

Message:
  -t, --topic TOPIC          the topic to publish to
  -m, --message TEXT         the payload
  -n, --null-message         an empty payload
  -l, --stdin-line           one message per line of stdin (without its newline)
  -s, --stdin-file           all of stdin as one message
  -q, --qos QOS              0 (default), 1 or 2
  -r, --retain               ask the broker to retain the message
${COMMON}`,
  sub: `Usage: kite sub -t FILTER [-t FILTER...] [options]

Subscribes and prints each message's payload on a line, until Ctrl-C or -C messages.

Subscription:
  -t, --topic FILTER         a topic filter; repeat for more
  -q, --qos QOS              the QoS to ask for: 0 (default), 1 or 2
  -C, --count N              exit after N messages
  -v, --verbose              print "topic payload" ("topic (null)" for an empty one)
  -c, --disable-clean-session  keep the session when we go (needs -i)
${COMMON}`,
  broker: `Usage: kite broker [-h HOST] [-p PORT]

Runs Kite's local broker (for development and tests, not production) until Ctrl-C.

  -h, --host HOST            address to listen on (default 127.0.0.1)
  -p, --port PORT            port to listen on (default 1883; 0 picks a free one)
`,
};

/**
 * Runs the `kite` command line: `kite pub`, `kite sub`, `kite broker`, `kite bench`, or
 * `kite --help`.
 *
 * Whatever happens, the returned status says how it went: 0 on success, 2 when the command line
 * is wrong (unknown flag, missing topic), 1 when the command failed (the broker is unreachable
 * or refused). On failure stderr gets exactly one line, such as
 * `kite pub: could not connect to mqtt://127.0.0.1:1883/: Connection refused`.
 *
 * @param args The arguments after the program name, such as `["sub", "-t", "a/#", "-v"]`.
 * @param io The streams to use instead of the process's; the missing ones default to the
 * process's. Only when `io` is absent does Ctrl-C (SIGINT, SIGTERM) stop the command.
 * @returns The exit status.
 *
 * @example Publish, capturing what the CLI writes
 * ```ts ignore
 * import { main } from "jsr:@kite/mqtt/cli";
 *
 * let errors = "";
 * const stderr = new WritableStream<Uint8Array>({
 *   write: (chunk) => void (errors += new TextDecoder().decode(chunk)),
 * });
 * const status = await main(["pub", "-p", "1883", "-t", "a/b", "-m", "hi"], { stderr });
 * console.log(status, errors); // 0 "", or 1 and the reason the broker was not reached
 * ```
 */
export async function main(args: string[], io?: Partial<CliIo>): Promise<number> {
  const own = processIo();
  const streams: CommandIo = {
    get stdin() {
      return io?.stdin ?? own.stdin;
    },
    get stdout() {
      return io?.stdout ?? own.stdout;
    },
    get stderr() {
      return io?.stderr ?? own.stderr;
    },
    get env() {
      return io?.env ?? own.env;
    },
    get signal() {
      return io === undefined ? own.signal : io.signal;
    },
    isTerminal(stream: "stdout" | "stderr"): boolean {
      return io?.[stream] === undefined ? own.isTerminal(stream) : io.isTerminal?.(stream) ?? false;
    },
  };
  const [command, ...rest] = args;
  try {
    if (command === undefined) {
      throw new UsageError("no command given; use kite pub, kite sub or kite broker (see --help)");
    }
    if (command === "--help" || command === "help") {
      await writeTo(streams.stdout, USAGE.kite);
      return 0;
    }
    if (command === "bench") return await bench(rest, streams);
    if (command !== "pub" && command !== "sub" && command !== "broker") {
      throw new UsageError(
        `unknown command "${command}"; use kite pub, kite sub, kite broker or kite bench`,
      );
    }
    try {
      const settings = parseArgs(command, rest, streams.env);
      if ("help" in settings) {
        await writeTo(streams.stdout, USAGE[command]);
        return 0;
      }
      switch (settings.command) {
        case "pub":
          return await runPub(settings, streams);
        case "sub":
          return await runSub(settings, streams);
        case "broker":
          return await runBroker(settings, streams);
      }
    } catch (error) {
      return await fail(streams, `kite ${command}`, error);
    }
  } catch (error) {
    return await fail(streams, "kite", error);
  } finally {
    own.release();
  }
}

/** `kite bench MODE [flags]`. */
async function bench(args: string[], io: CommandIo): Promise<number> {
  const [mode, ...rest] = args;
  if (mode === undefined || mode === "--help" || mode === "help") {
    if (mode === undefined) {
      return await fail(io, "kite bench", new UsageError("no mode given; use conn, pub or sub"));
    }
    await writeTo(io.stdout, benchUsage());
    return 0;
  }
  if (!Object.hasOwn(BENCH_MODES, mode)) {
    return await fail(
      io,
      "kite bench",
      new UsageError(`unknown mode "${mode}"; use kite bench conn, pub or sub`),
    );
  }
  const prefix = `kite bench ${mode}`;
  try {
    const settings = parseBenchArgs(mode as BenchMode, rest, io.env);
    if ("help" in settings) {
      await writeTo(io.stdout, benchUsage(settings.mode));
      return 0;
    }
    return await runBench(settings, io);
  } catch (error) {
    return await fail(io, prefix, error);
  }
}

/** Prints the one line that says what went wrong, and picks the exit status. */
async function fail(io: CommandIo, prefix: string, error: unknown): Promise<number> {
  const usage = error instanceof UsageError;
  let message = error instanceof Error ? (error.message || error.name) : String(error);
  if (usage) message += ` (see ${prefix} --help)`;
  else if (!(error instanceof CommandError) && error instanceof Error) {
    message = `${error.name}: ${message}`;
  }
  try {
    await writeTo(io.stderr, `${prefix}: ${oneLine(message)}\n`);
  } catch {
    // stderr is gone; the status still tells.
  }
  return usage ? 2 : 1;
}

if (import.meta.main) {
  const status = await main(process.argv.slice(2));
  process.exit(status);
}
