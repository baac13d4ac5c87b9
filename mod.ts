/**
 * Kite: a zero-dependency MQTT 3.1, 3.1.1 and 5.0 client for Deno, Bun, Node and browsers, built
 * on web standards only.
 *
 * @example Encoding and decoding a packet
 * ```ts
 * import { decode, encode } from "./mod.ts";
 *
 * const bytes = encode({ type: "pingreq" });
 * console.log(decode(bytes)); // { type: "pingreq" }
 * ```
 *
 * @module
 */

export * from "./src/packet/mod.ts";
export {
  ConnectionClosedError,
  ConnectionRefusedError,
  LimitError,
  StateError,
  SubscribeError,
  TimeoutError,
} from "./src/errors.ts";
export {
  isValidTopicFilter,
  isValidTopicName,
  topicMatches,
  TopicTrie,
  validateTopicFilter,
  validateTopicName,
} from "./src/topic.ts";
