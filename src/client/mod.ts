/**
 * The client layer: the user's API over a connection to a broker — `connect(url)`, the three
 * profiles of twisted-mqtt (publisher, subscriber, both) as mixins over one base class, its
 * events, and the lifecycle behind it (dialing, reconnecting with backoff, closing).
 *
 * @example Connect, publish, and close
 * ```ts ignore
 * import { connect } from "./mod.ts";
 *
 * await using client = await connect("mqtt://127.0.0.1:1883");
 * await client.publish("greetings", "hello", { qos: 1 });
 * ```
 *
 * @module
 */

export { connect, type ConnectionChange, type ConnectOptions } from "./connect.ts";
export {
  ClientBase,
  MqttClient,
  MqttPublisher,
  MqttSubscriber,
  PublisherBase,
  RequesterBase,
  SubscriberBase,
} from "./clients.ts";
export {
  Requester,
  type RequesterMethods,
  type RequestOptions,
  type RespondOptions,
  type ResponseHandler,
  type StopResponding,
} from "./request.ts";
export { BaseClient } from "./base_client.ts";
export type { ClientState, Operation } from "./state.ts";
export type { ConnectEventDetail, DisconnectEventDetail, ReconnectEventDetail } from "./events.ts";
export { type Dialer, isRetryable } from "./reconnect.ts";
export type { BrokerDialer } from "./brokers.ts";
export { type Constructor, Publisher, type PublisherMethods } from "./publisher.ts";
export {
  type AckMode,
  type MessagesOptions,
  type PublishHandler,
  type PublishHandlerOptions,
  Subscriber,
  type SubscriberMethods,
  type UnsubscribeOptions,
} from "./subscriber.ts";
export { type ScramCredentials, scramSha1, scramSha256 } from "./scram.ts";
export type {
  AuthenticationContext,
  AuthenticationExchange,
  Authenticator,
  ClientOptions,
  Clock,
  DisconnectOptions,
  Message,
  OutgoingMessage,
  PublishOptions,
  QueueOptions,
  ReconnectOptions,
  SubscribeOptions,
  SubscriptionRequest,
  WillOptions,
  WritableOptions,
} from "./types.ts";
export { Inbox, type InboxOptions, type MessageData } from "./inbox.ts";
