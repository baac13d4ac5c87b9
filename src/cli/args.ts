/**
 * The flags of `kite pub`, `kite sub` and `kite broker`, parsed the way mosquitto_pub and
 * mosquitto_sub users expect where the two overlap.
 *
 * @module
 */

import { validateTopicFilter, validateTopicName } from "../packet/topic.ts";
import { applyUrl, BY_NAME, type Draft, readFlags } from "./flags.ts";
import { type Command, type ConnectionSettings, type Settings, UsageError } from "./settings.ts";

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
    command,
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
  const help = readFlags(args, draft, (name) => {
    const flag = BY_NAME.get(name);
    return flag?.commands.includes(command) ? flag : undefined;
  });
  if (help) return { command, help: true };
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
