/**
 * Drives a real headless Chromium for the test suite over the DevTools protocol, with no
 * dependency: `node:` built-ins to start the process and the global `WebSocket` to talk to it, so
 * the same helper runs under `deno test` and `bun test`.
 *
 * Every step is bounded by a timeout; `close()` (or `await using`) ends the browser and removes
 * its temporary profile.
 *
 * @example
 * ```ts ignore
 * test("a page", { skip: chromiumSkipReason() }, async () => {
 *   await using browser = await launchChromium();
 *   const page = await browser.newPage();
 *   await page.goto("http://127.0.0.1:8080/");
 *   assert.equal(await page.evaluate<number>("1 + 1"), 2);
 *   assert.deepEqual(page.consoleErrors, []);
 * });
 * ```
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { atExit, startWatchdog } from "./watchdog.ts";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";

/** How to get a browser where there is none, for skip and error messages. */
export const CHROMIUM_INSTALL_HINT = "apt-get install chromium-headless-shell";

const LAUNCH_TIMEOUT_MS = 20_000;
const COMMAND_TIMEOUT_MS = 30_000;
const NAVIGATION_TIMEOUT_MS = 30_000;
const CLOSE_TIMEOUT_MS = 5_000;
const POLL_INTERVAL_MS = 20;
const LOG_TAIL_CHARS = 4_000;

const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  // Containers often have a small /dev/shm; Chromium then crashes its renderers.
  "--disable-dev-shm-usage",
  "--remote-debugging-port=0",
];

/** A page (a tab) of a {@linkcode Chromium}. */
export interface Page {
  /**
   * Every console.error call, uncaught exception (and unhandled rejection), and failed load or
   * other error the browser logged for this page, as text, in order.
   */
  readonly consoleErrors: string[];
  /** Navigates to `url` and resolves once its `load` event fired; rejects if loading failed. */
  goto(url: string, timeoutMs?: number): Promise<void>;
  /** Reloads the page and resolves once its `load` event fired again. */
  reload(timeoutMs?: number): Promise<void>;
  /**
   * Evaluates `expression` in the page, awaits it if it is a promise, and resolves with its
   * value (which must be JSON-like); rejects with the page's error if it throws.
   */
  evaluate<T>(expression: string, timeoutMs?: number): Promise<T>;
  /**
   * Re-evaluates `expression` in the page (every 20 ms, awaiting promises) until it is truthy and
   * resolves with that value; rejects after `timeoutMs` with the expression in the message.
   */
  waitFor<T = unknown>(expression: string, timeoutMs: number): Promise<T>;
  /** A PNG of the visible part of the page. */
  screenshot(): Promise<Uint8Array>;
  /** Closes the page. Idempotent. */
  close(): Promise<void>;
}

/** Options of {@linkcode Chromium.newPage}. */
export interface PageOptions {
  /** The viewport, in CSS pixels; default Chromium's own (800 × 600 headless). */
  width?: number;
  height?: number;
}

/** A headless Chromium this process started and owns. `await using` closes it. */
export interface Chromium extends AsyncDisposable {
  /** The browser's version string, e.g. `HeadlessChrome/156.0.8078.129`. */
  readonly version: string;
  /** The temporary directory with the profile (`profile/`) and the browser's output (`chromium.log`). */
  readonly dir: string;
  /** Opens a new blank page. */
  newPage(options?: PageOptions): Promise<Page>;
  /** Ends the browser (asks, then kills) and removes its temporary profile. Idempotent. */
  close(): Promise<void>;
}

/**
 * Where a Chromium binary is: `chromium-headless-shell` or `chromium` on `PATH`, or their Debian
 * locations; `undefined` when there is none.
 *
 * @returns The path of the binary to run.
 */
export function findChromium(): string | undefined {
  const fromEnv = process.env.KITE_CHROMIUM;
  if (fromEnv !== undefined && fromEnv !== "") return executable(fromEnv) ? fromEnv : undefined;
  const folders = (process.env.PATH ?? "").split(path.delimiter).filter((folder) => folder !== "");
  const candidates = [
    // The binary itself, not Debian's shell wrapper: a signal to it then reaches Chromium.
    "/usr/lib/chromium/chromium-headless-shell",
    ...folders.map((folder) => path.join(folder, "chromium-headless-shell")),
    "/usr/bin/chromium-headless-shell",
    ...folders.map((folder) => path.join(folder, "chromium")),
    "/usr/bin/chromium",
  ];
  return candidates.find(executable);
}

/**
 * The `skip` option for `node:test` tests that need a browser, like `mosquittoSkipReason`.
 *
 * @returns `undefined` when Chromium can be used, or the reason to skip (naming how to install
 * it). When none is installed and `CI` is `"true"` or `KITE_REQUIRE_CHROMIUM` is `"1"`, it throws
 * instead, so a missing browser fails the run rather than skipping the browser tests.
 *
 * @example
 * ```ts ignore
 * test("in a browser", { skip: chromiumSkipReason() }, async () => {});
 * ```
 */
