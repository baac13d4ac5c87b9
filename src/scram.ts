/**
 * SCRAM (RFC 5802), with SHA-1 and SHA-256 (RFC 7677), on WebCrypto alone: the client's side of
 * the exchange and the server's, shared by the client's `scramSha1` / `scramSha256` and the local
 * broker's verifier, so the two can only agree or both be wrong against the RFC's test vectors.
 *
 * The messages, as MQTT 5 enhanced authentication carries them in Authentication Data:
 *
 * ```
 * client-first  n,,n=<user>,r=<client nonce>
 * server-first  r=<client nonce><server nonce>,s=<salt, base64>,i=<iterations>
 * client-final  c=biws,r=<nonce>,p=<ClientProof, base64>
 * server-final  v=<ServerSignature, base64>   (or e=<error>)
 * ```
 *
 * No channel binding: the client sends the GS2 header `n,,` and the server refuses any other.
 *
 * Names and passwords go through {@linkcode saslPrep}, a partial SASLprep (RFC 4013): what it
 * does and does not do is said there.
 *
 * @module
 */

import { AuthenticationError } from "./errors.ts";

/** The hash functions SCRAM is offered with. */
export type ScramHash = "SHA-1" | "SHA-256";

/** The SASL mechanism name, which is also the MQTT 5 Authentication Method. */
export function scramMechanism(hash: ScramHash): "SCRAM-SHA-1" | "SCRAM-SHA-256" {
  return hash === "SHA-1" ? "SCRAM-SHA-1" : "SCRAM-SHA-256";
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const BAD_USER = 0x86; // Bad User Name or Password
const NOT_AUTHORIZED = 0x87;
// The GS2 header of a client that does not support channel binding, and its base64 ("biws").
const GS2_HEADER = "n,,";

/** UTF-8 bytes of a string. */
export function utf8(value: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(value);
}

/** Base64 of bytes. */
export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
  return btoa(binary);
}

/** Bytes of base64; throws {@linkcode AuthenticationError} for text that is not base64. */
export function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  let binary: string;
  try {
    binary = atob(text);
  } catch {
    throw new AuthenticationError(`SCRAM: "${text}" is not base64`, NOT_AUTHORIZED);
  }
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/** A fresh random nonce: 18 random bytes in base64 (24 printable characters, no comma). */
export function randomNonce(): string {
  return toBase64(crypto.getRandomValues(new Uint8Array(18)));
}

// RFC 3454 table B.1: characters commonly mapped to nothing.
const MAPPED_TO_NOTHING =
  /[\u00AD\u034F\u1806\u180B-\u180D\u200B-\u200D\u2060\uFE00-\uFE0F\uFEFF]/g;
