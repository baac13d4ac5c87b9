/**
 * Topic names and topic filters (MQTT 3.1.1 section 4.7, MQTT 5.0 sections 4.7 and 4.8):
 * validation, wildcard matching and a filter trie for dispatching messages to subscribers.
 *
 * Statement ids are the MQTT 3.1.1 ones; where MQTT 5.0 numbers a rule differently, a comment
 * gives its 5.0 id. Everything here is pure and synchronous, and the hot paths are plain loops
 * over char codes.
 *
 * @example
 * ```ts
 * import { TopicTrie, topicMatches, validateTopicFilter } from "./topic.ts";
 *
 * validateTopicFilter("sport/tennis/+");
 * console.log(topicMatches("sport/tennis/+", "sport/tennis/player1")); // true
 *
 * const trie = new TopicTrie<string>();
 * trie.add("sport/#", "all sport");
 * console.log(trie.match("sport/tennis")); // ["all sport"]
 * ```
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";

const SLASH = 0x2f; // "/"
const PLUS = 0x2b; // "+"
const HASH = 0x23; // "#"
const DOLLAR = 0x24; // "$"
const SHARE_PREFIX = "$share/";
const SHARE_PREFIX_LENGTH = 7;
/** [MQTT-4.7.3-3] topic names and filters must not encode to more than 65535 bytes. */
const MAX_TOPIC_BYTES = 65535;
/** MQTT 5 reason code 0x90, Topic Name invalid. */
const TOPIC_NAME_INVALID = 0x90;
/** MQTT 5 reason code 0x8F, Topic Filter invalid. */
const TOPIC_FILTER_INVALID = 0x8f;

/** What is wrong with a topic: said after the quoted topic, and the statement it breaks. */
interface Problem {
  readonly message: string;
  readonly statementId: string;
}

// [MQTT-4.7.3-1] the same number in 3.1.1 and 5.0.
const EMPTY: Problem = {
  message: "is empty; it must be at least one character long",
  statementId: "MQTT-4.7.3-1",
};
// [MQTT-3.3.2-2] the same number in 3.1.1 and 5.0 (5.0 also states it as [MQTT-4.7.0-1]).
const WILDCARD_IN_NAME: Problem = {
  message: "contains a wildcard (+ or #), which only topic filters may use",
  statementId: "MQTT-3.3.2-2",
};
// [MQTT-4.7.3-2] the same number in 3.1.1 and 5.0.
const NULL_CHARACTER: Problem = {
  message: "contains the null character U+0000",
  statementId: "MQTT-4.7.3-2",
};
// [MQTT-4.7.3-3] the same number in 3.1.1 and 5.0.
const TOO_LONG: Problem = {
  message: `encodes to more than ${MAX_TOPIC_BYTES} UTF-8 bytes`,
  statementId: "MQTT-4.7.3-3",
};
// [MQTT-1.5.3-1] in 3.1.1, [MQTT-1.5.4-1] in 5.0: no encodings of U+D800..U+DFFF.
const LONE_SURROGATE: Problem = {
  message: "contains a lone surrogate, which has no UTF-8 encoding",
  statementId: "MQTT-1.5.3-1",
};
// [MQTT-4.7.1-2] in 3.1.1, [MQTT-4.7.1-1] in 5.0.
const MISPLACED_MULTI_LEVEL: Problem = {
  message: "has a # that is not alone in the last level",
  statementId: "MQTT-4.7.1-2",
};
// [MQTT-4.7.1-3] in 3.1.1, [MQTT-4.7.1-2] in 5.0.
const MISPLACED_SINGLE_LEVEL: Problem = {
  message: "has a + that does not occupy a whole level",
  statementId: "MQTT-4.7.1-3",
};
// [MQTT-4.8.2-1] MQTT 5.0 only: a ShareName of at least one character.
const EMPTY_SHARE_NAME: Problem = {
  message: "is a shared subscription with an empty ShareName",
  statementId: "MQTT-4.8.2-1",
};
// [MQTT-4.8.2-2] MQTT 5.0 only: a ShareName without "/", "+" or "#".
const WILDCARD_IN_SHARE_NAME: Problem = {
  message: "is a shared subscription whose ShareName contains + or #",
  statementId: "MQTT-4.8.2-2",
};
// [MQTT-4.8.2-2] MQTT 5.0 only: the ShareName is followed by "/" and a topic filter.
const MISSING_SHARED_FILTER: Problem = {
  message: "is a shared subscription with no topic filter after its ShareName",
  statementId: "MQTT-4.8.2-2",
};

