/**
 * What one connected client publishes: its MQTT 5 Topic Aliases resolved, its QoS 2 packet ids
 * remembered until PUBREL so each message is routed once, and the PUBACK, PUBREC and PUBCOMP it
 * is owed. Routing itself is the registry's; replies go out through the client's outbox.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import type { Packet, PublishPacket, QoS } from "../packet/types.ts";
import type { BrokerMessage, BrokerSession } from "./broker_session.ts";
import type { Outbox } from "./outbox.ts";
import { ReasonCode } from "../packet/constants.ts";
import type { BrokerCore } from "./registry.ts";

/** The packets coming in on one connection that carry or settle the client's messages. */
export class Inbox {
  readonly #core: BrokerCore;
  readonly #outbox: Outbox;
  #aliases = new Map<number, string>();
  /**
   * Asks the `authorize` hook whether the client may publish to a topic: the reason code that
   * refuses it, or `undefined`. Absent: every publish is allowed.
   */
  authorize: ((topic: string, qos: QoS) => number | undefined) | undefined = undefined;

  /** Creates the inbox of a new connection; its replies go out through `outbox`. */
  constructor(core: BrokerCore, outbox: Outbox) {
    this.#core = core;
    this.#outbox = outbox;
  }

  /**
   * A PUBLISH from the client, on behalf of `session`: routed, and acknowledged unless the
   * broker withholds acknowledgements.
   *
   * @throws {ProtocolError} On an illegal PUBLISH; the connection is to be closed.
   */
  publish(session: BrokerSession, packet: PublishPacket): void {
    const core = this.#core;
    let topic = packet.topic;
    const properties = packet.properties;
    // v5 [MQTT-3.3.4-6]: a client's PUBLISH carries no Subscription Identifier.
    if (
      properties?.subscriptionIdentifiers !== undefined ||
      properties?.subscriptionIdentifier !== undefined
    ) {
      throw new ProtocolError(
        "a client's PUBLISH carries a Subscription Identifier",
        "MQTT-3.3.4-6",
        ReasonCode.ProtocolError,
      );
    }
    const alias = properties?.topicAlias;
    if (alias !== undefined) {
      // Topic Alias 0 never gets here: the codec refuses it with 0x94 already [MQTT-3.3.2-8].
      if (alias > core.topicAliasMaximum) {
        throw new ProtocolError(
          `topic alias ${alias} is above the Topic Alias Maximum ${core.topicAliasMaximum}`,
          "MQTT-3.3.2-9",
          ReasonCode.TopicAliasInvalid,
        );
      }
      if (topic === "") {
        const known = this.#aliases.get(alias);
        if (known === undefined) {
          throw new ProtocolError(
            `topic alias ${alias} is not set`,
            undefined,
            ReasonCode.ProtocolError,
          );
        }
        topic = known;
      } else {
        this.#aliases.set(alias, topic);
      }
    }
    const refused = this.authorize?.(topic, packet.qos);
    if (refused !== undefined) return this.#refused(session, packet, refused);
    const withhold = core.withholdingAcks;
    if (packet.qos === 0) {
      core.publish(routed(core, topic, packet), session);
    } else if (packet.qos === 1) {
      core.publish(routed(core, topic, packet), session);
      if (!withhold) this.#outbox.send({ type: "puback", packetId: packet.packetId! });
    } else {
      const packetId = packet.packetId!;
      // 3.1.1 [MQTT-4.3.3-2], v5 [MQTT-4.3.3-10]: until PUBREL, a packet id already seen is a
      // re-delivery: acknowledged again, not routed again.
      if (!session.incoming.has(packetId)) {
        if (session.incoming.size >= core.receiveMaximum) {
          throw new ProtocolError(
            `more than ${core.receiveMaximum} QoS 2 messages unacknowledged`,
            "MQTT-3.3.4-7",
            ReasonCode.ReceiveMaximumExceeded,
          );
        }
        session.incoming.add(packetId);
        core.publish(routed(core, topic, packet), session);
      }
      if (!withhold) this.#outbox.send({ type: "pubrec", packetId });
    }
  }

  /**
   * A PUBLISH the `authorize` hook refused: not routed. MQTT 5 says so with PUBACK or PUBREC
   * carrying the code (QoS 2 then ends there: no PUBREL follows a PUBREC of 0x80 or more).
   * MQTT 3.1 and 3.1.1 have no way to say so: the broker acknowledges as usual and drops the
   * message, as [MQTT-3.3.5-2] allows (the other choice it allows is closing the connection).
   * QoS 0 is dropped in silence on every version.
   */
  #refused(session: BrokerSession, packet: PublishPacket, reasonCode: number): void {
    if (packet.qos === 0 || this.#core.withholdingAcks) return;
    const packetId = packet.packetId!;
    const v5 = this.#outbox.version === 5;
    if (packet.qos === 1) {
      this.#outbox.send(
        v5 ? { type: "puback", packetId, reasonCode } : { type: "puback", packetId },
      );
      return;
    }
    if (v5) {
      this.#outbox.send({ type: "pubrec", packetId, reasonCode });
      return;
    }
    // The PUBREL that follows gets its PUBCOMP.
    session.incoming.add(packetId);
    this.#outbox.send({ type: "pubrec", packetId });
  }

  /** A PUBREL from the client: its QoS 2 message is done; PUBCOMP goes out. */
  pubrel(session: BrokerSession, packetId: number): void {
    const known = session.incoming.delete(packetId);
    if (this.#core.withholdingAcks) return;
    const pubcomp: Packet = { type: "pubcomp", packetId };
    if (!known && this.#outbox.version === 5) {
      pubcomp.reasonCode = ReasonCode.PacketIdentifierNotFound;
    }
    this.#outbox.send(pubcomp);
  }
}

/**
 * The message a PUBLISH routes, made only once it is known to be routed (a repeated QoS 2 publish
 * is not): its payload is copied out of the read chunk, which a queued message must not pin.
 */
function routed(core: BrokerCore, topic: string, packet: PublishPacket): BrokerMessage {
  return core.message(topic, packet.payload.slice(), packet.qos, packet.retain, packet.properties);
}
