/**
 * Byte vectors: every packet type of every protocol version, in both directions, written out
 * field by field from the specifications (MQTT 3.1.1 chapter 3, MQTT 5.0 chapter 3, and for
 * MQTT 3.1 the differences in /work/spec/notes.md). Each vector is encoded and compared byte for
 * byte, and decoded and compared field for field.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  decode,
  encode,
  encodeInto,
  type Packet,
  packetSize,
  type ProtocolVersion,
  Writer,
} from "../../src/packet/mod.ts";
import { concat, hex, utf8 } from "./generate.ts";

interface Vector {
  /** What the vector shows. */
  name: string;
  /** The protocol versions whose wire format this is. */
  versions: ProtocolVersion[];
  packet: Packet;
  bytes: Uint8Array;
}

const VERSION_NAMES = { 3: "MQTT 3.1", 4: "MQTT 3.1.1", 5: "MQTT 5.0" } as const;

const VECTORS: Vector[] = [
  // ---------------------------------------------------------------- CONNECT (client to broker)
  {
    name: "CONNECT with a will, a user name and a password",
    versions: [3],
    packet: {
      type: "connect",
      protocolVersion: 3,
      clientId: "kite-3",
      clean: true,
      keepalive: 60,
      will: { topic: "w", payload: utf8("bye"), qos: 1, retain: true },
      username: "u",
      password: utf8("p"),
    },
    bytes: hex(`
      10                       // CONNECT, flags 0000
      22                       // Remaining Length 34
      00 06 4d 51 49 73 64 70  // protocol name "MQIsdp"
      03                       // protocol level 3
      ee                       // flags: user name, password, will retain, will QoS 01, will, clean
      00 3c                    // keepalive 60
      00 06 6b 69 74 65 2d 33  // client id "kite-3"
      00 01 77                 // will topic "w"
      00 03 62 79 65           // will message "bye"
      00 01 75                 // user name "u"
      00 01 70                 // password "p"
    `),
  },
  {
    name: "CONNECT with only a client id and no clean session",
    versions: [3],
    packet: { type: "connect", protocolVersion: 3, clientId: "a", clean: false, keepalive: 0 },
    bytes: hex(`
      10                       // CONNECT
      0f                       // Remaining Length 15
      00 06 4d 51 49 73 64 70  // "MQIsdp"
      03                       // protocol level 3
      00                       // flags: none
      00 00                    // keepalive 0
      00 01 61                 // client id "a"
    `),
  },
  {
    name: "CONNECT with an empty client id and a clean session",
    versions: [4],
    packet: { type: "connect", protocolVersion: 4, clientId: "", clean: true, keepalive: 0 },
    bytes: hex(`
      10                 // CONNECT
      0c                 // Remaining Length 12
      00 04 4d 51 54 54  // protocol name "MQTT"
      04                 // protocol level 4
      02                 // flags: clean session
      00 00              // keepalive 0
      00 00              // client id ""
    `),
  },
  {
    name: "CONNECT with a will, a user name and a binary password",
    versions: [4],
    packet: {
      type: "connect",
      protocolVersion: 4,
      clientId: "c1",
      clean: false,
      keepalive: 300,
      will: { topic: "a/b", payload: new Uint8Array([1, 2]), qos: 2, retain: false },
      username: "user",
      password: new Uint8Array([0x00, 0xff]),
    },
    bytes: hex(`
      10                 // CONNECT
      21                 // Remaining Length 33
      00 04 4d 51 54 54  // "MQTT"
      04                 // protocol level 4
      d4                 // flags: user name, password, will QoS 10, will
      01 2c              // keepalive 300
      00 02 63 31        // client id "c1"
      00 03 61 2f 62     // will topic "a/b"
      00 02 01 02        // will message 01 02
      00 04 75 73 65 72  // user name "user"
      00 02 00 ff        // password 00 ff
    `),
  },
  {
    name: "CONNECT with every CONNECT property, every Will property, a user name and a password",
    versions: [5],
    packet: {
      type: "connect",
      protocolVersion: 5,
      clientId: "k5",
      clean: true,
      keepalive: 10,
      properties: {
        sessionExpiryInterval: 3600,
        receiveMaximum: 20,
        maximumPacketSize: 1048576,
        topicAliasMaximum: 10,
        requestResponseInformation: true,
        requestProblemInformation: false,
        userProperties: [["a", "1"], ["a", "2"]],
        authenticationMethod: "SCRAM",
        authenticationData: new Uint8Array([1, 2]),
      },
      will: {
        topic: "w",
        payload: utf8("x"),
        qos: 0,
        retain: false,
        properties: {
          willDelayInterval: 5,
          payloadFormatIndicator: true,
          messageExpiryInterval: 60,
          contentType: "t/p",
          responseTopic: "r",
          correlationData: new Uint8Array([0xc0]),
          userProperties: [["k", "v"]],
        },
      },
      username: "u",
      password: utf8("p"),
    },
    bytes: hex(`
      10                       // CONNECT
      6c                       // Remaining Length 108
      00 04 4d 51 54 54        // "MQTT"
      05                       // protocol version 5
      c6                       // flags: user name, password, will QoS 00, will, clean start
      00 0a                    // keepalive 10
      2f                       // property length 47
      11 00 00 0e 10           //   session expiry interval 3600 (four byte integer)
      21 00 14                 //   receive maximum 20 (two byte integer)
      27 00 10 00 00           //   maximum packet size 1048576
      22 00 0a                 //   topic alias maximum 10
      19 01                    //   request response information 1 (byte)
      17 00                    //   request problem information 0
      26 00 01 61 00 01 31     //   user property "a" = "1"
      26 00 01 61 00 01 32     //   user property "a" = "2" (same name, order kept)
      15 00 05 53 43 52 41 4d  //   authentication method "SCRAM" (UTF-8 string)
      16 00 02 01 02           //   authentication data 01 02 (binary data)
      00 02 6b 35              // client id "k5"
      21                       // will property length 33
      18 00 00 00 05           //   will delay interval 5
      01 01                    //   payload format indicator 1
      02 00 00 00 3c           //   message expiry interval 60
      03 00 03 74 2f 70        //   content type "t/p"
      08 00 01 72              //   response topic "r"
      09 00 01 c0              //   correlation data c0
      26 00 01 6b 00 01 76     //   user property "k" = "v"
      00 01 77                 // will topic "w"
      00 01 78                 // will payload "x"
      00 01 75                 // user name "u"
      00 01 70                 // password "p"
    `),
  },
  {
    name: "CONNECT with a password and no user name, an empty client id and no clean start",
    versions: [5],
    packet: {
      type: "connect",
      protocolVersion: 5,
      clientId: "",
      clean: false,
      keepalive: 0,
      password: new Uint8Array([1]),
    },
    bytes: hex(`
      10                 // CONNECT
      10                 // Remaining Length 16
      00 04 4d 51 54 54  // "MQTT"
      05                 // protocol version 5
      40                 // flags: password only (allowed from MQTT 5 on)
      00 00              // keepalive 0
      00                 // property length 0
      00 00              // client id ""
      00 01 01           // password 01
    `),
  },

  // ---------------------------------------------------------------- CONNACK (broker to client)
  {
    name: "CONNACK accepting the connection",
    versions: [3, 4],
    packet: { type: "connack", sessionPresent: false, reasonCode: 0 },
    bytes: hex(`
      20     // CONNACK
      02     // Remaining Length 2
      00     // acknowledge flags (3.1: reserved byte)
      00     // return code 0, accepted
    `),
  },
  {
    name: "CONNACK refusing the connection as not authorized",
    versions: [3, 4],
    packet: { type: "connack", sessionPresent: false, reasonCode: 5 },
    bytes: hex(`
      20 02  // CONNACK, Remaining Length 2
      00     // flags
      05     // return code 5, not authorized
    `),
  },
  {
    name: "CONNACK with session present",
    versions: [4],
    packet: { type: "connack", sessionPresent: true, reasonCode: 0 },
    bytes: hex(`
      20 02  // CONNACK, Remaining Length 2
      01     // flags: session present
      00     // return code 0
    `),
  },
  {
    name: "CONNACK with a success code and no properties",
    versions: [5],
    packet: { type: "connack", sessionPresent: false, reasonCode: 0 },
    bytes: hex(`
      20 03  // CONNACK, Remaining Length 3
      00     // flags
      00     // reason code Success
      00     // property length 0
    `),
  },
  {
    name: "CONNACK refusing with Not authorized",
    versions: [5],
    packet: { type: "connack", sessionPresent: false, reasonCode: 0x87 },
    bytes: hex(`
      20 03  // CONNACK, Remaining Length 3
      00     // flags
      87     // reason code Not authorized
      00     // property length 0
    `),
  },
  {
    name: "CONNACK with every CONNACK property",
    versions: [5],
    packet: {
      type: "connack",
      sessionPresent: true,
      reasonCode: 0,
      properties: {
        sessionExpiryInterval: 0xffffffff,
        receiveMaximum: 65535,
        maximumQoS: 1,
        retainAvailable: false,
        maximumPacketSize: 268435460,
        assignedClientIdentifier: "id",
        topicAliasMaximum: 0,
        reasonString: "ok",
        userProperties: [["k", "v"], ["k", "v"]],
        wildcardSubscriptionAvailable: true,
        subscriptionIdentifierAvailable: false,
        sharedSubscriptionAvailable: true,
        serverKeepAlive: 30,
        responseInformation: "r/",
        serverReference: "s",
        authenticationMethod: "m",
        authenticationData: new Uint8Array(0),
      },
    },
    bytes: hex(`
      20 48                 // CONNACK, Remaining Length 72
      01                    // flags: session present
      00                    // reason code Success
      45                    // property length 69
      11 ff ff ff ff        //   session expiry interval 4294967295
      21 ff ff              //   receive maximum 65535
      24 01                 //   maximum QoS 1 (byte)
      25 00                 //   retain available 0
      27 10 00 00 04        //   maximum packet size 268435460
      12 00 02 69 64        //   assigned client identifier "id"
      22 00 00              //   topic alias maximum 0
      1f 00 02 6f 6b        //   reason string "ok"
      26 00 01 6b 00 01 76  //   user property "k" = "v"
      26 00 01 6b 00 01 76  //   user property "k" = "v", the exact pair again
      28 01                 //   wildcard subscription available 1
      29 00                 //   subscription identifier available 0
      2a 01                 //   shared subscription available 1
      13 00 1e              //   server keep alive 30
      1a 00 02 72 2f        //   response information "r/"
      1c 00 01 73           //   server reference "s"
      15 00 01 6d           //   authentication method "m"
      16 00 00              //   authentication data, empty
    `),
  },

  // ---------------------------------------------------------------- PUBLISH (both directions)
  {
    name: "PUBLISH at QoS 0",
    versions: [3, 4],
    packet: {
      type: "publish",
      topic: "a/b",
      payload: utf8("hi"),
      qos: 0,
      retain: false,
      dup: false,
    },
    bytes: hex(`
      30              // PUBLISH, DUP 0, QoS 0, RETAIN 0
      07              // Remaining Length 7
      00 03 61 2f 62  // topic "a/b"
      68 69           // payload "hi"
    `),
  },
  {
    name: "PUBLISH at QoS 1, retained",
    versions: [3, 4],
    packet: {
      type: "publish",
      topic: "a/b",
      payload: utf8("hi"),
      qos: 1,
      retain: true,
      dup: false,
      packetId: 7,
    },
    bytes: hex(`
      33              // PUBLISH, DUP 0, QoS 1, RETAIN 1
      09              // Remaining Length 9
      00 03 61 2f 62  // topic "a/b"
      00 07           // packet id 7
      68 69           // payload "hi"
    `),
  },
  {
    name: "PUBLISH at QoS 2, re-delivered, with an empty payload and packet id 65535",
    versions: [3, 4],
    packet: {
      type: "publish",
      topic: "a/b",
      payload: new Uint8Array(0),
      qos: 2,
      retain: false,
      dup: true,
      packetId: 65535,
    },
    bytes: hex(`
      3c              // PUBLISH, DUP 1, QoS 2, RETAIN 0
      07              // Remaining Length 7
      00 03 61 2f 62  // topic "a/b"
      ff ff           // packet id 65535
    `),
  },
  {
    name: "PUBLISH to a topic of 2-, 3- and 4-byte UTF-8 characters",
    versions: [3, 4],
    packet: {
      type: "publish",
      topic: "ü/日本/😀",
      payload: utf8("x"),
      qos: 0,
      retain: false,
      dup: false,
    },
    bytes: hex(`
      30                 // PUBLISH, QoS 0
      11                 // Remaining Length 17
      00 0e              // topic length 14 bytes (7 UTF-16 code units)
      c3 bc              //   "ü"  U+00FC
      2f                 //   "/"
      e6 97 a5           //   "日" U+65E5
      e6 9c ac           //   "本" U+672C
      2f                 //   "/"
      f0 9f 98 80        //   "😀" U+1F600, a surrogate pair in UTF-16
      78                 // payload "x"
    `),
  },
  {
    name: "PUBLISH with a U+FEFF at the start of the topic, which must not be stripped",
    versions: [3, 4],
    packet: {
      type: "publish",
      topic: "\uFEFFa",
      payload: new Uint8Array(0),
      qos: 0,
      retain: false,
      dup: false,
    },
    bytes: hex(`
      30           // PUBLISH
      06           // Remaining Length 6
      00 04        // topic length 4
      ef bb bf 61  //   U+FEFF "a": a receiver must keep the U+FEFF [MQTT-1.5.3-3]
    `),
  },
  {
    name: "PUBLISH with a U+FEFF at the start of the topic and of a user property",
    versions: [5],
    packet: {
      type: "publish",
      topic: "\uFEFFa",
      payload: new Uint8Array(0),
      qos: 0,
      retain: false,
      dup: false,
      properties: { userProperties: [["\uFEFF", "b"]] },
    },
    bytes: hex(`
      30                       // PUBLISH
      10                       // Remaining Length 16
      00 04                    // topic length 4
      ef bb bf 61              //   U+FEFF "a": a receiver must keep the U+FEFF [MQTT-1.5.4-3]
      09                       // property length 9
      26 00 03 ef bb bf 00 01 62  //   user property U+FEFF = "b"
    `),
  },
  {
    name: "PUBLISH at QoS 1 with no properties",
    versions: [5],
    packet: {
      type: "publish",
      topic: "a",
      payload: utf8("x"),
      qos: 1,
      retain: false,
      dup: false,
      packetId: 5,
    },
    bytes: hex(`
      32        // PUBLISH, QoS 1
      07        // Remaining Length 7
      00 01 61  // topic "a"
      00 05     // packet id 5
      00        // property length 0
      78        // payload "x"
    `),
  },
  {
    name: "PUBLISH at QoS 2, re-delivered and retained, with an empty payload",
    versions: [5],
    packet: {
      type: "publish",
      topic: "a",
      payload: new Uint8Array(0),
      qos: 2,
      retain: true,
      dup: true,
      packetId: 1,
    },
    bytes: hex(`
      3d        // PUBLISH, DUP 1, QoS 2, RETAIN 1
      06        // Remaining Length 6
      00 01 61  // topic "a"
      00 01     // packet id 1
      00        // property length 0
    `),
  },
  {
    name: "PUBLISH with every PUBLISH property and three subscription identifiers",
    versions: [5],
    packet: {
      type: "publish",
      topic: "t",
      payload: utf8("{}"),
      qos: 1,
      retain: false,
      dup: false,
      packetId: 0x0102,
      properties: {
        payloadFormatIndicator: true,
        messageExpiryInterval: 3600,
        topicAlias: 2,
        responseTopic: "re/q",
        correlationData: new Uint8Array([0x00, 0x01, 0xff]),
        userProperties: [["b", "2"], ["a", "1"], ["b", "3"]],
        subscriptionIdentifiers: [1, 128, 16384, 268435455],
        contentType: "application/json",
      },
    },
    bytes: hex(`
      32                    // PUBLISH, QoS 1
      55                    // Remaining Length 85
      00 01 74              // topic "t"
      01 02                 // packet id 258
      4d                    // property length 77
      01 01                 //   payload format indicator 1 (UTF-8)
      02 00 00 0e 10        //   message expiry interval 3600
      23 00 02              //   topic alias 2
      08 00 04 72 65 2f 71  //   response topic "re/q"
      09 00 03 00 01 ff     //   correlation data 00 01 ff
      26 00 01 62 00 01 32  //   user property "b" = "2"
      26 00 01 61 00 01 31  //   user property "a" = "1"
      26 00 01 62 00 01 33  //   user property "b" = "3"
      0b 01                 //   subscription identifier 1 (variable byte integer, 1 byte)
      0b 80 01              //   subscription identifier 128 (2 bytes)
      0b 80 80 01           //   subscription identifier 16384 (3 bytes)
      0b ff ff ff 7f        //   subscription identifier 268435455 (4 bytes, the largest)
      03 00 10              //   content type, 16 bytes:
      61 70 70 6c 69 63 61 74 69 6f 6e 2f 6a 73 6f 6e  // "application/json"
      7b 7d                 // payload "{}"
    `),
  },
  {
    name: "PUBLISH with an empty topic and a topic alias",
    versions: [5],
    packet: {
      type: "publish",
      topic: "",
      payload: utf8("x"),
      qos: 0,
      retain: false,
      dup: false,
      properties: { topicAlias: 1 },
    },
    bytes: hex(`
      30        // PUBLISH, QoS 0
      07        // Remaining Length 7
      00 00     // topic "" (the alias stands for it)
      03        // property length 3
      23 00 01  //   topic alias 1
      78        // payload "x"
    `),
  },
  {
    name: "PUBLISH to a topic that is one 4-byte character",
    versions: [5],
    packet: {
      type: "publish",
      topic: "😀",
      payload: utf8("x"),
      qos: 0,
      retain: false,
      dup: false,
    },
    bytes: hex(`
      30           // PUBLISH
      08           // Remaining Length 8
      00 04        // topic length 4
      f0 9f 98 80  //   "😀" U+1F600
      00           // property length 0
      78           // payload "x"
    `),
  },

  // ------------------------------------------- PUBACK, PUBREC, PUBREL, PUBCOMP (both directions)
  {
    name: "PUBACK",
    versions: [3, 4],
    packet: { type: "puback", packetId: 1 },
    bytes: hex(`40 02  00 01  // PUBACK, Remaining Length 2, packet id 1`),
  },
  {
    name: "PUBREC",
    versions: [3, 4],
    packet: { type: "pubrec", packetId: 0x1234 },
    bytes: hex(`50 02  12 34  // PUBREC, Remaining Length 2, packet id 4660`),
  },
  {
    name: "PUBREL, whose fixed header flags are 0010",
    versions: [3, 4],
    packet: { type: "pubrel", packetId: 65535 },
    bytes: hex(`62 02  ff ff  // PUBREL with flags 0010, Remaining Length 2, packet id 65535`),
  },
  {
    name: "PUBCOMP",
    versions: [3, 4],
    packet: { type: "pubcomp", packetId: 128 },
    bytes: hex(`70 02  00 80  // PUBCOMP, Remaining Length 2, packet id 128`),
  },
  {
    name: "PUBACK in the short form: Remaining Length 2 means Success",
    versions: [5],
    packet: { type: "puback", packetId: 1 },
    bytes: hex(`40 02  00 01  // PUBACK, Remaining Length 2, packet id 1`),
  },
  {
    name: "PUBACK with a reason code and no property length: Remaining Length 3",
    versions: [5],
    packet: { type: "puback", packetId: 1, reasonCode: 0x10 },
    bytes: hex(`
      40 03  // PUBACK, Remaining Length 3
      00 01  // packet id 1
      10     // reason code No matching subscribers
    `),
  },
  {
    name: "PUBACK with a reason code, a reason string and a user property",
    versions: [5],
    packet: {
      type: "puback",
      packetId: 1,
      reasonCode: 0x80,
      properties: { reasonString: "no", userProperties: [["a", "b"]] },
    },
    bytes: hex(`
      40 10                 // PUBACK, Remaining Length 16
      00 01                 // packet id 1
      80                    // reason code Unspecified error
      0c                    // property length 12
      1f 00 02 6e 6f        //   reason string "no"
      26 00 01 61 00 01 62  //   user property "a" = "b"
    `),
  },
  {
    name: "PUBREC with Packet Identifier in use, Remaining Length 3",
    versions: [5],
    packet: { type: "pubrec", packetId: 2, reasonCode: 0x91 },
    bytes: hex(`50 03  00 02  91  // PUBREC, Remaining Length 3, packet id 2, reason 0x91`),
  },
  {
    name: "PUBREL in the short form",
    versions: [5],
    packet: { type: "pubrel", packetId: 3 },
    bytes: hex(`62 02  00 03  // PUBREL with flags 0010, Remaining Length 2, packet id 3`),
  },
  {
    name: "PUBREL with Packet Identifier not found, Remaining Length 3",
    versions: [5],
    packet: { type: "pubrel", packetId: 3, reasonCode: 0x92 },
    bytes: hex(`62 03  00 03  92  // PUBREL, Remaining Length 3, packet id 3, reason 0x92`),
  },
  {
    name: "PUBCOMP in the short form",
    versions: [5],
    packet: { type: "pubcomp", packetId: 4 },
    bytes: hex(`70 02  00 04  // PUBCOMP, Remaining Length 2, packet id 4`),
  },
  {
    name: "PUBCOMP with Success written out and an empty reason string",
    versions: [5],
    packet: { type: "pubcomp", packetId: 4, reasonCode: 0, properties: { reasonString: "" } },
    bytes: hex(`
      70 07     // PUBCOMP, Remaining Length 7
      00 04     // packet id 4
      00        // reason code Success, needed because properties follow
      03        // property length 3
      1f 00 00  //   reason string ""
    `),
  },

  // ---------------------------------------------------------------- SUBSCRIBE (client to broker)
  {
    name: "SUBSCRIBE to two filters",
    versions: [3, 4],
    packet: {
      type: "subscribe",
      packetId: 1,
      subscriptions: [{ topicFilter: "a/+", qos: 0 }, { topicFilter: "#", qos: 2 }],
    },
    bytes: hex(`
      82              // SUBSCRIBE with flags 0010
      0c              // Remaining Length 12
      00 01           // packet id 1
      00 03 61 2f 2b  // filter "a/+"
      00              //   requested QoS 0
      00 01 23        // filter "#"
      02              //   requested QoS 2
    `),
  },
  {
    name: "SUBSCRIBE with a subscription identifier, a user property and every option",
    versions: [5],
    packet: {
      type: "subscribe",
      packetId: 1,
      properties: { subscriptionIdentifier: 268435455, userProperties: [["k", "v"]] },
      subscriptions: [
        {
          topicFilter: "a/b",
          qos: 1,
          noLocal: true,
          retainAsPublished: false,
          retainHandling: 0,
        },
        {
          topicFilter: "$share/g/c",
          qos: 2,
          noLocal: false,
          retainAsPublished: true,
          retainHandling: 2,
        },
        {
          topicFilter: "+",
          qos: 0,
          noLocal: false,
          retainAsPublished: false,
          retainHandling: 1,
        },
      ],
    },
    bytes: hex(`
      82                    // SUBSCRIBE with flags 0010
      26                    // Remaining Length 38
      00 01                 // packet id 1
      0c                    // property length 12
      0b ff ff ff 7f        //   subscription identifier 268435455
      26 00 01 6b 00 01 76  //   user property "k" = "v"
      00 03 61 2f 62        // filter "a/b"
      05                    //   options: retain handling 0, no local, QoS 1
      00 0a 24 73 68 61 72 65 2f 67 2f 63  // filter "$share/g/c"
      2a                    //   options: retain handling 2, retain as published, QoS 2
      00 01 2b              // filter "+"
      10                    //   options: retain handling 1, QoS 0
    `),
  },

  // ---------------------------------------------------------------- SUBACK (broker to client)
  {
    name: "SUBACK granting QoS 0, 1 and 2",
    versions: [3],
    packet: { type: "suback", packetId: 1, reasonCodes: [0, 1, 2] },
    bytes: hex(`
      90 05     // SUBACK, Remaining Length 5
      00 01     // packet id 1
      00 01 02  // granted QoS 0, 1, 2
    `),
  },
  {
    name: "SUBACK granting QoS 0, 1 and 2 and refusing a fourth filter",
    versions: [4],
    packet: { type: "suback", packetId: 10, reasonCodes: [0, 1, 2, 0x80] },
    bytes: hex(`
      90 06        // SUBACK, Remaining Length 6
      00 0a        // packet id 10
      00 01 02 80  // granted QoS 0, 1, 2, then Failure
    `),
  },
  {
    name: "SUBACK with every SUBACK reason code and a reason string",
    versions: [5],
    packet: {
      type: "suback",
      packetId: 1,
      properties: { reasonString: "ok" },
      reasonCodes: [0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2],
    },
    bytes: hex(`
      90 14           // SUBACK, Remaining Length 20
      00 01           // packet id 1
      05              // property length 5
      1f 00 02 6f 6b  //   reason string "ok"
      00 01 02        // Granted QoS 0, 1, 2
      80 83 87 8f 91  // Unspecified, Implementation specific, Not authorized,
                      // Topic Filter invalid, Packet Identifier in use
      97 9e a1 a2     // Quota exceeded, Shared Subscriptions not supported,
                      // Subscription Identifiers not supported, Wildcard Subscriptions not supported
    `),
  },

  // ---------------------------------------------------------------- UNSUBSCRIBE, UNSUBACK
  {
    name: "UNSUBSCRIBE from two filters",
    versions: [3, 4],
    packet: { type: "unsubscribe", packetId: 2, topicFilters: ["a/+", "#"] },
    bytes: hex(`
      a2              // UNSUBSCRIBE with flags 0010
      0a              // Remaining Length 10
      00 02           // packet id 2
      00 03 61 2f 2b  // filter "a/+"
      00 01 23        // filter "#"
    `),
  },
  {
    name: "UNSUBSCRIBE with three user properties, a name repeated",
    versions: [5],
    packet: {
      type: "unsubscribe",
      packetId: 3,
      properties: { userProperties: [["a", "1"], ["b", "2"], ["a", "3"]] },
      topicFilters: ["a/#"],
    },
    bytes: hex(`
      a2                    // UNSUBSCRIBE with flags 0010
      1d                    // Remaining Length 29
      00 03                 // packet id 3
      15                    // property length 21
      26 00 01 61 00 01 31  //   user property "a" = "1"
      26 00 01 62 00 01 32  //   user property "b" = "2"
      26 00 01 61 00 01 33  //   user property "a" = "3"
      00 03 61 2f 23        // filter "a/#"
    `),
  },
  {
    name: "UNSUBACK",
    versions: [3, 4],
    packet: { type: "unsuback", packetId: 2 },
    bytes: hex(`b0 02  00 02  // UNSUBACK, Remaining Length 2, packet id 2`),
  },
  {
    name: "UNSUBACK with every UNSUBACK reason code",
    versions: [5],
    packet: {
      type: "unsuback",
      packetId: 3,
      reasonCodes: [0x00, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91],
    },
    bytes: hex(`
      b0 0a                 // UNSUBACK, Remaining Length 10
      00 03                 // packet id 3
      00                    // property length 0
      00 11 80 83 87 8f 91  // Success, No subscription existed, Unspecified error,
                            // Implementation specific, Not authorized, Topic Filter invalid,
                            // Packet Identifier in use
    `),
  },

  // ---------------------------------------------------------------- PINGREQ, PINGRESP
  {
    name: "PINGREQ",
    versions: [3, 4, 5],
    packet: { type: "pingreq" },
    bytes: hex(`c0 00  // PINGREQ, Remaining Length 0`),
  },
  {
    name: "PINGRESP",
    versions: [3, 4, 5],
    packet: { type: "pingresp" },
    bytes: hex(`d0 00  // PINGRESP, Remaining Length 0`),
  },

  // ---------------------------------------------------------------- DISCONNECT, AUTH
  {
    name: "DISCONNECT",
    versions: [3, 4],
    packet: { type: "disconnect" },
    bytes: hex(`e0 00  // DISCONNECT, Remaining Length 0`),
  },
  {
    name: "DISCONNECT in the short form: Remaining Length 0 means Normal disconnection",
    versions: [5],
    packet: { type: "disconnect" },
    bytes: hex(`e0 00  // DISCONNECT, Remaining Length 0`),
  },
  {
    name: "DISCONNECT with a reason code and no property length: Remaining Length 1",
    versions: [5],
    packet: { type: "disconnect", reasonCode: 0x04 },
    bytes: hex(`e0 01  04  // DISCONNECT, Remaining Length 1, Disconnect with Will Message`),
  },
  {
    name: "DISCONNECT from a client with a session expiry, a reason string and a user property",
    versions: [5],
    packet: {
      type: "disconnect",
      reasonCode: 0x04,
      properties: { sessionExpiryInterval: 0, reasonString: "r", userProperties: [["x", "y"]] },
    },
    bytes: hex(`
      e0 12                 // DISCONNECT, Remaining Length 18
      04                    // reason code Disconnect with Will Message
      10                    // property length 16
      11 00 00 00 00        //   session expiry interval 0
      1f 00 01 72           //   reason string "r"
      26 00 01 78 00 01 79  //   user property "x" = "y"
    `),
  },
  {
    name: "DISCONNECT from a broker pointing at another server",
    versions: [5],
    packet: { type: "disconnect", reasonCode: 0x9c, properties: { serverReference: "s" } },
    bytes: hex(`
      e0 06        // DISCONNECT, Remaining Length 6
      9c           // reason code Use another server
      04           // property length 4
      1c 00 01 73  //   server reference "s"
    `),
  },
  {
    name: "AUTH in the short form: Remaining Length 0 means Success",
    versions: [5],
    packet: { type: "auth", reasonCode: 0 },
    bytes: hex(`f0 00  // AUTH, Remaining Length 0`),
  },
  {
    name: "AUTH with a reason code and no property length: Remaining Length 1",
    versions: [5],
    packet: { type: "auth", reasonCode: 0x19 },
    bytes: hex(`f0 01  19  // AUTH, Remaining Length 1, Re-authenticate`),
  },
  {
    name: "AUTH continuing with a method, data and a reason string",
    versions: [5],
    packet: {
      type: "auth",
      reasonCode: 0x18,
      properties: {
        authenticationMethod: "SCRAM",
        authenticationData: new Uint8Array([0xde, 0xad]),
        reasonString: "go",
      },
    },
    bytes: hex(`
      f0 14                    // AUTH, Remaining Length 20
      18                       // reason code Continue authentication
      12                       // property length 18
      15 00 05 53 43 52 41 4d  //   authentication method "SCRAM"
      16 00 02 de ad           //   authentication data de ad
      1f 00 02 67 6f           //   reason string "go"
    `),
  },
];