/** Quotes a topic for an error message, cut short so a 64 KiB topic does not flood a log. */
function quote(topic: string): string {
  return topic.length <= 64 ? JSON.stringify(topic) : `${JSON.stringify(topic.slice(0, 60))}…`;
}

/** The first problem of a topic name, or `undefined` if it is valid. */
function topicNameProblem(name: string): Problem | undefined {
  const length = name.length;
  if (length === 0) return EMPTY;
  // Every UTF-16 code unit encodes to at least one UTF-8 byte.
  if (length > MAX_TOPIC_BYTES) return TOO_LONG;
  // The UTF-8 bytes beyond one per code unit.
  let extraBytes = 0;
  for (let i = 0; i < length; i++) {
    const code = name.charCodeAt(i);
    if (code < 0x80) {
      // ASCII first: it is almost every character of almost every topic.
      if (code === PLUS || code === HASH) return WILDCARD_IN_NAME;
      if (code === 0) return NULL_CHARACTER;
    } else if (code < 0x800) {
      extraBytes += 1;
    } else if (code < 0xd800 || code > 0xdfff) {
      extraBytes += 2;
    } else if (isSurrogatePair(name, i, code)) {
      // Two code units, four bytes.
      extraBytes += 2;
      i++;
    } else {
      return LONE_SURROGATE;
    }
  }
  return length + extraBytes > MAX_TOPIC_BYTES ? TOO_LONG : undefined;
}

/** Whether the code unit `code` at `text[i]` is a high surrogate followed by a low one. */
function isSurrogatePair(text: string, i: number, code: number): boolean {
  if (code > 0xdbff || i + 1 >= text.length) return false;
  const low = text.charCodeAt(i + 1);
  return low >= 0xdc00 && low <= 0xdfff;
}

/** Whether `filter` starts with `$share/`, compared by char code. */
function isShared(filter: string): boolean {
  if (filter.length < SHARE_PREFIX_LENGTH || filter.charCodeAt(0) !== DOLLAR) return false;
  return filter.startsWith(SHARE_PREFIX);
}

/** Where the topic filter inside `$share/{ShareName}/{filter}` starts, or -1 if it has none. */
function sharedFilterStart(filter: string): number {
  const slash = filter.indexOf("/", SHARE_PREFIX_LENGTH);
  return slash < 0 ? -1 : slash + 1;
}

/** The first problem of a topic filter, or `undefined` if it is valid. */
function topicFilterProblem(filter: string): Problem | undefined {
  const length = filter.length;
  if (length === 0) return EMPTY;
  if (length > MAX_TOPIC_BYTES) return TOO_LONG;
  if (isShared(filter)) {
    let i = SHARE_PREFIX_LENGTH;
    for (; i < length; i++) {
      const code = filter.charCodeAt(i);
      if (code === SLASH) break;
      if (code === PLUS || code === HASH) return WILDCARD_IN_SHARE_NAME;
    }
    if (i === SHARE_PREFIX_LENGTH) return EMPTY_SHARE_NAME;
    if (i + 1 >= length) return MISSING_SHARED_FILTER;
  }
  // The ShareName holds no wildcard by now, so the wildcard checks only ever fire in the filter.
  let extraBytes = 0;
  for (let i = 0; i < length; i++) {
    const code = filter.charCodeAt(i);
    if (code < 0x80) {
      if (code === PLUS) {
        const atLevelStart = i === 0 || filter.charCodeAt(i - 1) === SLASH;
        const atLevelEnd = i + 1 === length || filter.charCodeAt(i + 1) === SLASH;
        // [MQTT-4.7.1-3] (5.0: [MQTT-4.7.1-2])
        if (!atLevelStart || !atLevelEnd) return MISPLACED_SINGLE_LEVEL;
      } else if (code === HASH) {
        const atLevelStart = i === 0 || filter.charCodeAt(i - 1) === SLASH;
        // [MQTT-4.7.1-2] (5.0: [MQTT-4.7.1-1])
        if (!atLevelStart || i + 1 !== length) return MISPLACED_MULTI_LEVEL;
      } else if (code === 0) {
        return NULL_CHARACTER;
      }
    } else if (code < 0x800) {
      extraBytes += 1;
    } else if (code < 0xd800 || code > 0xdfff) {
      extraBytes += 2;
    } else if (isSurrogatePair(filter, i, code)) {
      extraBytes += 2;
      i++;
    } else {
      return LONE_SURROGATE;
    }
  }
  return length + extraBytes > MAX_TOPIC_BYTES ? TOO_LONG : undefined;
}

