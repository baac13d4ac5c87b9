/**
 * The local broker's authentication and authorization hooks: their types, and a SCRAM verifier
 * built on the same SCRAM code as the client's `scramSha1` / `scramSha256` (`src/scram.ts`).
 * What their answers mean on each protocol version is `authentication.ts`'s and
 * `authorization.ts`'s.
 *
 * @module
 */

import { AuthenticationError } from "../errors.ts";
import { ReasonCode } from "../packet/constants.ts";
import type { ProtocolVersion, QoS } from "../packet/types.ts";
import {
  type ScramHash,
  scramMechanism,
  type ScramSecrets,
  scramSecrets,
  ScramServer,
  scramText,
  utf8,
} from "../scram.ts";

/** What the `authenticate` hook is asked: a CONNECT, or a re-authentication (MQTT 5 AUTH 0x19). */
export interface AuthenticationRequest {
  /** The client identifier (the one the broker assigns, for an empty one). */
  clientId: string;
  /** The User Name of CONNECT, if any. */
  username?: string;
  /** The Password of CONNECT, if any. */
  password?: Uint8Array;
  /** The protocol version of the connection. */
  protocolVersion: ProtocolVersion;
  /** MQTT 5 enhanced authentication: the Authentication Method CONNECT names, if any. */
  method?: string;
  /** MQTT 5 enhanced authentication: the initial Authentication Data, if any. */
  data?: Uint8Array;
  /** `true` for a re-authentication on a live connection (AUTH 0x19), `false` for CONNECT. */
  reauthentication: boolean;
}

/**
 * The hook's answer, in full: accept (`reasonCode` absent or 0), refuse (a `reasonCode` of 0x80
 * or more), or challenge (`next` present: MQTT 5 enhanced authentication only).
 */
export interface AuthenticationOutcome {
  /**
   * 0 or absent accepts; 0x80 or more refuses with that MQTT 5 reason code (CONNACK, or the
   * DISCONNECT that ends a refused re-authentication). On MQTT 3.1 and 3.1.1 it becomes the
   * nearest CONNACK return code: 0x86 → 4, 0x87 → 5, 0x85 → 2, 0x84 → 1, 0x88 and 0x89 → 3,
   * any other → 5; a return code from 1 to 5 is used as it is.
   */
  reasonCode?: number;
  /**
   * MQTT 5 Authentication Data to send: the challenge's (AUTH 0x18), or the final data of an
   * accepted exchange (CONNACK, or AUTH 0x00 after a re-authentication).
   */
  data?: Uint8Array;
  /**
   * A challenge: AUTH 0x18 with `data` goes to the client, and its answer (the Authentication
   * Data of its AUTH 0x18) is handed to this, which answers as the hook does. MQTT 5 with an
   * Authentication Method only.
   */
  next?: (data: Uint8Array | undefined) => AuthenticationResult | Promise<AuthenticationResult>;
  /** The identity the `authorize` hook sees for this connection; default the User Name. */
  username?: string;
  /** MQTT 5 Reason String, sent with a refusal. */
  reasonString?: string;
}

/**
 * What the `authenticate` hook returns: `true` accepts, `false` refuses as a bad user name or
 * password (0x86, 3.1.1 return code 4), a number refuses with that reason code (see
 * {@linkcode AuthenticationOutcome.reasonCode}; 0 accepts), or an outcome in full.
 */
export type AuthenticationResult = boolean | number | AuthenticationOutcome;

/**
 * The `authenticate` hook of `new Broker({ authenticate })`: decides each CONNECT, and each
 * MQTT 5 re-authentication. It may be async; throwing refuses (0x80 Unspecified error, 3.1.1
 * return code 3). Without a hook every CONNECT is accepted and one that names an Authentication
 * Method is refused with 0x8C (Bad authentication method).
 */
export type AuthenticateHook = (
  request: AuthenticationRequest,
) => AuthenticationResult | Promise<AuthenticationResult>;

/** What the `authorize` hook is asked: may this client publish to, or subscribe to, this topic? */
export interface AuthorizationRequest {
  /** The client identifier. */
  clientId: string;
  /** The identity authentication settled on: the User Name, or what the hook's outcome gave. */
  username?: string;
  /** `"publish"` (a PUBLISH, or the will of a CONNECT) or `"subscribe"` (one topic filter). */
  action: "publish" | "subscribe";
  /** The topic name (publish) or topic filter (subscribe). */
  topic: string;
  /** The QoS published with, or the QoS requested. */
  qos: QoS;
}

/**
 * The `authorize` hook of `new Broker({ authorize })`: `true` allows; `false` refuses with 0x87
 * (Not authorized), a number with that reason code. Synchronous, as messages are routed in
 * order. Throwing refuses with 0x80.
 */