for (const version of [3, 4, 5] as const) {
  describe(`encode and decode - ${VERSION_NAMES[version]} byte vectors`, () => {
    for (const { name, versions, packet, bytes } of VECTORS) {
      if (!versions.includes(version)) continue;
      test(`${name} encodes to the bytes the specification gives`, () => {
        const encoded = encode(packet, version);
        assert.deepEqual(encoded, bytes);
        // Exactly the packet's bytes, in a region no other encoded packet shares.
        const again = encode(packet, version);
        again.fill(0xff);
        assert.deepEqual(encoded, bytes);
      });
      test(`${name} decodes from those bytes`, () => {
        assert.deepEqual(decode(bytes, version), packet);
      });
    }
  });
}

/** Other valid encodings, not the shortest: the decoder accepts them, the encoder never writes them. */
const ALSO_ACCEPTED: {
  name: string;
  version: ProtocolVersion;
  bytes: Uint8Array;
  packet: Packet;
  shortest: Uint8Array;
}[] = [
  {
    name: "PUBACK with Success written out and no property length",
    version: 5,
    bytes: hex(`40 03  00 01  00  // PUBACK, Remaining Length 3, packet id 1, Success`),
    packet: { type: "puback", packetId: 1, reasonCode: 0 },
    shortest: hex(`40 02 00 01`),
  },
  {
    name: "PUBREC with Success and an empty property list",
    version: 5,
    bytes: hex(`50 04  00 01  00  00  // PUBREC, Remaining Length 4, id 1, Success, no properties`),
    packet: { type: "pubrec", packetId: 1, reasonCode: 0 },
    shortest: hex(`50 02 00 01`),
  },
  {
    name: "DISCONNECT with Normal disconnection written out",
    version: 5,
    bytes: hex(`e0 01  00  // DISCONNECT, Remaining Length 1, Normal disconnection`),
    packet: { type: "disconnect", reasonCode: 0 },
    shortest: hex(`e0 00`),
  },
  {
    name: "DISCONNECT with Normal disconnection and an empty property list",
    version: 5,
    bytes: hex(`e0 02  00  00  // DISCONNECT, Remaining Length 2, reason 0, property length 0`),
    packet: { type: "disconnect", reasonCode: 0 },
    shortest: hex(`e0 00`),
  },
  {
    name: "AUTH with Success and an empty property list",
    version: 5,
    bytes: hex(`f0 02  00  00  // AUTH, Remaining Length 2, Success, property length 0`),
    packet: { type: "auth", reasonCode: 0 },
    shortest: hex(`f0 00`),
  },
  {
    name: "an MQTT 3.1 PUBREL re-sent with DUP set",
    version: 3,
    bytes: hex(`6a 02  00 01  // PUBREL with DUP: flags 1010, packet id 1`),
    packet: { type: "pubrel", packetId: 1 },
    shortest: hex(`62 02 00 01`),
  },
  {
    name: "an MQTT 3.1 SUBSCRIBE re-sent with DUP set",
    version: 3,
    bytes: hex(`8a 06  00 01  00 01 61  01  // SUBSCRIBE with DUP, id 1, "a" QoS 1`),
    packet: { type: "subscribe", packetId: 1, subscriptions: [{ topicFilter: "a", qos: 1 }] },
    shortest: hex(`82 06 00 01 00 01 61 01`),
  },
  {
    name: "an MQTT 3.1 UNSUBSCRIBE re-sent with DUP set",
    version: 3,
    bytes: hex(`aa 05  00 01  00 01 61  // UNSUBSCRIBE with DUP, id 1, "a"`),
    packet: { type: "unsubscribe", packetId: 1, topicFilters: ["a"] },
    shortest: hex(`a2 05 00 01 00 01 61`),
  },
  {
    name: "an MQTT 3.1 CONNACK whose reserved first byte is not 0 (3.1 has no session present)",
    version: 3,
    bytes: hex(`20 02  ff  00  // CONNACK, "Topic Name Compression Response" ff, accepted`),
    packet: { type: "connack", sessionPresent: false, reasonCode: 0 },
    shortest: hex(`20 02 00 00`),
  },
  {
    name: "an MQTT 3.1.1 Remaining Length not in the fewest bytes (only MQTT 5 forbids it)",
    version: 4,
    bytes: hex(`c0 80 00  // PINGREQ, Remaining Length 0 in two bytes`),
    packet: { type: "pingreq" },
    shortest: hex(`c0 00`),
  },
];

