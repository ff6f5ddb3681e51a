// Starts a real chatkit-gateway process for the tests: a throw-away SQLite database, the
// development secrets, a port the kernel picks (read back from the JSON start-up log).

import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";

export interface Gateway {
  url: string;
  port: number;
  /** Output so far, for failure messages. */
  log(): string;
  /** A Better Auth-style upstream token for `user` (`chatkit-gateway dev-token`). */
  devToken(user: string): Promise<string>;
  /** SIGTERM, then waits for the exit. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Extra environment (e.g. `CHATKIT_SESSION_TTL_SECS`). */
  env?: Record<string, string>;
  /** Reuse a database directory (a restart); default: a new one, removed by `stop`. */
  dataDir?: string;
  /** Default 0: any free port. */
  port?: number;
}

export function gatewayBin(): string {
  const bin = process.env.GATEWAY_BIN;
  if (!bin) throw new Error("GATEWAY_BIN is not set: the path of a built chatkit-gateway binary");
  return bin;
}

const START_TIMEOUT_MS = 20_000;

export async function startGateway(options: StartOptions = {}): Promise<Gateway & { dataDir: string }> {
  const bin = gatewayBin();
  const ownDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), "chatkit-kit-")));
  // A clean environment: nothing from the caller's shell (DATABASE_URL, APP_ENV…) leaks in.
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    APP_ENV: "development",
    HOST: "127.0.0.1",
    PORT: String(options.port ?? 0),
    DATABASE_URL: `sqlite://${join(dataDir, "gw.db")}`,
    AGENT_PROVIDER: "local",
    RUST_LOG: "info,sqlx=warn,sea_orm=warn",
    GATEWAY__LOG__FORMAT: "json",
    ...options.env,
  };
  const child = spawn(bin, ["serve"], { env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stderr!.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });

  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start in time:\n${output}`)), START_TIMEOUT_MS);
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      output += line + "\n";
      try {
        const event = JSON.parse(line) as { message?: string; port?: number };
        if (event.message === "chatkit-gateway listening" && typeof event.port === "number") {
          clearTimeout(timer);
          resolve(event.port);
        }
      } catch {
        // Not a log line of ours.
      }
    });
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited with ${code} before listening:\n${output}`));
    });
  });

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    dataDir,
    log: () => output,
    async devToken(user: string): Promise<string> {
      const { stdout } = await promisify(execFile)(bin, ["dev-token", "--user", user], { env });
      return stdout.trim();
    },
    async stop(): Promise<void> {
      await terminate(child, exited);
      if (ownDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

async function terminate(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

/** Every request a `fetch` made: the wire as the module sees it. */
export interface WireEntry {
  method: string;
  path: string;
  authorization: string | null;
  status: number;
  signal: AbortSignal | null | undefined;
}

/** A `fetch` that records each request and its status, for counting renewals on the wire. */
export function recordingFetch(): {
  fetch: typeof fetch;
  wire: WireEntry[];
  /** Requests sent to `path` with `method` (default POST). */
  count(path: string, method?: string): number;
} {
  const wire: WireEntry[] = [];
  const recording: typeof fetch = async (input, init) => {
    // Read without building a Request: that would take a streamed body away from the send.
    const own = input instanceof Request ? input : undefined;
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const entry: WireEntry = {
      method: init?.method ?? own?.method ?? "GET",
      path: new URL(url).pathname,
      authorization: new Headers(init?.headers ?? own?.headers).get("authorization"),
      status: 0,
      signal: init?.signal,
    };
    wire.push(entry);
    const res = await fetch(input, init);
    entry.status = res.status;
    return res;
  };
  return {
    fetch: recording,
    wire,
    count: (path, method = "POST") => wire.filter((e) => e.path === path && e.method === method).length,
  };
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Parses a `text/event-stream` body into its events (`event:` name, when present, and `data:`). */
export async function readSse(res: Response): Promise<{ event: string | undefined; data: string }[]> {
  const text = await res.text();
  const events: { event: string | undefined; data: string }[] = [];
  for (const block of text.split("\n\n")) {
    let event: string | undefined;
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (data.length > 0) events.push({ event, data: data.join("\n") });
  }
  return events;
}