export function chromiumSkipReason(): string | undefined {
  if (findChromium() !== undefined) return undefined;
  const looked = "looked for chromium-headless-shell and chromium on PATH and in /usr/bin" +
    (process.env.KITE_CHROMIUM ? `, and at KITE_CHROMIUM=${process.env.KITE_CHROMIUM}` : "");
  if (process.env.CI === "true" || process.env.KITE_REQUIRE_CHROMIUM === "1") {
    throw new Error(
      `CI=true or KITE_REQUIRE_CHROMIUM=1 but Chromium is not installed (${looked}); ` +
        `install it: ${CHROMIUM_INSTALL_HINT}`,
    );
  }
  return `Chromium is not installed (${looked}); install it: ${CHROMIUM_INSTALL_HINT}`;
}

/**
 * Starts headless Chromium with a fresh temporary profile and connects to it over the DevTools
 * protocol.
 *
 * @returns The running browser; close it (or `await using` it).
 */
export async function launchChromium(): Promise<Chromium> {
  const binary = findChromium();
  if (binary === undefined) throw new Error(chromiumSkipReason() ?? "Chromium is not installed");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kite-chromium-"));
  const profile = path.join(dir, "profile");
  fs.mkdirSync(profile);
  const logPath = path.join(dir, "chromium.log");
  const logFd = fs.openSync(logPath, "a");
  let child: ChildProcess;
  try {
    child = spawn(binary, [...FLAGS, `--user-data-dir=${profile}`, "about:blank"], {
      stdio: ["ignore", logFd, logFd],
      // Its own process group: close() ends the renderers and helpers with it.
      detached: true,
    });
  } finally {
    fs.closeSync(logFd);
  }
  const browser = new ChromiumProcess(child, dir, logPath);
  try {
    await browser.connect(path.join(profile, "DevToolsActivePort"));
    return browser;
  } catch (error) {
    await browser.close();
    throw error;
  }
}

function executable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects after `ms` with `what` in the message unless `promise` settles first. */
async function bounded<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

type Json = Record<string, unknown>;
interface Pending {
  resolve(result: Json): void;
  reject(error: Error): void;
  method: string;
}
type EventListener = (params: Json) => void;

/** Browsers still running, killed if the test process exits without closing them. */
const running = new Set<{ child: ChildProcess; watchdog?: ChildProcess; dir: string }>();

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    try {
      child.kill("SIGKILL");
    } catch {
      // Gone already.
    }
  }
}

function cleanUp(): void {
  for (const { child, watchdog, dir } of running) {
    killGroup(child);
    watchdog?.kill("SIGKILL");
    fs.rmSync(dir, { recursive: true, force: true });
  }
  running.clear();
}

class ChromiumProcess implements Chromium {
  version = "";
  readonly dir: string;
  readonly #child: ChildProcess;
  readonly #logPath: string;
  readonly #exited: Promise<void>;
  #socket: WebSocket | undefined;
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  /** Event listeners by `sessionId` ("" for the browser) and method. */
  readonly #listeners = new Map<string, Map<string, Set<EventListener>>>();
  readonly #pages = new Set<ChromiumPage>();
  #closing: Promise<void> | undefined;

