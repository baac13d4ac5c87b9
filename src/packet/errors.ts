/**
 * The codec's errors: {@linkcode MqttError}, the base class of every error Kite raises, and
 * {@linkcode ProtocolError}, a packet that is malformed or breaks a rule of the protocol.
 *
 * @module
 */

import { ReasonCode } from "./constants.ts";

/**
 * The base class of every error Kite raises.
 *
 * @example Telling Kite's errors apart
 * ```ts
 * import { MqttError, ProtocolError } from "./errors.ts";
 *
 * const error: unknown = new ProtocolError("PUBLISH topic contains a wildcard", "MQTT-3.3.2-2");
 * if (error instanceof MqttError) console.log(error.name, error.message);
 * ```
 */
export class MqttError extends Error {
  /** Creates an error with a message that says what happened and what to do. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * A packet is malformed or breaks a rule of the protocol: bytes a broker sent that no compliant
 * broker would send, or a packet the encoder was asked to write that no broker would accept.
 *
 * @example Reading the statement id
 * ```ts
 * import { ProtocolError } from "./errors.ts";
 *
 * const error = new ProtocolError("PUBLISH topic contains a wildcard", "MQTT-3.3.2-2");
 * console.log(error.statementId); // "MQTT-3.3.2-2"
 * console.log(error.message); // "PUBLISH topic contains a wildcard [MQTT-3.3.2-2]"
 * ```
 */
export class ProtocolError extends MqttError {
  /** The id of the specification statement that was broken, such as `MQTT-3.3.2-2`, if any. */
  readonly statementId?: string;
  /** The MQTT 5 reason code that fits this error when it is reported to the peer. */
  readonly reasonCode: number;

  /**
   * Creates a protocol error.
   *
   * @param message What is wrong, without the statement id.
   * @param statementId The specification statement id, without brackets.
   * @param reasonCode The MQTT 5 reason code: 0x81 (Malformed Packet) unless told otherwise.
   */
  constructor(
    message: string,
    statementId?: string,
    reasonCode: number = ReasonCode.MalformedPacket,
  ) {
    super(statementId ? `${message} [${statementId}]` : message);
    this.statementId = statementId;
    this.reasonCode = reasonCode;
  }
}
