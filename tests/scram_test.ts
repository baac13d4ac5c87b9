/**
 * SCRAM (src/scram.ts) against the test vectors of RFC 5802 section 5 (SHA-1) and RFC 7677
 * section 3 (SHA-256), on both sides of the exchange; the refusals of each side; SASLprep as far
 * as it goes (RFC 4013 section 3 examples).
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { AuthenticationError } from "../src/errors.ts";
import {
  fromBase64,
  saslPrep,
  ScramClient,
  type ScramHash,
  scramSecrets,
  ScramServer,
} from "../src/scram.ts";

interface Vector {
  hash: ScramHash;
  clientNonce: string;
  serverNonce: string;
  salt: string;
  clientFirst: string;
  serverFirst: string;
  clientFinal: string;
  serverFinal: string;
}

const VECTORS: Vector[] = [
  {
    // RFC 5802 section 5.
    hash: "SHA-1",
    clientNonce: "fyko+d2lbbFgONRv9qkxdawL",
    serverNonce: "3rfcNHYJY1ZVvWVs7j",
    salt: "QSXCR+Q6sek8bf92",
    clientFirst: "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
    serverFirst: "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
    clientFinal:
      "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    serverFinal: "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
  },
  {
    // RFC 7677 section 3.
    hash: "SHA-256",
    clientNonce: "rOprNGfwEbeRWgbNEkqO",
    serverNonce: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    salt: "W22ZaJ0SNY7soEsUEjb6gQ==",
    clientFirst: "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
    serverFirst:
      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    clientFinal:
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    serverFinal: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
  },
];

function rejectsWith(code: number, pattern: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof AuthenticationError, String(error));
    assert.equal(error.reasonCode, code);
    assert.match(error.message, pattern);
    return true;
  };
}

for (const v of VECTORS) {
  describe(`SCRAM-${v.hash}, the RFC's test vector`, () => {
    test("the client writes the RFC's messages and accepts its server signature", async () => {
      const client = new ScramClient(v.hash, "user", "pencil", v.clientNonce);
      assert.equal(client.first, v.clientFirst);
      assert.equal(await client.final(v.serverFirst), v.clientFinal);
      client.verify(v.serverFinal);
    });

    test("the server writes the RFC's messages and accepts its client proof", async () => {
      const secrets = await scramSecrets(v.hash, "pencil", fromBase64(v.salt), 4096);
      const server = new ScramServer(
        v.hash,
        (name) => name === "user" ? secrets : undefined,
        v.serverNonce,
      );
      assert.equal(await server.first(v.clientFirst), v.serverFirst);
      assert.equal(server.username, "user");
      assert.equal(await server.final(v.clientFinal), v.serverFinal);
    });

    test("a wrong password: the server refuses the proof (0x86), the client the signature", async () => {
      const secrets = await scramSecrets(v.hash, "pencil", fromBase64(v.salt), 4096);
      const server = new ScramServer(v.hash, () => secrets, v.serverNonce);
      const client = new ScramClient(v.hash, "user", "pen", v.clientNonce);
      await server.first(client.first);
      const final = await client.final(v.serverFirst);
      await assert.rejects(server.final(final), rejectsWith(0x86, /proof/));
      assert.throws(() => client.verify(v.serverFinal), rejectsWith(0x87, /signature/));
    });
  });
}

describe("SCRAM refusals", () => {
  test("the client refuses a nonce that does not extend its own, an error and an extension", async () => {
    const client = new ScramClient("SHA-256", "user", "pencil", "abc");
    await assert.rejects(
      client.final("r=xyz123,s=QSXCR+Q6sek8bf92,i=4096"),
      rejectsWith(0x87, /nonce/),
    );
    await assert.rejects(
      client.final("r=abc,s=QSXCR+Q6sek8bf92,i=4096"),
      rejectsWith(0x87, /nonce/),
    );
    await assert.rejects(client.final("e=unknown-user"), rejectsWith(0x87, /unknown-user/));
    await assert.rejects(client.final("m=ext,r=abcd,s=QQ==,i=1"), rejectsWith(0x87, /extension/));
    await assert.rejects(client.final("r=abcd,s=QQ==,i=0"), rejectsWith(0x87, /iteration/));
    assert.throws(() => client.verify("v=AAAA"), rejectsWith(0x87, /before its first/));
  });

  test("the server refuses channel binding, an unknown user (0x86), and a final message of another exchange", async () => {
    const secrets = await scramSecrets("SHA-256", "pencil");
    const server = new ScramServer("SHA-256", (name) => name === "user" ? secrets : undefined);
    await assert.rejects(
      server.first("p=tls-unique,,n=user,r=abc"),
      rejectsWith(0x87, /channel binding/),
    );
    await assert.rejects(server.first("n,,n=mallory,r=abc"), rejectsWith(0x86, /mallory/));
    await assert.rejects(
      server.final("c=biws,r=abc,p=AAAA"),
      rejectsWith(0x87, /before the first/),
    );
    await server.first("n,,n=user,r=abc");
    await assert.rejects(server.final("c=biws,r=other,p=AAAA"), rejectsWith(0x87, /nonce/));
  });

  test("user names with = and , are escaped as =3D and =2C, and read back", async () => {
    const secrets = await scramSecrets("SHA-1", "pw");
    const client = new ScramClient("SHA-1", "a=b,c", "pw", "n0nce");
    assert.equal(client.first, "n,,n=a=3Db=2Cc,r=n0nce");
    const server = new ScramServer("SHA-1", (name) => name === "a=b,c" ? secrets : undefined);
    const serverFirst = await server.first(client.first);
    client.verify(await server.final(await client.final(serverFirst)));
    assert.equal(server.username, "a=b,c");
  });
});

describe("SASLprep (RFC 4013), as far as it goes", () => {
  test("the examples of RFC 4013 section 3 that do not need the bidi or unassigned checks", () => {
    assert.equal(saslPrep("I\u00ADX"), "IX"); // soft hyphen mapped to nothing
    assert.equal(saslPrep("user"), "user");
    assert.equal(saslPrep("USER"), "USER");
    assert.equal(saslPrep("\u00AA"), "a"); // NFKC
    assert.equal(saslPrep("\u2168"), "IX"); // NFKC
    assert.throws(() => saslPrep("\u0007"), rejectsWith(0x86, /U\+0007/)); // prohibited
    assert.throws(() => saslPrep("a\u0000"), AuthenticationError);
    assert.equal(saslPrep("a\u00A0b"), "a b"); // non-ASCII space mapped to SPACE
    assert.throws(() => saslPrep(""), AuthenticationError);
  });

  test("a password is prepared the same way on both sides: NFKC-equal passwords agree", async () => {
    const secrets = await scramSecrets("SHA-256", "\u2168");
    const client = new ScramClient("SHA-256", "u", "IX", "n");
    const server = new ScramServer("SHA-256", () => secrets);
    client.verify(await server.final(await client.final(await server.first(client.first))));
  });
});
