/**
 * Reading an MQTT 5 Server Reference (section 4.11 and its non-normative examples), and the URL
 * dialed for each server it names.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseServerReference, referenceUrl } from "../../src/client/server_reference.ts";

describe("parseServerReference", () => {
  test("the specification's examples: host, host:port, IPv4:port, and a space-separated list with IPv6 in brackets", () => {
    assert.deepEqual(parseServerReference("myserver.xyz.org"), [{ host: "myserver.xyz.org" }]);
    assert.deepEqual(parseServerReference("myserver.xyz.org:8883"), [
      { host: "myserver.xyz.org", port: 8883 },
    ]);
    assert.deepEqual(parseServerReference("10.10.151.22:8883 [fe80::9610:3eff:fe1c]:1883"), [
      { host: "10.10.151.22", port: 8883 },
      { host: "fe80::9610:3eff:fe1c", port: 1883 },
    ]);
  });

  test("a bracketed IPv6 address without a port, a bare IPv6 address, a URL, extra spaces", () => {
    assert.deepEqual(parseServerReference("  [::1]   ::1  mqtt://u:p@b.example:1884/x "), [
      { host: "::1" },
      { host: "::1" },
      { host: "b.example", port: 1884 },
    ]);
  });

  test("what names no server is skipped: empty, a port out of range or not a number, an unclosed bracket", () => {
    assert.deepEqual(parseServerReference(""), []);
    assert.deepEqual(
      parseServerReference("a:0 b:65536 c:x [::1 :1883 d:65535"),
      [{ host: "d", port: 65535 }],
    );
  });
});

describe("referenceUrl", () => {
  test("keeps the scheme, path and query of the current URL; the port is the reference's or the scheme's default; credentials are dropped", () => {
    const current = new URL("wss://u:p@a.example:8443/mqtt?tenant=1");
    assert.equal(
      referenceUrl(current, { host: "b.example" }).href,
      "wss://b.example/mqtt?tenant=1",
    );
    assert.equal(
      referenceUrl(new URL("mqtt://a.example:1884"), { host: "fe80::1", port: 1885 }).href,
      "mqtt://[fe80::1]:1885",
    );
    assert.equal(referenceUrl(new URL("mqtts://a.example"), { host: "b" }).href, "mqtts://b");
  });
});