  constructor(child: ChildProcess, dir: string, logPath: string) {
    this.#child = child;
    this.dir = dir;
    this.#logPath = logPath;
    const watchdog = child.pid === undefined ? undefined : startWatchdog(child.pid, dir, {
      name: "kite-chromium-watchdog",
      group: true,
      detached: true,
    });
    const owned = { child, watchdog, dir };
    running.add(owned);
    atExit(cleanUp);
    this.#exited = new Promise((resolve) => {
      child.once("exit", () => resolve());
      child.once("error", () => resolve());
    });
    void this.#exited.then(() => {
      running.delete(owned);
      watchdog?.kill("SIGKILL");
      this.#failAll(new Error(`Chromium exited\n${this.#logTail()}`));
    });
    // A browser nobody closed must not keep the test process alive; the exit handler kills it.
    child.unref();
  }

  /** Waits (bounded) for DevToolsActivePort, then opens the browser's DevTools socket. */
  async connect(portFile: string): Promise<void> {
    const deadline = Date.now() + LAUNCH_TIMEOUT_MS;
    let exited = false;
    void this.#exited.then(() => exited = true);
    let lines: string[] = [];
    for (;;) {
      try {
        lines = fs.readFileSync(portFile, "utf8").split("\n");
      } catch {
        lines = [];
      }
      if (lines.length >= 2 && lines[1].startsWith("/")) break;
      if (exited) throw new Error(`Chromium exited during start\n${this.#logTail()}`);
      if (Date.now() > deadline) {
        throw new Error(
          `Chromium wrote no DevToolsActivePort within ${LAUNCH_TIMEOUT_MS} ms\n${this.#logTail()}`,
        );
      }
      await delay(POLL_INTERVAL_MS);
    }
    const url = `ws://127.0.0.1:${lines[0].trim()}${lines[1].trim()}`;
    const socket = new WebSocket(url);
    this.#socket = socket;
    await bounded(
      new Promise<void>((resolve, reject) => {
        socket.onopen = () => resolve();
        socket.onerror = () => reject(new Error(`could not open the DevTools socket ${url}`));
      }),
      LAUNCH_TIMEOUT_MS,
      `opening the DevTools socket ${url}`,
    );
    socket.onerror = null;
    socket.onmessage = (event) => this.#receive(String(event.data));
    socket.onclose = () => this.#failAll(new Error("the DevTools socket closed"));
    const { product } = await this.send("Browser.getVersion");
    this.version = String(product);
  }

  /** Sends a DevTools command (to a page when `sessionId` is given), bounded in time. */
  send(method: string, params: Json = {}, sessionId?: string, timeoutMs = COMMAND_TIMEOUT_MS) {
    const socket = this.#socket;
    if (socket === undefined || socket.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error(`${method}: the DevTools socket is not open`));
    }
    const id = this.#nextId++;
    const reply = new Promise<Json>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, method });
    });
    socket.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    return bounded(reply, timeoutMs, `DevTools ${method}`).finally(() => this.#pending.delete(id));
  }

  /** Calls `listener` on every event `method` of `sessionId`; returns how to stop. */
  on(sessionId: string, method: string, listener: EventListener): () => void {
    let bySession = this.#listeners.get(sessionId);
    if (!bySession) this.#listeners.set(sessionId, bySession = new Map());
    let set = bySession.get(method);
    if (!set) bySession.set(method, set = new Set());
    set.add(listener);
    return () => set.delete(listener);
  }

  forget(sessionId: string): void {
    this.#listeners.delete(sessionId);
  }

  async newPage(options: PageOptions = {}): Promise<Page> {
    const { targetId } = await this.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await this.send("Target.attachToTarget", { targetId, flatten: true });
    const page = new ChromiumPage(this, String(targetId), String(sessionId));
    this.#pages.add(page);
    await page.init(options);
    return page;
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #close(): Promise<void> {
    const socket = this.#socket;
    if (socket !== undefined && socket.readyState === WebSocket.OPEN) {
      await this.send("Browser.close", {}, undefined, CLOSE_TIMEOUT_MS).catch(() => {});
    }
    const exitedInTime = await bounded(this.#exited.then(() => true), CLOSE_TIMEOUT_MS, "")
      .catch(() => false);
    // Its helpers too: they share its process group.
    killGroup(this.#child);
    if (!exitedInTime) await bounded(this.#exited, CLOSE_TIMEOUT_MS, "").catch(() => {});
    try {
      socket?.close();
    } catch {
      // Closed already.
    }
    this.#failAll(new Error("Chromium was closed"));
    fs.rmSync(this.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  }

  #receive(text: string): void {
    let message: Json;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof message.id === "number") {
      const pending = this.#pending.get(message.id);
      if (!pending) return;
      this.#pending.delete(message.id);
      const error = message.error as { message?: string; data?: string } | undefined;
      if (error) {
        pending.reject(
          new Error(
            `DevTools ${pending.method}: ${error.message}${error.data ? ` (${error.data})` : ""}`,
          ),
        );
      } else {
        pending.resolve((message.result ?? {}) as Json);
      }
      return;
    }
    const listeners = this.#listeners.get(String(message.sessionId ?? ""))
      ?.get(String(message.method));
    if (!listeners) return;
    for (const listener of [...listeners]) listener((message.params ?? {}) as Json);
  }

  #failAll(error: Error): void {
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }

  #logTail(): string {
    try {
      const log = fs.readFileSync(this.#logPath, "utf8");
      return `${this.#logPath} (tail):\n${log.slice(-LOG_TAIL_CHARS)}`;
    } catch {
      return "(no Chromium log)";
    }
  }
}

class ChromiumPage implements Page {
  readonly consoleErrors: string[] = [];
  readonly #browser: ChromiumProcess;
  readonly #targetId: string;
  readonly #sessionId: string;
  #closed = false;

  constructor(browser: ChromiumProcess, targetId: string, sessionId: string) {
    this.#browser = browser;
    this.#targetId = targetId;
    this.#sessionId = sessionId;
  }