/**
 * Checks that a string is a valid topic name, the topic a PUBLISH (or a will) is sent to.
 *
 * @param name The topic name.
 * @throws {ProtocolError} With reason code 0x90 (Topic Name invalid) and the statement id of the
 * broken rule when the name is empty, contains `+` or `#`, contains U+0000 or a lone surrogate,
 * or encodes to more than 65535 UTF-8 bytes.
 *
 * @example
 * ```ts
 * import { validateTopicName } from "./topic.ts";
 * import { ProtocolError } from "./errors.ts";
 *
 * validateTopicName("sport/tennis/player1");
 * try {
 *   validateTopicName("sport/+");
 * } catch (error) {
 *   if (error instanceof ProtocolError) console.log(error.statementId); // "MQTT-3.3.2-2"
 * }
 * ```
 */
export function validateTopicName(name: string): void {
  const problem = topicNameProblem(name);
  if (problem !== undefined) {
    throw new ProtocolError(
      `topic name ${quote(name)} ${problem.message}`,
      problem.statementId,
      TOPIC_NAME_INVALID,
    );
  }
}

/**
 * Checks that a string is a valid topic filter, the pattern a SUBSCRIBE or UNSUBSCRIBE names,
 * including MQTT 5 shared subscriptions of the form `$share/{ShareName}/{filter}`.
 *
 * @param filter The topic filter.
 * @throws {ProtocolError} With reason code 0x8F (Topic Filter invalid) and the statement id of the
 * broken rule when the filter is empty, has a `#` that is not alone in the last level or a `+`
 * that does not occupy a whole level, contains U+0000 or a lone surrogate, encodes to more than
 * 65535 UTF-8 bytes, or is a malformed shared subscription.
 *
 * @example
 * ```ts
 * import { validateTopicFilter } from "./topic.ts";
 * import { ProtocolError } from "./errors.ts";
 *
 * validateTopicFilter("sport/+/player1/#");
 * validateTopicFilter("$share/group/sport/#");
 * try {
 *   validateTopicFilter("sport/tennis#");
 * } catch (error) {
 *   if (error instanceof ProtocolError) console.log(error.statementId); // "MQTT-4.7.1-2"
 * }
 * ```
 */
export function validateTopicFilter(filter: string): void {
  const problem = topicFilterProblem(filter);
  if (problem !== undefined) {
    throw new ProtocolError(
      `topic filter ${quote(filter)} ${problem.message}`,
      problem.statementId,
      TOPIC_FILTER_INVALID,
    );
  }
}

/**
 * Tells whether a string is a valid topic name, without throwing.
 *
 * @param name The topic name.
 * @returns `true` when {@linkcode validateTopicName} would accept it.
 *
 * @example
 * ```ts
 * import { isValidTopicName } from "./topic.ts";
 *
 * console.log(isValidTopicName("sport/tennis")); // true
 * console.log(isValidTopicName("sport/#")); // false
 * ```
 */
export function isValidTopicName(name: string): boolean {
  return topicNameProblem(name) === undefined;
}

