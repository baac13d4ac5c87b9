/**
 * What the broker writes to one connected client: its messages within the client's Receive
 * Maximum and Maximum Packet Size, the QoS 1 and 2 flows to it until acknowledged, the resend of
 * what was in flight when its session resumed, and back-pressure on the bytes it has not taken
 * yet. It writes through a {@linkcode Link} and sets no timers.
 *
 * @module
 */

import { encode } from "../packet/encode.ts";
import type { Packet, Properties, ProtocolVersion, PublishPacket } from "../packet/types.ts";
import type { BrokerSession, Delivery, Inflight } from "./broker_session.ts";
import { ReasonCode } from "../packet/constants.ts";
import type { BrokerCore } from "./registry.ts";
import type { Link } from "./types.ts";

/**
 * The packets going out on one connection. Until {@linkcode Outbox.prototype.open} it sends
 * only replies (a refusing CONNACK); after {@linkcode Outbox.prototype.close} it sends nothing.
 */
export class Outbox {
  /** The protocol version packets are encoded for, once CONNECT is read. */
  version: ProtocolVersion = 4;
  readonly #core: BrokerCore;
  readonly #link: Link;
  readonly #overflowed: () => void;
  #session: BrokerSession | undefined = undefined;
  #closed = false;
  #clientReceiveMaximum = 65_535;
  #clientMaximumPacketSize = Infinity;
  // Bytes written while the connection was over maxBufferedBytes, since it last fell below.
  #overflow = 0;
  // What was in flight when the session was resumed, to resend from #resendAt on.
  #resend: Inflight[] = [];
  #resendAt = 0;

  /**
   * Creates the outbox of a new connection.
   *
   * @param overflowed Called when a client that does not read has been sent more than
   * `maxOverflowBytes` of replies; it ends the connection.
   */
  constructor(core: BrokerCore, link: Link, overflowed: () => void) {
    this.#core = core;
    this.#link = link;
    this.#overflowed = overflowed;
  }

  /** Bytes written to the connection and not yet taken by the client. */
  get buffered(): number {
    return this.#link.buffered ?? 0;
  }

  /** CONNECT was accepted: serve `session` within the client's limits. */
  open(
    session: BrokerSession,
    clientReceiveMaximum: number,
    clientMaximumPacketSize: number,
  ): void {
    this.#session = session;
    this.#clientReceiveMaximum = clientReceiveMaximum;
    this.#clientMaximumPacketSize = clientMaximumPacketSize;
  }

  /**
   * After CONNACK: resends what was in flight, PUBLISH with DUP or PUBREL, then what was queued
   * ([MQTT-4.4.0-1]).
   */
  resume(): void {
    this.#resend = [...this.#session!.inflight.values()];
    this.#resendAt = 0;
    this.#drain();
  }

  /** The connection ended: nothing more is written. */
  close(): void {
    this.#closed = true;
  }

