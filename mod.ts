/**
 * Kite: a zero-dependency MQTT 3.1, 3.1.1 and 5.0 client for Deno, Bun, Node and browsers, built
 * on web standards only.
 *
 * - {@linkcode connect} dials a URL and returns a connected {@linkcode MqttClient}.
 * - {@linkcode MqttPublisher}, {@linkcode MqttSubscriber} and {@linkcode MqttClient} are the
 *   three profiles of twisted-mqtt, over any `{ readable, writable }` byte connection;
 *   {@linkcode openTransport} opens one from a broker URL on any runtime.
 * - The packet codec is here too, and on its own at `jsr:@kite/mqtt/packet`.
 *
 * @example Publish and receive
 * ```ts ignore
 * import { connect } from "jsr:@kite/mqtt";
 *
 * await using client = await connect("mqtt://127.0.0.1:1883");
 * await client.subscribe("greetings/#", { qos: 1 });
 * await client.publish("greetings/kite", "hello", { qos: 1 });
 * for await (const message of client.messages()) {
 *   console.log(message.topic, new TextDecoder().decode(message.payload));
 *   break;
 * }
 * ```
 *
 * @example Encoding and decoding a packet
 * ```ts
 * import { decode, encode } from "./mod.ts";
 *
 * const bytes = encode({ type: "pingreq" });
 * console.log(decode(bytes)); // { type: "pingreq" }
 * ```
 *
 * @module
 */

export * from "./src/packet/mod.ts";
export {
  BrokerDisconnect,
  ConnectionClosedError,
  ConnectionRefusedError,
  LimitError,
  StateError,
  StoreError,
  SubscribeError,
  TimeoutError,
} from "./src/errors.ts";
export { topicMatches, TopicTrie } from "./src/topic.ts";
export {
  type AckMode,
  BaseClient,
  ClientBase,
  type ClientOptions,
  type ClientState,
  type Clock,
  connect,
  type ConnectEventDetail,
  type ConnectionChange,
  type ConnectOptions,
  type Constructor,
  type Dialer,
  type DisconnectEventDetail,
  type DisconnectOptions,
  Inbox,
  type InboxOptions,
  isRetryable,
  type Message,
  type MessageData,
  type MessagesOptions,
  MqttClient,
  MqttPublisher,
  MqttSubscriber,
  type Operation,
  type OutgoingMessage,
  Publisher,
  PublisherBase,
  type PublisherMethods,
  type PublishHandler,
  type PublishHandlerOptions,
  type PublishOptions,
  type QueueOptions,
  type ReconnectEventDetail,
  type ReconnectOptions,
  Requester,
  RequesterBase,
  type RequesterMethods,
  type RequestOptions,
  type RespondOptions,
  type ResponseHandler,
  type StopResponding,
  type SubscribeOptions,
  Subscriber,
  SubscriberBase,
  type SubscriberMethods,
  type SubscriptionRequest,
  type UnsubscribeOptions,
  type WillOptions,
  type WritableOptions,
} from "./src/client/mod.ts";
export { PublishError } from "./src/session/mod.ts";
export {
  FileStore,
  type FileStoreOptions,
  IndexedDbStore,
  type IndexedDbStoreOptions,
  MemoryStore,
  type OutgoingState,
  type Store,
  type StoreContents,
  type StoredPublish,
  type StoreOperation,
} from "./src/store/mod.ts";
export { openTransport, type Transport, type TransportOptions } from "./src/transport/mod.ts";
