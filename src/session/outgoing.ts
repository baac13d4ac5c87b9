/**
 * Our publishes, from `publish` until they complete: those waiting for a connection or for room
 * in the window, in order; those in flight, by packet id; the re-sends a resumed session holds
 * back; PUBACK, PUBREC and PUBCOMP; and the topic aliases we use. It changes the state it
 * shares with the rest of the session and nothing else (see `shared_state.ts`).
 *
 * @module
 */

import { MqttError } from "../errors.ts";
import type { Packet, Properties, PublishAckPacket, PublishPacket } from "../packet/types.ts";
import { publishRefusal } from "./limits.ts";
import type { OutgoingPublish, SharedState } from "./shared_state.ts";
import type { StoredPublish } from "../store/store.ts";
import { ReasonCode } from "../packet/constants.ts";
import { OutgoingAliases } from "./aliases.ts";
import { Queue } from "../_queue.ts";

/** Our QoS 0, 1 and 2 publishes and their flows. */
export class Outgoing<T> {
  #shared: SharedState<T>;
  #window: number;
  // Publishes waiting for room in the window (or for a connection), in order. Made on first
  // use, and kept: an idle session holds none, a busy one does not make one per burst.
  #waiting: Queue<OutgoingPublish<T>> | undefined;
  #waitingBytes = 0;
  #nextSequence = 1;
  // Resumed PUBLISHes not yet re-sent, in their order: the server's new Receive Maximum had no
  // room for them yet. They stay in flight with their packet ids.
  // Made on first use: held resends are rare.
  #heldResends: Set<OutgoingPublish<T>> | undefined;
  // Made for "auto", or with the first publish that sets an alias: most sessions use none.
  #aliases: OutgoingAliases | undefined;

  /**
   * Creates the outgoing flows of a session.
   *
   * @param inflightWindow The most QoS 1 and 2 publishes in flight at once.
   * @param autoAliases Whether the session gives topics aliases itself (`topicAliases: "auto"`).
   */
  constructor(shared: SharedState<T>, inflightWindow: number, autoAliases = false) {
    this.#shared = shared;
    this.#window = inflightWindow;
    if (autoAliases) this.#aliases = new OutgoingAliases(shared, true);
  }

  /** Whether the session gives topics aliases itself. */
  get autoAliases(): boolean {
    return this.#aliases?.auto ?? false;
  }