/**
 * Tells whether a string is a valid topic filter, without throwing.
 *
 * @param filter The topic filter.
 * @returns `true` when {@linkcode validateTopicFilter} would accept it.
 *
 * @example
 * ```ts
 * import { isValidTopicFilter } from "./topic.ts";
 *
 * console.log(isValidTopicFilter("sport/#")); // true
 * console.log(isValidTopicFilter("sport+")); // false
 * ```
 */
export function isValidTopicFilter(filter: string): boolean {
  return topicFilterProblem(filter) === undefined;
}

/**
 * Tells whether a topic name matches a topic filter. `+` matches one level, empty ones included;
 * `#` matches its parent level and any number of child levels; a filter that starts with a
 * wildcard does not match a topic that starts with `$`; a shared subscription
 * `$share/{ShareName}/{filter}` matches as its `filter`.
 *
 * @param filter A valid topic filter; an invalid one gives an unspecified answer.
 * @param topic A valid topic name.
 * @returns Whether a subscription to `filter` receives messages published to `topic`.
 *
 * @example
 * ```ts
 * import { topicMatches } from "./topic.ts";
 *
 * console.log(topicMatches("sport/#", "sport")); // true
 * console.log(topicMatches("sport/+", "sport/")); // true
 * console.log(topicMatches("+/monitor/Clients", "$SYS/monitor/Clients")); // false
 * console.log(topicMatches("$share/group/sport/+", "sport/tennis")); // true
 * ```
 */
export function topicMatches(filter: string, topic: string): boolean {
  let f = 0;
  if (isShared(filter)) {
    f = sharedFilterStart(filter);
    if (f < 0) return false;
  }
  const filterLength = filter.length;
  const topicLength = topic.length;
  let t = 0;
  // [MQTT-4.7.2-1] a filter starting with a wildcard does not match a topic starting with "$".
  if (topicLength > 0 && topic.charCodeAt(0) === DOLLAR && f < filterLength) {
    const first = filter.charCodeAt(f);
    if (first === PLUS || first === HASH) return false;
  }
  // Each turn matches one level; f and t both sit at the start of a level.
  while (true) {
    const code = f < filterLength ? filter.charCodeAt(f) : -1;
    if (code === HASH) return true;
    if (code === PLUS) {
      f++;
      while (t < topicLength && topic.charCodeAt(t) !== SLASH) t++;
    } else {
      while (f < filterLength) {
        const c = filter.charCodeAt(f);
        if (c === SLASH) break;
        if (t >= topicLength || topic.charCodeAt(t) !== c) return false;
        f++;
        t++;
      }
      if (t < topicLength && topic.charCodeAt(t) !== SLASH) return false;
    }
    // Both now sit at a "/" or at their end.
    if (f === filterLength) return t === topicLength;
    if (t === topicLength) {
      // "sport/#" matches "sport": "#" also matches the parent level.
      return f + 2 === filterLength && filter.charCodeAt(f + 1) === HASH;
    }
    f++;
    t++;
  }
}

/** One level of a {@linkcode TopicTrie}. A class, so every node has the same shape. */
class TrieNode<T> {
  /** The children under a literal level, by level. */
  children: Map<string, TrieNode<T>> | undefined = undefined;
  /** The child under a `+` level. */
  plus: TrieNode<T> | undefined = undefined;
  /** The values of the filters that end in `/#` here (or are `#`, at the root). */
  hash: Set<T> | undefined = undefined;
  /** The values of the filters that end at this level. */
  values: Set<T> | undefined = undefined;

  isEmpty(): boolean {
    return this.values === undefined && this.hash === undefined && this.plus === undefined &&
      (this.children === undefined || this.children.size === 0);
  }
}

/** The levels of a filter that a trie stores, without a `$share/{ShareName}/` prefix. */
function trieLevels(filter: string): string[] | undefined {
  if (!isShared(filter)) return filter.split("/");
  const start = sharedFilterStart(filter);
  return start < 0 ? undefined : filter.slice(start).split("/");
}

