/**
 * The server's publishes to us: the topic aliases it uses, our Receive Maximum, the QoS 1
 * messages not yet acknowledged (in arrival order), and the QoS 2 packet ids between PUBLISH and
 * PUBREL that make delivery exactly once. It changes the state it shares with the rest of the
 * session and nothing else (see `shared_state.ts`).
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import type { PublishAckPacket, PublishPacket } from "../packet/types.ts";
import type { SharedState } from "./shared_state.ts";
import { ReasonCode } from "../packet/constants.ts";

/** The server's QoS 0, 1 and 2 flows to us. */
export class Incoming<T> {
  #shared: SharedState<T>;
  // Incoming QoS 2 packet ids between PUBLISH and PUBREL: false until the message has been
  // delivered, true after (its PUBREC is due). An id stays reserved until PUBREL, also across a
  // resumed session, so this follows the id rather than the connection.
  #qos2 = new Map<number, boolean>();
  // QoS 1 messages of this connection not yet acknowledged, in arrival order; the ones before
  // #unacknowledgedHead have been.
  #unacknowledged: PublishPacket[] = [];
  #unacknowledgedHead = 0;
  #receiveMaximum: number;
  #topicAliasMaximum: number;
  #topicAliases = new Map<number, string>();

  /**
   * Creates the incoming flows of a session.
   *
   * @param receiveMaximum Our Receive Maximum: how many unacknowledged QoS 1 and 2 publishes the
   * server may send.
   * @param topicAliasMaximum Our Topic Alias Maximum: the highest alias the server may use.
   */
  constructor(shared: SharedState<T>, receiveMaximum: number, topicAliasMaximum: number) {
    this.#shared = shared;
    this.#receiveMaximum = receiveMaximum;
    this.#topicAliasMaximum = topicAliasMaximum;
  }

  /** Takes back the QoS 2 packet ids a store held: reserved until their PUBREL. */
  restore(packetIds: Iterable<number>): void {
    for (const packetId of packetIds) this.#qos2.set(packetId, true);
  }

  /** Forgets the topic aliases of the last connection. */
  forgetAliases(): void {
    this.#topicAliases.clear();
  }

  /** Forgets the connection: its QoS 1 messages are re-sent by the server if not acknowledged. */
  disconnected(): void {
    this.#unacknowledged = [];
    this.#unacknowledgedHead = 0;
  }

  /** After a CONNACK without a session: the server has nothing of its in flight any more. */
  restart(): void {
    const shared = this.#shared;
    if (shared.journaling) {
      for (const packetId of this.#qos2.keys()) {
        shared.journal.push({ op: "deleteIncoming", packetId });
      }
    }
    this.#qos2.clear();
  }

