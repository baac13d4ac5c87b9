/**
 * The server's publishes to us: the topic aliases it uses, our Receive Maximum, the
 * acknowledgements of QoS 1 and 2 messages (sent once the user has handled them, in arrival
 * order), and the QoS 2 packet ids between PUBLISH and PUBREL that make delivery exactly once. It changes the state it shares with the rest of the
 * session and nothing else (see `shared_state.ts`).
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import type { PublishAckPacket, PublishPacket } from "../packet/types.ts";
import type { SharedState } from "./shared_state.ts";
import { ReasonCode } from "../packet/constants.ts";
import { Queue } from "../_queue.ts";

/** Marks an incoming QoS 2 id whose message the user has acknowledged: its PUBREC is due. */
const ACKNOWLEDGED = null;

/** The server's QoS 0, 1 and 2 flows to us. */
export class Incoming<T> {
  #shared: SharedState<T>;
  // Incoming QoS 2 packet ids between PUBLISH and PUBREL: the message handed to the user until
  // the user acknowledges it (so an acknowledgement of another message with the id is known),
  // ACKNOWLEDGED after (its PUBREC is due). An id stays reserved until PUBREL, also across a
  // resumed session, so this follows the id rather than the connection. Made on first use, like
  // #order and #waiting: an idle connection holds none of them.
  #qos2: Map<number, PublishPacket | typeof ACKNOWLEDGED> | undefined;
  // The acknowledgements of this connection, one slot per QoS 1 or 2 PUBLISH in the order they
  // arrived: the PUBLISH until the user acknowledges it, then its PUBACK or PUBREC, which goes
  // out once every slot before it has gone [MQTT-4.6.0-2] [MQTT-4.6.0-3]. Slot `i` from the
  // front holds arrival number `#orderBase + i`. Kept once made: no queue per message.
  #order: Queue<PublishPacket | PublishAckPacket<"puback" | "pubrec">> | undefined;
  #orderBase = 0;
  // Packet id → arrival number of the slot waiting for the user's acknowledgement. The server
  // does not reuse an id until it is acknowledged, so an acknowledgement finds its slot in O(1).
  #waiting: Map<number, number> | undefined;
  // QoS 1 slots not yet sent: with #qos2, what counts against our Receive Maximum.
  #unsentQos1 = 0;
  #receiveMaximum: number;
  #topicAliasMaximum: number;
  // Made on first use: most connections never see an alias.
  #topicAliases: Map<number, string> | undefined;

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
    for (const packetId of packetIds) (this.#qos2 ??= new Map()).set(packetId, ACKNOWLEDGED);
  }

  /** Forgets the topic aliases of the last connection. */
  forgetAliases(): void {
    this.#topicAliases?.clear();
  }

  /**
   * Forgets the connection's acknowledgements: the server re-sends what it did not get one for.
   * An acknowledgement of a QoS 1 message of this connection does nothing from now on; one of a
   * QoS 2 message still counts, and its PUBREC answers the copy the server re-sends.
   */
  disconnected(): void {
    const order = this.#order;
    if (order !== undefined) {
      this.#orderBase += order.length;
      order.clear();
    }
    this.#waiting?.clear();
    this.#unsentQos1 = 0;
  }

  /** After a CONNACK without a session: the server has nothing of its in flight any more. */
  restart(): void {
    const shared = this.#shared;
    const qos2 = this.#qos2;
    if (qos2 === undefined) return;
    if (shared.journaling) {
      for (const packetId of qos2.keys()) {
        shared.journal.push({ op: "deleteIncoming", packetId });
      }
    }
    qos2.clear();
  }

  /**
   * Marks a QoS 1 or 2 message as handled by the user. Its acknowledgement, PUBACK for QoS 1 and
   * PUBREC for QoS 2, goes to the outbox once the acknowledgements of every QoS 1 or 2 PUBLISH
   * that arrived before it on this connection have gone; until then it waits, and the message
   * still counts against our Receive Maximum.
   *
   * `packet` is the PUBLISH of the message event, the same object: an acknowledgement of a QoS 1
   * message of an earlier connection, or of a QoS 2 message the server no longer has, does
   * nothing, as does a second one.
   */
  acknowledge(packet: PublishPacket): void {
    const shared = this.#shared;
    const packetId = packet.packetId;
    if (packetId === undefined) return;
    if (packet.qos === 2) {
      const qos2 = this.#qos2;
      if (qos2 === undefined || qos2.get(packetId) !== packet) return;
      qos2.set(packetId, ACKNOWLEDGED);
      // Durable before PUBREC: after a restart a re-sent copy is known as a duplicate. Recorded
      // on delivery, not on arrival, so that a crash in between re-delivers rather than loses.
      if (shared.journaling) shared.journal.push({ op: "putIncoming", packetId });
      // [MQTT-4.3.3-8] PUBREC once we own the message: now, in this connection's order, or, for
      // a message of an earlier connection, once the server has re-sent it (see onPublish).
      this.#fill(packetId, { type: "pubrec", packetId });
      return;
    }
    // QoS 1: only a message of this connection. After a reconnect the id may stand for another
    // message, and the server re-sends what was not acknowledged.
    const order = this.#order;
    if (order === undefined) return;
    const arrival = this.#waiting?.get(packetId);
    let index = arrival === undefined ? -1 : arrival - this.#orderBase;
    if (order.at(index) === packet) {
      this.#waiting!.delete(packetId);
    } else {
      // Rare: a server that sent the id again before our PUBACK (MQTT 3.1 allowed retries)
      // points #waiting at the later copy; an earlier one is found by looking.
      index = order.indexOf(packet);
      if (index < 0) return;
    }
    // [MQTT-4.3.2-4] PUBACK once the user has the message.
    order.set(index, { type: "puback", packetId });
    this.#release();
  }

