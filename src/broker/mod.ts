/**
 * Kite's local MQTT broker (`jsr:@kite/mqtt/broker`): a small MQTT 3.1, 3.1.1 and 5.0 broker that
 * runs inside your process, over TCP, over WebSocket (Deno and Bun), or over in-memory connections
 * that need no socket.
 *
 * It is meant for tests, demos and local development and is **not a production broker**: no TLS,
 * no clustering, nothing kept on disk, and authentication and authorization only as the hooks you
 * give it (`authenticate`, `authorize`; `scramVerifier` checks a table of users with SCRAM or
 * plain passwords). For production use mosquitto, EMQX or HiveMQ. A subscriber that does not read costs a bounded amount
 * of memory: past `maxBufferedBytes` its QoS 0 messages are dropped and its QoS 1 and 2 messages
 * wait in its session.
 *
 * What it does, it does by the specification: QoS 0, 1 and 2 (exactly once), retained messages,
 * clean and persistent sessions with bounded queues, session takeover, wills (with the MQTT 5 will
 * delay), keepalive enforcement at 1.5 times the keepalive, and the MQTT 5 reason codes, Receive
 * Maximum, Maximum Packet Size, incoming topic aliases, subscription identifiers, No Local, Retain
 * As Published, Retain Handling and shared subscriptions (`$share/{group}/{filter}`, one member
 * per message in turn). A malformed or illegal packet closes only the connection that
 * sent it.
 *
 * @example A broker, a subscriber and a publisher, all in memory
 * ```ts
 * import { Broker } from "./mod.ts";
 * import { MqttClient } from "../../mod.ts";
 *
 * const broker = new Broker();
 * const subscriber = new MqttClient(broker.connectClient());
 * await subscriber.connect({ clientId: "sub", keepalive: 0 });
 * await subscriber.subscribe("greetings/#", { qos: 2 });
 * const publisher = new MqttClient(broker.connectClient());
 * await publisher.connect({ clientId: "pub", keepalive: 0 });
 * await publisher.publish("greetings/kite", "hello", { qos: 2 });
 * for await (const message of subscriber.messages()) {
 *   console.log(message.topic, new TextDecoder().decode(message.payload)); // greetings/kite hello
 *   break;
 * }
 * await publisher.disconnect();
 * await subscriber.disconnect();
 * await broker.close();
 * ```
 *
 * @example Over TCP, for any MQTT client
 * ```ts
 * import { Broker } from "./mod.ts";
 *
 * await using broker = new Broker();
 * const { port } = await broker.listen({ port: 0, hostname: "127.0.0.1" });
 * console.log(`mosquitto_sub -h 127.0.0.1 -p ${port} -t '#' -v`);
 * ```
 *
 * @module
 */

export { Broker } from "./broker.ts";
export {
  type AuthenticateHook,
  type AuthenticationOutcome,
  type AuthenticationRequest,
  type AuthenticationResult,
  type AuthorizationRequest,
  type AuthorizeHook,
  scramSha256Verifier,
  scramVerifier,
  type ScramVerifierOptions,
} from "./auth.ts";
export { memoryPair } from "./memory.ts";
export type { WebSocketListenOptions } from "./websocket.ts";
export type {
  BrokerClock,
  BrokerOptions,
  BrokerTransport,
  ListenAddress,
  ListenOptions,
  RetainedMessage,
  SessionInfo,
  SubscriptionInfo,
} from "./types.ts";
export type { Properties, ProtocolVersion, QoS } from "../packet/types.ts";
