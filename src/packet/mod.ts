/**
 * The MQTT packet codec of Kite: every control packet of MQTT 3.1, 3.1.1 and 5.0, in both
 * directions, as plain objects. Pure: no sockets, no timers.
 *
 * - {@linkcode encode} writes one packet; {@linkcode encodeInto} appends packets to a
 *   {@linkcode Writer} so that several go out in one write.
 * - {@linkcode packetSize} measures a packet, with the same checks, without encoding it.
 * - {@linkcode decode} reads exactly one whole packet.
 * - {@linkcode MqttDecoderStream} turns a byte stream into packets, whatever the chunking;
 *   {@linkcode PacketDecoder} does the same synchronously.
 * - {@linkcode validateTopicName} and {@linkcode validateTopicFilter} hold the rules for topic
 *   names and filters that the encoder enforces.
 *
 * Every packet a receiver must reject makes the decoder throw a {@linkcode ProtocolError} whose
 * message names the problem and the specification statement, such as `[MQTT-3.3.2-2]`.
 *
 * @example A round trip
 * ```ts
 * import { decode, encode, type Packet } from "./mod.ts";
 *
 * const packet: Packet = {
 *   type: "subscribe",
 *   packetId: 1,
 *   subscriptions: [{ topicFilter: "sensors/+/temperature", qos: 1 }],
 * };
 * const bytes = encode(packet, 5);
 * console.log(decode(bytes, 5)); // the same packet, with the MQTT 5 subscription options
 * ```
 *
 * @module
 */

export type {
  AuthPacket,
  ConnackPacket,
  ConnectPacket,
  DisconnectPacket,
  Packet,
  PacketType,
  PingreqPacket,
  PingrespPacket,
  Properties,
  ProtocolVersion,
  PubackPacket,
  PubcompPacket,
  PublishAckPacket,
  PublishPacket,
  PubrecPacket,
  PubrelPacket,
  QoS,
  SubackPacket,
  SubscribePacket,
  Subscription,
  UnsubackPacket,
  UnsubscribePacket,
  Will,
} from "./types.ts";
export { decode } from "./decode.ts";
export { encode, encodeInto, packetSize } from "./encode.ts";
export { Writer } from "./bytes.ts";
export { type DecoderOptions, MqttDecoderStream, PacketDecoder } from "./decoder_stream.ts";
export {
  CONNACK_RETURN_CODES,
  connackReasonName,
  ConnackReturnCode,
  MAXIMUM_PACKET_SIZE,
  PACKET_TYPE_NUMBERS,
  REASON_CODES,
  ReasonCode,
  reasonName,
  SubackReturnCode,
} from "./constants.ts";
export {
  PROPERTIES,
  type PropertyContext,
  type PropertyDefinition,
  type PropertyType,
} from "./properties.ts";
export { MqttError, ProtocolError } from "./errors.ts";
export {
  isValidTopicFilter,
  isValidTopicName,
  validateTopicFilter,
  validateTopicName,
} from "./topic.ts";
