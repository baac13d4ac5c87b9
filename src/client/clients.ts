/**
 * The three profiles of twisted-mqtt, as classes: a pure publisher, a pure subscriber, and both.
 *
 * @module
 */

import { BaseClient } from "./base_client.ts";
import { type Constructor, Publisher, type PublisherMethods } from "./publisher.ts";
import { Requester, type RequesterMethods } from "./request.ts";
import { Subscriber, type SubscriberMethods } from "./subscriber.ts";

/**
 * `Publisher(BaseClient)`: the class {@linkcode MqttPublisher} extends, named so that its type
 * is explicit.
 *
 * @example
 * ```ts
 * import { PublisherBase } from "./clients.ts";
 *
 * class Telemetry extends PublisherBase {}
 * console.log(typeof new Telemetry().publish); // "function"
 * ```
 */
export const PublisherBase: typeof BaseClient & Constructor<PublisherMethods> = Publisher(
  BaseClient,
);

/**
 * `Subscriber(BaseClient)`: the class {@linkcode MqttSubscriber} extends.
 *
 * @example
 * ```ts
 * import { SubscriberBase } from "./clients.ts";
 *
 * class Dashboard extends SubscriberBase {}
 * console.log(typeof new Dashboard().subscribe); // "function"
 * ```
 */
export const SubscriberBase: typeof BaseClient & Constructor<SubscriberMethods> = Subscriber(
  BaseClient,
);

/**
 * `Subscriber(Publisher(BaseClient))`: the class {@linkcode MqttClient} extends.
 *
 * @example
 * ```ts
 * import { ClientBase } from "./clients.ts";
 *
 * class Bridge extends ClientBase {}
 * console.log(typeof new Bridge().publish, typeof new Bridge().messages); // "function" "function"
 * ```
 */
export const ClientBase:
  & typeof BaseClient
  & Constructor<PublisherMethods>
  & Constructor<SubscriberMethods> = Subscriber(PublisherBase);

/**
 * `Requester(Subscriber(Publisher(BaseClient)))`: the class {@linkcode MqttClient} extends, with
 * MQTT 5 request / response.
 *
 * @example
 * ```ts
 * import { RequesterBase } from "./clients.ts";
 *
 * class Rpc extends RequesterBase {}
 * console.log(typeof new Rpc().request); // "function"
 * ```
 */
export const RequesterBase: typeof ClientBase & Constructor<RequesterMethods> = Requester(
  ClientBase,
);

/**
 * A client that only publishes. A PUBLISH the broker sends it anyway is acknowledged as the
 * protocol requires and dropped.
 *
 * @example
 * ```ts ignore
 * import { MqttPublisher } from "jsr:@kite/mqtt";
 *
 * const publisher = new MqttPublisher(await Deno.connect({ hostname: "127.0.0.1", port: 1883 }));
 * await publisher.connect({ keepalive: 30 });
 * await publisher.publish("sensors/1", "21.5", { qos: 1 });
 * await publisher.disconnect();
 * ```
 */
export class MqttPublisher extends PublisherBase {}

/**
 * A client that only subscribes and receives.
 *
 * @example
 * ```ts ignore
 * import { MqttSubscriber } from "jsr:@kite/mqtt";
 *
 * const subscriber = new MqttSubscriber(await Deno.connect({ hostname: "127.0.0.1", port: 1883 }));
 * await subscriber.connect();
 * await subscriber.subscribe("sensors/#", { qos: 2 });
 * for await (const message of subscriber.messages()) console.log(message.topic);
 * ```
 */
export class MqttSubscriber extends SubscriberBase {}

/**
 * A client that publishes and subscribes, and (MQTT 5) sends and answers requests.
 *
 * @example
 * ```ts ignore
 * import { connect } from "jsr:@kite/mqtt";
 *
 * await using client = await connect("mqtt://127.0.0.1:1883");
 * await client.subscribe("chat/#", { qos: 1 });
 * await client.publish("chat/kite", "hello", { qos: 1 });
 * ```
 */
export class MqttClient extends RequesterBase {}
