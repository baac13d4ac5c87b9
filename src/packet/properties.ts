/**
 * MQTT 5 properties (section 2.2.2): one table says each property's identifier, type and the
 * packets it may appear on, and drives reading, measuring, writing and every check.
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import { type Reader, utf8Length, varintLength, type Writer } from "./bytes.ts";
import { MAX_VARINT, PACKET_TYPE_NUMBERS, ReasonCode } from "./constants.ts";
import type { PacketType, Properties } from "./types.ts";

/** How a property's value is written. */
export type PropertyType =
  | "byte"
  | "boolean"
  | "u16"
  | "u32"
  | "varint"
  | "string"
  | "binary"
  | "pair";

/** Where properties may stand: a packet type, or `"will"` for the Will Properties of CONNECT. */
export type PropertyContext = PacketType | "will";

/** One property: its identifier, its name in {@linkcode Properties}, its type and placement. */
export interface PropertyDefinition {
  /** The identifier on the wire. */
  id: number;
  /** The key in {@linkcode Properties}. */
  key: keyof Properties;
  /** The data type. */
  type: PropertyType;
  /** The packets (and `"will"`) it may appear on. */
  contexts: readonly PropertyContext[];
}

const ACKS: PropertyContext[] = ["puback", "pubrec", "pubrel", "pubcomp"];

/** Every MQTT 5 property (MQTT 5.0 section 2.2.2.2, Table 2-4). */
export const PROPERTIES: readonly PropertyDefinition[] = [
  { id: 0x01, key: "payloadFormatIndicator", type: "boolean", contexts: ["publish", "will"] },
  { id: 0x02, key: "messageExpiryInterval", type: "u32", contexts: ["publish", "will"] },
  { id: 0x03, key: "contentType", type: "string", contexts: ["publish", "will"] },
  { id: 0x08, key: "responseTopic", type: "string", contexts: ["publish", "will"] },
  { id: 0x09, key: "correlationData", type: "binary", contexts: ["publish", "will"] },
  { id: 0x0b, key: "subscriptionIdentifier", type: "varint", contexts: ["subscribe"] },
  {
    id: 0x11,
    key: "sessionExpiryInterval",
    type: "u32",
    contexts: ["connect", "connack", "disconnect"],
  },
  { id: 0x12, key: "assignedClientIdentifier", type: "string", contexts: ["connack"] },
  { id: 0x13, key: "serverKeepAlive", type: "u16", contexts: ["connack"] },
  {
    id: 0x15,
    key: "authenticationMethod",
    type: "string",
    contexts: ["connect", "connack", "auth"],
  },
  { id: 0x16, key: "authenticationData", type: "binary", contexts: ["connect", "connack", "auth"] },
  { id: 0x17, key: "requestProblemInformation", type: "boolean", contexts: ["connect"] },
  { id: 0x18, key: "willDelayInterval", type: "u32", contexts: ["will"] },
  { id: 0x19, key: "requestResponseInformation", type: "boolean", contexts: ["connect"] },
  { id: 0x1a, key: "responseInformation", type: "string", contexts: ["connack"] },
  { id: 0x1c, key: "serverReference", type: "string", contexts: ["connack", "disconnect"] },
  {
    id: 0x1f,
    key: "reasonString",
    type: "string",
    contexts: ["connack", ...ACKS, "suback", "unsuback", "disconnect", "auth"],
  },
  { id: 0x21, key: "receiveMaximum", type: "u16", contexts: ["connect", "connack"] },
  { id: 0x22, key: "topicAliasMaximum", type: "u16", contexts: ["connect", "connack"] },
  { id: 0x23, key: "topicAlias", type: "u16", contexts: ["publish"] },
  { id: 0x24, key: "maximumQoS", type: "byte", contexts: ["connack"] },
  { id: 0x25, key: "retainAvailable", type: "boolean", contexts: ["connack"] },
  {
    id: 0x26,
    key: "userProperties",
    type: "pair",
    contexts: [
      "connect",
      "connack",
      "publish",
      "will",
      ...ACKS,
      "subscribe",
      "suback",
      "unsubscribe",
      "unsuback",
      "disconnect",
      "auth",
    ],
  },
  { id: 0x27, key: "maximumPacketSize", type: "u32", contexts: ["connect", "connack"] },
  { id: 0x28, key: "wildcardSubscriptionAvailable", type: "boolean", contexts: ["connack"] },
  { id: 0x29, key: "subscriptionIdentifierAvailable", type: "boolean", contexts: ["connack"] },
  { id: 0x2a, key: "sharedSubscriptionAvailable", type: "boolean", contexts: ["connack"] },
];

// The bit of each context in a placement mask: packet type numbers 1-15, and 16 for "will".
const WILL_BIT = 1 << 16;

