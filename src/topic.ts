/**
 * Topic filters at work (MQTT 3.1.1 section 4.7, MQTT 5.0 sections 4.7 and 4.8): wildcard
 * matching and a filter trie for dispatching messages to subscribers. Which names and filters
 * are valid is the codec's rule, in `./packet/topic.ts`.
 *
 * Statement ids are the MQTT 3.1.1 ones; where MQTT 5.0 numbers a rule differently, a comment
 * gives its 5.0 id. Everything here is pure and synchronous, and the hot paths are plain loops
 * over char codes.
 *
 * @example
 * ```ts
 * import { TopicTrie, topicMatches } from "./topic.ts";
 *
 * console.log(topicMatches("sport/tennis/+", "sport/tennis/player1")); // true
 *
 * const trie = new TopicTrie<string>();
 * trie.add("sport/#", "all sport");
 * console.log(trie.match("sport/tennis")); // ["all sport"]
 * ```
 *
 * @module
 */

import {
  DOLLAR,
  HASH,
  isShared,
  PLUS,
  SHARE_PREFIX_LENGTH,
  SLASH,
  validateTopicFilter,
} from "./packet/topic.ts";

/** Where the topic filter inside `$share/{ShareName}/{filter}` starts, or -1 if it has none. */
function sharedFilterStart(filter: string): number {
  const slash = filter.indexOf("/", SHARE_PREFIX_LENGTH);
  return slash < 0 ? -1 : slash + 1;
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