  /** The link says the client took bytes: deliveries held back for it may go on. */
  flushed(): void {
    if (!this.#serving() || this.#congested()) return;
    this.#overflow = 0;
    if (this.#resendAt < this.#resend.length || this.#session!.queue.length > 0) this.#drain();
  }

  /**
   * Sends a message to the client now, or queues it behind the client's Receive Maximum. While
   * the client does not take what it is sent (more than `maxBufferedBytes` buffered), QoS 0
   * messages for it are dropped and counted, as mosquitto does, and QoS 1 and 2 ones wait in its
   * session until it catches up.
   */
  deliver(delivery: Delivery): void {
    const session = this.#session!;
    if (delivery.qos === 0) {
      if (this.#congested()) session.dropped++;
      else this.#sendDelivery(delivery);
      return;
    }
    // Behind the client's Receive Maximum, behind messages already waiting, or while it is not
    // reading: queued, to keep the order.
    if (
      session.inflight.size >= this.#clientReceiveMaximum || session.queue.length > 0 ||
      this.#resendAt < this.#resend.length || this.#congested()
    ) {
      this.#core.enqueue(session, delivery);
      this.#drain();
      return;
    }
    this.#sendDelivery(delivery);
  }

  /** PUBACK (QoS 1) or PUBCOMP (QoS 2) from the client: that flow is done. */
  acked(packetId: number, qos: 1 | 2): void {
    const session = this.#session!;
    const inflight = session.inflight.get(packetId);
    if (inflight !== undefined && inflight.packet.qos === qos) {
      session.inflight.delete(packetId);
      this.#drain();
    }
  }

  /** PUBREC from the client: PUBREL goes out, or a v5 error reason ends the flow there. */
  pubrec(packetId: number, reasonCode: number): void {
    const session = this.#session!;
    const inflight = session.inflight.get(packetId);
    if (inflight === undefined || inflight.packet.qos !== 2) {
      if (this.version === 5) {
        this.send({ type: "pubrel", packetId, reasonCode: ReasonCode.PacketIdentifierNotFound });
      }
      return;
    }
    if (reasonCode >= 0x80) {
      session.inflight.delete(packetId);
      this.#drain();
      return;
    }
    inflight.released = true;
    this.send({ type: "pubrel", packetId });
  }

  /**
   * Sends a reply or control packet. One larger than the client's Maximum Packet Size is not
   * sent. To a client that keeps sending but does not read what it is sent, replies are counted:
   * past `maxOverflowBytes` the outbox calls `overflowed` instead (v5: DISCONNECT 0x97 Quota
   * exceeded, "an implementation or administrative imposed limit has been exceeded", section
   * 3.14.2.1).
   */
  send(packet: Packet): void {
    if (this.#closed) return;
    const bytes = this.#encode(packet);
    if (bytes === undefined) return;
    if (bytes.length > this.#clientMaximumPacketSize) return;
    if (this.#congested()) {
      this.#overflow += bytes.length;
      if (this.#overflow > this.#core.maxOverflowBytes) {
        this.#overflowed();
        return;
      }
    }
    this.#link.write(bytes);
  }

  /** Sends the last packet of the connection, past any limit but the client's packet size. */
  sendLast(packet: Packet): void {
    const bytes = this.#encode(packet);
    if (bytes !== undefined && bytes.length <= this.#clientMaximumPacketSize) {
      this.#link.write(bytes);
    }
  }

  #serving(): boolean {
    return this.#session !== undefined && !this.#closed;
  }

  #sendDelivery(delivery: Delivery): void {
    const session = this.#session!;
    const { message, qos } = delivery;
    const remaining = this.#core.remaining(message);
    if (remaining === 0) return;
    const packet: PublishPacket = {
      type: "publish",
      topic: message.topic,
      payload: message.payload,
      qos,
      retain: delivery.retain,
      dup: false,
    };
    if (this.version === 5) {
      const properties: Properties = { ...message.properties };
      // [MQTT-3.3.2-6] the interval sent is what is left of it.
      if (remaining !== undefined) properties.messageExpiryInterval = remaining;
      if (delivery.subscriptionIdentifiers.length > 0) {
        properties.subscriptionIdentifiers = delivery.subscriptionIdentifiers;
      }
      if (Object.keys(properties).length > 0) packet.properties = properties;
    }
    if (qos > 0) {
      const packetId = session.nextPacketId();
      if (packetId === undefined) {
        this.#core.enqueue(session, delivery);
        return;
      }
      packet.packetId = packetId;
    }
    const bytes = this.#encode(packet);
    if (bytes === undefined) return;
    // v5 [MQTT-3.1.2-24], [MQTT-3.1.2-25]: a packet larger than the client's Maximum Packet
    // Size is discarded, as if it had been delivered.
    if (bytes.length > this.#clientMaximumPacketSize) return;
    if (qos > 0) {
      const inflight: Inflight = { packet, released: false };
      if (delivery.group !== undefined) inflight.delivery = delivery;
      session.inflight.set(packet.packetId!, inflight);
    }
    // Deliveries are held back while the client is congested, so this never overflows.
    this.#link.write(bytes);
  }

  /** Whether more than `maxBufferedBytes` written to the client are still buffered. */
  #congested(): boolean {
    return (this.#link.buffered ?? 0) >= this.#core.maxBufferedBytes;
  }

  /**
   * Sends what waits: first what was in flight when the session resumed (3.1.1 [MQTT-4.4.0-1],
   * v5 [MQTT-4.4.0-1]: PUBLISH again with DUP, or PUBREL), then the queue, within the client's
   * Receive Maximum. Stops while the client is not taking what it is sent; `flushed` resumes it.
   */
  #drain(): void {
    if (!this.#serving()) return;
    const session = this.#session!;
    while (this.#resendAt < this.#resend.length) {
      if (this.#congested()) return;
      const inflight = this.#resend[this.#resendAt++];
      const packetId = inflight.packet.packetId!;
      // Acknowledged since the session resumed: the client had it.
      if (session.inflight.get(packetId) !== inflight) continue;
      if (inflight.released) {
        this.send({ type: "pubrel", packetId });
      } else {
        inflight.packet.dup = true;
        if (this.version !== 5) delete inflight.packet.properties;
        this.send(inflight.packet);
      }
    }
    this.#resend = [];
    this.#resendAt = 0;
    while (session.queue.length > 0 && session.inflight.size < this.#clientReceiveMaximum) {
      if (this.#congested()) return;
      this.#sendDelivery(session.queue.shift()!);
    }
  }

  #encode(packet: Packet): Uint8Array | undefined {
    try {
      return encode(packet, this.version);
    } catch {
      return undefined;
    }
  }
}
