/**
 * Our SUBSCRIBE and UNSUBSCRIBE requests: those made while disconnected, those waiting for their
 * acknowledgement, the subscriptions the server granted, and subscribing again when a server
 * lost the session. It changes the state it shares with the rest of the session and nothing
 * else (see `shared_state.ts`).
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import type {
  Properties,
  SubackPacket,
  SubscribePacket,
  Subscription,
  UnsubackPacket,
  UnsubscribePacket,
} from "../packet/types.ts";
import { requestPayloadSize } from "./limits.ts";
import { type Request, SharedState } from "./shared_state.ts";
import { ReasonCode } from "../packet/constants.ts";

// Queued requests start as, and go back to, the shared frozen empty list (a missed write fails
// loudly); a list is made with the first one.
const NONE: never[] = SharedState.empty;

/** A subscription the server granted, with the properties it was made with. */
export interface GrantedSubscription {
  /** The subscription as requested. */
  subscription: Subscription;
  /** The SUBSCRIBE's properties (MQTT 5). */
  properties?: Properties;
}

/** Our SUBSCRIBE and UNSUBSCRIBE flows. */
export class Requests<T> {
  #shared: SharedState<T>;
  #resubscribe: boolean;
  // Requests made while disconnected, sent once connected, and the bytes of their payloads.
  #queued: Request<T>[] = NONE;
  #queuedBytes = 0;
  // Made with the first subscription granted: a client that never subscribed holds none.
  #subscriptions: Map<string, GrantedSubscription> | undefined;

  /**
   * Creates the request flows of a session.
   *
   * @param resubscribe Whether to subscribe again after reconnecting to a server that lost the
   * session.
   */
  constructor(shared: SharedState<T>, resubscribe: boolean) {
    this.#shared = shared;
    this.#resubscribe = resubscribe;
  }

  /**
   * Subscriptions the server granted, by filter: what to subscribe to again when the server
   * lost the session.
   */
  get subscriptions(): Map<string, GrantedSubscription> {
    return this.#subscriptions ??= new Map();
  }

  /** The number of requests made while disconnected, waiting to be sent. */
  get queuedCount(): number {
    return this.#queued.length;
  }

  /** The total payload bytes (see {@linkcode requestPayloadSize}) of the queued requests. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /**
   * Takes a request that passed every check: sent at once with a packet id when connected,
   * queued otherwise.
   */
  request(packet: SubscribePacket | UnsubscribePacket, token: T): void {
    const shared = this.#shared;
    const request = { packet, token };
    if (!shared.connected) {
      if (this.#queued === NONE) this.#queued = [];
      this.#queued.push(request);
      this.#queuedBytes += requestPayloadSize(packet);
      return;
    }
    packet.packetId = shared.allocatePacketId();
    shared.changeRequests().set(packet.packetId, request);
    // [MQTT-3.3.4-8] only PUBLISH waits for the window; requests go out at once.
    shared.send(packet);
  }

  /**
   * After a CONNACK: sends again the requests in flight when the connection was lost, then the
   * queued ones. A reconnection to a server that lost the session first subscribes again to
   * what it had, so no message is missed after it.
   *
   * @param lostSession Whether this is a reconnection to a server that lost the session.
   */
  connected(lostSession: boolean): void {
    const shared = this.#shared;
    if (lostSession && this.#resubscribe && this.#subscriptions !== undefined) {
      const again: Request<T>[] = [];
      for (const { subscription, properties } of this.#subscriptions.values()) {
        const resubscribe: SubscribePacket = {
          type: "subscribe",
          packetId: 0,
          subscriptions: [subscription],
        };
        if (properties) resubscribe.properties = properties;
        again.push({ packet: resubscribe, token: undefined as T });
      }
      this.#queued = [...again, ...this.#queued];
    }
    const requests = [...shared.requests.values(), ...this.#queued];
    if (shared.requests.size > 0) shared.changeRequests().clear();
    this.#queued = NONE;
    this.#queuedBytes = 0;
    for (const request of requests) this.request(request.packet, request.token);
  }

  /** Gives up every request and adds their tokens to `tokens`: in flight first, then queued. */
  abandon(tokens: T[]): void {
    const shared = this.#shared;
    for (const request of shared.requests.values()) tokens.push(request.token);
    for (const request of this.#queued) tokens.push(request.token);
    if (shared.requests.size > 0) shared.changeRequests().clear();
    this.#queued = NONE;
    this.#queuedBytes = 0;
  }

  /**
   * Handles a SUBACK or UNSUBACK: the granted subscriptions follow it, and the request completes.
   *
   * @throws {ProtocolError} When it answers the other kind of request, or a SUBACK (or an MQTT 5
   * UNSUBACK) has not one code per filter.
   */
  onAck(packet: SubackPacket | UnsubackPacket): void {
    const shared = this.#shared;
    const request = shared.requests.get(packet.packetId);
    if (request === undefined) return;
    const expected = request.packet.type === "subscribe" ? "suback" : "unsuback";
    if (packet.type !== expected) {
      throw new ProtocolError(
        `${packet.type.toUpperCase()} answers packet ${packet.packetId}, which was ${request.packet.type.toUpperCase()}`,
        undefined,
        ReasonCode.ProtocolError,
      );
    }
    if (request.packet.type === "subscribe") {
      const codes = (packet as SubackPacket).reasonCodes;
      const subscriptions = request.packet.subscriptions;
      // Checked before the request is forgotten: its token must still be there to fail.
      if (codes.length !== subscriptions.length) {
        throw new ProtocolError(
          `SUBACK has ${codes.length} codes for ${subscriptions.length} filters`,
          "MQTT-3.8.4-6",
          ReasonCode.ProtocolError,
        );
      }
      const properties = request.packet.properties;
      subscriptions.forEach((subscription, i) => {
        if (codes[i] < 0x80) {
          this.subscriptions.set(
            subscription.topicFilter,
            properties ? { subscription, properties } : { subscription },
          );
        }
      });
    } else {
      const filters = request.packet.topicFilters;
      const codes = (packet as UnsubackPacket).reasonCodes;
      // MQTT 5: one reason code per filter, in order [MQTT-3.11.3-1]; 3.x has none.
      if (codes !== undefined && codes.length !== filters.length) {
        throw new ProtocolError(
          `UNSUBACK has ${codes.length} codes for ${filters.length} filters`,
          "MQTT-3.11.3-1",
          ReasonCode.ProtocolError,
        );
      }
      for (const filter of filters) this.#subscriptions?.delete(filter);
    }
    shared.changeRequests().delete(packet.packetId);
    shared.tell({ type: "complete", token: request.token, packet });
  }
}
