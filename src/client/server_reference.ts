/**
 * MQTT 5 server redirection (section 4.11): reading a Server Reference and turning it into the
 * URLs to dial. Pure: no I/O, no state.
 *
 * @module
 */

/** One server a Server Reference names. */
export interface ServerAddress {
  /** The host name or IP address; an IPv6 address without its brackets. */
  host: string;
  /** The port, if the reference gives one. */
  port?: number;
}

/**
 * Reads a Server Reference. The specification leaves its meaning open and gives, in a
 * non-normative comment (section 4.11), references of the form `host`, `host:port`,
 * `10.10.151.22:8883` and a space-separated list such as
 * `10.10.151.22:8883 [fe80::9610:3eff:fe1c]:1883`, an IPv6 address in brackets. Those are read
 * here; so is a URL (`mqtt://host:port`), whose host and port are taken. A part that is none of
 * these (an empty host, a port outside 1 to 65535, an unclosed bracket) is skipped.
 *
 * @param reference The Server Reference property of a CONNACK or DISCONNECT.
 * @returns The servers, in the order given; empty when none could be read.
 *
 * @example
 * ```ts
 * import { parseServerReference } from "./server_reference.ts";
 *
 * console.log(parseServerReference("b.example:1884 [fe80::1]:1883 c.example"));
 * // [{ host: "b.example", port: 1884 }, { host: "fe80::1", port: 1883 }, { host: "c.example" }]
 * ```
 */
export function parseServerReference(reference: string): ServerAddress[] {
  const servers: ServerAddress[] = [];
  for (const part of reference.split(/[\s,]+/)) {
    if (part === "") continue;
    const server = parseOne(part);
    if (server !== undefined) servers.push(server);
  }
  return servers;
}

function parseOne(part: string): ServerAddress | undefined {
  const scheme = part.indexOf("://");
  if (scheme >= 0) part = part.slice(scheme + 3).replace(/\/.*$/, "").replace(/^.*@/, "");
  let host: string;
  let rest: string;
  if (part.startsWith("[")) {
    const close = part.indexOf("]");
    if (close < 0) return undefined;
    host = part.slice(1, close);
    rest = part.slice(close + 1);
    if (!host.includes(":")) return undefined;
  } else {
    const colon = part.indexOf(":");
    // More than one colon and no brackets: a bare IPv6 address, no port.
    if (colon >= 0 && part.indexOf(":", colon + 1) >= 0) return { host: part };
    host = colon < 0 ? part : part.slice(0, colon);
    rest = colon < 0 ? "" : part.slice(colon);
  }
  if (host === "") return undefined;
  if (rest === "") return { host };
  if (!/^:\d{1,5}$/.test(rest)) return undefined;
  const port = Number(rest.slice(1));
  if (port < 1 || port > 65_535) return undefined;
  return { host, port };
}

/**
 * The URL to dial for a server of a reference: `current` with its host and port replaced (the
 * port the scheme's default when the reference gives none), so the scheme, the WebSocket path and
 * the options that go with it stay. User name and password are dropped from it: the client's own
 * stay in force.
 *
 * @param current The URL of the broker that sent the reference.
 * @param server A server of the reference.
 * @returns The URL to dial.
 *
 * @example
 * ```ts
 * import { referenceUrl } from "./server_reference.ts";
 *
 * console.log(referenceUrl(new URL("mqtts://a.example:8884"), { host: "b.example" }).href);
 * // "mqtts://b.example"
 * ```
 */
export function referenceUrl(current: URL, server: ServerAddress): URL {
  const url = new URL(current.href);
  url.username = "";
  url.password = "";
  url.hostname = server.host.includes(":") ? `[${server.host}]` : server.host;
  url.port = server.port === undefined ? "" : String(server.port);
  return url;
}
