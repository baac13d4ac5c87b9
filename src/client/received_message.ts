/**
 * The message objects a consumer of received messages gets: a {@linkcode ReceivedMessage} per
 * arrival, which counts how many consumers still have it and tells its inbox when they are done,
 * and a {@linkcode ReceivedCopy} for each further consumer that must acknowledge on its own. Both
 * carry the message's fields and `ack()`; what the inbox and its queues ask of them is under
 * symbol keys exported here for them, out of the users' sight.
 *
 * @module
 */

import type { Properties, QoS } from "../packet/types.ts";
import type { Message } from "./types.ts";

/** A received message's fields, as the client hands it to an inbox: without `ack`. */
export type MessageData = Omit<Message, "ack">;

/** What a message asks of its inbox once its consumers are done with it. */
export interface ArrivalSink {
  /** Every consumer took it, or none matched it: acknowledge it. */
  handled(arrival: ReceivedMessage): void;
  /** Every consumer it went to left without taking it: hold it for the next consumer. */
  handBack(arrival: ReceivedMessage): void;
}

// What the inbox and its queues ask of a message object, under keys only the client's modules
// have: the users see the fields and ack(), nothing else.
/** Key of {@linkcode ReceivedMessage}'s dispatch start. */
export const BEGIN: unique symbol = Symbol("begin");
/** Key of {@linkcode ReceivedMessage}'s "one more consumer has it". */
export const CLAIM: unique symbol = Symbol("claim");
/** Key of {@linkcode ReceivedMessage}'s "one consumer is done with it". */
export const SETTLE: unique symbol = Symbol("settle");
/** Key of a {@linkcode View}'s "its consumer left without taking it". */
export const WITHDRAW: unique symbol = Symbol("withdraw");
/** Key of a {@linkcode View}'s arrival. */
export const ARRIVAL: unique symbol = Symbol("arrival");
/** Key of {@linkcode ReceivedMessage}'s object given to `deliver`. */
export const DATA: unique symbol = Symbol("data");
/** Key of {@linkcode ReceivedMessage}'s arrival order. */
export const ORDER: unique symbol = Symbol("order");
/** Key of {@linkcode ReceivedMessage}'s "handed back once". */
export const HANDED_BACK: unique symbol = Symbol("handedBack");

/** A consumer's message object, as the inbox sees it. */
export interface View extends Message {
  /** The arrival the object stands for. */
  readonly [ARRIVAL]: ReceivedMessage;
  /** A consumer leaves without having taken it: it no longer counts for its arrival. */
  [WITHDRAW](): void;
}

/**
 * The fields of a message as a consumer sees it, taken from the decoded PUBLISH (or another
 * consumer's object); `packetId` and `properties` only where the message has them, so a QoS 0
 * message shows no `packetId` key.
 */
abstract class MessageFields {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  dup: boolean;
  declare packetId?: number;
  declare properties?: Properties;

  constructor(from: MessageData) {
    this.topic = from.topic;
    this.payload = from.payload;
    this.qos = from.qos;
    this.retain = from.retain;
    this.dup = from.dup;
    if (from.packetId !== undefined) this.packetId = from.packetId;
    if (from.properties !== undefined) this.properties = from.properties;
  }
}

/**
 * A message as it arrived, and what its acknowledgement waits for: how many consumers still
 * have it (`#claims`) and whether any took it (`#taken`). It is also the message object the
 * consumers see; a second manual consumer, or an automatic one beside a manual one, gets a
 * {@linkcode ReceivedCopy} instead, so that each manual consumer acknowledges for itself.
 */
export class ReceivedMessage extends MessageFields implements View {
  readonly #data: MessageData;
  readonly #order: number;
  #handedBack = false;
  readonly #sink: ArrivalSink;
  #claims = 0;
  #given = 0;
  #taken = false;
  // Whether a manual consumer has this object and has not called ack().
  #owes = false;

  constructor(data: MessageData, sink: ArrivalSink, order: number) {
    super(data);
    this.#data = data;
    this.#sink = sink;
    this.#order = order;
  }

  get [ARRIVAL](): ReceivedMessage {
    return this;
  }

  /** The object given to `deliver`. */
  get [DATA](): MessageData {
    return this.#data;
  }

  /** Orders arrivals: handed-back messages are held in this order. */
  get [ORDER](): number {
    return this.#order;
  }

  /** Whether every consumer it went to left without taking it, once. */
  get [HANDED_BACK](): boolean {
    return this.#handedBack;
  }

  /** See {@linkcode Message.ack}. */
  ack(): void {
    if (!this.#owes) return;
    this.#owes = false;
    this[SETTLE](true);
  }

  /** A dispatch starts: one claim for itself, so a consumer done at once cannot finish it early. */
  [BEGIN](): void {
    this.#claims = 1;
    this.#given = 0;
    this.#taken = false;
    this.#owes = false;
  }

  /** One more consumer has it; `owedOnThis` when it is a manual one holding this very object. */
  [CLAIM](owedOnThis: boolean): void {
    this.#claims++;
    this.#given++;
    if (owedOnThis) this.#owes = true;
  }

  [WITHDRAW](): void {
    this.#owes = false;
    this[SETTLE](false);
  }

  /** One consumer is done with it: took it (`taken`), or left without. */
  [SETTLE](taken: boolean): void {
    if (taken) this.#taken = true;
    if (--this.#claims > 0) return;
    if (this.#taken || this.#given === 0) {
      this.#sink.handled(this);
    } else {
      this.#handedBack = true;
      this.#sink.handBack(this);
    }
  }
}

/** Another consumer's object for the same arrival. */
export class ReceivedCopy extends MessageFields implements View {
  readonly #arrival: ReceivedMessage;
  #owes: boolean;

  constructor(arrival: ReceivedMessage, manual: boolean) {
    super(arrival);
    this.#arrival = arrival;
    this.#owes = manual;
  }

  get [ARRIVAL](): ReceivedMessage {
    return this.#arrival;
  }

  /** See {@linkcode Message.ack}. */
  ack(): void {
    if (!this.#owes) return;
    this.#owes = false;
    this.#arrival[SETTLE](true);
  }

  [WITHDRAW](): void {
    this.#owes = false;
    this.#arrival[SETTLE](false);
  }
}
