/**
 * Starts a real mosquitto broker for the test suite, on free loopback ports, with optional TLS,
 * mutual TLS, websockets and persistence.
 *
 * Only `node:` built-ins are used, so the same harness runs under `deno test` and `bun test`.
 *
 * @module
 */

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { atExit, startWatchdog } from "./watchdog.ts";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { after, before } from "node:test";
import { settlesWithin } from "./wait.ts";

const HOST = "127.0.0.1";
const READY_TIMEOUT_MS = 10_000;
const POLL_INTERVAL_MS = 20;
const STOP_TIMEOUT_MS = 5_000;
const START_ATTEMPTS = 5;
const START_MARKER = "--- kite: starting mosquitto";

/** What the broker should offer besides its plain MQTT listener. */
export interface MosquittoOptions {
  /** Keep sessions, queued and retained messages on disk, so they survive `restart()`. */
  persistence?: boolean;
  /** Add a websockets listener (`wsPort`); with `tls`, also websockets over TLS (`wssPort`). */
  websockets?: boolean;
  /** Add a TLS listener (`tlsPort`) and a mutual TLS listener (`mtlsPort`), with a test CA. */
  tls?: boolean;
  /**
   * Lines added to the generated mosquitto.conf after the global settings and before the
   * listeners, e.g. `"max_inflight_messages 1"`.
   */
  extraConfig?: string;
}

/**
 * mosquitto set up for load: no bound on the messages it queues for a subscriber (by default it
 * drops QoS 1 and 2 messages past 1,000 waiting, and QoS 0 ones too), and no debug log. This
 * helper logs everything by default (`log_type all`): a line with a timestamp for every packet,
 * which made the broker the bottleneck (about a third of its CPU time per message); the levels
 * it needs to see the broker start are added back.
 */
export const LOAD_CONFIG: string = [
  "max_queued_messages 0",
  "log_type none",
  "log_type error",
  "log_type warning",
  "log_type notice",
  "log_type information",
].join("\n");

/**
 * A running mosquitto broker that this process started and owns. `await using` stops it at the
 * end of the scope.
 */
export interface Mosquitto extends AsyncDisposable {
  /** Every listener binds to this loopback address only. */
  host: "127.0.0.1";
  /** The plain MQTT listener. */
  port: number;
  /** TLS with a server certificate signed by `ca`; clients need not present a certificate. */
  tlsPort?: number;
  /** TLS that requires a client certificate signed by `ca` (`clientCert`, `clientKey`). */
  mtlsPort?: number;
  /** MQTT over websockets (`ws://127.0.0.1:wsPort/`, subprotocol `mqtt`). */
  wsPort?: number;
  /** MQTT over websockets over TLS, with the same server certificate as `tlsPort`. */
  wssPort?: number;
  /** The test CA certificate (PEM); an empty string without the `tls` option. */
  ca: string;
  /** A client certificate signed by `ca` (PEM); an empty string without the `tls` option. */
  clientCert: string;
  /** The private key of `clientCert` (PEM); an empty string without the `tls` option. */
  clientKey: string;
  /** `mqtt://127.0.0.1:port`, the plain listener as a URL for `connect()`. */
  url: string;
  /** The temporary directory with mosquitto.conf, the certificates, mosquitto.db, mosquitto.log. */
  dir: string;
  /** Sends SIGTERM and waits for the broker to exit (SIGKILL after 5 s). Idempotent. */
  stop(): Promise<void>;
  /** Kills the broker with SIGKILL, as a crash would, and waits for it to exit. Idempotent. */
  kill(): Promise<void>;
  /** Stops the broker, then starts it again on the same ports and persistence directory. */
  restart(): Promise<void>;
}

/**
 * Whether a mosquitto binary can be found on `PATH` or at `/usr/sbin/mosquitto`.
 *
 * @returns `true` when `startMosquitto()` has a binary to run.
 */
