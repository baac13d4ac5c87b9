/**
 * What one connected client subscribes to: each topic filter of a SUBSCRIBE checked and
 * authorized, added to the registry's trie, the retained messages it is owed, and the SUBACK and
 * UNSUBACK it gets. The trie itself is the registry's; replies go out through the client's outbox.
 *
 * @module
 */

import { ReasonCode, SubackReturnCode } from "../packet/constants.ts";
import { isShared, isValidTopicFilter } from "../packet/topic.ts";
import type { Packet, SubscribePacket, UnsubscribePacket } from "../packet/types.ts";
import type { ConnectionAuthorization } from "./authorization.ts";
import type { BrokerSession, SubscriptionRecord } from "./broker_session.ts";
import type { Outbox } from "./outbox.ts";
import type { BrokerCore } from "./registry.ts";

/** The SUBSCRIBE and UNSUBSCRIBE packets coming in on one connection. */
export class Subscriptions {
  readonly #core: BrokerCore;
  readonly #outbox: Outbox;
  readonly #authorization: ConnectionAuthorization;

  /** The subscriptions of a new connection, asking `authorization`; replies go to `outbox`. */
  constructor(core: BrokerCore, outbox: Outbox, authorization: ConnectionAuthorization) {
    this.#core = core;
    this.#outbox = outbox;
    this.#authorization = authorization;
  }

  /** A SUBSCRIBE from the client, on behalf of `session`: SUBACK, then the retained messages. */
  subscribe(session: BrokerSession, packet: SubscribePacket): void {
    const v5 = this.#outbox.version === 5;
    const identifier = v5 ? packet.properties?.subscriptionIdentifier : undefined;
    const reasonCodes: number[] = [];
    const retainedToSend: SubscriptionRecord[] = [];
    for (const request of packet.subscriptions) {
      const filter = request.topicFilter;
      if (!isValidTopicFilter(filter)) {
        reasonCodes.push(v5 ? ReasonCode.TopicFilterInvalid : SubackReturnCode.Failure);
        continue;
      }
      const refused = this.#authorization.subscribe(filter, request.qos, v5);
      if (refused !== undefined) {
        reasonCodes.push(refused);
        continue;
      }
      // No Local on a shared subscription never gets here: the codec refuses it.
      const shared = isShared(filter);
      const record: SubscriptionRecord = {
        session,
        topicFilter: filter,
        qos: request.qos,
        noLocal: v5 && (request.noLocal ?? false),
        retainAsPublished: v5 && (request.retainAsPublished ?? false),
        retainHandling: v5 ? request.retainHandling ?? 0 : 0,
      };
      if (identifier !== undefined) record.subscriptionIdentifier = identifier;
      const replaced = this.#core.subscribe(record);
      reasonCodes.push(request.qos);
      // [MQTT-3.3.1-9] retained messages go out on subscribe, unless Retain Handling says not;
      // never on a shared subscription (v5 section 4.8.2).
      if (shared) continue;
      if (record.retainHandling === 0 || (record.retainHandling === 1 && !replaced)) {
        retainedToSend.push(record);
      }
    }
    this.#outbox.send({ type: "suback", packetId: packet.packetId, reasonCodes });
    for (const record of retainedToSend) this.#core.deliverRetained(record);
  }

  /** An UNSUBSCRIBE from the client, on behalf of `session`: UNSUBACK. */
  unsubscribe(session: BrokerSession, packet: UnsubscribePacket): void {
    const reasonCodes = packet.topicFilters.map((filter) =>
      this.#core.unsubscribe(session, filter)
        ? ReasonCode.Success
        : ReasonCode.NoSubscriptionExisted
    );
    const unsuback: Packet = { type: "unsuback", packetId: packet.packetId };
    if (this.#outbox.version === 5) unsuback.reasonCodes = reasonCodes;
    this.#outbox.send(unsuback);
  }
}
