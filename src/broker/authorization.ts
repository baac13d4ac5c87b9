/**
 * The broker's side of authorization for one connection: asking the `authorize` hook about each
 * PUBLISH, the will of CONNECT and each topic filter of a SUBSCRIBE, and the reason code of the
 * packet that refuses it on each protocol version.
 *
 * @module
 */

import { ReasonCode, reasonName, SubackReturnCode } from "../packet/constants.ts";
import type { ProtocolVersion, QoS, Will } from "../packet/types.ts";
import type { AuthorizationRequest, AuthorizeHook } from "./auth.ts";
import { connackRefusal } from "./authentication.ts";

/**
 * The reason code the `authorize` hook gives, or `undefined` when it allows: valid on
 * `packet` (PUBACK or SUBACK) or 0x87.
 */
export function authorization(
  hook: AuthorizeHook,
  request: AuthorizationRequest,
  packet: "puback" | "suback",
): number | undefined {
  let answer: boolean | number;
  try {
    answer = hook(request);
  } catch {
    return ReasonCode.UnspecifiedError;
  }
  if (answer === true || answer === 0) return undefined;
  if (answer === false) return ReasonCode.NotAuthorized;
  return answer >= 0x80 && reasonName(answer, packet) !== undefined
    ? answer
    : ReasonCode.NotAuthorized;
}

/** Who the `authorize` hook is asked about: what authentication settled on. */
export interface Requester {
  /** The client identifier, once CONNECT is read. */
  readonly clientId: string | undefined;
  /** The User Name, or the identity authentication gave. */
  readonly identity: string | undefined;
}

/** The authorization of one connection's client by the `authorize` hook. */
export class ConnectionAuthorization {
  readonly #hook: AuthorizeHook | undefined;
  readonly #requester: Requester;

  /** Asks `hook` (none: everything is allowed) about `requester`. */
  constructor(hook: AuthorizeHook | undefined, requester: Requester) {
    this.#hook = hook;
    this.#requester = requester;
  }

  /** The reason code refusing a PUBLISH (for its PUBACK or PUBREC), or `undefined`. */
  publish(topic: string, qos: QoS): number | undefined {
    const hook = this.#hook;
    if (hook === undefined) return undefined;
    const requester = this.#requester;
    return authorization(hook, {
      clientId: requester.clientId!,
      username: requester.identity,
      action: "publish",
      topic,
      qos,
    }, "puback");
  }

  /** The CONNACK code on `version` refusing a CONNECT for its will, or `undefined`. */
  will(will: Will, version: ProtocolVersion): number | undefined {
    const refused = this.publish(will.topic, will.qos);
    return refused === undefined ? undefined : connackRefusal(refused, version);
  }

  /** The SUBACK code refusing a subscription to `filter` (MQTT 5 or not), or `undefined`. */
  subscribe(filter: string, qos: QoS, v5: boolean): number | undefined {
    const hook = this.#hook;
    if (hook === undefined) return undefined;
    const requester = this.#requester;
    const refused = authorization(hook, {
      clientId: requester.clientId!,
      username: requester.identity,
      action: "subscribe",
      topic: filter,
      qos,
    }, "suback");
    if (refused === undefined) return undefined;
    return v5 ? refused : SubackReturnCode.Failure;
  }
}