  /**
   * The window in force: the configured one, capped by the server's Receive Maximum, beyond
   * which no unacknowledged QoS 1 or 2 PUBLISH may be sent [MQTT-3.3.4-7].
   */
  get window(): number {
    return Math.min(this.#window, this.#shared.limits.receiveMaximum);
  }

  /** The number of publishes waiting to be sent. */
  get waitingCount(): number {
    return this.#waiting?.length ?? 0;
  }

  /** The total payload bytes of the publishes waiting to be sent. */
  get waitingBytes(): number {
    return this.#waitingBytes;
  }

  /**
   * Gives a PUBLISH with a topic alias and an empty topic the topic the alias was last given,
   * or leaves it empty when the alias has none. Changes nothing else.
   */
  resolveTopic(packet: PublishPacket): void {
    this.#aliasesOf(packet)?.resolveTopic(packet);
  }

  /**
   * Takes a PUBLISH that passed every check: QoS 0 goes to the outbox at once when connected
   * (returns `true`); the rest get a sequence number (QoS 1 and 2) and a packet id when the
   * window has room, in the order they were published.
   */
  publish(packet: PublishPacket, token: T): boolean {
    const shared = this.#shared;
    this.#aliasesOf(packet)?.declare(packet);
    if (packet.qos === 0 && shared.connected) {
      this.#pushPublish(packet);
      return true;
    }
    const outgoing: OutgoingPublish<T> = { packet, token, state: "publish", sequence: 0 };
    if (packet.qos > 0) {
      outgoing.sequence = this.#nextSequence++;
      if (shared.journaling) {
        shared.journal.push({
          op: "put",
          record: { sequence: outgoing.sequence, packet, state: "queued" },
        });
      }
    }
    if (
      packet.qos > 0 && shared.connected && this.waitingCount === 0 &&
      shared.inflight.size < this.window
    ) {
      this.#send(outgoing);
    } else {
      this.#wait(outgoing);
      this.#waitingBytes += packet.payload.length;
    }
    return false;
  }

  /**
   * Takes back the publishes a store held: those that were sent go back in flight with their
   * packet ids; queued ones wait again, before any publish made while the store was opening
   * (whose records, still in the journal, get sequences past the store's).
   */
  restore(records: readonly StoredPublish[], token: (record: StoredPublish) => T): void {
    const shared = this.#shared;
    const inflight = shared.changeInflight();
    // Publishes made while the store was opening wait behind what it held.
    const early = this.#waiting;
    this.#waiting = undefined;
    for (const record of records) {
      const outgoing: OutgoingPublish<T> = {
        packet: record.packet,
        token: token(record),
        state: record.state === "pubrel" ? "pubrel" : "publish",
        sequence: record.sequence,
      };
      const packetId = record.packet.packetId;
      if (record.state !== "queued" && packetId !== undefined && !inflight.has(packetId)) {
        inflight.set(packetId, outgoing);
      } else {
        delete record.packet.packetId;
        this.#wait(outgoing);
        // Counted like any waiting publish, since fillWindow takes it off again.
        this.#waitingBytes += record.packet.payload.length;
      }
      this.#nextSequence = Math.max(this.#nextSequence, record.sequence + 1);
    }
    // Their sequences were given before the store's were known: they take new ones past those,
    // and so do their records, still in the journal (the store was not open to take them).
    const renumbered = new Map<number, number>();
    for (const entry of shared.journal) {
      if (entry.op !== "put") continue;
      const sequence = this.#nextSequence++;
      renumbered.set(entry.record.sequence, sequence);
      entry.record.sequence = sequence;
    }
    if (early === undefined) return;
    for (const outgoing of early) {
      outgoing.sequence = renumbered.get(outgoing.sequence) ?? outgoing.sequence;
      this.#wait(outgoing);
    }
  }

  /** Forgets what the server of the last connection was told about aliases. */
  forgetAliases(): void {
    this.#aliases?.forget();
  }

  /**
   * After a CONNACK with a session present: re-sends every unacknowledged PUBLISH (with DUP) and
   * PUBREL with their original packet ids, in the order they were first sent.
   */
  resume(): void {
    const shared = this.#shared;
    // [MQTT-4.4.0-1] re-send every unacknowledged PUBLISH (with DUP) and PUBREL with their
    // original packet ids, in the order they were first sent [MQTT-4.6.0-1].
    // [MQTT-3.3.4-7] but no more unacknowledged PUBLISHes than the Receive Maximum this
    // server announced now: the rest wait, in order, for acknowledgements to make room.
    // A flow that waits for PUBCOMP counts against it whatever we send, so those come first
    // (after a restart, the store may give back more flows than the window has room for).
    const window = this.window;
    let outstanding = 0;
    for (const outgoing of shared.inflight.values()) {
      if (outgoing.state === "pubrel") outstanding++;
    }
    for (const outgoing of shared.inflight.values()) {
      if (outgoing.state === "publish") {
        outgoing.packet.dup = true; // [MQTT-3.3.1-1]
        if (outstanding < window && (this.#heldResends?.size ?? 0) === 0) {
          this.#pushPublish(outgoing.packet);
          outstanding++;
        } else {
          (this.#heldResends ??= new Set()).add(outgoing);
        }
      } else {
        shared.send({ type: "pubrel", packetId: outgoing.packet.packetId! });
      }
    }
  }

  /**
   * After a CONNACK without a session: nothing of ours is in flight at the server. What we had
   * in flight goes again, first, as new messages.
   */
  restart(): void {
    const shared = this.#shared;
    // Nothing in flight (every first connection): nothing to do, and no garbage for it.
    if (shared.inflight.size === 0) return;
    const inflight = [...shared.inflight.values()];
    shared.changeInflight().clear();
    // They go before what waits already.
    const waiting = this.#waiting;
    this.#waiting = undefined;
    for (const outgoing of inflight) {
      outgoing.state = "publish";
      outgoing.packet.dup = false;
      delete outgoing.packet.packetId;
      if (shared.journaling) {
        shared.journal.push({ op: "update", sequence: outgoing.sequence, state: "queued" });
      }
      this.#waitingBytes += outgoing.packet.payload.length;
      this.#wait(outgoing);
    }
    if (waiting === undefined) return;
    for (const outgoing of waiting) this.#wait(outgoing);
  }

  /**
   * Sends what waits, in order, while connected and the window has room. Those that waited for
   * a connection are held against the limits its CONNACK announced; a refused one fails.
   */
  fillWindow(): void {
    const shared = this.#shared;
    if (!shared.connected) return;
    const waiting = this.#waiting;
    if (waiting === undefined) return;
    const window = this.window;
    for (let outgoing = waiting.peek(); outgoing !== undefined; outgoing = waiting.peek()) {
      const refusal = publishRefusal(outgoing.packet, shared.limits, shared.protocolVersion, false);
      if (refusal !== undefined) {
        if (shared.journaling && outgoing.packet.qos > 0) {
          shared.journal.push({ op: "delete", sequence: outgoing.sequence });
        }
        shared.tell({ type: "failed", token: outgoing.token, error: refusal });
      } else if (outgoing.packet.qos === 0) {
        this.#pushPublish(outgoing.packet);
        shared.tell({
          type: "sent",
          token: outgoing.token,
          bytes: outgoing.packet.payload.length,
        });
      } else if (shared.inflight.size < window) {
        this.#send(outgoing);
      } else {
        break;
      }
      this.#waitingBytes -= outgoing.packet.payload.length;
      waiting.shift();
    }
  }

  #wait(outgoing: OutgoingPublish<T>): void {
    (this.#waiting ??= new Queue()).push(outgoing);
  }

  /** Forgets the connection: the next CONNACK decides again what is re-sent. */
  disconnected(): void {
    this.#heldResends?.clear();
  }

  /**
   * Gives up every publish and adds their tokens to `tokens`, in flight first, then waiting.
   * With `kept`, the tokens of QoS 1 and 2 publishes go there instead.
   */
  abandon(tokens: T[], kept: ((token: T) => void) | undefined): void {
    const shared = this.#shared;
    for (const outgoing of shared.inflight.values()) {
      if (kept !== undefined) kept(outgoing.token);
      else tokens.push(outgoing.token);
    }
    const waiting = this.#waiting;
    if (waiting !== undefined) {
      for (const outgoing of waiting) {
        if (kept !== undefined && outgoing.packet.qos > 0) kept(outgoing.token);
        else tokens.push(outgoing.token);
      }
      waiting.clear();
    }
    this.#waitingBytes = 0;
    if (shared.inflight.size > 0) shared.changeInflight().clear();
    this.#heldResends?.clear();
  }

  /** Handles a PUBACK. */
  onPuback(packet: PublishAckPacket<"puback">): void {
    const outgoing = this.#shared.inflight.get(packet.packetId);
    // A PUBACK for nothing of ours (a late duplicate) changes nothing.
    if (outgoing === undefined || outgoing.packet.qos !== 1) return;
    this.#finish(packet.packetId, outgoing, packet, packet.reasonCode ?? 0);
  }

  /** Handles a PUBREC. */
  onPubrec(packet: PublishAckPacket<"pubrec">): void {
    const shared = this.#shared;
    const packetId = packet.packetId;
    const outgoing = shared.inflight.get(packetId);
    if (outgoing === undefined || outgoing.packet.qos !== 2) {
      // Answer so the server can finish its side [MQTT-4.3.3-4]; v5 says the id is unknown.
      shared.send(
        shared.protocolVersion === 5
          ? { type: "pubrel", packetId, reasonCode: ReasonCode.PacketIdentifierNotFound }
          : { type: "pubrel", packetId },
      );
      return;
    }
    const reasonCode = packet.reasonCode ?? 0;
    if (reasonCode >= 0x80) {
      // v5: a failing PUBREC ends the flow; the id is free again.
      this.#finish(packetId, outgoing, packet, reasonCode);
      return;
    }
    // [MQTT-4.3.3-4] answer PUBREC with PUBREL; from now on the PUBLISH is never re-sent
    // [MQTT-4.3.3-6], and PUBRELs go out in the order the PUBRECs came [MQTT-4.6.0-4].
    outgoing.state = "pubrel";
    this.#heldResends?.delete(outgoing);
    // Durable before PUBREL is written: after a restart PUBREL is re-sent, never the PUBLISH.
    if (shared.journaling) {
      shared.journal.push({ op: "update", sequence: outgoing.sequence, state: "pubrel", packetId });
    }
    shared.send({ type: "pubrel", packetId });
  }

  /** Handles a PUBCOMP. */
  onPubcomp(packet: PublishAckPacket<"pubcomp">): void {
    const outgoing = this.#shared.inflight.get(packet.packetId);
    if (outgoing === undefined || outgoing.state !== "pubrel") return;
    this.#finish(packet.packetId, outgoing, packet, packet.reasonCode ?? 0);
  }

  #send(outgoing: OutgoingPublish<T>): void {
    const shared = this.#shared;
    const packetId = shared.allocatePacketId();
    outgoing.packet.packetId = packetId;
    shared.changeInflight().set(packetId, outgoing);
    // The packet id is durable before the PUBLISH is written: after a restart the message is
    // re-sent with the same id, never as a second message.
    if (shared.journaling) {
      shared.journal.push({
        op: "update",
        sequence: outgoing.sequence,
        state: "publish",
        packetId,
      });
    }
    this.#pushPublish(outgoing.packet);
  }

  /** Puts a PUBLISH in the outbox, as it goes on this connection (see `aliases.ts`). */
  #pushPublish(packet: PublishPacket): void {
    const aliases = this.#aliasesOf(packet);
    this.#shared.send(aliases === undefined ? packet : aliases.onWire(packet));
  }

  /** The aliases, made now if `packet` is the first to set one; none while none was set. */
  #aliasesOf(packet: PublishPacket): OutgoingAliases | undefined {
    const aliases = this.#aliases;
    if (aliases !== undefined || packet.properties?.topicAlias === undefined) return aliases;
    return this.#aliases = new OutgoingAliases(this.#shared, false);
  }

