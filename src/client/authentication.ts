/**
 * The client's side of MQTT 5 enhanced authentication (section 4.12): running the `auth`
 * handler's `start`, `next` and `done` steps for the connection's exchange and for each
 * re-authentication, one at a time, and ending an exchange when it fails or its connection goes.
 * What may be sent or received when is the session's to check; this only runs the handler.
 *
 * @module
 */

import { type Clock, Deferred } from "../_async.ts";
import {
  AuthenticationError,
  type BrokerDisconnect,
  ConnectionClosedError,
  type MqttError,
  ProtocolError,
  StateError,
} from "../errors.ts";
import { ReasonCode } from "../packet/constants.ts";
import type { AuthPacket, ConnackPacket } from "../packet/types.ts";
import type { Session } from "../session/mod.ts";
import type { Connection } from "./connection.ts";
import type { ClientState } from "./state.ts";
import type { AuthenticationExchange, Authenticator } from "./types.ts";

/** What an {@linkcode EnhancedAuthentication} asks of the lifecycle that owns it. */
export interface AuthenticationHost {
  /** The client's state, for a re-authentication asked for when it cannot run. */
  state(): ClientState;
  /** The client's connection now, if any: an exchange that ran on another one is over. */
  connection(): Connection | undefined;
  /** Fails the client's connection: the client gave the exchange up. */
  fail(error: AuthenticationError): void;
}

/** One enhanced authentication exchange the client runs, on one connection. */
interface Exchange {
  /** The connection it runs on. */
  connection: Connection;
  /** Its steps, once the authenticator started it. */
  steps: AuthenticationExchange | undefined;
  /** For a re-authentication: settles with its outcome. */
  reauth: Deferred<void> | undefined;
}

/** Turns what an authentication handler threw into an {@linkcode AuthenticationError}. */
function authenticationFailure(error: unknown): AuthenticationError {
  if (error instanceof AuthenticationError) return error;
  return new AuthenticationError(
    `the authentication handler failed: ${error instanceof Error ? error.message : String(error)}`,
    ReasonCode.NotAuthorized,
    { cause: error },
  );
}

/** The enhanced authentication of a client with the `auth` option: at most one exchange runs. */
export class EnhancedAuthentication {
  readonly #auth: Authenticator;
  readonly #session: Session<unknown>;
  readonly #clock: Clock;
  readonly #host: AuthenticationHost;
  // The exchange running, if any.
  #exchange: Exchange | undefined;
  // Settles when the last re-authentication asked for has: the next one waits for it.
  #reauthTail: Promise<void> = Promise.resolve();

  /** Runs `auth` for the client's `session`. */
  constructor(
    auth: Authenticator,
    session: Session<unknown>,
    clock: Clock,
    host: AuthenticationHost,
  ) {
    this.#auth = auth;
    this.#session = session;
    this.#clock = clock;
    this.#host = host;
  }

