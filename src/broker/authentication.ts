/**
 * The broker's side of authentication for one connection: asking the `authenticate` hook about
 * a CONNECT and each MQTT 5 re-authentication, the challenges of enhanced authentication
 * (section 4.12) in between, and what the hook's answers mean on each protocol version (the
 * CONNACK or DISCONNECT that refuses). The connection that owns it does the sending and closing.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { ConnackReturnCode, ReasonCode, reasonName } from "../packet/constants.ts";
import type {
  AuthPacket,
  ConnectPacket,
  Packet,
  Properties,
  ProtocolVersion,
} from "../packet/types.ts";
import type { AuthenticateHook, AuthenticationOutcome, AuthenticationResult } from "./auth.ts";

/** An authentication result made plain: accept, refuse or challenge. */
export type Decision =
  | { kind: "accept"; data?: Uint8Array; username?: string }
  | { kind: "refuse"; reasonCode: number; reasonString?: string }
  | {
    kind: "challenge";
    data?: Uint8Array;
    next: NonNullable<AuthenticationOutcome["next"]>;
    username?: string;
  };

/** Reads what the hook returned (or threw, as `failed`). */
export function decide(result: AuthenticationResult, failed = false): Decision {
  if (failed) return { kind: "refuse", reasonCode: ReasonCode.UnspecifiedError };
  if (result === true) return { kind: "accept" };
  if (result === false) return { kind: "refuse", reasonCode: ReasonCode.BadUserNameOrPassword };
  if (typeof result === "number") {
    return result === 0 ? { kind: "accept" } : { kind: "refuse", reasonCode: result };
  }
  if (result === null || typeof result !== "object") {
    return { kind: "refuse", reasonCode: ReasonCode.UnspecifiedError };
  }
  const code = result.reasonCode ?? 0;
  if (code !== 0) {
    const refusal: Decision = { kind: "refuse", reasonCode: code };
    if (result.reasonString !== undefined) refusal.reasonString = result.reasonString;
    return refusal;
  }
  if (result.next !== undefined) {
    return { kind: "challenge", data: result.data, next: result.next, username: result.username };
  }
  return { kind: "accept", data: result.data, username: result.username };
}

/**
 * The CONNACK code of a refusal on `version`: the MQTT 5 code as it is (0x80 when it is no
 * CONNACK code), or the nearest 3.x return code.
 */
export function connackRefusal(code: number, version: ProtocolVersion): number {
  if (version === 5) {
    return code >= 0x80 && reasonName(code, "connack") !== undefined
      ? code
      : ReasonCode.UnspecifiedError;
  }
  if (code >= 1 && code <= 5) return code;
  switch (code) {
    case ReasonCode.BadUserNameOrPassword:
      return ConnackReturnCode.BadUserNameOrPassword;
    case ReasonCode.ClientIdentifierNotValid:
      return ConnackReturnCode.IdentifierRejected;
    case ReasonCode.UnsupportedProtocolVersion:
      return ConnackReturnCode.UnacceptableProtocolVersion;
    case ReasonCode.ServerUnavailable:
    case ReasonCode.ServerBusy:
    case ReasonCode.UnspecifiedError:
      return ConnackReturnCode.ServerUnavailable;
    default:
      return ConnackReturnCode.NotAuthorized;
  }
}

/** The DISCONNECT code that ends a refused re-authentication: the code, or 0x87 if it is none. */
export function disconnectRefusal(code: number): number {
  return code >= 0x80 && reasonName(code, "disconnect") !== undefined
    ? code
    : ReasonCode.NotAuthorized;
}

/** Which authentication exchange a hook answer belongs to. */
type Phase = "connect" | "reauthenticate";

/** What a {@linkcode ConnectionAuthentication} asks of the connection that owns it. */
export interface AuthenticationHost {
  /** Whether the connection has ended: a hook's late answer is dropped. */
  closed(): boolean;
  /** Sends a packet to the client. */
  send(packet: Packet): void;
  /** Refuses the CONNECT: CONNACK with `reasonCode` (and `properties` on MQTT 5), then closes. */
  refuse(reasonCode: number, properties?: Properties): void;
  /** Ends the connection over an error; on MQTT 5 with DISCONNECT `reasonCode`, if given. */
  end(reasonCode: number | undefined): void;
  /** The hook accepted the CONNECT; `data` is the final Authentication Data for CONNACK. */
  accepted(data: Uint8Array | undefined): void;
  /** Acting on a hook's answer threw: the connection fails over `error`. */
  fail(error: unknown): void;
}

/**
 * The authentication of one connection: who the client is (for the `authorize` hook), and the
 * exchange with the `authenticate` hook, if the broker has one.
 */
