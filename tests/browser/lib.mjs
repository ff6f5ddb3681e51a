// What both browser tests share: a real gateway process, Debian's Chromium driven by
// playwright-core, a static file server, and a record of the page's script errors.

import { execFile, spawn } from "node:child_process";
import { createReadStream } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { extname, join, normalize, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { chromium } from "playwright-core";

export const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));

export const CHROMIUM = "/usr/bin/chromium";

// Without the background-networking flags Chromium keeps dialling Google services, which
// on a machine without Internet only costs time and noise.
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Debian's Chromium, never a browser downloaded by npm; launch() gives it a fresh profile. */
export async function launchChromium() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/**
 * Collects what the page reports as broken: uncaught exceptions and console errors. The
 * returned array is filled as the page runs; assert it is empty at the end.
 */
export function recordPageErrors(page) {
  const errors = [];
  page.on("pageerror", (error) => errors.push(`pageerror: ${error.stack ?? error.message}`));
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const where = message.location()?.url ?? "";
    // Chromium probes /favicon.ico by itself and logs the 404 as a console error; no page
    // script asked for it, so it says nothing about the page.
    if (new URL(where, "http://x/").pathname === "/favicon.ico") return;
    errors.push(`console.error: ${message.text()}${where ? ` (${where})` : ""}`);
  });
  return errors;
}

export function gatewayBin() {
  return resolve(process.env.GATEWAY_BIN ?? join(repoRoot, "target/debug/chatkit-gateway"));
}

/** A port nobody listens on right now (the kernel's pick, never the default 8000). */
export async function freePort() {
  const server = createServer();
  await new Promise((ok, fail) => server.listen(0, "127.0.0.1", ok).once("error", fail));
  const { port } = server.address();
  await new Promise((ok) => server.close(ok));
  return port;
}

const START_TIMEOUT_MS = 30_000;

/**
 * Starts the gateway binary in development mode on its own port and SQLite file, and waits
 * for GET /healthz. The port is a concrete one, not 0: the page's origin must be the
 * address the gateway was configured with, as it is for a person opening /docs.
 */
export async function startGateway() {
  const bin = gatewayBin();
  const dataDir = await mkdtemp(join(tmpdir(), "chatkit-browser-"));
  const port = await freePort();
  // A clean environment, so nothing from the caller's shell (DATABASE_URL, APP_ENV, a
  // config directory with other settings) changes what is under test.
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    APP_ENV: "development",
    APP_CONFIG_DIR: join(dataDir, "no-config"),
    HOST: "127.0.0.1",
    PORT: String(port),
    DATABASE_URL: `sqlite://${join(dataDir, "db.sqlite")}`,
    AGENT_PROVIDER: "local",
    RUST_LOG: "info,sqlx=warn,sea_orm=warn",
  };
  const child = spawn(bin, ["serve"], { env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (chunk) => (output += chunk));
  child.stderr.on("data", (chunk) => (output += chunk));
  const exited = new Promise((ok) => child.once("exit", (code, signal) => ok(code ?? signal)));
  let spawnError;
  child.once("error", (e) => (spawnError = e));

  const url = `http://127.0.0.1:${port}`;
  const fail = async (why) => {
    child.kill("SIGKILL");
    await rm(dataDir, { recursive: true, force: true });
    throw new Error(`gateway ${bin}: ${why}\n${output}`);
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (spawnError) await fail(`could not start: ${spawnError.message}`);
    if (child.exitCode !== null || child.signalCode !== null) {
      await fail(`exited with ${await exited} before GET /healthz answered`);
    }
    const healthy = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    if (healthy) break;
    if (Date.now() > deadline) await fail(`GET ${url}/healthz not ok after ${START_TIMEOUT_MS} ms`);
    await new Promise((ok) => setTimeout(ok, 100));
  }

  return {
    url,
    port,
    log: () => output,
    /** An upstream (Better Auth-style) JWT signed with the development secret. */
    async devToken(user) {
      const { stdout } = await promisify(execFile)(bin, ["dev-token", "--user", user], { env });
      return stdout.trim();
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

const CONTENT_TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".json": "application/json",
};

/** Serves the files under `root` on 127.0.0.1, index.html for a directory, 404 otherwise. */
export async function serveStatic(root) {
  const base = resolve(root);
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    let file = normalize(join(base, path));
    if (file !== base && !file.startsWith(base + sep)) {
      res.writeHead(403).end();
      return;
    }
    if ((await stat(file).catch(() => null))?.isDirectory()) file = join(file, "index.html");
    createReadStream(file)
      .once("error", () => res.writeHead(404).end())
      .once("open", () => res.writeHead(200, { "content-type": CONTENT_TYPES[extname(file)] ?? "application/octet-stream" }))
      .pipe(res);
  });
  await new Promise((ok, fail) => server.listen(0, "127.0.0.1", ok).once("error", fail));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((ok) => server.close(ok)),
  };
}