/** The bit that stands for `context` in a placement mask. */
export function contextBit(context: PropertyContext): number {
  return context === "will" ? WILL_BIT : 1 << PACKET_TYPE_NUMBERS[context];
}

interface Definition {
  id: number;
  key: keyof Properties;
  type: PropertyType;
  mask: number;
  label: string;
}

const BY_ID: (Definition | undefined)[] = new Array(256);
const BY_KEY = new Map<string, Definition>();
for (const p of PROPERTIES) {
  let mask = 0;
  for (const context of p.contexts) mask |= contextBit(context);
  const definition = { id: p.id, key: p.key, type: p.type, mask, label: p.key };
  BY_ID[p.id] = definition;
  BY_KEY.set(p.key, definition);
}
// Subscription Identifier is one property with two shapes: a single value on SUBSCRIBE and the
// list of every matching subscription on PUBLISH [MQTT-3.3.4-4].
const SUBSCRIPTION_IDENTIFIERS: Definition = {
  id: 0x0b,
  key: "subscriptionIdentifiers",
  type: "varint",
  mask: contextBit("publish"),
  label: "subscriptionIdentifier",
};
BY_KEY.set("subscriptionIdentifiers", SUBSCRIPTION_IDENTIFIERS);
BY_ID[0x0b]!.mask |= contextBit("publish");

function contextName(context: PropertyContext): string {
  return context === "will" ? "the Will Properties" : context.toUpperCase();
}

function protocolError(message: string, statementId?: string): ProtocolError {
  return new ProtocolError(message, statementId, ReasonCode.ProtocolError);
}

/** Checks a value that the property's type and the specification allow; throws otherwise. */
function checkValue(definition: Definition, value: number): void {
  switch (definition.key) {
    case "receiveMaximum":
      if (value === 0) throw protocolError("Receive Maximum is 0");
      break;
    case "maximumPacketSize":
      if (value === 0) throw protocolError("Maximum Packet Size is 0");
      break;
    case "topicAlias":
      // Still a Protocol Error, reported with the code a receiver closes with for a bad alias:
      // 0x94 Topic Alias invalid (v5 section 3.3.2.3.4), so a broker and a client need not
      // repeat this check to answer it rightly.
      if (value === 0) {
        throw new ProtocolError("Topic Alias is 0", "MQTT-3.3.2-8", ReasonCode.TopicAliasInvalid);
      }
      break;
    case "maximumQoS":
      if (value > 1) throw protocolError(`Maximum QoS is ${value}; it must be 0 or 1`);
      break;
    case "subscriptionIdentifier":
    case "subscriptionIdentifiers":
      if (value === 0) throw protocolError("Subscription Identifier is 0");
      break;
  }
}

/**
 * Reads a property list, checking that each property may stand on `context`, that none but User
 * Property (and Subscription Identifier on PUBLISH) repeats, and that values are in range.
 * Returns `undefined` when the list is empty.
 */
export function readProperties(r: Reader, context: PropertyContext): Properties | undefined {
  const length = r.varint("the property length");
  if (length === 0) return undefined;
  r.need(length, "the properties");
  const end = r.pos + length;
  const bit = contextBit(context);
  const properties: Record<string, unknown> = {};
  let seenLow = 0; // identifiers below 32
  let seenHigh = 0; // identifiers 32 and up
  while (r.pos < end) {
    const id = r.varint("a property identifier");
    const definition = BY_ID[id];
    if (definition === undefined) {
      throw new ProtocolError(`unknown property identifier 0x${id.toString(16)}`);
    }
    if ((definition.mask & bit) === 0) {
      // A Malformed Packet, not a Protocol Error (MQTT 5.0 section 2.2.2.2).
      throw new ProtocolError(`${definition.label} is not allowed on ${contextName(context)}`);
    }
    const repeatable = id === 0x26 || (id === 0x0b && context === "publish");
    if (!repeatable) {
      const flag = 1 << (id & 31);
      if (id < 32 ? seenLow & flag : seenHigh & flag) {
        throw protocolError(`${definition.label} appears more than once`);
      }
      if (id < 32) seenLow |= flag;
      else seenHigh |= flag;
    }
    const what = definition.label;
    switch (definition.type) {
      case "byte":
      case "boolean": {
        const value = r.u8(what);
        if (definition.type === "boolean") {
          if (value > 1) throw protocolError(`${what} is ${value}; it must be 0 or 1`);
          properties[definition.key] = value === 1;
        } else {
          checkValue(definition, value);
          properties[definition.key] = value;
        }
        break;
      }
      case "u16": {
        const value = r.u16(what);
        checkValue(definition, value);
        properties[definition.key] = value;
        break;
      }
      case "u32": {
        const value = r.u32(what);
        checkValue(definition, value);
        properties[definition.key] = value;
        break;
      }
      case "varint": {
        const value = r.varint(what);
        checkValue(definition, value);
        if (context === "publish") {
          ((properties.subscriptionIdentifiers ??= []) as number[]).push(value);
        } else {
          properties[definition.key] = value;
        }
        break;
      }
      case "string":
        properties[definition.key] = r.utf8(what);
        break;
      case "binary":
        properties[definition.key] = r.binary(what);
        break;
      case "pair": {
        const name = r.utf8("a User Property name");
        const value = r.utf8("a User Property value");
        ((properties.userProperties ??= []) as [string, string][]).push([name, value]);
        break;
      }
    }
    if (r.pos > end) throw new ProtocolError(`${what} runs past the end of the properties`);
  }
  return properties as Properties;
}

