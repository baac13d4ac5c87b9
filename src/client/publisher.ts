/**
 * The `Publisher` mixin: what a client needs to publish.
 *
 * @module
 */

import type { PublishPacket } from "../packet/types.ts";
import type { BaseClient } from "./base_client.ts";
import { toBytes } from "./options.ts";
import type { PublishOptions } from "./types.ts";

/** A constructor of `T`: what a mixin extends. */
// deno-lint-ignore no-explicit-any
export type Constructor<T> = new (...args: any[]) => T;

/** The methods the `Publisher` mixin adds. */
export interface PublisherMethods {
  /**
   * Publishes a message.
   *
   * @param topic The topic; no wildcards.
   * @param payload The payload; a string is sent as UTF-8, bytes are sent as they are (not
   * copied: do not change them until the promise settles).
   * @param options QoS (default 0), retain, MQTT 5 properties.
   * @returns A promise that settles on PUBACK (QoS 1), on PUBCOMP (QoS 2), or once the bytes
   * are written (QoS 0). It rejects with `ConnectionClosedError` if the connection ends first
   * and with `PublishError` if an MQTT 5 broker refuses the message.
   */
  publish(topic: string, payload: string | Uint8Array, options?: PublishOptions): Promise<void>;
}

/**
 * Adds publishing to a client class.
 *
 * @example A publisher profile of one's own
 * ```ts
 * import { BaseClient } from "./base_client.ts";
 * import { Publisher } from "./publisher.ts";
 *
 * class TelemetryPublisher extends Publisher(BaseClient) {}
 * console.log(typeof new TelemetryPublisher().publish); // "function"
 * ```
 */
export function Publisher<T extends Constructor<BaseClient>>(
  Base: T,
): T & Constructor<PublisherMethods> {
  return class Publisher extends Base implements PublisherMethods {
    publish(
      topic: string,
      payload: string | Uint8Array,
      options?: PublishOptions,
    ): Promise<void> {
      try {
        const packet: PublishPacket = {
          type: "publish",
          topic,
          payload: toBytes(payload),
          qos: options?.qos ?? 0,
          retain: options?.retain ?? false,
          dup: false,
        };
        if (options?.properties !== undefined) packet.properties = options.properties;
        return this.sendPublish(packet);
      } catch (error) {
        return Promise.reject(error);
      }
    }
  };
}