  #finish(packetId: number, outgoing: OutgoingPublish<T>, ack: Packet, reasonCode: number): void {
    const shared = this.#shared;
    shared.changeInflight().delete(packetId);
    this.#heldResends?.delete(outgoing);
    if (shared.journaling) shared.journal.push({ op: "delete", sequence: outgoing.sequence });
    if (reasonCode >= 0x80) {
      shared.tell({
        type: "failed",
        token: outgoing.token,
        error: new PublishError(ack.type, reasonCode, reasonStringOf(ack)),
      });
    } else {
      shared.tell({ type: "complete", token: outgoing.token, packet: ack });
    }
    this.#resendHeld();
    this.fillWindow();
  }

  /** Re-sends held PUBLISHes of a resumed session while the Receive Maximum has room. */
  #resendHeld(): void {
    const shared = this.#shared;
    const held = this.#heldResends;
    if (held === undefined || held.size === 0 || !shared.connected) return;
    const window = this.window;
    for (const outgoing of held) {
      if (shared.inflight.size - held.size >= window) return;
      held.delete(outgoing);
      this.#pushPublish(outgoing.packet);
    }
  }
}

/** A publish the server refused: a PUBACK or PUBREC with an MQTT 5 reason code of 0x80 or more. */
export class PublishError extends MqttError {
  /** The reason code. */
  readonly reasonCode: number;

  /**
   * Creates the error.
   *
   * @param packetType The acknowledgement that carried the code.
   * @param reasonCode The code.
   * @param reasonString The server's explanation, if it sent one.
   */
  constructor(packetType: string, reasonCode: number, reasonString?: string) {
    super(
      `the broker refused the publish: ${packetType.toUpperCase()} reason 0x${
        reasonCode.toString(16)
      }${reasonString ? `: ${reasonString}` : ""}`,
    );
    this.reasonCode = reasonCode;
  }
}

function reasonStringOf(packet: Packet): string | undefined {
  return (packet as { properties?: Properties }).properties?.reasonString;
}