/**
 * A trie of topic filters, each holding a set of values, that finds every value whose filter
 * matches a topic in one walk: how a client dispatches an incoming PUBLISH to its subscriptions.
 * A shared subscription `$share/{ShareName}/{filter}` is stored under its `filter`.
 *
 * @typeParam T The values stored under the filters, such as handlers or subscription records.
 *
 * @example
 * ```ts
 * import { TopicTrie } from "./topic.ts";
 *
 * const trie = new TopicTrie<string>();
 * trie.add("sport/tennis/+", "tennis");
 * trie.add("sport/#", "sport");
 * trie.add("#", "everything");
 * console.log(trie.match("sport/tennis/player1").sort()); // ["everything", "sport", "tennis"]
 * console.log(trie.match("$SYS/broker/uptime")); // []
 * ```
 */
export class TopicTrie<T> {
  #root: TrieNode<T> = new TrieNode();
  #size = 0;
  // The walk's stack, kept between calls: match() never calls out, so it cannot re-enter.
  #stackNodes: TrieNode<T>[] = [];
  #stackDepths: number[] = [];

  /**
   * The number of (filter, value) pairs stored.
   *
   * @example
   * ```ts
   * import { TopicTrie } from "./topic.ts";
   *
   * const trie = new TopicTrie<number>();
   * trie.add("a/b", 1);
   * trie.add("a/b", 2);
   * trie.add("a/+", 1);
   * console.log(trie.size); // 3
   * ```
   */
  get size(): number {
    return this.#size;
  }

  /**
   * Stores a value under a filter; storing the same value under the same filter again changes
   * nothing.
   *
   * @param filter A valid topic filter.
   * @param value The value that {@linkcode TopicTrie.prototype.match} returns for matching topics.
   * @returns `true` if the pair is new, `false` if it was stored already.
   * @throws {ProtocolError} If `filter` is not a valid topic filter (see
   * {@linkcode validateTopicFilter}).
   *
   * @example
   * ```ts
   * import { TopicTrie } from "./topic.ts";
   *
   * const trie = new TopicTrie<string>();
   * console.log(trie.add("a/#", "x")); // true
   * console.log(trie.add("a/#", "x")); // false
   * ```
   */
  add(filter: string, value: T): boolean {
    validateTopicFilter(filter);
    const levels = trieLevels(filter)!;
    const last = levels.length - 1;
    let node = this.#root;
    for (let i = 0; i < last; i++) {
      const level = levels[i];
      if (level === "+") {
        node = node.plus ??= new TrieNode();
      } else {
        const children = node.children ??= new Map();
        let child = children.get(level);
        if (child === undefined) children.set(level, child = new TrieNode());
        node = child;
      }
    }
    const level = levels[last];
    let values: Set<T>;
    if (level === "#") {
      values = node.hash ??= new Set();
    } else {
      if (level === "+") {
        node = node.plus ??= new TrieNode();
      } else {
        const children = node.children ??= new Map();
        let child = children.get(level);
        if (child === undefined) children.set(level, child = new TrieNode());
        node = child;
      }
      values = node.values ??= new Set();
    }
    if (values.has(value)) return false;
    values.add(value);
    this.#size++;
    return true;
  }