export function mosquittoAvailable(): boolean {
  return findExecutable("mosquitto", ["/usr/sbin/mosquitto"]) !== undefined;
}

/**
 * The `skip` option for `node:test` tests that need a broker.
 *
 * @returns `undefined` when mosquitto can be used, or the reason to skip when it is not
 * installed. When it is not installed and `KITE_REQUIRE_MOSQUITTO` is `"1"` (as in CI), it
 * throws instead, so a missing broker fails the run rather than skipping half of it.
 *
 * @example Skip a test where there is no broker
 * ```ts ignore
 * import { test } from "node:test";
 * test("connects to mosquitto", { skip: mosquittoSkipReason() }, async () => {});
 * ```
 */
export function mosquittoSkipReason(): string | undefined {
  if (mosquittoAvailable()) return undefined;
  if (process.env.KITE_REQUIRE_MOSQUITTO === "1") {
    throw new Error(
      "KITE_REQUIRE_MOSQUITTO=1 but mosquitto is not installed " +
        "(looked on PATH and at /usr/sbin/mosquitto)",
    );
  }
  return "mosquitto is not installed (set KITE_REQUIRE_MOSQUITTO=1 to make this an error)";
}

/**
 * The `skip` option for tests that run mosquitto's command-line clients (`mosquitto_pub`,
 * `mosquitto_sub`, Debian's package mosquitto-clients), as {@linkcode mosquittoSkipReason} is
 * for the broker: with `KITE_REQUIRE_MOSQUITTO=1` a missing client throws instead of skipping.
 *
 * @returns `undefined` when both clients can be used, or the reason to skip.
 *
 * @example
 * ```ts ignore
 * import { test } from "node:test";
 * test("mosquitto_sub receives it", { skip: mosquittoClientsSkipReason() }, async () => {});
 * ```
 */
export function mosquittoClientsSkipReason(): string | undefined {
  const missing = ["mosquitto_pub", "mosquitto_sub"].filter((name) =>
    findExecutable(name, [`/usr/bin/${name}`]) === undefined
  );
  if (missing.length === 0) return undefined;
  const reason = `${missing.join(" and ")} not installed (Debian: mosquitto-clients)`;
  if (process.env.KITE_REQUIRE_MOSQUITTO === "1") {
    throw new Error(`KITE_REQUIRE_MOSQUITTO=1 but ${reason}`);
  }
  return reason;
}

/**
 * Starts mosquitto on free loopback ports and resolves once every listener accepts connections.
 *
 * The broker is killed when this process exits, even if `stop()` was never called; its
 * directory is removed then too, unless `KITE_KEEP_MOSQUITTO_DIRS=1`.
 *
 * @param options Which listeners to add and whether to persist.
 * @returns The running broker.
 *
 * This is how a test gets a broker of its own: with `await using`, it is stopped when the test
 * ends, passed or failed. Tests that share one broker use {@linkcode sharedMosquitto}.
 *
 * @example Start a broker with TLS for one test
 * ```ts ignore
 * test("over TLS", { skip: mosquittoSkipReason() }, async () => {
 *   await using broker = await startMosquitto({ tls: true });
 *   // connect to broker.url, or to broker.tlsPort trusting broker.ca
 * });
 * ```
 */
