import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ProtocolError } from "../src/errors.ts";
import {
  isValidTopicFilter,
  isValidTopicName,
  validateTopicFilter,
  validateTopicName,
} from "../src/packet/topic.ts";
import { topicMatches, TopicTrie } from "../src/topic.ts";

const TOPIC_NAME_INVALID = 0x90;
const TOPIC_FILTER_INVALID = 0x8f;

/** Asserts that `fn` throws a ProtocolError for `statementId` with `reasonCode`. */
function assertRejects(fn: () => void, statementId: string, reasonCode: number): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${error}`);
    assert.equal(error.statementId, statementId);
    assert.equal(error.reasonCode, reasonCode);
    assert.ok(error.message.endsWith(` [${statementId}]`), error.message);
    return true;
  });
}

/** A tiny seeded PRNG (mulberry32), so the randomized tests are the same on every run. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LONGEST_ASCII = "a".repeat(65535);
// "€" is three UTF-8 bytes: 21845 of them are exactly 65535 bytes.
const LONGEST_EURO = "€".repeat(21845);
// "😀" is a surrogate pair, four UTF-8 bytes: 16383 of them and three ASCII are 65535 bytes.
const LONGEST_EMOJI = "😀".repeat(16383) + "abc";

describe("validateTopicName", () => {
  const valid = [
    "sport/tennis/player1",
    "sport",
    "/",
    "//",
    "/finance",
    "sport/",
    " ",
    "a b/c d",
    "$SYS/broker/uptime",
    "Sport/Tennis",
    "ü/日本/😀",
    "\uFEFF",
    LONGEST_ASCII,
    LONGEST_EURO,
    LONGEST_EMOJI,
  ];
  for (const name of valid) {
    test(`accepts the topic name ${JSON.stringify(name.slice(0, 30))}`, () => {
      validateTopicName(name);
      assert.equal(isValidTopicName(name), true);
    });
  }

  const invalid: [string, string, string][] = [
    ["an empty name", "", "MQTT-4.7.3-1"],
    ["a name with a multi-level wildcard", "sport/#", "MQTT-3.3.2-2"],
    ["a name with a single-level wildcard", "sport/+/player1", "MQTT-3.3.2-2"],
    ["a name with a wildcard inside a level", "sport/tennis+", "MQTT-3.3.2-2"],
    ["a name that is only a wildcard", "#", "MQTT-3.3.2-2"],
    ["a name with a wildcard after non-ASCII text", "ü/+", "MQTT-3.3.2-2"],
    ["a name with the null character", "sport/\0/player1", "MQTT-4.7.3-2"],
    ["a name longer than 65535 ASCII bytes", "a".repeat(65536), "MQTT-4.7.3-3"],
    [
      "a name of 65535 code units that encodes to more bytes",
      "ü" + "a".repeat(65534),
      "MQTT-4.7.3-3",
    ],
    ["a name of three-byte characters one byte too long", LONGEST_EURO + "a", "MQTT-4.7.3-3"],
    ["a name of surrogate pairs one byte too long", LONGEST_EMOJI + "d", "MQTT-4.7.3-3"],
    ["a name with a lone high surrogate at its end", "sport/\uD83D", "MQTT-1.5.3-1"],
    ["a name with a lone high surrogate before ASCII", "\uD83Dsport", "MQTT-1.5.3-1"],
    ["a name with a lone low surrogate", "sport/\uDE00", "MQTT-1.5.3-1"],
    ["a name with a surrogate pair in the wrong order", "\uDE00\uD83D", "MQTT-1.5.3-1"],
  ];
  for (const [what, name, statementId] of invalid) {
    test(`rejects ${what} [${statementId}]`, () => {
      assertRejects(() => validateTopicName(name), statementId, TOPIC_NAME_INVALID);
      assert.equal(isValidTopicName(name), false);
    });
  }

  test("quotes the topic name in the error message", () => {
    assert.throws(() => validateTopicName("a/+"), {
      message: 'topic name "a/+" contains a wildcard (+ or #), which only topic filters may use ' +
        "[MQTT-3.3.2-2]",
    });
  });

  test("cuts a very long topic name short in the error message", () => {
    assert.throws(() => validateTopicName("a".repeat(70000)), (error: unknown) => {
      assert.ok(error instanceof ProtocolError);
      assert.ok(error.message.length < 200, error.message);
      return true;
    });
  });
});

describe("validateTopicFilter", () => {
  const valid = [
    // The examples of MQTT 3.1.1 and 5.0 sections 4.7.1.2 and 4.7.1.3.
    "sport/tennis/player1/#",
    "sport/#",
    "#",
    "sport/tennis/#",
    "sport/tennis/+",
    "sport/+",
    "+",
    "+/tennis/#",
    "sport/+/player1",
    "+/+",
    "/+",
    // Section 4.7.2.
    "$SYS/#",
    "$SYS/monitor/+",
    "+/monitor/Clients",
    // More.
    "/",
    "/#",
    "+/",
    "//+//",
    "a/b/c",
    "ü/+/日本/#",
    "$share",
    "$sharex/a",
    "$SHARE//a",
    "$share/group/sport/#",
    "$share/group/#",
    "$share/group/+",
    "$share/g/+/tennis/#",
    "$share/g//",
    "$share/g/$SYS/#",
    "$share/ü/a",
    LONGEST_ASCII,
    "#".padStart(65535, "a/"),
    LONGEST_EURO,
    LONGEST_EMOJI,
  ];
  for (const filter of valid) {
    test(`accepts the topic filter ${JSON.stringify(filter.slice(0, 30))}`, () => {
      validateTopicFilter(filter);
      assert.equal(isValidTopicFilter(filter), true);
    });
  }

  const invalid: [string, string, string][] = [
    ["an empty filter", "", "MQTT-4.7.3-1"],
    ["a # glued to a level", "sport/tennis#", "MQTT-4.7.1-2"],
    ["a # that is not the last level", "sport/tennis/#/ranking", "MQTT-4.7.1-2"],
    ["a # followed by a separator", "sport/#/", "MQTT-4.7.1-2"],
    ["a # before a level", "#sport", "MQTT-4.7.1-2"],
    ["two # in one level", "##", "MQTT-4.7.1-2"],
    ["a + glued to the end of a level", "sport+", "MQTT-4.7.1-3"],
    ["a + glued to the start of a level", "sport/+tennis", "MQTT-4.7.1-3"],
    ["a + inside a level", "sport/te+nis/player1", "MQTT-4.7.1-3"],
    ["two + in one level", "++", "MQTT-4.7.1-3"],
    ["a + followed by #", "sport/+#", "MQTT-4.7.1-3"],
    ["a filter with the null character", "sport/\0", "MQTT-4.7.3-2"],
    ["a filter longer than 65535 bytes", "a".repeat(65535) + "/", "MQTT-4.7.3-3"],
    ["a filter that encodes to more than 65535 bytes", LONGEST_EURO + "/#", "MQTT-4.7.3-3"],
    ["a filter with a lone high surrogate", "sport/\uD83D/#", "MQTT-1.5.3-1"],
    ["a filter with a lone low surrogate", "\uDE00/+", "MQTT-1.5.3-1"],
    ["a shared subscription with an empty ShareName", "$share//sport", "MQTT-4.8.2-1"],
    ["a shared subscription that is only the prefix", "$share/", "MQTT-4.8.2-1"],
    ["a ShareName with +", "$share/gr+oup/sport", "MQTT-4.8.2-2"],
    ["a ShareName that is #", "$share/#", "MQTT-4.8.2-2"],
    ["a ShareName followed by wildcards and no filter", "$share/+/#", "MQTT-4.8.2-2"],
    ["a ShareName with no / after it", "$share/group", "MQTT-4.8.2-2"],
    ["a ShareName with no filter after its /", "$share/group/", "MQTT-4.8.2-2"],
    ["a shared subscription with a misplaced #", "$share/group/sport#", "MQTT-4.7.1-2"],
    ["a shared subscription with a misplaced +", "$share/group/+sport", "MQTT-4.7.1-3"],
    ["a ShareName with the null character", "$share/gr\0up/sport", "MQTT-4.7.3-2"],
  ];
  for (const [what, filter, statementId] of invalid) {
    test(`rejects ${what} [${statementId}]`, () => {
      assertRejects(() => validateTopicFilter(filter), statementId, TOPIC_FILTER_INVALID);
      assert.equal(isValidTopicFilter(filter), false);
    });
  }

  test("quotes the topic filter in the error message", () => {
    assert.throws(() => validateTopicFilter("sport+"), {
      message: 'topic filter "sport+" has a + that does not occupy a whole level [MQTT-4.7.1-3]',
    });
  });
});

/** [filter, topic, matches] */
const MATCH_CASES: [string, string, boolean][] = [
  // Section 4.7.1.2, the multi-level wildcard.
  ["sport/tennis/player1/#", "sport/tennis/player1", true],
  ["sport/tennis/player1/#", "sport/tennis/player1/ranking", true],
  ["sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true],
  ["sport/tennis/player1/#", "sport/tennis/player2", false],
  ["sport/tennis/player1/#", "sport/tennis", false],
  ["sport/#", "sport", true],
  ["sport/#", "sport/", true],
  ["sport/#", "sports", false],
  ["#", "sport/tennis/player1", true],
  ["#", "/", true],
  // Section 4.7.1.3, the single-level wildcard.
  ["sport/tennis/+", "sport/tennis/player1", true],
  ["sport/tennis/+", "sport/tennis/player2", true],
  ["sport/tennis/+", "sport/tennis/player1/ranking", false],
  ["sport/tennis/+", "sport/tennis", false],
  ["sport/+", "sport", false],
  ["sport/+", "sport/", true],
  ["+/+", "/finance", true],
  ["/+", "/finance", true],
  ["+", "/finance", false],
  ["+", "finance", true],
  ["+/tennis/#", "sport/tennis/player1", true],
  ["+/tennis/#", "sport/tennis", true],
  ["sport/+/player1", "sport/tennis/player1", true],
  ["sport/+/player1", "sport//player1", true],
  ["sport/+/player1", "sport/tennis/player2", false],
  // Section 4.7.2, topics beginning with $.
  ["#", "$SYS/monitor/Clients", false],
  ["+/monitor/Clients", "$SYS/monitor/Clients", false],
  ["+", "$SYS", false],
  ["$SYS/#", "$SYS/monitor/Clients", true],
  ["$SYS/#", "$SYS", true],
  ["$SYS/monitor/+", "$SYS/monitor/Clients", true],
  ["sport/+", "sport/$tennis", true],
  ["sport/#", "sport/$tennis/player1", true],
  // Levels are compared exactly: case, empty levels, prefixes.
  ["sport/tennis", "sport/tennis", true],
  ["sport/tennis", "Sport/Tennis", false],
  ["sport/tennis", "sport/tennis/", false],
  ["sport/tennis", "sport//tennis", false],
  ["sport/ten", "sport/tennis", false],
  ["sport/tennis", "sport/ten", false],
  ["/", "/", true],
  ["+/+", "/", true],
  ["+", "/", false],
  ["a/+/+", "a/b", false],
  ["ü/+/😀", "ü/日本/😀", true],
  // Shared subscriptions match as their inner filter.
  ["$share/group/sport/+", "sport/tennis", true],
  ["$share/group/sport/+", "group/sport/tennis", false],
  ["$share/group/#", "sport/tennis", true],
  ["$share/group/#", "$SYS/monitor", false],
  ["$share/group/+/monitor", "$SYS/monitor", false],
  ["$share/group/$SYS/#", "$SYS/monitor", true],
];

describe("topicMatches", () => {
  for (const [filter, topic, expected] of MATCH_CASES) {
    test(`${expected ? "matches" : "does not match"} "${topic}" with "${filter}"`, () => {
      assert.equal(topicMatches(filter, topic), expected);
    });
  }
});

describe("TopicTrie", () => {
  test("matches every specification example the way topicMatches does", () => {
    const trie = new TopicTrie<number>();
    MATCH_CASES.forEach(([filter], i) => trie.add(filter, i));
    for (const [filter, topic, expected] of MATCH_CASES) {
      const values = trie.match(topic);
      const i = MATCH_CASES.findIndex(([f]) => f === filter);
      assert.equal(values.includes(i), expected, `${filter} against ${topic}`);
    }
  });

  test("returns nothing when it is empty", () => {
    assert.deepEqual(new TopicTrie<number>().match("sport/tennis"), []);
  });

  test("returns a filter's values in the order they were added", () => {
    const trie = new TopicTrie<string>();
    for (const value of ["c", "a", "b"]) trie.add("sport/+", value);
    assert.deepEqual(trie.match("sport/tennis"), ["c", "a", "b"]);
  });

  test("returns a value once for each filter that matches", () => {
    const trie = new TopicTrie<string>();
    trie.add("sport/tennis", "x");
    trie.add("sport/+", "x");
    trie.add("sport/#", "x");
    trie.add("#", "x");
    trie.add("sport/football", "x");
    assert.deepEqual(trie.match("sport/tennis"), ["x", "x", "x", "x"]);
  });

  test("matches a parent level with a filter ending in /#", () => {
    const trie = new TopicTrie<string>();
    trie.add("sport/#", "sport");
    assert.deepEqual(trie.match("sport"), ["sport"]);
    assert.deepEqual(trie.match("sports"), []);
  });

  test("does not match topics starting with $ with filters starting with a wildcard", () => {
    const trie = new TopicTrie<string>();
    trie.add("#", "all");
    trie.add("+/monitor/#", "monitors");
    trie.add("$SYS/#", "sys");
    trie.add("$share/group/#", "shared all");
    assert.deepEqual(trie.match("$SYS/monitor/Clients"), ["sys"]);
    assert.deepEqual(trie.match("app/monitor/x").sort(), ["all", "monitors", "shared all"]);
  });

  test("does not store the same value under the same filter twice", () => {
    const trie = new TopicTrie<string>();
    assert.equal(trie.add("a/b", "x"), true);
    assert.equal(trie.add("a/b", "x"), false);
    assert.equal(trie.size, 1);
    assert.deepEqual(trie.match("a/b"), ["x"]);
  });

  test("counts (filter, value) pairs in size", () => {
    const trie = new TopicTrie<string>();
    trie.add("a/b", "x");
    trie.add("a/b", "y");
    trie.add("a/#", "x");
    trie.add("#", "x");
    trie.add("+", "x");
    assert.equal(trie.size, 5);
  });

  test("stores a shared subscription under its inner filter", () => {
    const trie = new TopicTrie<string>();
    trie.add("$share/group/sport/+", "x");
    assert.equal(trie.has("sport/+"), true);
    assert.equal(trie.has("$share/other/sport/+"), true);
    assert.equal(trie.add("sport/+", "x"), false);
    assert.deepEqual(trie.match("sport/tennis"), ["x"]);
    assert.equal(trie.delete("sport/+", "x"), true);
    assert.equal(trie.size, 0);
  });

  test("rejects an invalid filter with the statement it breaks", () => {
    const trie = new TopicTrie<string>();
    assertRejects(() => trie.add("sport+", "x"), "MQTT-4.7.1-3", TOPIC_FILTER_INVALID);
    assertRejects(() => trie.add("$share//a", "x"), "MQTT-4.8.2-1", TOPIC_FILTER_INVALID);
    assert.equal(trie.size, 0);
  });

  test("deletes a value and tells whether it was there", () => {
    const trie = new TopicTrie<string>();
    trie.add("a/+", "x");
    trie.add("a/+", "y");
    assert.equal(trie.delete("a/+", "z"), false);
    assert.equal(trie.delete("a/b", "x"), false);
    assert.equal(trie.delete("a/+", "x"), true);
    assert.equal(trie.delete("a/+", "x"), false);
    assert.equal(trie.size, 1);
    assert.equal(trie.has("a/+"), true);
    assert.deepEqual(trie.match("a/b"), ["y"]);
    assert.equal(trie.delete("a/+", "y"), true);
    assert.equal(trie.size, 0);
    assert.equal(trie.has("a/+"), false);
    assert.deepEqual(trie.match("a/b"), []);
  });

  test("keeps longer and shorter filters when a filter between them is deleted", () => {
    const trie = new TopicTrie<string>();
    trie.add("a", "short");
    trie.add("a/b", "middle");
    trie.add("a/b/c", "long");
    trie.add("a/b/#", "hash");
    assert.equal(trie.delete("a/b", "middle"), true);
    assert.equal(trie.has("a/b"), false);
    assert.deepEqual(trie.match("a"), ["short"]);
    assert.deepEqual(trie.match("a/b"), ["hash"]);
    assert.deepEqual(trie.match("a/b/c").sort(), ["hash", "long"]);
    assert.equal(trie.delete("a/b/#", "hash"), true);
    assert.equal(trie.delete("a/b/c", "long"), true);
    assert.deepEqual(trie.match("a/b/c"), []);
    assert.deepEqual(trie.match("a"), ["short"]);
    assert.equal(trie.size, 1);
  });

  test("can add a filter again after deleting it", () => {
    const trie = new TopicTrie<string>();
    trie.add("a/+/#", "x");
    trie.delete("a/+/#", "x");
    assert.equal(trie.add("a/+/#", "x"), true);
    assert.deepEqual(trie.match("a/b/c"), ["x"]);
  });

  test("answers has and delete for filters it never stored, even invalid ones", () => {
    const trie = new TopicTrie<string>();
    trie.add("a/#", "x");
    for (const filter of ["", "a", "a/+", "a/#/b", "#", "$share/group", "sport+"]) {
      assert.equal(trie.has(filter), false, filter);
      assert.equal(trie.delete(filter, "x"), false, filter);
    }
    assert.equal(trie.size, 1);
  });

  test("forgets every filter on clear", () => {
    const trie = new TopicTrie<string>();
    trie.add("a/b", "x");
    trie.add("#", "y");
    trie.clear();
    assert.equal(trie.size, 0);
    assert.equal(trie.has("a/b"), false);
    assert.deepEqual(trie.match("a/b"), []);
    trie.add("a/b", "z");
    assert.deepEqual(trie.match("a/b"), ["z"]);
  });

  test("agrees with topicMatches on thousands of seeded random filters and topics", () => {
    const random = mulberry32(0x6b697465);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
    const literals = ["a", "b", "c", "", "$SYS", "$x"];

    const randomFilter = (): string => {
      const levels: string[] = [];
      const count = 1 + Math.floor(random() * 4);
      for (let i = 0; i < count; i++) levels.push(random() < 0.3 ? "+" : pick(literals));
      if (random() < 0.3) levels.push("#");
      const filter = levels.join("/");
      // A single empty level is an empty filter, which is invalid: draw again.
      if (filter === "") return randomFilter();
      return random() < 0.1 ? `$share/${pick(["g", "h"])}/${filter}` : filter;
    };
    const randomTopic = (): string => {
      const levels: string[] = [];
      const count = 1 + Math.floor(random() * 5);
      for (let i = 0; i < count; i++) levels.push(pick(literals));
      const topic = levels.join("/");
      return topic === "" ? randomTopic() : topic;
    };

    const filters = Array.from({ length: 3000 }, randomFilter);
    const topics = Array.from({ length: 2000 }, randomTopic);
    for (const topic of topics) validateTopicName(topic);
    const trie = new TopicTrie<number>();
    filters.forEach((filter, i) => trie.add(filter, i));
    assert.equal(trie.size, filters.length);

    const live = new Set(filters.keys());
    const compare = () => {
      for (const topic of topics) {
        const expected = [...live].filter((i) => topicMatches(filters[i], topic));
        const actual = trie.match(topic).sort((x, y) => x - y);
        assert.deepEqual(actual, expected, `topic ${JSON.stringify(topic)}`);
      }
    };
    compare();

    // Delete about half, in random order, and compare again.
    for (const i of filters.keys()) {
      if (random() < 0.5) {
        assert.equal(trie.delete(filters[i], i), true);
        live.delete(i);
      }
    }
    assert.equal(trie.size, live.size);
    compare();
  });
});
