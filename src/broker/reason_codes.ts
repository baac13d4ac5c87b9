/**
 * The numbers the broker sends that the codec does not name yet: the MQTT 5 reason codes and the
 * protocol's largest packet. They sit here, and only here, so that taking them from the codec
 * instead is one edit.
 *
 * @module
 */

/** The largest packet MQTT allows: a remaining length of 268,435,455 and a 5-byte fixed header. */
export const PROTOCOL_MAXIMUM = 268_435_460;

/** v5 reason codes the broker sends. */
export const RC = {
  success: 0x00,
  noSubscriptionExisted: 0x11,
  unspecified: 0x80,
  malformed: 0x81,
  protocolError: 0x82,
  implementationSpecific: 0x83,
  unsupportedVersion: 0x84,
  identifierNotValid: 0x85,
  serverUnavailable: 0x88,
  serverShuttingDown: 0x8b,
  badAuthenticationMethod: 0x8c,
  keepAliveTimeout: 0x8d,
  sessionTakenOver: 0x8e,
  topicFilterInvalid: 0x8f,
  packetIdNotFound: 0x92,
  receiveMaximumExceeded: 0x93,
  topicAliasInvalid: 0x94,
  quotaExceeded: 0x97,
  sharedSubscriptionsNotSupported: 0x9e,
} as const;
