/**
 * The session layer: the client's MQTT protocol state without any I/O — packet identifiers,
 * QoS 1 and 2 flows both ways, the in-flight window, exactly-once bookkeeping, keepalive
 * deadlines with the time passed in, and every rule of the protocol and limit of the broker,
 * checked in one place before anything changes.
 *
 * @example A QoS 1 publish, driven by hand
 * ```ts
 * import { Session } from "./mod.ts";
 *
 * const session = new Session<string>({ protocolVersion: 4, clientId: "c", clean: true, keepalive: 0 });
 * session.connect(0);
 * session.receive({ type: "connack", sessionPresent: false, reasonCode: 0 }, 0);
 * session.publish({ type: "publish", topic: "a", payload: new Uint8Array(), qos: 1, retain: false, dup: false }, "token");
 * console.log(session.takeOutbox(0).map((packet) => packet.type)); // ["connect", "publish"]
 * ```
 *
 * @module
 */

export {
  type AuthenticationPhase,
  type GrantedSubscription,
  type OutgoingPublish,
  PublishError,
  requestPayloadSize,
  type ServerLimits,
  Session,
  type SessionEvent,
  type SessionOptions,
} from "./session.ts";