export type AuthorizeHook = (request: AuthorizationRequest) => boolean | number;

/** The options of {@linkcode scramVerifier}. */
export interface ScramVerifierOptions {
  /** The users and their passwords: `{ alice: "secret" }`, or a `Map`. */
  users: Record<string, string> | ReadonlyMap<string, string>;
  /** The SCRAM methods offered; default both, `["SCRAM-SHA-256", "SCRAM-SHA-1"]`. */
  methods?: readonly ("SCRAM-SHA-256" | "SCRAM-SHA-1")[];
  /** The PBKDF2 iteration count; default 4096, the least RFC 7677 allows. */
  iterations?: number;
}

/**
 * An `authenticate` hook that checks users against a table: with SCRAM (MQTT 5 enhanced
 * authentication, methods `SCRAM-SHA-256` and `SCRAM-SHA-1`), or with the User Name and Password
 * of CONNECT for a client that names no method (any version). A wrong password or an unknown user
 * is refused with 0x86 (3.1.1: return code 4), another method with 0x8C (Bad authentication
 * method). A re-authentication runs SCRAM again, and must be by the same user. The salts are made
 * when the verifier is, so they change with each verifier.
 *
 * @example
 * ```ts
 * import { Broker, scramVerifier } from "./mod.ts";
 * import { MqttClient, scramSha256 } from "../../mod.ts";
 *
 * const broker = new Broker({ authenticate: scramVerifier({ users: { alice: "secret" } }) });
 * const client = new MqttClient(broker.connectClient());
 * await client.connect({
 *   protocolVersion: 5,
 *   keepalive: 0,
 *   auth: scramSha256({ username: "alice", password: "secret" }),
 * });
 * await client.disconnect();
 * await broker.close();
 * ```
 */
export function scramVerifier(options: ScramVerifierOptions): AuthenticateHook {
  const users = options.users instanceof Map
    ? options.users as ReadonlyMap<string, string>
    : new Map(Object.entries(options.users));
  const methods = new Set<string>(options.methods ?? ["SCRAM-SHA-256", "SCRAM-SHA-1"]);
  const iterations = options.iterations ?? 4096;
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const secrets = new Map<string, Promise<ScramSecrets>>();
  const lookup = (hash: ScramHash, username: string) => {
    const password = users.get(username);
    if (password === undefined) return undefined;
    const key = `${hash} ${username}`;
    let derived = secrets.get(key);
    if (derived === undefined) {
      derived = scramSecrets(hash, password, salt, iterations);
      secrets.set(key, derived);
    }
    return derived;
  };
  return async (request): Promise<AuthenticationResult> => {
    const method = request.method;
    if (method === undefined) {
      const password = request.username === undefined ? undefined : users.get(request.username);
      const given = request.password === undefined ? undefined : new TextDecoder().decode(
        request.password,
      );
      return password !== undefined && given === password;
    }
    if (!methods.has(method)) return ReasonCode.BadAuthenticationMethod;
    const hash: ScramHash = method === scramMechanism("SHA-1") ? "SHA-1" : "SHA-256";
    const server = new ScramServer(hash, (username) => lookup(hash, username));
    let serverFirst: string;
    try {
      serverFirst = await server.first(scramText(request.data));
    } catch (error) {
      return refusal(error);
    }
    const username = server.username;
    if (
      request.reauthentication && request.username !== undefined &&
      username !== request.username
    ) {
      return { reasonCode: ReasonCode.NotAuthorized, reasonString: "another user" };
    }
    return {
      data: utf8(serverFirst),
      username,
      next: async (clientFinal) => {
        try {
          return { data: utf8(await server.final(scramText(clientFinal))), username };
        } catch (error) {
          return refusal(error);
        }
      },
    };
  };
}

function refusal(error: unknown): AuthenticationOutcome {
  if (error instanceof AuthenticationError) {
    return { reasonCode: error.reasonCode, reasonString: error.message };
  }
  return { reasonCode: ReasonCode.UnspecifiedError };
}

/**
 * {@linkcode scramVerifier} offering SCRAM-SHA-256 alone (and User Name and Password for a client
 * that names no method).
 *
 * @example
 * ```ts
 * import { Broker, scramSha256Verifier } from "./mod.ts";
 *
 * const broker = new Broker({ authenticate: scramSha256Verifier({ users: { alice: "secret" } }) });
 * await broker.close();
 * ```
 */
export function scramSha256Verifier(
  options: Omit<ScramVerifierOptions, "methods">,
): AuthenticateHook {
  return scramVerifier({ ...options, methods: ["SCRAM-SHA-256"] });
}
