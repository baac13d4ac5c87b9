/**
 * Our topic aliases (MQTT 5): the ones a publish declares by hand, what this connection's server
 * has been told, and, with `topicAliases: "auto"`, the ones the session hands out itself. An alias
 * lives only on the wire: queued, in-flight and stored PUBLISHes keep their topic, so a re-sent
 * or restored one is mapped afresh on the next connection, whose server knows no alias yet
 * [MQTT-3.3.2-7].
 *
 * @module
 */

import { sentPublishSize } from "../packet/publish.ts";
import type { Properties, PublishPacket } from "../packet/types.ts";
import { DEFAULT_LIMITS } from "./limits.ts";
import type { SharedState } from "./shared_state.ts";

/** The outgoing topic aliases of one session. */
export class OutgoingAliases {
  /** Whether the session gives topics aliases itself (`topicAliases: "auto"`). */
  readonly auto: boolean;
  #shared: SharedState<unknown>;
  // What the user declared (alias -> topic, across connections), and what this connection's
  // server has been told, in the order the packets go out.
  // All made on first use: most connections never see an alias.
  #declared: Map<number, string> | undefined;
  #wire: Map<number, string> | undefined;
  // Automatic aliases: this connection's topic -> alias, least recently used first; and one
  // `{ topicAlias }` properties object per alias, made once.
  #automatic: Map<string, number> | undefined;
  #aliasProperties: Properties[] | undefined;

  /** The aliases of a session; `auto` hands them out itself. */
  constructor(shared: SharedState<unknown>, auto: boolean) {
    this.#shared = shared;
    this.auto = auto;
  }

  /**
   * Gives a PUBLISH with a topic alias and an empty topic the topic the alias was last given,
   * or leaves it empty when the alias has none. Changes nothing else.
   */
  resolveTopic(packet: PublishPacket): void {
    const alias = packet.properties?.topicAlias;
    if (alias !== undefined && packet.topic === "") {
      packet.topic = this.#declared?.get(alias) ?? "";
    }
  }

  /** Records the topic a publish that passed every check gives its alias, if it has one. */
  declare(packet: PublishPacket): void {
    const alias = packet.properties?.topicAlias;
    if (alias !== undefined) (this.#declared ??= new Map()).set(alias, packet.topic);
  }

  /** Forgets what the server of the last connection was told. */
  forget(): void {
    this.#wire?.clear();
    this.#automatic?.clear();
  }

  /**
   * The PUBLISH as it goes on this connection. With a topic alias, it goes with an empty topic
   * only when this connection's server already maps the alias to its topic; otherwise with the
   * topic, which sets the mapping (MQTT 5.0, 3.3.2.3.4). Resent packets after a reconnection
   * thus carry the topic.
   */
  onWire(packet: PublishPacket): PublishPacket {
    const alias = packet.properties?.topicAlias;
    if (alias === undefined) return this.auto ? this.#withAutoAlias(packet) : packet;
    if (alias > this.#shared.limits.topicAliasMaximum) {
      // Queued or in flight under another connection's limits: this server allows no such
      // alias [MQTT-3.3.2-9], so the PUBLISH goes with its topic alone.
      const { topicAlias: _, ...properties } = packet.properties!;
      const plain: PublishPacket = { ...packet };
      if (Object.keys(properties).length > 0) plain.properties = properties;
      else delete plain.properties;
      return plain;
    }
    const wire = this.#wire ??= new Map();
    if (wire.get(alias) === packet.topic) return { ...packet, topic: "" };
    wire.set(alias, packet.topic);
    return packet;
  }

  /**
   * `topicAliases: "auto"`: the PUBLISH as it goes on this connection. A topic this connection's
   * server already maps goes as an empty topic and its alias (and becomes the most recently
   * used); a new one gets the next free alias, or the least recently used one's when all the
   * server allows (its Topic Alias Maximum, none on 3.1 and 3.1.1) are taken, and goes with its
   * topic, which sets the mapping. The alias goes only in the packet written, never in the one
   * queued, in flight or stored: a re-sent or restored PUBLISH carries its topic on the next
   * connection, whose server knows no alias yet. Topics of 3 characters or fewer
   * go as they are: the alias (3 bytes) would save nothing.
   */
  #withAutoAlias(packet: PublishPacket): PublishPacket {
    const shared = this.#shared;
    const maximum = shared.limits.topicAliasMaximum;
    const topic = packet.topic;
    if (maximum === 0 || topic.length <= 3) return packet;
    const aliases = this.#automatic ??= new Map();
    let alias = aliases.get(topic);
    if (alias !== undefined) {
      // The most recently used moves to the end: Map keeps insertion order.
      aliases.delete(topic);
      aliases.set(topic, alias);
      return this.#aliased(packet, "", alias);
    }
    // The alias adds 3 bytes; a server that accepts less than the largest packet may refuse
    // the PUBLISH with it, so it goes without one then.
    if (
      shared.limits.maximumPacketSize < DEFAULT_LIMITS.maximumPacketSize &&
      sentPublishSize(packet, 5) + 3 > shared.limits.maximumPacketSize
    ) {
      return packet;
    }
    if (aliases.size < maximum) {
      // Aliases are handed out from 1 and freed only all at once: the next free one is this.
      alias = aliases.size + 1;
    } else {
      // Never more than the Topic Alias Maximum: the least recently used topic
      // gives its alias up; the server replaces the mapping when it sees the new topic.
      const [oldest, reused] = aliases.entries().next().value!;
      aliases.delete(oldest);
      alias = reused;
    }
    aliases.set(topic, alias);
    return this.#aliased(packet, topic, alias);
  }

  /** The PUBLISH with this topic and alias; the packet that stays queued keeps neither. */
  #aliased(packet: PublishPacket, topic: string, alias: number): PublishPacket {
    const properties = packet.properties === undefined
      ? (this.#aliasProperties ??= [])[alias] ??= { topicAlias: alias }
      : { ...packet.properties, topicAlias: alias };
    // A copy even for QoS 0, which nothing holds once it is in the outbox: adding properties to
    // the caller's packet in place measured slower on Bun (a new object shape on the hot path).
    return { ...packet, topic, properties };
  }
}