export class ConnectionAuthentication {
  readonly #hook: AuthenticateHook | undefined;
  readonly #host: AuthenticationHost;
  #clientId: string | undefined = undefined;
  #identity: string | undefined = undefined;
  #version: ProtocolVersion = 4;
  // MQTT 5 enhanced authentication: the method CONNECT named, the challenge awaiting the
  // client's answer, whether a re-authentication runs, and the hook answer awaited (its number).
  #method: string | undefined = undefined;
  #challenge:
    | ((data: Uint8Array | undefined) => AuthenticationResult | Promise<AuthenticationResult>)
    | undefined = undefined;
  #reauthenticating = false;
  #consulting = 0;

  /** The authentication of a new connection, decided by `hook` (none: every CONNECT is accepted). */
  constructor(hook: AuthenticateHook | undefined, host: AuthenticationHost) {
    this.#hook = hook;
    this.#host = host;
  }

  /** The client identifier, once CONNECT is read. */
  get clientId(): string | undefined {
    return this.#clientId;
  }

  /** The identity the authorize hook sees: the User Name, or what authentication gave. */
  get identity(): string | undefined {
    return this.#identity;
  }

  /** The CONNACK code refusing `packet` before anything else is read of it, if any. */
  refusal(packet: ConnectPacket): number | undefined {
    const method = packet.protocolVersion === 5
      ? packet.properties?.authenticationMethod
      : undefined;
    // [MQTT-4.12.0-1] a method the server does not support.
    if (method !== undefined && this.#hook === undefined) return ReasonCode.BadAuthenticationMethod;
    return undefined;
  }

  /**
   * Reads who the client of `packet` is: `false` when it is accepted as it is, `true` when the
   * hook decides ({@linkcode ConnectionAuthentication.prototype.start} asks it).
   */
  connect(packet: ConnectPacket, clientId: string): boolean {
    this.#clientId = clientId;
    this.#identity = packet.username;
    this.#version = packet.protocolVersion;
    if (this.#hook === undefined) return false;
    this.#method = packet.protocolVersion === 5
      ? packet.properties?.authenticationMethod
      : undefined;
    return true;
  }

  /** Asks the hook about the CONNECT that {@linkcode ConnectionAuthentication.prototype.connect} read. */
  start(packet: ConnectPacket): void {
    const authenticate = this.#hook!;
    const method = this.#method;
    const request = {
      clientId: this.#clientId!,
      protocolVersion: packet.protocolVersion,
      reauthentication: false,
      ...(packet.username !== undefined ? { username: packet.username } : {}),
      ...(packet.password !== undefined ? { password: packet.password } : {}),
      ...(method !== undefined ? { method } : {}),
      ...(packet.protocolVersion === 5 && packet.properties?.authenticationData !== undefined
        ? { data: packet.properties.authenticationData }
        : {}),
    };
    this.#consult(() => authenticate(request), "connect");
  }

  /**
   * A packet while the hook decides on CONNECT: `true` when it was an AUTH, which goes on with
   * the exchange; `false` when it is to wait for the CONNACK.
   *
   * @throws {ProtocolError} For any other packet from a client that named a method.
   */
  authenticating(packet: Packet): boolean {
    if (packet.type === "auth") {
      this.#continue(packet, "connect");
      return true;
    }
    if (this.#method !== undefined) {
      throw new ProtocolError(
        `${packet.type.toUpperCase()} before CONNACK from a client that named an Authentication Method`,
        "MQTT-3.1.2-30",
        ReasonCode.ProtocolError,
      );
    }
    return false;
  }

  /** A bad packet during the exchange on CONNECT: v5 says why in CONNACK, 3.x just closes. */
  failed(error: unknown): void {
    if (this.#version !== 5) return this.#host.end(undefined);
    const code = error instanceof ProtocolError ? error.reasonCode : ReasonCode.UnspecifiedError;
    this.#host.refuse(connackRefusal(code, 5));
  }

  /** Adds what an accepting CONNACK says of the exchange to its `properties`. */
  accepting(properties: Properties, data: Uint8Array | undefined): void {
    if (this.#method === undefined) return;
    // [MQTT-4.12.0-5] an accepting CONNACK names the method of CONNECT.
    properties.authenticationMethod = this.#method;
    if (data !== undefined) properties.authenticationData = data;
  }

  /**
   * Asks a hook (the authenticate hook, or a challenge's `next`) and acts on its answer, unless
   * the connection ended or another question was asked meanwhile. A hook that throws refuses.
   */
  #consult(ask: () => AuthenticationResult | Promise<AuthenticationResult>, phase: Phase): void {
    const round = ++this.#consulting;
    new Promise<AuthenticationResult>((resolve) => resolve(ask())).then(
      (result) => decide(result),
      () => decide(false, true),
    ).then((decision) => {
      if (this.#host.closed() || round !== this.#consulting) return;
      try {
        this.#decided(decision, phase);
      } catch (error) {
        this.#host.fail(error);
      }
    });
  }

  #decided(decision: Decision, phase: Phase): void {
    const version = this.#version;
    if (
      decision.kind === "challenge" && (version !== 5 || this.#method === undefined)
    ) {
      // [MQTT-4.12.0-6] no AUTH to a client that named no method: a hook's mistake, refused.
      decision = { kind: "refuse", reasonCode: ReasonCode.UnspecifiedError };
    }
    switch (decision.kind) {
      case "refuse":
        this.#challenge = undefined;
        if (phase === "connect") {
          // [MQTT-4.12.0-4] the server may refuse at any point, and closes the connection.
          return this.#host.refuse(
            connackRefusal(decision.reasonCode, version),
            decision.reasonString === undefined
              ? undefined
              : { reasonString: decision.reasonString },
          );
        }
        // [MQTT-4.12.1-2] a failed re-authentication ends with DISCONNECT.
        return this.#host.end(disconnectRefusal(decision.reasonCode));
      case "challenge":
        this.#challenge = decision.next;
        // [MQTT-4.12.0-2] more data is asked for with 0x18.
        return this.#sendAuth(ReasonCode.ContinueAuthentication, decision.data);
      case "accept":
        this.#challenge = undefined;
        if (decision.username !== undefined) this.#identity = decision.username;
        if (phase === "reauthenticate") {
          this.#reauthenticating = false;
          return this.#sendAuth(ReasonCode.Success, decision.data);
        }
        return this.#host.accepted(decision.data);
    }
  }

  /** [MQTT-4.12.0-5] every AUTH the server sends names the method of CONNECT. */
  #sendAuth(reasonCode: number, data: Uint8Array | undefined): void {
    const properties: Properties = { authenticationMethod: this.#method };
    if (data !== undefined) properties.authenticationData = data;
    this.#host.send({ type: "auth", reasonCode, properties });
  }

  /** An AUTH 0x18 from the client: its answer to our challenge. */
  #continue(packet: AuthPacket, phase: Phase): void {
    this.#checkAuthMethod(packet);
    const next = this.#challenge;
    if (packet.reasonCode !== ReasonCode.ContinueAuthentication || next === undefined) {
      throw new ProtocolError(
        packet.reasonCode === ReasonCode.ContinueAuthentication
          ? "AUTH 0x18 that answers no challenge"
          : `a client does not send AUTH 0x${packet.reasonCode.toString(16)} here`,
        // [MQTT-4.12.0-3] the client answers a challenge with 0x18, and only then.
        "MQTT-4.12.0-3",
        ReasonCode.ProtocolError,
      );
    }
    this.#challenge = undefined;
    const data = packet.properties?.authenticationData;
    this.#consult(() => next(data), phase);
  }

  /** An AUTH from a connected client: a re-authentication starts (0x19) or goes on (0x18). */
  reauthenticate(packet: AuthPacket): void {
    this.#checkAuthMethod(packet);
    if (packet.reasonCode !== ReasonCode.ReAuthenticate) {
      if (!this.#reauthenticating) {
        throw new ProtocolError(
          `AUTH 0x${packet.reasonCode.toString(16)} while no re-authentication runs`,
          "MQTT-4.12.1-1",
          ReasonCode.ProtocolError,
        );
      }
      return this.#continue(packet, "reauthenticate");
    }
    if (this.#reauthenticating) {
      throw new ProtocolError(
        "AUTH 0x19 while a re-authentication runs",
        undefined,
        ReasonCode.ProtocolError,
      );
    }
    this.#reauthenticating = true;
    const authenticate = this.#hook!;
    const data = packet.properties?.authenticationData;
    const request = {
      clientId: this.#clientId!,
      protocolVersion: this.#version,
      reauthentication: true,
      method: this.#method,
      ...(this.#identity !== undefined ? { username: this.#identity } : {}),
      ...(data !== undefined ? { data } : {}),
    };
    this.#consult(() => authenticate(request), "reauthenticate");
  }

  /** The client's AUTH: only with a method in CONNECT, and that method. */
  #checkAuthMethod(packet: AuthPacket): void {
    if (this.#method === undefined) {
      throw new ProtocolError(
        "AUTH without an authentication method",
        "MQTT-4.12.0-7",
        ReasonCode.ProtocolError,
      );
    }
    if (packet.properties?.authenticationMethod !== this.#method) {
      throw new ProtocolError(
        `AUTH names another method than "${this.#method}"`,
        "MQTT-4.12.1-1",
        ReasonCode.BadAuthenticationMethod,
      );
    }
  }
}