// RFC 3454 table C.1.2: non-ASCII spaces, mapped to SPACE.
const NON_ASCII_SPACE = /[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/g;
// RFC 3454 tables C.2.1 and C.2.2 (controls), C.3 (private use), C.4 (non-characters, those of
// the BMP), C.5 (surrogates), C.6 to C.9 (inappropriate and deprecated characters, tags).
const PROHIBITED =
  // deno-lint-ignore no-control-regex
  /[\u0000-\u001F\u007F-\u009F\u06DD\u070F\u180E\u200C-\u200F\u2028-\u202E\u2060-\u2063\u206A-\u206F\uD800-\uDFFF\uE000-\uF8FF\uFDD0-\uFDEF\uFEFF\uFFF9-\uFFFF]|[\u{E0001}\u{E0020}-\u{E007F}\u{F0000}-\u{10FFFF}]/u;

/**
 * Prepares a user name or password as SASLprep (RFC 4013) says, in part: non-ASCII spaces become
 * SPACE, characters "commonly mapped to nothing" go, the text is normalized to Unicode NFKC, and
 * control characters, private-use characters, non-characters, surrogates and tags are refused.
 * Printable ASCII is left as it is, as SASLprep leaves it. Not done: the check of unassigned
 * code points (RFC 3454 table A.1, which depends on Unicode 3.2) and the bidirectional text
 * rule (RFC 3454 section 6); a string that only those would refuse passes unchanged.
 *
 * @throws {AuthenticationError} For a string with a prohibited character, or empty once prepared.
 *
 * @example
 * ```ts
 * import { saslPrep } from "./scram.ts";
 *
 * console.log(saslPrep("I\u00ADX")); // "IX"
 * console.log(saslPrep("\u2168")); // "IX"
 * ```
 */
export function saslPrep(value: string): string {
  if (/^[\x20-\x7E]*$/.test(value)) {
    if (value === "") throw new AuthenticationError("SCRAM: an empty string", BAD_USER);
    return value;
  }
  const prepared = value.replace(NON_ASCII_SPACE, " ").replace(MAPPED_TO_NOTHING, "")
    .normalize("NFKC");
  const bad = PROHIBITED.exec(prepared);
  if (bad !== null) {
    const code = bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0");
    throw new AuthenticationError(
      `SCRAM: U+${code} is not allowed in a user name or password (SASLprep, RFC 4013)`,
      BAD_USER,
    );
  }
  if (prepared === "") throw new AuthenticationError("SCRAM: an empty string", BAD_USER);
  return prepared;
}

/** A user name as SCRAM writes it: "=" as "=3D" and "," as "=2C" (RFC 5802 section 5.1). */
function escapeName(name: string): string {
  return name.replace(/=/g, "=3D").replace(/,/g, "=2C");
}

function unescapeName(name: string): string {
  if (/=(?!2C|3D)/.test(name)) {
    throw new AuthenticationError(`SCRAM: a badly escaped user name "${name}"`, BAD_USER);
  }
  return name.replace(/=2C/g, ",").replace(/=3D/g, "=");
}

/** The attributes of a SCRAM message, `k=v,k=v`, by their one-letter names. */
function attributes(message: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const part of message.split(",")) {
    const eq = part.indexOf("=");
    if (eq !== 1) {
      throw new AuthenticationError(`SCRAM: a malformed message "${message}"`, NOT_AUTHORIZED);
    }
    if (!map.has(part[0])) map.set(part[0], part.slice(2));
  }
  return map;
}

function required(map: Map<string, string>, key: string, what: string): string {
  const value = map.get(key);
  if (value === undefined || value === "") {
    throw new AuthenticationError(`SCRAM: the ${what} has no ${key}= attribute`, NOT_AUTHORIZED);
  }
  return value;
}

async function hmac(hash: ScramHash, key: Uint8Array<ArrayBuffer>, data: Uint8Array<ArrayBuffer>) {
  const cryptoKey = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash }, false, [
    "sign",
  ]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", cryptoKey, data));
}

async function digest(hash: ScramHash, data: Uint8Array<ArrayBuffer>) {
  return new Uint8Array(await crypto.subtle.digest(hash, data));
}

/** Hi() of RFC 5802: PBKDF2 with HMAC and the hash, as long as the hash's output. */
async function saltedPassword(
  hash: ScramHash,
  password: string,
  salt: Uint8Array<ArrayBuffer>,
  iterations: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const key = await crypto.subtle.importKey("raw", utf8(saslPrep(password)), "PBKDF2", false, [
    "deriveBits",
  ]);
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash, salt, iterations },
    key,
    hash === "SHA-1" ? 160 : 256,
  );
  return new Uint8Array(bits);
}

function xor(a: Uint8Array<ArrayBuffer>, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] ^ b[i];
  return out;
}

/** Whether two byte strings are equal, in a time that depends only on their length. */
function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a[i] ^ b[i];
  return difference === 0;
}

