/**
 * The shapes of MQTT control packets, shared by every protocol version. Field names follow the
 * specification in camelCase.
 *
 * @module
 */

/** A protocol version: 3 is MQTT 3.1 (`MQIsdp`), 4 is MQTT 3.1.1, 5 is MQTT 5.0. */
export type ProtocolVersion = 3 | 4 | 5;

/** A quality of service level. */
export type QoS = 0 | 1 | 2;

/**
 * MQTT 5 properties, named after the specification in camelCase. Which may appear on which packet
 * is checked by the encoder and the decoder (see `PROPERTIES` in `properties.ts`).
 */
export interface Properties {
  /** 0x01, PUBLISH and Will: `true` when the payload is UTF-8 text. */
  payloadFormatIndicator?: boolean;
  /** 0x02, PUBLISH and Will: lifetime of the message in seconds. */
  messageExpiryInterval?: number;
  /** 0x03, PUBLISH and Will: a MIME type describing the payload. */
  contentType?: string;
  /** 0x08, PUBLISH and Will: the topic a response should be published to. */
  responseTopic?: string;
  /** 0x09, PUBLISH and Will: lets a requester match a response to its request. */
  correlationData?: Uint8Array;
  /** 0x0B, SUBSCRIBE: the identifier to attach to messages matching this subscription. */
  subscriptionIdentifier?: number;
  /** 0x0B, PUBLISH: the identifiers of every subscription the message matched, in order. */
  subscriptionIdentifiers?: number[];
  /** 0x11, CONNECT, CONNACK, DISCONNECT: seconds the session outlives the connection. */
  sessionExpiryInterval?: number;
  /** 0x12, CONNACK: the client identifier the server assigned. */
  assignedClientIdentifier?: string;
  /** 0x13, CONNACK: the keepalive the server wants the client to use, in seconds. */
  serverKeepAlive?: number;
  /** 0x15, CONNECT, CONNACK, AUTH: the name of the extended authentication method. */
  authenticationMethod?: string;
  /** 0x16, CONNECT, CONNACK, AUTH: data of the extended authentication method. */
  authenticationData?: Uint8Array;
  /** 0x17, CONNECT: whether the server may send a Reason String or User Properties on failures. */
  requestProblemInformation?: boolean;
  /** 0x18, Will: seconds the server waits before publishing the will. */
  willDelayInterval?: number;
  /** 0x19, CONNECT: asks the server for Response Information in CONNACK. */
  requestResponseInformation?: boolean;
  /** 0x1A, CONNACK: the basis for creating response topics. */
  responseInformation?: string;
  /** 0x1C, CONNACK, DISCONNECT: another server the client should use. */
  serverReference?: string;
  /** 0x1F, acknowledgements, DISCONNECT, AUTH: a human-readable explanation. */
  reasonString?: string;
  /** 0x21, CONNECT, CONNACK: how many QoS 1 and 2 publishes the sender accepts at once. */
  receiveMaximum?: number;
  /** 0x22, CONNECT, CONNACK: the highest topic alias the sender accepts. */
  topicAliasMaximum?: number;
  /** 0x23, PUBLISH: a number standing for the topic. */
  topicAlias?: number;
  /** 0x24, CONNACK: the highest QoS the server supports (0 or 1; absent means 2). */
  maximumQoS?: 0 | 1;
  /** 0x25, CONNACK: whether the server supports retained messages. */
  retainAvailable?: boolean;
  /** 0x26, every packet that has properties: name-value pairs, ordered, keys may repeat. */
  userProperties?: [string, string][];
  /** 0x27, CONNECT, CONNACK: the largest packet, in bytes, the sender accepts. */
  maximumPacketSize?: number;
  /** 0x28, CONNACK: whether the server supports wildcard subscriptions. */
  wildcardSubscriptionAvailable?: boolean;
  /** 0x29, CONNACK: whether the server supports subscription identifiers. */
  subscriptionIdentifierAvailable?: boolean;
  /** 0x2A, CONNACK: whether the server supports shared subscriptions. */
  sharedSubscriptionAvailable?: boolean;
}

/** The Will Message a CONNECT carries: published by the broker if the client goes away. */
export interface Will {
  /** The topic to publish the will to. */
  topic: string;
  /** The message. */
  payload: Uint8Array;
  /** The QoS to publish it with. */
  qos: QoS;
  /** Whether the broker retains it. */
  retain: boolean;
  /** MQTT 5 Will Properties. */
  properties?: Properties;
}

/** CONNECT: the first packet a client sends. */
export interface ConnectPacket {
  /** The packet type. */
  type: "connect";
  /** The protocol level: 3 (`MQIsdp`), 4 or 5 (`MQTT`). */
  protocolVersion: ProtocolVersion;
  /** The client identifier; may be empty on 3.1.1 and 5 (the server then assigns one). */
  clientId: string;
  /** Clean Session (3.x) or Clean Start (5). */
  clean: boolean;
  /** The keepalive in seconds; 0 turns it off. */
  keepalive: number;
  /** The user name. */
  username?: string;
  /** The password, as bytes. */
  password?: Uint8Array;
  /** The Will Message. */
  will?: Will;
  /** MQTT 5 properties. */
  properties?: Properties;
}

/** CONNACK: the server's answer to CONNECT. */
export interface ConnackPacket {
  /** The packet type. */
  type: "connack";
  /** Whether the server had a session for this client (always false on MQTT 3.1). */
  sessionPresent: boolean;
  /** The 3.x return code or the MQTT 5 reason code; 0 accepts. */
  reasonCode: number;
  /** MQTT 5 properties. */
  properties?: Properties;
}