  /**
   * Removes a value from a filter, and the filter with it once it holds no value.
   *
   * @param filter The filter the value was stored under.
   * @param value The value to remove.
   * @returns `true` if the pair was stored and is now removed.
   *
   * @example
   * ```ts
   * import { TopicTrie } from "./topic.ts";
   *
   * const trie = new TopicTrie<string>();
   * trie.add("a/+", "x");
   * console.log(trie.delete("a/+", "x")); // true
   * console.log(trie.delete("a/+", "x")); // false
   * console.log(trie.has("a/+")); // false
   * ```
   */
  delete(filter: string, value: T): boolean {
    const levels = trieLevels(filter);
    if (levels === undefined) return false;
    const last = levels.length - 1;
    const path: TrieNode<T>[] = [this.#root];
    let node: TrieNode<T> | undefined = this.#root;
    const end = levels[last] === "#" ? last : last + 1;
    for (let i = 0; i < end; i++) {
      node = levels[i] === "+" ? node.plus : node.children?.get(levels[i]);
      if (node === undefined) return false;
      path.push(node);
    }
    const isHash = end === last;
    const values = isHash ? node.hash : node.values;
    if (values === undefined || !values.delete(value)) return false;
    this.#size--;
    if (values.size === 0) {
      if (isHash) node.hash = undefined;
      else node.values = undefined;
      // Prune the nodes that hold nothing any more, deepest first.
      for (let i = path.length - 1; i > 0 && path[i].isEmpty(); i--) {
        const parent = path[i - 1];
        const level = levels[i - 1];
        if (level === "+") parent.plus = undefined;
        else parent.children!.delete(level);
      }
    }
    return true;
  }

  /**
   * Tells whether a filter holds at least one value.
   *
   * @param filter The filter to look up; a shared subscription is looked up by its inner filter.
   * @returns `true` if some value is stored under `filter`.
   *
   * @example
   * ```ts
   * import { TopicTrie } from "./topic.ts";
   *
   * const trie = new TopicTrie<number>();
   * trie.add("$share/group/a/b", 1);
   * console.log(trie.has("a/b")); // true
   * console.log(trie.has("a/+")); // false
   * ```
   */
  has(filter: string): boolean {
    const levels = trieLevels(filter);
    if (levels === undefined) return false;
    const last = levels.length - 1;
    const end = levels[last] === "#" ? last : last + 1;
    let node: TrieNode<T> | undefined = this.#root;
    for (let i = 0; i < end; i++) {
      node = levels[i] === "+" ? node.plus : node.children?.get(levels[i]);
      if (node === undefined) return false;
    }
    return (end === last ? node.hash : node.values) !== undefined;
  }

  /**
   * Finds the values of every filter that matches a topic, by the rules of
   * {@linkcode topicMatches}. A value stored under several matching filters comes once per
   * filter; the values of one filter come in the order they were added.
   *
   * @param topic A valid topic name.
   * @returns The matching values, in a new array.
   *
   * @example
   * ```ts
   * import { TopicTrie } from "./topic.ts";
   *
   * const trie = new TopicTrie<string>();
   * trie.add("sport/+", "first");
   * trie.add("sport/+", "second");
   * console.log(trie.match("sport/tennis")); // ["first", "second"]
   * console.log(trie.match("sport")); // []
   * ```
   */
  match(topic: string): T[] {
    const found: T[] = [];
    if (this.#size === 0) return found;
    const levels = topic.split("/");
    const count = levels.length;
    // [MQTT-4.7.2-1] at the root, "+" and "#" do not match a level that starts with "$".
    const dollar = topic.charCodeAt(0) === DOLLAR;
    const nodes = this.#stackNodes;
    const depths = this.#stackDepths;
    nodes.push(this.#root);
    depths.push(0);
    while (nodes.length > 0) {
      const node = nodes.pop()!;
      const depth = depths.pop()!;
      const wildcardsAllowed = depth > 0 || !dollar;
      // "#" matches the rest of the topic, and also the parent level when nothing is left.
      if (node.hash !== undefined && wildcardsAllowed) {
        for (const value of node.hash) found.push(value);
      }
      if (depth === count) {
        if (node.values !== undefined) {
          for (const value of node.values) found.push(value);
        }
        continue;
      }
      if (node.plus !== undefined && wildcardsAllowed) {
        nodes.push(node.plus);
        depths.push(depth + 1);
      }
      const child = node.children?.get(levels[depth]);
      if (child !== undefined) {
        nodes.push(child);
        depths.push(depth + 1);
      }
    }
    return found;
  }

  /**
   * Removes every filter and value.
   *
   * @example
   * ```ts
   * import { TopicTrie } from "./topic.ts";
   *
   * const trie = new TopicTrie<number>();
   * trie.add("a", 1);
   * trie.clear();
   * console.log(trie.size, trie.has("a")); // 0 false
   * ```
   */
  clear(): void {
    this.#root = new TrieNode();
    this.#size = 0;
  }
}