  /** Puts an acknowledgement in the slot waiting for it, and sends what may go. */
  #fill(packetId: number, ack: PublishAckPacket<"puback" | "pubrec">): void {
    const waiting = this.#waiting;
    const arrival = waiting?.get(packetId);
    if (arrival === undefined) return;
    waiting!.delete(packetId);
    // A slot is waiting, so the order exists.
    this.#order!.set(arrival - this.#orderBase, ack);
    this.#release();
  }

  /** Takes a slot for the PUBLISH that just arrived; `ack` when its acknowledgement is known. */
  #take(packet: PublishPacket, ack?: PublishAckPacket<"pubrec">): void {
    const order = this.#order ??= new Queue();
    if (ack !== undefined) {
      order.push(ack);
      this.#release();
      return;
    }
    (this.#waiting ??= new Map()).set(packet.packetId!, this.#orderBase + order.length);
    order.push(packet);
    if (packet.qos === 1) this.#unsentQos1++;
  }

  /** Sends the acknowledgements at the head of the order, up to the first one still waiting. */
  #release(): void {
    // Only called once a slot was taken, so the order exists.
    const order = this.#order!;
    let sent = 0;
    for (let slot = order.peek(); slot !== undefined; slot = order.peek()) {
      if (slot.type === "publish") break;
      this.#shared.send(slot);
      if (slot.type === "puback") this.#unsentQos1--;
      order.shift();
      sent++;
    }
    this.#orderBase += sent;
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
      shared.tell({ type: "message", packet });
      return;
    }
    if (packet.qos === 2) {
      const qos2 = this.#qos2 ??= new Map();
      const delivered = qos2.get(packetId);
      if (delivered !== undefined) {
        // A re-sent PUBLISH before PUBREL is not delivered again; it is answered with PUBREC
        // [MQTT-4.3.3-10], in this connection's order, once the first copy has been delivered
        // and acknowledged. A first copy of this connection answers for it already.
        if (delivered === ACKNOWLEDGED) this.#take(packet, { type: "pubrec", packetId });
        else if (this.#waiting?.has(packetId) !== true) this.#take(packet);
        return;
      }
      qos2.set(packetId, packet);
    }
    // This PUBLISH counts too: a QoS 2 one is in #qos2 already, a QoS 1 one is not yet.
    if (
      this.#unsentQos1 + (this.#qos2?.size ?? 0) + (packet.qos === 1 ? 1 : 0) >
        this.#receiveMaximum
    ) {
      throw new ProtocolError(
        `the server sent more than the Receive Maximum of ${this.#receiveMaximum} unacknowledged publishes`,
        "MQTT-3.3.4-9",
        ReasonCode.ReceiveMaximumExceeded,
      );
    }
    this.#take(packet);
    shared.tell({ type: "message", packet });
  }

  /**
   * Handles a PUBREL: the id is free again, and PUBCOMP goes out.
   *
   * @throws {ProtocolError} When it comes before our PUBREC.
   */
  onPubrel(packet: PublishAckPacket<"pubrel">): void {
    const shared = this.#shared;
    const packetId = packet.packetId;
    const known = this.#qos2?.get(packetId);
    if (known !== undefined && known !== ACKNOWLEDGED) {
      // PUBREL before we sent PUBREC: the server broke the flow [MQTT-4.3.3-2] (3.1.1).
      throw new ProtocolError(
        `PUBREL for packet ${packetId} arrived before its PUBREC was sent`,
        undefined,
        ReasonCode.ProtocolError,
      );
    }
    this.#qos2?.delete(packetId);
    // Durable before PUBCOMP: a stale id would make the next message with it look like a copy.
    if (known !== undefined && shared.journaling) {
      shared.journal.push({ op: "deleteIncoming", packetId });
    }
    // A PUBREL for an id we do not know still gets its PUBCOMP, so the server can finish
    // [MQTT-4.3.3-11] (5.0; [MQTT-4.3.3-2] in 3.1.1).
    shared.send(
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
      const topic = this.#topicAliases?.get(alias);
      if (topic === undefined) {
        throw new ProtocolError(
          `topic alias ${alias} has no topic yet`,
          undefined,
          ReasonCode.ProtocolError,
        );
      }
      packet.topic = topic;
    } else {
      (this.#topicAliases ??= new Map()).set(alias, packet.topic);
    }
  }
}