/** PUBLISH: an application message, in either direction. */
export interface PublishPacket {
  /** The packet type. */
  type: "publish";
  /** The topic name; may be empty on MQTT 5 when a topic alias stands for it. */
  topic: string;
  /** The payload. The decoder hands out a view into the bytes it read, never a copy. */
  payload: Uint8Array;
  /** The QoS. */
  qos: QoS;
  /** The RETAIN flag. */
  retain: boolean;
  /** The DUP flag: set on a re-delivery of a QoS 1 or 2 PUBLISH. */
  dup: boolean;
  /** The packet identifier; present exactly when the QoS is 1 or 2. */
  packetId?: number;
  /** MQTT 5 properties. */
  properties?: Properties;
}

/** The acknowledgements of a publish: PUBACK, PUBREC, PUBREL, PUBCOMP. */
export interface PublishAckPacket<T extends "puback" | "pubrec" | "pubrel" | "pubcomp"> {
  /** The packet type. */
  type: T;
  /** The packet identifier of the PUBLISH it answers. */
  packetId: number;
  /** MQTT 5 reason code; absent means 0 (Success). */
  reasonCode?: number;
  /** MQTT 5 properties. */
  properties?: Properties;
}

/** PUBACK: acknowledges a QoS 1 PUBLISH. */
export type PubackPacket = PublishAckPacket<"puback">;
/** PUBREC: the first answer to a QoS 2 PUBLISH. */
export type PubrecPacket = PublishAckPacket<"pubrec">;
/** PUBREL: the sender's answer to PUBREC. */
export type PubrelPacket = PublishAckPacket<"pubrel">;
/** PUBCOMP: completes a QoS 2 flow. */
export type PubcompPacket = PublishAckPacket<"pubcomp">;

/** One filter of a SUBSCRIBE, with its options. */
export interface Subscription {
  /** The topic filter. */
  topicFilter: string;
  /** The highest QoS the client wants for messages matching it. */
  qos: QoS;
  /** MQTT 5: do not send the client its own publications. */
  noLocal?: boolean;
  /** MQTT 5: keep the RETAIN flag of forwarded messages as published. */
  retainAsPublished?: boolean;
  /** MQTT 5: 0 sends retained messages on subscribe, 1 only for a new subscription, 2 never. */
  retainHandling?: 0 | 1 | 2;
}

/** SUBSCRIBE: asks for messages matching one or more filters. */
export interface SubscribePacket {
  /** The packet type. */
  type: "subscribe";
  /** The packet identifier. */
  packetId: number;
  /** The filters, at least one. */
  subscriptions: Subscription[];
  /** MQTT 5 properties. */
  properties?: Properties;
}

/** SUBACK: answers SUBSCRIBE with a code for each filter. */
export interface SubackPacket {
  /** The packet type. */
  type: "suback";
  /** The packet identifier of the SUBSCRIBE. */
  packetId: number;
  /** The granted QoS (0, 1, 2) or a failure code (0x80 and up), one per filter. */
  reasonCodes: number[];
  /** MQTT 5 properties. */
  properties?: Properties;
}

/** UNSUBSCRIBE: removes subscriptions. */
export interface UnsubscribePacket {
  /** The packet type. */
  type: "unsubscribe";
  /** The packet identifier. */
  packetId: number;
  /** The filters to remove, at least one. */
  topicFilters: string[];
  /** MQTT 5 properties. */
  properties?: Properties;
}

/** UNSUBACK: answers UNSUBSCRIBE. */
export interface UnsubackPacket {
  /** The packet type. */
  type: "unsuback";
  /** The packet identifier of the UNSUBSCRIBE. */
  packetId: number;
  /** MQTT 5: a reason code per filter. */
  reasonCodes?: number[];
  /** MQTT 5 properties. */
  properties?: Properties;
}

/** PINGREQ: the client's keepalive probe. */
export interface PingreqPacket {
  /** The packet type. */
  type: "pingreq";
}

/** PINGRESP: the server's answer to PINGREQ. */
export interface PingrespPacket {
  /** The packet type. */
  type: "pingresp";
}

/** DISCONNECT: the last packet of a connection. */
export interface DisconnectPacket {
  /** The packet type. */
  type: "disconnect";
  /** MQTT 5 reason code; absent means 0 (Normal disconnection). */
  reasonCode?: number;
  /** MQTT 5 properties. */
  properties?: Properties;
}

/** AUTH: MQTT 5 extended authentication exchange. */
export interface AuthPacket {
  /** The packet type. */
  type: "auth";
  /** 0x00 Success, 0x18 Continue authentication, 0x19 Re-authenticate. */
  reasonCode: number;
  /** MQTT 5 properties. */
  properties?: Properties;
}

/** Any MQTT control packet, discriminated by `type`. */
export type Packet =
  | ConnectPacket
  | ConnackPacket
  | PublishPacket
  | PubackPacket
  | PubrecPacket
  | PubrelPacket
  | PubcompPacket
  | SubscribePacket
  | SubackPacket
  | UnsubscribePacket
  | UnsubackPacket
  | PingreqPacket
  | PingrespPacket
  | DisconnectPacket
  | AuthPacket;

/** The name of a packet type. */
export type PacketType = Packet["type"];