function definitionOf(key: string, context: PropertyContext): Definition {
  const definition = BY_KEY.get(key);
  if (definition === undefined) throw new TypeError(`unknown MQTT 5 property "${key}"`);
  if ((definition.mask & contextBit(context)) === 0) {
    throw protocolError(`${key} is not allowed on ${contextName(context)}`);
  }
  return definition;
}

function checkInteger(key: string, value: unknown, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > max) {
    throw new TypeError(`property ${key} must be an integer from 0 to ${max}, not ${value}`);
  }
  return value;
}

/**
 * Measures a property list for `context`, checking placement, types and ranges. Returns the
 * length of its content, without the length prefix.
 */
export function propertiesLength(
  properties: Properties | undefined,
  context: PropertyContext,
): number {
  if (properties === undefined) return 0;
  let length = 0;
  for (const key in properties) {
    const value = properties[key as keyof Properties];
    if (value === undefined) continue;
    const definition = definitionOf(key, context);
    switch (definition.type) {
      case "byte":
        checkValue(definition, checkInteger(key, value, 0xff));
        length += 2;
        break;
      case "boolean":
        if (typeof value !== "boolean") throw new TypeError(`property ${key} must be a boolean`);
        length += 2;
        break;
      case "u16":
        checkValue(definition, checkInteger(key, value, 0xffff));
        length += 3;
        break;
      case "u32":
        checkValue(definition, checkInteger(key, value, 0xffffffff));
        length += 5;
        break;
      case "varint": {
        const values: unknown[] = Array.isArray(value) ? value : [value];
        for (const v of values) {
          length += 1 + varintLength(checkInteger(key, v, MAX_VARINT));
          checkValue(definition, v as number);
        }
        break;
      }
      case "string":
        if (typeof value !== "string") throw new TypeError(`property ${key} must be a string`);
        length += 3 + utf8Length(value, key);
        break;
      case "binary":
        if (!(value instanceof Uint8Array) || value.length > 0xffff) {
          throw new TypeError(`property ${key} must be a Uint8Array of at most 65535 bytes`);
        }
        length += 3 + value.length;
        break;
      case "pair":
        if (!Array.isArray(value)) throw new TypeError(`property ${key} must be [name, value][]`);
        for (const pair of value as [string, string][]) {
          if (!Array.isArray(pair) || typeof pair[0] !== "string" || typeof pair[1] !== "string") {
            throw new TypeError(`each of userProperties must be a [name, value] pair of strings`);
          }
          length += 5 + utf8Length(pair[0], "a User Property name") +
            utf8Length(pair[1], "a User Property value");
        }
        break;
    }
  }
  return length;
}

/** Writes a property list that {@linkcode propertiesLength} measured as `length` bytes. */
export function writeProperties(
  w: Writer,
  properties: Properties | undefined,
  length: number,
): void {
  w.varint(length);
  if (length === 0 || properties === undefined) return;
  for (const key in properties) {
    const value = properties[key as keyof Properties];
    if (value === undefined) continue;
    const definition = BY_KEY.get(key)!;
    switch (definition.type) {
      case "byte":
        w.u8(definition.id);
        w.u8(value as number);
        break;
      case "boolean":
        w.u8(definition.id);
        w.u8(value ? 1 : 0);
        break;
      case "u16":
        w.u8(definition.id);
        w.u16(value as number);
        break;
      case "u32":
        w.u8(definition.id);
        w.u32(value as number);
        break;
      case "varint":
        for (const v of Array.isArray(value) ? value as number[] : [value as number]) {
          w.u8(definition.id);
          w.varint(v);
        }
        break;
      case "string":
        w.u8(definition.id);
        w.utf8(value as string, utf8Length(value as string, key));
        break;
      case "binary":
        w.u8(definition.id);
        w.binary(value as Uint8Array);
        break;
      case "pair":
        for (const [name, text] of value as [string, string][]) {
          w.u8(definition.id);
          w.utf8(name, utf8Length(name, key));
          w.utf8(text, utf8Length(text, key));
        }
        break;
    }
  }
}