describe("decode - valid encodings that are not the shortest", () => {
  for (const { name, version, bytes, packet, shortest } of ALSO_ACCEPTED) {
    test(`${VERSION_NAMES[version]} - ${name} is accepted`, () => {
      assert.deepEqual(decode(bytes, version), packet);
      assert.deepEqual(encode(packet, version), shortest);
    });
  }
});

/** A PUBLISH to "a" at QoS 0 whose Remaining Length is `remainingLength`. */
function publishOfLength(remainingLength: number, version: ProtocolVersion): Packet {
  const overhead = version === 5 ? 4 : 3; // topic "a", and the MQTT 5 property length
  const payload = new Uint8Array(remainingLength - overhead);
  for (let i = 0; i < payload.length; i++) payload[i] = i * 7;
  return { type: "publish", topic: "a", payload, qos: 0, retain: false, dup: false };
}

describe("encode and decode - Remaining Length in 1 to 4 bytes", () => {
  // MQTT 3.1.1 section 2.2.3 Table 2.4 and MQTT 5.0 section 1.5.5 Table 1-1 give the ranges.
  const lengths: [number, string][] = [
    [127, "7f"], // the largest 1-byte length
    [128, "80 01"], // the smallest 2-byte length
    [321, "c1 02"], // the example of MQTT 3.1.1 section 2.2.3: 321 = 65 + 2 * 128
    [16383, "ff 7f"], // the largest 2-byte length
    [16384, "80 80 01"], // the smallest 3-byte length
    [2097151, "ff ff 7f"], // the largest 3-byte length
    [2097152, "80 80 80 01"], // the smallest 4-byte length
  ];
  for (const version of [3, 4, 5] as const) {
    for (const [remainingLength, encoded] of lengths) {
      test(`${VERSION_NAMES[version]} - a PUBLISH with Remaining Length ${remainingLength} writes ${encoded}`, () => {
        const packet = publishOfLength(remainingLength, version);
        const header = concat(
          hex(`30 ${encoded}`), // PUBLISH, QoS 0, then the Remaining Length
          hex(`00 01 61`), // topic "a"
          version === 5 ? hex(`00`) : new Uint8Array(0), // property length 0
        );
        const bytes = encode(packet, version);
        assert.equal(
          bytes.length,
          header.length + (packet as { payload: Uint8Array }).payload.length,
        );
        assert.deepEqual(bytes.subarray(0, header.length), header);
        assert.deepEqual(decode(bytes, version), packet);
      });
    }
  }
});