  /**
   * Marks a QoS 1 or 2 message as delivered to the user and puts its acknowledgement in the
   * outbox: PUBACK for QoS 1 (in the order received), PUBREC for QoS 2.
   */
  acknowledge(packet: PublishPacket): void {
    const shared = this.#shared;
    const packetId = packet.packetId;
    if (packetId === undefined) return;
    if (packet.qos === 2) {
      if (this.#qos2.get(packetId) !== false) return;
      this.#qos2.set(packetId, true);
      // Durable before PUBREC: after a restart a re-sent copy is known as a duplicate. Recorded
      // on delivery, not on arrival, so that a crash in between re-delivers rather than loses.
      if (shared.journaling) shared.journal.push({ op: "putIncoming", packetId });
      // [MQTT-4.3.3-8] PUBREC once we own the message; when disconnected, the server re-sends
      // the PUBLISH after the reconnect and gets its PUBREC then.
      if (shared.connected) shared.outbox.push({ type: "pubrec", packetId });
      return;
    }
    // QoS 1: only a message of this connection. After a reconnect the id may stand for another
    // message, and the server re-sends what was not acknowledged.
    const queue = this.#unacknowledged;
    let i = this.#unacknowledgedHead;
    while (i < queue.length && queue[i] !== packet) i++;
    if (i === queue.length) return;
    if (i === this.#unacknowledgedHead) {
      queue[i] = undefined as unknown as PublishPacket;
      this.#unacknowledgedHead++;
      if (this.#unacknowledgedHead === queue.length) {
        queue.length = 0;
        this.#unacknowledgedHead = 0;
      }
    } else {
      queue.splice(i, 1);
    }
    // [MQTT-4.3.2-4] PUBACK once delivered, in the order received [MQTT-4.6.0-2].
    shared.outbox.push({ type: "puback", packetId });
  }

  /**
   * Handles a PUBLISH: a message event, unless it is a copy of a QoS 2 message not yet released.
   *
   * @throws {ProtocolError} For an alias above our maximum or without a topic, and beyond our
   * Receive Maximum.
   */
  onPublish(packet: PublishPacket): void {
    const shared = this.#shared;
    if (shared.protocolVersion === 5) this.#resolveTopicAlias(packet);
    const packetId = packet.packetId;
    if (packet.qos === 0 || packetId === undefined) {
      shared.events.push({ type: "message", packet });
      return;
    }
    if (packet.qos === 2) {
      const state = this.#qos2.get(packetId);
      if (state !== undefined) {
        // A re-sent PUBLISH before PUBREL is not delivered again; it is answered with PUBREC
        // [MQTT-4.3.3-10] once the first copy has been delivered and acknowledged.
        if (state) shared.outbox.push({ type: "pubrec", packetId });
        return;
      }
      this.#qos2.set(packetId, false);
    }
    // This PUBLISH counts too: a QoS 2 one is in #qos2 already, a QoS 1 one is not yet.
    if (
      this.#unacknowledged.length - this.#unacknowledgedHead + this.#qos2.size +
          (packet.qos === 1 ? 1 : 0) > this.#receiveMaximum
    ) {
      throw new ProtocolError(
        `the server sent more than the Receive Maximum of ${this.#receiveMaximum} unacknowledged publishes`,
        "MQTT-3.3.4-9",
        ReasonCode.ReceiveMaximumExceeded,
      );
    }
    if (packet.qos === 1) this.#unacknowledged.push(packet);
    shared.events.push({ type: "message", packet });
  }

  /**
   * Handles a PUBREL: the id is free again, and PUBCOMP goes out.
   *
   * @throws {ProtocolError} When it comes before our PUBREC.
   */
  onPubrel(packet: PublishAckPacket<"pubrel">): void {
    const shared = this.#shared;
    const packetId = packet.packetId;
    const known = this.#qos2.get(packetId);
    if (known === false) {
      // PUBREL before we sent PUBREC: the server broke the flow [MQTT-4.3.3-2] (3.1.1).
      throw new ProtocolError(
        `PUBREL for packet ${packetId} arrived before its PUBREC was sent`,
        undefined,
        ReasonCode.ProtocolError,
      );
    }
    this.#qos2.delete(packetId);
    // Durable before PUBCOMP: a stale id would make the next message with it look like a copy.
    if (known !== undefined && shared.journaling) {
      shared.journal.push({ op: "deleteIncoming", packetId });
    }
    // A PUBREL for an id we do not know still gets its PUBCOMP, so the server can finish
    // [MQTT-4.3.3-11] (5.0; [MQTT-4.3.3-2] in 3.1.1).
    shared.outbox.push(
      known === undefined && shared.protocolVersion === 5
        ? { type: "pubcomp", packetId, reasonCode: ReasonCode.PacketIdentifierNotFound }
        : { type: "pubcomp", packetId },
    );
  }

  #resolveTopicAlias(packet: PublishPacket): void {
    const alias = packet.properties?.topicAlias;
    if (alias === undefined) return;
    if (alias > this.#topicAliasMaximum) {
      throw new ProtocolError(
        `the server used topic alias ${alias}; the maximum is ${this.#topicAliasMaximum}`,
        "MQTT-3.3.2-11",
        ReasonCode.TopicAliasInvalid,
      );
    }
    if (packet.topic === "") {
      const topic = this.#topicAliases.get(alias);
      if (topic === undefined) {
        throw new ProtocolError(
          `topic alias ${alias} has no topic yet`,
          undefined,
          ReasonCode.ProtocolError,
        );
      }
      packet.topic = topic;
    } else {
      this.#topicAliases.set(alias, packet.topic);
    }
  }
}
