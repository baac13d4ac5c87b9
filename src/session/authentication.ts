/**
 * MQTT 5 enhanced authentication (section 4.12), the protocol's side of it: which AUTH packet
 * may come or go when, with which reason code and method. What the Authentication Data means is
 * the client's authentication handler's business; this only says whose turn it is. It changes
 * the state it shares with the rest of the session and nothing else (see `shared_state.ts`).
 *
 * An exchange is either the connection's (from CONNECT to CONNACK) or a re-authentication (from
 * our AUTH 0x19 to the server's AUTH 0x00); at most one runs at a time. Within it the turn passes
 * between the server (we wait for its AUTH, CONNACK or DISCONNECT) and us (we owe it an AUTH
 * 0x18 with the next data).
 *
 * @module
 */

import { LimitError, ProtocolError, StateError } from "../errors.ts";
import { ReasonCode } from "../packet/constants.ts";
import { packetSize } from "../packet/encode.ts";
import type { AuthPacket, ConnackPacket, Properties } from "../packet/types.ts";
import type { SharedState } from "./shared_state.ts";

/** Which exchange runs: none, the connection's, or a re-authentication. */
export type AuthenticationPhase = "none" | "connect" | "reauthenticate";

/** The enhanced authentication of a session. */
export class Authentication<T> {
  /** The Authentication Method, if the session authenticates that way. */
  readonly method: string | undefined;
  // Only a session with a method has one: it is what AUTH packets are sent into.
  #shared: SharedState<T> | undefined;
  #exchange: AuthenticationPhase = "none";
  // Whether the server sent AUTH 0x18 and we owe it the next AUTH.
  #ourTurn = false;

  /**
   * Creates the authentication state of a session.
   *
   * @throws {TypeError} For a method on MQTT 3.1 or 3.1.1, which have no enhanced authentication.
   */
  constructor(shared: SharedState<T> | undefined, method: string | undefined) {
    if (method !== undefined && shared?.protocolVersion !== 5) {
      throw new TypeError(
        `enhanced authentication (the auth option, method "${method}") needs MQTT 5: set protocolVersion: 5, or use username and password`,
      );
    }
    this.#shared = shared;
    this.method = method;
  }

  /**
   * The authentication of every session without a method, shared: no exchange ever runs in it,
   * so what its methods write is what it holds already (`"none"`, not our turn).
   */
  static readonly none: Authentication<never> = new Authentication<never>(undefined, undefined);

  /** The exchange running now. */
  get exchange(): AuthenticationPhase {
    return this.#exchange;
  }

  /** Whether the server challenged us (AUTH 0x18) and waits for our next AUTH. */
  get ourTurn(): boolean {
    return this.#ourTurn;
  }

  /**
   * The properties CONNECT carries for the method, with the initial data, and the start of the
   * connection's exchange. Until CONNACK nothing but AUTH leaves the session: what is published
   * waits for it [MQTT-3.1.2-30].
   */
  connectProperties(data: Uint8Array | undefined): Properties | undefined {
    this.#ourTurn = false;
    const method = this.method;
    if (method === undefined) {
      this.#exchange = "none";
      return undefined;
    }
    this.#exchange = "connect";
    return data === undefined
      ? { authenticationMethod: method }
      : { authenticationMethod: method, authenticationData: data };
  }

  /**
   * Checks an AUTH from the server: in an exchange, on the server's turn, with our method, and
   * with a code the server may send there. After it, `ourTurn` says whether it is a challenge to
   * answer (0x18); otherwise it ended a re-authentication with success (0x00).
   *
   * @throws {ProtocolError} When the server may not send it.
   */
  onAuth(packet: AuthPacket): void {
    const method = this.method;
    if (method === undefined) {
      throw new ProtocolError(
        "the broker sent AUTH, but CONNECT carried no Authentication Method",
        "MQTT-4.12.0-6",
        ReasonCode.ProtocolError,
      );
    }
    const theirs = packet.properties?.authenticationMethod;
    if (theirs !== method) {
      throw new ProtocolError(
        `the broker's AUTH names the method ${
          theirs === undefined ? "nothing" : `"${theirs}"`
        }, not "${method}"`,
        "MQTT-4.12.0-5",
        ReasonCode.ProtocolError,
      );
    }
    if (this.#exchange === "none" || this.#ourTurn) {
      throw new ProtocolError(
        this.#exchange === "none"
          ? "the broker sent AUTH while no authentication exchange was running"
          : "the broker sent AUTH before the client answered its last one",
        undefined,
        ReasonCode.ProtocolError,
      );
    }
    const code = packet.reasonCode;
    if (code === ReasonCode.ContinueAuthentication) {
      // [MQTT-4.12.0-2] the server asks for more with 0x18.
      this.#ourTurn = true;
      return;
    }
    if (code === ReasonCode.Success && this.#exchange === "reauthenticate") {
      this.#exchange = "none";
      return;
    }
    throw new ProtocolError(
      code === ReasonCode.Success
        ? "the broker ended the connection's authentication with AUTH 0x00 instead of CONNACK"
        : `a broker does not send AUTH with reason code 0x${code.toString(16)}`,
      "MQTT-3.15.2-1",
      ReasonCode.ProtocolError,
    );
  }