  async init(options: PageOptions): Promise<void> {
    const session = this.#sessionId;
    const browser = this.#browser;
    browser.on(session, "Runtime.consoleAPICalled", (params) => {
      if (params.type !== "error" && params.type !== "assert") return;
      const args = (params.args ?? []) as Json[];
      this.consoleErrors.push(`console.${params.type}: ${args.map(describeRemote).join(" ")}`);
    });
    browser.on(session, "Runtime.exceptionThrown", (params) => {
      const details = params.exceptionDetails as Json;
      const exception = details.exception as Json | undefined;
      const where = details.url ? ` (${details.url}:${Number(details.lineNumber) + 1})` : "";
      this.consoleErrors.push(
        `uncaught: ${exception ? describeRemote(exception) : details.text}${where}`,
      );
    });
    browser.on(session, "Log.entryAdded", (params) => {
      const entry = params.entry as Json;
      if (entry.level !== "error") return;
      this.consoleErrors.push(
        `${entry.source}: ${entry.text}${entry.url ? ` (${entry.url})` : ""}`,
      );
    });
    browser.on(session, "Network.loadingFailed", (params) => {
      if (params.canceled === true) return;
      this.consoleErrors.push(`failed to load (${params.type}): ${params.errorText}`);
    });
    await Promise.all([
      this.#send("Page.enable"),
      this.#send("Runtime.enable"),
      this.#send("Log.enable"),
      this.#send("Network.enable"),
    ]);
    if (options.width !== undefined || options.height !== undefined) {
      await this.#send("Emulation.setDeviceMetricsOverride", {
        width: options.width ?? 800,
        height: options.height ?? 600,
        deviceScaleFactor: 1,
        mobile: false,
      });
    }
  }

  goto(url: string, timeoutMs = NAVIGATION_TIMEOUT_MS): Promise<void> {
    return this.#navigate(`goto ${url}`, timeoutMs, async () => {
      const { errorText } = await this.#send("Page.navigate", { url });
      if (errorText) throw new Error(`could not load ${url}: ${errorText}`);
    });
  }

  reload(timeoutMs = NAVIGATION_TIMEOUT_MS): Promise<void> {
    return this.#navigate("reload", timeoutMs, async () => {
      await this.#send("Page.reload", { ignoreCache: true });
    });
  }

  async evaluate<T>(expression: string, timeoutMs = COMMAND_TIMEOUT_MS): Promise<T> {
    const result = await this.#send("Runtime.evaluate", {
      expression,
      awaitPromise: true,
      returnByValue: true,
    }, timeoutMs);
    const details = result.exceptionDetails as Json | undefined;
    if (details) {
      const exception = details.exception as Json | undefined;
      throw new Error(
        `evaluating in the page threw: ${exception ? describeRemote(exception) : details.text}`,
      );
    }
    return (result.result as Json).value as T;
  }

  waitFor<T = unknown>(expression: string, timeoutMs: number): Promise<T> {
    // The loop runs in the page: one round trip, and no poll of the DevTools socket.
    const poll = `(async () => {
      const deadline = Date.now() + ${Number(timeoutMs)};
      for (;;) {
        const value = await (async () => (${expression}))();
        if (value) return value;
        if (Date.now() > deadline) return undefined;
        await new Promise((resolve) => setTimeout(resolve, ${POLL_INTERVAL_MS}));
      }
    })()`;
    return this.evaluate<T | undefined>(poll, timeoutMs + COMMAND_TIMEOUT_MS).then((value) => {
      if (value === undefined) {
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${expression}`);
      }
      return value;
    });
  }

  async screenshot(): Promise<Uint8Array> {
    const { data } = await this.#send("Page.captureScreenshot", { format: "png" });
    const binary = atob(String(data));
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#browser.send("Target.closeTarget", { targetId: this.#targetId }, undefined)
      .catch(() => {});
    this.#browser.forget(this.#sessionId);
  }

  #send(method: string, params: Json = {}, timeoutMs?: number): Promise<Json> {
    return this.#browser.send(method, params, this.#sessionId, timeoutMs);
  }

  /** Runs `start` and resolves on the next `load` event, bounded by `timeoutMs`. */
  async #navigate(what: string, timeoutMs: number, start: () => Promise<void>): Promise<void> {
    let stop = () => {};
    const loaded = new Promise<void>((resolve) => {
      stop = this.#browser.on(this.#sessionId, "Page.loadEventFired", () => resolve());
    });
    try {
      await bounded(Promise.all([loaded, start()]), timeoutMs, what);
    } finally {
      stop();
    }
  }
}

/** A remote object as text: its value when it has one, else its description. */
function describeRemote(object: Json): string {
  if ("value" in object) {
    return typeof object.value === "string" ? object.value : JSON.stringify(object.value);
  }
  return String(object.unserializableValue ?? object.description ?? object.type);
}