  /**
   * Starts the authentication exchange of a connection: CONNECT goes once the authenticator has
   * given the initial data. The connect timeout runs meanwhile.
   */
  start(connection: Connection): void {
    const session = this.#session;
    const exchange: Exchange = { connection, steps: undefined, reauth: undefined };
    this.#exchange = exchange;
    const context = { reauthentication: false, clientId: session.clientId };
    Promise.resolve().then(() => this.#auth.start(context)).then((steps) => {
      if (this.#exchange !== exchange || !connection.writable) return;
      exchange.steps = steps;
      session.connect(this.#clock.now(), steps.data);
      connection.scheduleFlush();
    }).catch((error) => this.#failed(exchange, error));
  }

  /**
   * Checks an accepting CONNACK's final data with the exchange's `done` step, when it has one:
   * nothing is taken from the broker nor sent to it until the check passes, then `accepted` runs
   * (unless the connection ended meanwhile). The promise rejects when the check fails;
   * `undefined` when there is nothing to check.
   */
  verifyConnack(
    connack: ConnackPacket,
    accepted: () => Promise<void> | undefined,
  ): Promise<void> | undefined {
    const exchange = this.#exchange;
    const done = exchange?.steps?.done;
    if (exchange === undefined || done === undefined) return undefined;
    // What receive() would refuse is refused before the handler sees the data.
    this.#session.checkConnack(connack);
    return Promise.resolve()
      .then(() => done.call(exchange.steps, connack.properties?.authenticationData, connack))
      .then(() => {
        if (this.#exchange !== exchange || !exchange.connection.writable) return;
        return accepted();
      }, (error) => {
        throw authenticationFailure(error);
      });
  }

  /** The CONNACK came: the connection's exchange is over. */
  connected(): void {
    this.#exchange = undefined;
  }

  /** The broker disconnected: a re-authentication running fails with it. */
  disconnected(error: BrokerDisconnect): void {
    const reauth = this.#exchange?.reauth;
    if (reauth === undefined) return;
    this.#exchange = undefined;
    reauth.reject(
      new AuthenticationError(
        `the re-authentication failed: ${error.message}`,
        error.packet.reasonCode ?? ReasonCode.UnspecifiedError,
        { cause: error },
      ),
    );
  }

  /** An AUTH the session let through: a challenge to answer, or a re-authentication's success. */
  receive(packet: AuthPacket): void {
    const exchange = this.#exchange;
    const session = this.#session;
    if (exchange === undefined || exchange.steps === undefined) {
      // The session only lets an AUTH through while an exchange runs, whose steps exist by then.
      throw new ProtocolError("AUTH outside an authentication exchange", "MQTT-4.12.0-6");
    }
    const steps = exchange.steps;
    const data = packet.properties?.authenticationData;
    if (session.authenticationChallenged) {
      if (steps.next === undefined) {
        this.#failed(
          exchange,
          new AuthenticationError(
            `the broker asked for more authentication data (AUTH 0x18), and the handler of "${session.authenticationMethod}" has no next step`,
          ),
        );
        return;
      }
      Promise.resolve().then(() => steps.next!(data, packet)).then((answer) => {
        if (this.#exchange !== exchange || !exchange.connection.writable) return;
        session.answerAuthentication(answer);
        exchange.connection.scheduleFlush();
      }).catch((error) => this.#failed(exchange, error));
      return;
    }
    // AUTH 0x00: the re-authentication succeeded, once the handler agrees.
    Promise.resolve().then(() => steps.done?.(data, packet)).then(() => {
      if (this.#exchange !== exchange) return;
      this.#exchange = undefined;
      exchange.reauth?.resolve();
    }).catch((error) => this.#failed(exchange, error));
  }

  /**
   * The client gives an exchange up: the handler threw, or the broker's data did not satisfy it.
   * The connection fails (after a re-authentication, with DISCONNECT [MQTT-4.12.1-2]).
   */
  #failed(exchange: Exchange, error: unknown): void {
    if (this.#exchange !== exchange) return;
    this.#exchange = undefined;
    const failure = authenticationFailure(error);
    exchange.reauth?.reject(failure);
    if (this.#host.connection() === exchange.connection) this.#host.fail(failure);
  }

  /**
   * Re-authenticates on the live connection (AUTH 0x19), one exchange at a time: a call made
   * while one runs waits for it to end first.
   */
  reauthenticate(): Promise<void> {
    const run = this.#reauthTail.then(() => this.#reauthenticateNow());
    this.#reauthTail = run.catch(() => {});
    return run;
  }

  async #reauthenticateNow(): Promise<void> {
    const host = this.#host;
    const connection = host.connection();
    if (host.state() !== "connected" || connection === undefined) {
      throw new StateError("re-authenticate", host.state());
    }
    const session = this.#session;
    const exchange: Exchange = { connection, steps: undefined, reauth: new Deferred<void>() };
    this.#exchange = exchange;
    let steps: AuthenticationExchange;
    try {
      steps = await this.#auth.start({ reauthentication: true, clientId: session.clientId });
    } catch (error) {
      // Nothing went on the wire: the connection goes on as it was.
      if (this.#exchange === exchange) this.#exchange = undefined;
      throw authenticationFailure(error);
    }
    if (this.#exchange !== exchange || host.connection() !== connection) {
      // The connection ended meanwhile, and ending it rejected the exchange.
      return exchange.reauth!.promise;
    }
    exchange.steps = steps;
    try {
      session.reauthenticate(steps.data);
    } catch (error) {
      this.#exchange = undefined;
      throw error;
    }
    connection.scheduleFlush();
    return exchange.reauth!.promise;
  }

  /** Ends the exchange running, if any: the connection it ran on is gone. */
  end(reason: MqttError): void {
    const exchange = this.#exchange;
    if (exchange === undefined) return;
    this.#exchange = undefined;
    exchange.reauth?.reject(
      reason instanceof AuthenticationError ? reason : new ConnectionClosedError(
        `the connection ended before the re-authentication did: ${reason.message}`,
        { cause: reason },
      ),
    );
  }
}