describe("encodeInto", () => {
  test("encodeInto - writes several packets back to back into one buffer", () => {
    const writer = new Writer();
    const picked = VECTORS.filter((vector) => vector.versions.includes(5));
    for (const { packet } of picked) encodeInto(writer, packet, 5);
    assert.deepEqual(writer.bytes(), concat(...picked.map((vector) => vector.bytes)));
  });

  test("encodeInto - a reset writer reuses its buffer", () => {
    const writer = new Writer();
    encodeInto(writer, { type: "puback", packetId: 1 }, 4);
    const buffer = writer.buf;
    writer.reset();
    encodeInto(writer, { type: "pingreq" }, 4);
    assert.equal(writer.buf, buffer);
    assert.deepEqual(writer.bytes(), hex(`c0 00`));
  });
});

describe("packetSize - the length of every byte vector, without encoding", () => {
  for (const version of [3, 4, 5] as const) {
    test(`packetSize - ${VERSION_NAMES[version]} - every vector measures as its bytes`, () => {
      for (const { name, versions, packet, bytes } of VECTORS) {
        if (versions.includes(version)) {
          assert.equal(packetSize(packet, version), bytes.length, name);
        }
      }
    });
    test(`packetSize - ${VERSION_NAMES[version]} - a PUBLISH with a Remaining Length of 1 to 4 bytes`, () => {
      for (const remainingLength of [127, 128, 16383, 16384, 2097151, 2097152]) {
        const packet = publishOfLength(remainingLength, version);
        assert.equal(packetSize(packet, version), encode(packet, version).length);
      }
    });
  }
});
