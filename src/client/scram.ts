/**
 * SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677) as MQTT 5 enhanced authentication methods:
 * `auth: scramSha256({ username, password })`. Built on WebCrypto alone (PBKDF2, HMAC, digest);
 * the math is `src/scram.ts`, shared with the local broker's verifier.
 *
 * @module
 */

import { AuthenticationError } from "../errors.ts";
import { ScramClient, type ScramHash, scramMechanism, scramText, utf8 } from "../scram.ts";
import type { Authenticator } from "./types.ts";

/** The credentials of a SCRAM exchange. */
export interface ScramCredentials {
  /** The user name (prepared with SASLprep, in part: see the README). */
  username: string;
  /** The password (prepared the same way). */
  password: string;
  /**
   * Makes the client nonce of each exchange: printable ASCII without a comma. Default: 18 random
   * bytes in base64. For tests that replay fixed messages, such as the RFC's.
   */
  nonce?: () => string;
}

function scram(hash: ScramHash, credentials: ScramCredentials): Authenticator {
  const { username, password, nonce } = credentials;
  // Refuse what SASLprep refuses now, not on the first connection.
  new ScramClient(hash, username, password, "check");
  return {
    method: scramMechanism(hash),
    start() {
      const client = new ScramClient(hash, username, password, nonce?.());
      let rounds = 0;
      return {
        data: utf8(client.first),
        async next(data) {
          if (++rounds > 1) {
            throw new AuthenticationError(
              "SCRAM: the broker sent a third challenge; the exchange has two messages each way",
            );
          }
          return utf8(await client.final(scramText(data)));
        },
        done(data) {
          client.verify(scramText(data));
        },
      };
    },
  };
}

/**
 * SCRAM-SHA-256 (RFC 7677): the MQTT 5 enhanced authentication method `"SCRAM-SHA-256"`, for
 * the `auth` option. The client proves it knows the password without sending it, and the broker
 * proves it knows it too: `connect` rejects with `AuthenticationError` when the broker's final
 * signature does not match.
 *
 * @example
 * ```ts
 * import { scramSha256 } from "./scram.ts";
 *
 * const auth = scramSha256({ username: "alice", password: "secret" });
 * console.log(auth.method); // "SCRAM-SHA-256"
 * ```
 */
export function scramSha256(credentials: ScramCredentials): Authenticator {
  return scram("SHA-256", credentials);
}

/**
 * SCRAM-SHA-1 (RFC 5802): the MQTT 5 enhanced authentication method `"SCRAM-SHA-1"`, for the
 * `auth` option; prefer {@linkcode scramSha256} where the broker offers it.
 *
 * @example
 * ```ts
 * import { scramSha1 } from "./scram.ts";
 *
 * console.log(scramSha1({ username: "user", password: "pencil" }).method); // "SCRAM-SHA-1"
 * ```
 */
export function scramSha1(credentials: ScramCredentials): Authenticator {
  return scram("SHA-1", credentials);
}