/** What a server keeps of a password: the salt, the iteration count, StoredKey and ServerKey. */
export interface ScramSecrets {
  /** The salt. */
  salt: Uint8Array<ArrayBuffer>;
  /** The iteration count of PBKDF2. */
  iterations: number;
  /** H(ClientKey). */
  storedKey: Uint8Array<ArrayBuffer>;
  /** HMAC(SaltedPassword, "Server Key"). */
  serverKey: Uint8Array<ArrayBuffer>;
}

/**
 * Derives what a server keeps of a password (RFC 5802 section 3), with a random salt unless one
 * is given.
 *
 * @example
 * ```ts
 * import { scramSecrets } from "./scram.ts";
 *
 * const secrets = await scramSecrets("SHA-256", "pencil", undefined, 4096);
 * console.log(secrets.storedKey.length); // 32
 * ```
 */
export async function scramSecrets(
  hash: ScramHash,
  password: string,
  salt: Uint8Array<ArrayBuffer> = crypto.getRandomValues(new Uint8Array(16)),
  iterations = 4096,
): Promise<ScramSecrets> {
  const salted = await saltedPassword(hash, password, salt, iterations);
  const clientKey = await hmac(hash, salted, utf8("Client Key"));
  return {
    salt,
    iterations,
    storedKey: await digest(hash, clientKey),
    serverKey: await hmac(hash, salted, utf8("Server Key")),
  };
}

/**
 * The client's side of one SCRAM exchange: `first`, then `final` with the server's first
 * message, then `verify` with the server's final message.
 *
 * @example The exchange of RFC 5802 section 5
 * ```ts
 * import { ScramClient } from "./scram.ts";
 *
 * const client = new ScramClient("SHA-1", "user", "pencil", "fyko+d2lbbFgONRv9qkxdawL");
 * console.log(client.first); // "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
 * const final = await client.final(
 *   "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
 * );
 * console.log(final); // "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
 * client.verify("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
 * ```
 */
export class ScramClient {
  /** The client-first-message. */
  readonly first: string;
  readonly #hash: ScramHash;
  readonly #password: string;
  readonly #nonce: string;
  readonly #firstBare: string;
  #serverSignature: Uint8Array | undefined;

  /**
   * Starts an exchange.
   *
   * @param nonce The client nonce; default a fresh random one. The RFC's test vectors fix it.
   * @throws {AuthenticationError} For a name or password SASLprep refuses, or a nonce with a
   * comma or a character outside printable ASCII.
   */
  constructor(hash: ScramHash, username: string, password: string, nonce: string = randomNonce()) {
    if (!/^[\x21-\x2B\x2D-\x7E]+$/.test(nonce)) {
      throw new AuthenticationError(
        "SCRAM: a nonce is printable ASCII without a comma",
        NOT_AUTHORIZED,
      );
    }
    saslPrep(password);
    this.#hash = hash;
    this.#password = password;
    this.#nonce = nonce;
    this.#firstBare = `n=${escapeName(saslPrep(username))},r=${nonce}`;
    this.first = GS2_HEADER + this.#firstBare;
  }