export async function startMosquitto(options: MosquittoOptions = {}): Promise<Mosquitto> {
  const binary = findExecutable("mosquitto", ["/usr/sbin/mosquitto"]);
  if (binary === undefined) {
    throw new Error("mosquitto is not installed (looked on PATH and at /usr/sbin/mosquitto)");
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kite-mosquitto-"));
  brokerDirs.add(dir);
  atExit(cleanUp);
  const certificates = options.tls ? testCertificates() : undefined;
  for (let attempt = 1;; attempt++) {
    const broker = new MosquittoBroker(
      binary,
      dir,
      options,
      certificates,
      await freePorts(options),
    );
    try {
      await broker.launch();
      return broker;
    } catch (error) {
      // Another process may take a port between our probe and mosquitto's bind: pick new ones.
      if (!(error instanceof AddressInUseError) || attempt === START_ATTEMPTS) throw error;
    }
  }
}

/**
 * One mosquitto for every test of the enclosing `describe` block: started in its `before` hook
 * (unless mosquitto is missing and the tests are skipped, see {@linkcode mosquittoSkipReason})
 * and stopped in its `after` hook, whether the tests passed or not.
 *
 * Call it in the body of a `describe`. Its properties can be read once the block's tests run.
 *
 * @param options Which listeners to add and whether to persist.
 * @param skip Why the block's tests are skipped, if they are: then no broker is started. By
 * default {@linkcode mosquittoSkipReason}.
 * @returns The broker the tests share.
 *
 * @example
 * ```ts ignore
 * describe("round trips", () => {
 *   const broker = sharedMosquitto();
 *   test("connects", { skip: mosquittoSkipReason() }, async () => {
 *     await using client = await connect(broker.url);
 *   });
 * });
 * ```
 */
export function sharedMosquitto(
  options: MosquittoOptions = {},
  skip: string | undefined = mosquittoSkipReason(),
): Mosquitto {
  let started: Mosquitto | undefined;
  before(async () => {
    if (skip !== undefined) return;
    started = await startMosquitto(options);
  }, { timeout: 60_000 });
  after(async () => {
    await started?.stop();
  });
  const broker = () => {
    if (started === undefined) {
      throw new Error(
        "sharedMosquitto(): the broker is read before its describe block's tests ran",
      );
    }
    return started;
  };
  return {
    host: HOST,
    get port() {
      return broker().port;
    },
    get tlsPort() {
      return broker().tlsPort;
    },
    get mtlsPort() {
      return broker().mtlsPort;
    },
    get wsPort() {
      return broker().wsPort;
    },
    get wssPort() {
      return broker().wssPort;
    },
    get ca() {
      return broker().ca;
    },
    get clientCert() {
      return broker().clientCert;
    },
    get clientKey() {
      return broker().clientKey;
    },
    get url() {
      return broker().url;
    },
    get dir() {
      return broker().dir;
    },
    stop: () => broker().stop(),
    kill: () => broker().kill(),
    restart: () => broker().restart(),
    [Symbol.asyncDispose]: () => broker().stop(),
  };
}

interface Certificates {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

interface Ports {
  port: number;
  tlsPort?: number;
  mtlsPort?: number;
  wsPort?: number;
  wssPort?: number;
}

type Exit = { code: number | null; signal: string | null; error?: Error };

class AddressInUseError extends Error {}

/** Brokers still running and directories still on disk, for the process exit handler. */
const runningBrokers = new Set<{ broker: ChildProcess; watchdog?: ChildProcess }>();
const brokerDirs = new Set<string>();
let cachedCertificates: Certificates | undefined;

class MosquittoBroker implements Mosquitto {
  readonly host = HOST;
  readonly port: number;
  readonly tlsPort?: number;
  readonly mtlsPort?: number;
  readonly wsPort?: number;
  readonly wssPort?: number;
  readonly ca: string;
  readonly clientCert: string;
  readonly clientKey: string;
  readonly dir: string;
  readonly #binary: string;
  readonly #configPath: string;
  readonly #logPath: string;
  #child: ChildProcess | undefined;
  #exit: Exit | undefined;
  #exited: Promise<Exit> = Promise.resolve({ code: null, signal: null });
  #stopping: Promise<void> | undefined;

  constructor(
    binary: string,
    dir: string,
    options: MosquittoOptions,
    certificates: Certificates | undefined,
    ports: Ports,
  ) {
    this.#binary = binary;
    this.dir = dir;
    this.port = ports.port;
    this.tlsPort = ports.tlsPort;
    this.mtlsPort = ports.mtlsPort;
    this.wsPort = ports.wsPort;
    this.wssPort = ports.wssPort;
    this.ca = certificates?.ca ?? "";
    this.clientCert = certificates?.clientCert ?? "";
    this.clientKey = certificates?.clientKey ?? "";
    this.#configPath = path.join(dir, "mosquitto.conf");
    this.#logPath = path.join(dir, "mosquitto.log");
    if (certificates) {
      for (const [name, pem] of Object.entries(certificates)) {
        fs.writeFileSync(path.join(dir, `${name}.pem`), pem, { mode: 0o600 });
      }
    }
    fs.writeFileSync(this.#configPath, this.#config(options));
  }

  get url(): string {
    return `mqtt://${HOST}:${this.port}`;
  }

  async stop(): Promise<void> {
    this.#stopping ??= this.#terminate();
    await this.#stopping;
  }

  async kill(): Promise<void> {
    const child = this.#child;
    if (child !== undefined && this.#exit === undefined) {
      child.kill("SIGKILL");
      if (!(await settlesWithin(this.#exited, STOP_TIMEOUT_MS))) {
        throw new Error(`mosquitto (pid ${child.pid}) did not exit after SIGKILL`);
      }
    }
    await this.stop();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async restart(): Promise<void> {
    await this.stop();
    for (let attempt = 1;; attempt++) {
      try {
        await this.launch();
        return;
      } catch (error) {
        // The old sockets may linger for a moment after the old process has gone.
        if (!(error instanceof AddressInUseError) || attempt === START_ATTEMPTS) throw error;
        await delay(100 * attempt);
      }
    }
  }

  /** Spawns mosquitto and waits until every listener accepts, or fails with the log's tail. */
  async launch(): Promise<void> {
    const logFd = fs.openSync(this.#logPath, "a");
    let child: ChildProcess;
    try {
      fs.writeSync(logFd, `${START_MARKER} at ${new Date().toISOString()} ---\n`);
      child = spawn(this.#binary, ["-c", this.#configPath], { stdio: ["ignore", logFd, logFd] });
    } finally {
      fs.closeSync(logFd);
    }
    this.#child = child;
    this.#exit = undefined;
    this.#stopping = undefined;
    const watchdog = child.pid === undefined ? undefined : startWatchdog(child.pid, this.dir, {
      name: "kite-mosquitto-watchdog",
      keepDir: process.env.KITE_KEEP_MOSQUITTO_DIRS === "1",
    });
    const owned = { broker: child, watchdog };
    runningBrokers.add(owned);
    // A broker nobody stopped must not keep the test process alive; the exit handler kills it.
    child.unref();
    this.#exited = new Promise((resolve) => {
      const settle = (exit: Exit) => {
        runningBrokers.delete(owned);
        watchdog?.kill("SIGKILL");
        this.#exit = exit;
        resolve(exit);
      };
      child.once("exit", (code, signal) => settle({ code, signal }));
      child.once("error", (error) => settle({ code: null, signal: null, error }));
    });

    const pending = new Set(this.#ports());
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let listening = false;
    for (;;) {
      // mosquitto logs "running" once every listener is bound. Until then a port that accepts
      // may belong to another process, and mosquitto is about to fail on it.
      // The whole log since the start: clients that reconnect at once can log more than a tail's
      // worth of lines between "running" and the next look.
      listening ||= / running$/m.test(this.#logSinceStart(Infinity));
      for (const port of listening ? [...pending] : []) {
        if (this.#exit) break;
        if (await accepts(port)) pending.delete(port);
      }
      const exit = this.#exit;
      if (exit) {
        const log = this.#logSinceStart();
        if (/Address already in use|Unable to create websockets listener/.test(log)) {
          throw new AddressInUseError(`mosquitto could not bind its ports:\n${log}`);
        }
        throw new Error(
          `mosquitto exited during start (${describeExit(exit)}); ${this.#logPath}:\n${log}`,
        );
      }
      if (listening && pending.size === 0) return;
      if (Date.now() > deadline) {
        await this.#terminate();
        const waitingFor = listening
          ? `ports ${[...pending].join(", ")} to accept`
          : "its log to say running";
        throw new Error(
          `mosquitto started, but ${READY_TIMEOUT_MS} ms later we are still waiting for ` +
            `${waitingFor}; ${this.#logPath}:\n${this.#logSinceStart()}`,
        );
      }
      await delay(POLL_INTERVAL_MS);
    }
  }

  async #terminate(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    if (this.#exit === undefined) {
      child.kill("SIGTERM");
      if (!(await settlesWithin(this.#exited, STOP_TIMEOUT_MS))) {
        child.kill("SIGKILL");
        if (!(await settlesWithin(this.#exited, STOP_TIMEOUT_MS))) {
          throw new Error(`mosquitto (pid ${child.pid}) did not exit after SIGKILL`);
        }
      }
    }
    this.#child = undefined;
  }

  #ports(): number[] {
    return [this.port, this.tlsPort, this.mtlsPort, this.wsPort, this.wssPort]
      .filter((port): port is number => port !== undefined);
  }

  #config(options: MosquittoOptions): string {
    const file = (name: string) => path.join(this.dir, `${name}.pem`);
    // Websockets listeners ignore the bind address unless the socket domain is given.
    const listener = (port: number) => [`listener ${port} ${HOST}`, "socket_domain ipv4"];
    const tls = (requireCertificate: boolean) => [
      `cafile ${file("ca")}`,
      `certfile ${file("serverCert")}`,
      `keyfile ${file("serverKey")}`,
      `require_certificate ${requireCertificate}`,
    ];
    const lines = [
      "# Generated by tests/helpers/mosquitto.ts",
      // Run as root, mosquitto drops to the mosquitto user, which cannot write our temp dir.
      process.getuid?.() === 0 ? "user root" : "",
      "per_listener_settings false",
      "allow_anonymous true",
      "log_dest stderr",
      "log_type all",
      "log_timestamp_format %Y-%m-%dT%H:%M:%S",
      "connection_messages true",
      ...(options.persistence
        ? ["persistence true", `persistence_location ${this.dir}${path.sep}`, "autosave_interval 1"]
        : ["persistence false"]),
      options.extraConfig ?? "",
      ...listener(this.port),
      "protocol mqtt",
    ];
    if (this.tlsPort !== undefined) lines.push(...listener(this.tlsPort), ...tls(false));
    if (this.mtlsPort !== undefined) lines.push(...listener(this.mtlsPort), ...tls(true));
    if (this.wsPort !== undefined) lines.push(...listener(this.wsPort), "protocol websockets");
    if (this.wssPort !== undefined) {
      lines.push(...listener(this.wssPort), "protocol websockets", ...tls(false));
    }
    return lines.join("\n") + "\n";
  }

  /** The log written since the latest launch: its last `lines` lines (all of it: `Infinity`). */
  #logSinceStart(lines = 40): string {
    let log: string;
    try {
      log = fs.readFileSync(this.#logPath, "utf8");
    } catch {
      return "(no log)";
    }
    const since = log.slice(log.lastIndexOf(START_MARKER));
    return lines === Infinity ? since : since.split("\n").slice(-lines).join("\n");
  }
}

function findExecutable(name: string, fallbacks: string[]): string | undefined {
  const candidates = (process.env.PATH ?? "").split(path.delimiter)
    .filter((folder) => folder !== "")
    .map((folder) => path.join(folder, name))
    .concat(fallbacks);
  return candidates.find((candidate) => {
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return fs.statSync(candidate).isFile();
    } catch {
      return false;
    }
  });
}

/** Reserves a distinct free loopback port for each listener the options ask for. */
async function freePorts(options: MosquittoOptions): Promise<Ports> {
  const count = 1 + (options.tls ? 2 : 0) + (options.websockets ? (options.tls ? 2 : 1) : 0);
  // All probes stay open until every port is known, so the OS cannot hand one out twice.
  const servers: net.Server[] = [];
  const ports: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, HOST, () => resolve());
      });
      ports.push((server.address() as net.AddressInfo).port);
    }
  } finally {
    await Promise.all(servers.map((server) =>
      new Promise<void>((resolve) => {
        if (server.listening) server.close(() => resolve());
        else resolve();
      })
    ));
  }
  const next = () => ports.shift();
  return {
    port: next()!,
    tlsPort: options.tls ? next() : undefined,
    mtlsPort: options.tls ? next() : undefined,
    wsPort: options.websockets ? next() : undefined,
    wssPort: options.websockets && options.tls ? next() : undefined,
  };
}

/** Whether a TCP connection to the port succeeds; the socket is closed before this settles. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    let connected = false;
    const socket = net.connect({ host: HOST, port });
    socket.setTimeout(1_000, () => socket.destroy());
    socket.once("connect", () => {
      connected = true;
      socket.destroy();
    });
    socket.once("error", () => {});
    socket.once("close", () => resolve(connected));
  });
}

/**
 * Generates, once per process, a test CA, a server certificate for 127.0.0.1 and localhost,
 * and a client certificate, all signed by that CA.
 */
function testCertificates(): Certificates {
  if (cachedCertificates) return cachedCertificates;
  const opensslPath = findExecutable("openssl", ["/usr/bin/openssl"]);
  if (opensslPath === undefined) {
    throw new Error("the tls option needs openssl, which is not installed");
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kite-certs-"));
  try {
    // Our own config, so the result does not depend on the system's openssl.cnf.
    fs.writeFileSync(path.join(dir, "openssl.cnf"), OPENSSL_CONFIG);
    const openssl = (...args: string[]) =>
      execFileSync(opensslPath, args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    const words = (line: string) => line.split(" ");
    const newKey = words(
      "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -config openssl.cnf",
    );
    const caSubject = ["-subj", "/CN=Kite Test CA"];
    openssl(
      ...words("req -x509 -days 30 -extensions ca_cert -keyout ca.key -out ca.crt"),
      ...newKey,
      ...caSubject,
    );
    for (const [name, serial] of [["server", "2"], ["client", "3"]]) {
      openssl(
        ...words(`req -new -keyout ${name}.key -out ${name}.csr -subj /CN=kite-${name}`),
        ...newKey,
      );
      openssl(...words(
        `x509 -req -in ${name}.csr -CA ca.crt -CAkey ca.key -set_serial ${serial} -days 30 ` +
          `-extfile openssl.cnf -extensions ${name}_cert -out ${name}.crt`,
      ));
    }
    const read = (name: string) => fs.readFileSync(path.join(dir, name), "utf8");
    cachedCertificates = {
      ca: read("ca.crt"),
      serverCert: read("server.crt"),
      serverKey: read("server.key"),
      clientCert: read("client.crt"),
      clientKey: read("client.key"),
    };
    return cachedCertificates;
  } catch (error) {
    const stderr = (error as { stderr?: Uint8Array }).stderr;
    const detail = stderr ? new TextDecoder().decode(stderr) : String(error);
    throw new Error(`openssl could not generate the test certificates: ${detail}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const OPENSSL_CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = Kite Test
[ca_cert]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_cert]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_cert]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function describeExit(exit: Exit): string {
  if (exit.error) return exit.error.message;
  return exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`;
}

function cleanUp(): void {
  for (const { broker, watchdog } of runningBrokers) {
    for (const child of [watchdog, broker]) {
      try {
        child?.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }
  runningBrokers.clear();
  if (process.env.KITE_KEEP_MOSQUITTO_DIRS === "1") return;
  for (const dir of brokerDirs) fs.rmSync(dir, { recursive: true, force: true });
  brokerDirs.clear();
}