  /**
   * Checks that an accepting CONNACK names our method, or none if we have none, and ends the
   * connection's exchange. A refusing CONNACK may come at any point of it [MQTT-4.12.0-4].
   *
   * @throws {ProtocolError} When the method it names is not ours.
   */
  onConnack(packet: ConnackPacket): void {
    this.#ourTurn = false;
    this.#exchange = "none";
    this.checkConnack(packet);
  }

  /**
   * Checks a CONNACK as `onConnack` does, changing nothing.
   *
   * @throws {ProtocolError} When the method it names is not ours.
   */
  checkConnack(packet: ConnackPacket): void {
    if (packet.reasonCode !== 0) return;
    const theirs = packet.properties?.authenticationMethod;
    const method = this.method;
    if (method === undefined && theirs !== undefined) {
      throw new ProtocolError(
        `the broker's CONNACK names the authentication method "${theirs}", but CONNECT named none`,
        "MQTT-4.12.0-6",
        ReasonCode.ProtocolError,
      );
    }
    if (method !== undefined && theirs !== method) {
      throw new ProtocolError(
        `the broker's CONNACK names the authentication method ${
          theirs === undefined ? "nothing" : `"${theirs}"`
        }, not "${method}"`,
        "MQTT-4.12.0-5",
        ReasonCode.ProtocolError,
      );
    }
  }

  /**
   * Answers the server's challenge: AUTH 0x18 with our method and `data` goes to the outbox.
   *
   * @throws {StateError} When no challenge waits for an answer.
   * @throws {LimitError} Once connected, when the AUTH is larger than the server accepts.
   */
  answer(data: Uint8Array | undefined): void {
    if (!this.#ourTurn) {
      throw new StateError("answer an authentication challenge", "not challenged");
    }
    // [MQTT-4.12.0-3] the client answers a challenge with 0x18.
    this.#send(ReasonCode.ContinueAuthentication, data);
    this.#ourTurn = false;
  }

  /**
   * Starts a re-authentication: AUTH 0x19 with our method and `data` goes to the outbox.
   *
   * @throws {StateError} Without a method, while not connected, or while an exchange runs.
   * @throws {LimitError} When the AUTH is larger than the server accepts.
   */
  reauthenticate(data: Uint8Array | undefined): void {
    if (this.method === undefined) {
      // [MQTT-4.12.0-7] no AUTH from a client that named no method in CONNECT.
      throw new StateError(
        "re-authenticate without the auth option (CONNECT named no Authentication Method)",
        "connected",
      );
    }
    if (!this.#shared!.connected) {
      // [MQTT-4.12.1-1] only after CONNACK.
      throw new StateError("re-authenticate", "not connected");
    }
    if (this.#exchange !== "none") {
      throw new StateError("start a re-authentication", "authenticating already");
    }
    // [MQTT-4.12.1-1] 0x19, with the method the connection was authenticated with.
    this.#send(ReasonCode.ReAuthenticate, data);
    this.#exchange = "reauthenticate";
  }

  /** The connection closed: whatever exchange ran ends with it. */
  disconnected(): void {
    this.#exchange = "none";
    this.#ourTurn = false;
  }

  #send(reasonCode: number, data: Uint8Array | undefined): void {
    const shared = this.#shared!;
    const properties: Properties = { authenticationMethod: this.method };
    if (data !== undefined) properties.authenticationData = data;
    const packet: AuthPacket = { type: "auth", reasonCode, properties };
    if (shared.connected) {
      const size = packetSize(packet, 5);
      if (size > shared.limits.maximumPacketSize) {
        // [MQTT-3.2.2-15]
        throw new LimitError(
          `the AUTH is ${size} bytes; the broker accepts at most ${shared.limits.maximumPacketSize}`,
        );
      }
    }
    shared.send(packet);
  }
}