  /**
   * The client-final-message, for the server-first-message.
   *
   * @throws {AuthenticationError} When the server's message is malformed, its nonce does not
   * extend ours, or it reports an error.
   */
  async final(serverFirst: string): Promise<string> {
    const map = attributes(serverFirst);
    const error = map.get("e");
    if (error !== undefined) {
      throw new AuthenticationError(`SCRAM: the server refused: ${error}`, NOT_AUTHORIZED);
    }
    if (map.has("m")) {
      throw new AuthenticationError("SCRAM: the server asks for an extension (m=)", NOT_AUTHORIZED);
    }
    const nonce = required(map, "r", "server-first-message");
    if (!nonce.startsWith(this.#nonce) || nonce.length === this.#nonce.length) {
      throw new AuthenticationError(
        "SCRAM: the server's nonce does not extend the client's",
        NOT_AUTHORIZED,
      );
    }
    const salt = fromBase64(required(map, "s", "server-first-message"));
    const iterations = Number(required(map, "i", "server-first-message"));
    if (!Number.isSafeInteger(iterations) || iterations < 1) {
      throw new AuthenticationError(
        `SCRAM: ${map.get("i")} is not an iteration count`,
        NOT_AUTHORIZED,
      );
    }
    const hash = this.#hash;
    const salted = await saltedPassword(hash, this.#password, salt, iterations);
    const clientKey = await hmac(hash, salted, utf8("Client Key"));
    const storedKey = await digest(hash, clientKey);
    const withoutProof = `c=${btoa(GS2_HEADER)},r=${nonce}`;
    const authMessage = utf8(`${this.#firstBare},${serverFirst},${withoutProof}`);
    const clientSignature = await hmac(hash, storedKey, authMessage);
    const serverKey = await hmac(hash, salted, utf8("Server Key"));
    this.#serverSignature = await hmac(hash, serverKey, authMessage);
    return `${withoutProof},p=${toBase64(xor(clientKey, clientSignature))}`;
  }

  /**
   * Checks the server-final-message: the server proves it knows the password.
   *
   * @throws {AuthenticationError} When it reports an error, or its signature is not the one the
   * password gives (a server that does not know it).
   */
  verify(serverFinal: string): void {
    const expected = this.#serverSignature;
    if (expected === undefined) {
      throw new AuthenticationError(
        "SCRAM: the server ended the exchange before its first message",
        NOT_AUTHORIZED,
      );
    }
    const map = attributes(serverFinal);
    const error = map.get("e");
    if (error !== undefined) {
      throw new AuthenticationError(`SCRAM: the server refused: ${error}`, NOT_AUTHORIZED);
    }
    if (!equalBytes(fromBase64(required(map, "v", "server-final-message")), expected)) {
      throw new AuthenticationError(
        "SCRAM: the server signature does not match; the server does not know the password",
        NOT_AUTHORIZED,
      );
    }
  }
}

/**
 * The server's side of one SCRAM exchange: `first` with the client-first-message, then `final`
 * with the client-final-message. The user's secrets come from `lookup`.
 *
 * @example
 * ```ts
 * import { ScramClient, ScramServer, scramSecrets } from "./scram.ts";
 *
 * const secrets = await scramSecrets("SHA-256", "pencil");
 * const server = new ScramServer("SHA-256", (user) => user === "user" ? secrets : undefined);
 * const client = new ScramClient("SHA-256", "user", "pencil");
 * const serverFirst = await server.first(client.first);
 * const serverFinal = await server.final(await client.final(serverFirst));
 * client.verify(serverFinal);
 * console.log(server.username); // "user"
 * ```
 */
export class ScramServer {
  /** The user name the client gave, once its first message is read. */
  username: string | undefined;
  readonly #hash: ScramHash;
  readonly #lookup: (
    username: string,
  ) => ScramSecrets | undefined | Promise<ScramSecrets | undefined>;
  readonly #serverNonce: string;
  #firstBare = "";
  #serverFirst = "";
  #nonce = "";
  #secrets: ScramSecrets | undefined;

  /**
   * Starts an exchange.
   *
   * @param lookup The secrets of a user, or `undefined` for a user it does not know.
   * @param nonce The server's part of the nonce; default a fresh random one.
   */
  constructor(
    hash: ScramHash,
    lookup: (username: string) => ScramSecrets | undefined | Promise<ScramSecrets | undefined>,
    nonce: string = randomNonce(),
  ) {
    this.#hash = hash;
    this.#lookup = lookup;
    this.#serverNonce = nonce;
  }

  /**
   * The server-first-message, for the client-first-message.
   *
   * @throws {AuthenticationError} For a malformed message, channel binding asked for, or a user
   * `lookup` does not know (0x86).
   */
  async first(clientFirst: string): Promise<string> {
    // gs2-header: "n" or "y" (no channel binding), an optional authzid, then the bare message.
    const match = /^([ny]),(a=[^,]*)?,(.*)$/s.exec(clientFirst);
    if (match === null) {
      throw new AuthenticationError(
        clientFirst.startsWith("p=")
          ? "SCRAM: channel binding is not supported"
          : `SCRAM: a malformed client-first-message "${clientFirst}"`,
        NOT_AUTHORIZED,
      );
    }
    if (match[2] !== undefined) {
      throw new AuthenticationError("SCRAM: an authorization identity is not supported", 0x87);
    }
    const bare = match[3];
    const map = attributes(bare);
    if (map.has("m")) {
      throw new AuthenticationError("SCRAM: extensions (m=) are not supported", NOT_AUTHORIZED);
    }
    const username = unescapeName(required(map, "n", "client-first-message"));
    const clientNonce = required(map, "r", "client-first-message");
    this.username = username;
    const secrets = await this.#lookup(saslPrep(username));
    if (secrets === undefined) {
      throw new AuthenticationError(`SCRAM: no user "${username}"`, BAD_USER);
    }
    this.#secrets = secrets;
    this.#firstBare = bare;
    this.#nonce = clientNonce + this.#serverNonce;
    this.#serverFirst = `r=${this.#nonce},s=${toBase64(secrets.salt)},i=${secrets.iterations}`;
    return this.#serverFirst;
  }

  /**
   * The server-final-message, when the client's proof holds.
   *
   * @throws {AuthenticationError} When it does not (a wrong password, 0x86), or the message is
   * malformed or does not continue this exchange.
   */
  async final(clientFinal: string): Promise<string> {
    const secrets = this.#secrets;
    if (secrets === undefined) {
      throw new AuthenticationError("SCRAM: a final message before the first", NOT_AUTHORIZED);
    }
    const proofAt = clientFinal.lastIndexOf(",p=");
    if (proofAt < 0) {
      throw new AuthenticationError("SCRAM: the client-final-message has no proof", 0x87);
    }
    const withoutProof = clientFinal.slice(0, proofAt);
    const map = attributes(withoutProof);
    if (required(map, "c", "client-final-message") !== btoa(GS2_HEADER)) {
      // "y,," (a client that could bind but thinks we cannot) would be "eSws"; refused too.
      throw new AuthenticationError("SCRAM: channel binding data is not n,,", NOT_AUTHORIZED);
    }
    if (required(map, "r", "client-final-message") !== this.#nonce) {
      throw new AuthenticationError("SCRAM: the nonce is not this exchange's", NOT_AUTHORIZED);
    }
    const proof = fromBase64(clientFinal.slice(proofAt + 3));
    const hash = this.#hash;
    const authMessage = utf8(`${this.#firstBare},${this.#serverFirst},${withoutProof}`);
    const clientSignature = await hmac(hash, secrets.storedKey, authMessage);
    if (proof.length !== clientSignature.length) {
      throw new AuthenticationError("SCRAM: the proof has the wrong length", BAD_USER);
    }
    const clientKey = xor(proof, clientSignature);
    if (!equalBytes(await digest(hash, clientKey), secrets.storedKey)) {
      throw new AuthenticationError("SCRAM: the proof does not hold (a wrong password)", BAD_USER);
    }
    return `v=${toBase64(await hmac(hash, secrets.serverKey, authMessage))}`;
  }
}

/**
 * Text of UTF-8 bytes, as SCRAM messages are: throws {@linkcode AuthenticationError} for bytes
 * that are not UTF-8.
 */
export function scramText(bytes: Uint8Array | undefined): string {
  if (bytes === undefined) {
    throw new AuthenticationError("SCRAM: the message carries no Authentication Data", 0x87);
  }
  try {
    return decoder.decode(bytes);
  } catch {
    throw new AuthenticationError("SCRAM: the Authentication Data is not UTF-8", NOT_AUTHORIZED);
  }
}
