/**
 * Topic names and topic filters (MQTT 3.1.1 section 4.7, MQTT 5.0 sections 4.7 and 4.8): the
 * rules a valid one follows, which the encoder enforces and the rest of Kite shares. Matching
 * topics against filters is not the codec's business; it lives in `../topic.ts`.
 *
 * Statement ids are the MQTT 3.1.1 ones; where MQTT 5.0 numbers a rule differently, a comment
 * gives its 5.0 id. Everything here is pure and synchronous, and the hot paths are plain loops
 * over char codes.
 *
 * @example
 * ```ts
 * import { isValidTopicFilter, validateTopicName } from "./topic.ts";
 *
 * validateTopicName("sport/tennis/player1");
 * console.log(isValidTopicFilter("sport/tennis/+")); // true
 * ```
 *
 * @module
 */

import { ReasonCode } from "./constants.ts";
import { ProtocolError } from "./errors.ts";

/** The char code of `/`, the topic level separator. */
export const SLASH = 0x2f;
/** The char code of `+`, the single-level wildcard. */
export const PLUS = 0x2b;
/** The char code of `#`, the multi-level wildcard. */
export const HASH = 0x23;
/** The char code of `$`, which starts the topics wildcards at the root do not match. */
export const DOLLAR = 0x24;
const SHARE_PREFIX = "$share/";
/** The length of `$share/`, where the ShareName of a shared subscription starts. */
export const SHARE_PREFIX_LENGTH = 7;
/** [MQTT-4.7.3-3] topic names and filters must not encode to more than 65535 bytes. */
const MAX_TOPIC_BYTES = 65535;

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

/** Whether `filter` is a shared subscription: it starts with `$share/`, compared by char code. */
export function isShared(filter: string): boolean {
  if (filter.length < SHARE_PREFIX_LENGTH || filter.charCodeAt(0) !== DOLLAR) return false;
  return filter.startsWith(SHARE_PREFIX);
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
 * import { ProtocolError, validateTopicName } from "./mod.ts";
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
      ReasonCode.TopicNameInvalid,
    );
  }
}

/**
 * The error for a topic name that holds a wildcard [MQTT-3.3.2-2]: the one wording of the rule,
 * whichever packet carries the name; `what` names it ("PUBLISH topic name", "will topic").
 */
export function wildcardInTopicName(what: string, name: string): ProtocolError {
  return new ProtocolError(
    `${what} ${quote(name)} ${WILDCARD_IN_NAME.message}`,
    WILDCARD_IN_NAME.statementId,
    ReasonCode.TopicNameInvalid,
  );
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
 * import { ProtocolError, validateTopicFilter } from "./mod.ts";
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
      ReasonCode.TopicFilterInvalid,
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
