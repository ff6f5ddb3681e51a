// Test fixture: runs the REAL `better-auth` package (JWT + bearer plugins,
// in-memory adapter) so Rust integration tests can obtain genuine Better Auth
// JWTs and a live JWKS endpoint.
//
//   ALG=EdDSA|ES256|ES512|RS256|PS256 (default EdDSA)  PORT=<n> (default 0)
//   EXIT_ON_STDIN_CLOSE=0 to keep running when stdin is closed (default 1)
//   node tests/better-auth/server.mjs
//
// Prints exactly ONE JSON line on stdout once ready:
//   {"base_url":..., "jwks_url":..., "token":..., "user_id":..., "alg":...}
// Everything else goes to stderr. Exits on SIGTERM/SIGINT or when stdin closes.

import http from "node:http";
import { Readable } from "node:stream";

// Keep stdout reserved for the single ready line: anything that logs through
// console.log/info/debug (including libraries) goes to stderr instead.
const toStderr = (...args) => console.error(...args);
console.log = toStderr;
console.info = toStderr;
console.debug = toStderr;

const { betterAuth } = await import("better-auth");
const { memoryAdapter } = await import("better-auth/adapters/memory");
const { jwt, bearer } = await import("better-auth/plugins");

const KEY_PAIR_CONFIGS = {
  EdDSA: { alg: "EdDSA", crv: "Ed25519" },
  ES256: { alg: "ES256" },
  ES512: { alg: "ES512" },
  RS256: { alg: "RS256", modulusLength: 2048 },
  PS256: { alg: "PS256", modulusLength: 2048 },
};

const ALG = process.env.ALG || "EdDSA";
const keyPairConfig = KEY_PAIR_CONFIGS[ALG];
if (!keyPairConfig) {
  console.error(
    `[better-auth-fixture] unsupported ALG=${ALG}; expected one of ${Object.keys(KEY_PAIR_CONFIGS).join(", ")}`,
  );
  process.exit(2);
}
const PORT = Number.parseInt(process.env.PORT || "0", 10);
const HOST = "127.0.0.1";

const TEST_USER = {
  email: "fixture-user@example.com",
  password: "fixture-password-123456",
  name: "Fixture User",
};

let server;
let shuttingDown = false;
function shutdown(reason, code = 0) {
  if (shuttingDown) return;
  shuttingDown = true;
  console.error(`[better-auth-fixture] shutting down (${reason})`);
  if (server) {
    server.close(() => process.exit(code));
    server.closeAllConnections?.();
    // Never hang on shutdown.
    setTimeout(() => process.exit(code), 1000).unref();
  } else {
    process.exit(code);
  }
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
// Exit when the parent closes our stdin (or dies), so no orphan keeps running.
// NB: the parent must give us a pipe it keeps open (Rust: Stdio::piped()); with
// stdin = /dev/null we would exit immediately unless EXIT_ON_STDIN_CLOSE=0.
if (process.env.EXIT_ON_STDIN_CLOSE !== "0") {
  process.stdin.on("end", () => shutdown("stdin end"));
  process.stdin.on("close", () => shutdown("stdin closed"));
  process.stdin.on("error", () => shutdown("stdin error"));
  process.stdin.resume();
}

// `auth` and the request handler are created after we know the port, because
// baseURL (which is also the default iss/aud) must contain it.
let handleRequest = async (_req, res) => {
  res.writeHead(503, { "content-type": "text/plain" });
  res.end("starting\n");
};

server = http.createServer((req, res) => {
  handleRequest(req, res).catch((err) => {
    console.error("[better-auth-fixture] request failed:", err);
    if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
    res.end("internal error\n");
  });
});

await new Promise((resolve, reject) => {
  server.once("error", reject);
  server.listen(PORT, HOST, resolve);
});
const port = server.address().port;
const baseURL = `http://${HOST}:${port}`;

const db = { user: [], session: [], account: [], verification: [], jwks: [] };

const auth = betterAuth({
  baseURL,
  secret: "better-auth-test-fixture-secret-0123456789abcdef",
  database: memoryAdapter(db),
  emailAndPassword: { enabled: true },
  rateLimit: { enabled: false },
  telemetry: { enabled: false },
  logger: {
    level: "warn",
    log: (level, message, ...args) =>
      console.error(`[better-auth ${level}] ${message}`, ...args),
  },
  plugins: [jwt({ jwks: { keyPairConfig } }), bearer()],
});

// Node IncomingMessage -> WHATWG Request
async function toWebRequest(req) {
  const headers = new Headers();
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
  }
  const method = req.method || "GET";
  let body;
  if (method !== "GET" && method !== "HEAD") {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    if (chunks.length) body = Buffer.concat(chunks);
  }
  return new Request(new URL(req.url || "/", baseURL), { method, headers, body });
}

// WHATWG Response -> Node ServerResponse
async function writeWebResponse(res, response) {
  const headers = {};
  response.headers.forEach((value, key) => {
    if (key !== "set-cookie") headers[key] = value;
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length) headers["set-cookie"] = cookies;
  res.writeHead(response.status, response.statusText || undefined, headers);
  if (response.body) {
    await new Promise((resolve, reject) => {
      Readable.fromWeb(response.body).on("error", reject).pipe(res).on("finish", resolve).on("error", reject);
    });
  } else {
    res.end();
  }
}

let sessionToken; // bearer session token of the fixture user
let userId;

async function mintJwt() {
  const r = await fetch(`${baseURL}/api/auth/token`, {
    headers: { authorization: `Bearer ${sessionToken}` },
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`GET /api/auth/token -> ${r.status}: ${text}`);
  const { token } = JSON.parse(text);
  if (!token) throw new Error(`GET /api/auth/token returned no token: ${text}`);
  return token;
}

handleRequest = async (req, res) => {
  const path = (req.url || "/").split("?")[0];
  if (path === "/test/token" && req.method === "POST") {
    req.resume();
    const token = await mintJwt();
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ token }));
    return;
  }
  const response = await auth.handler(await toWebRequest(req));
  await writeWebResponse(res, response);
};

try {
  const r = await fetch(`${baseURL}/api/auth/sign-up/email`, {
    method: "POST",
    headers: { "content-type": "application/json", origin: baseURL },
    body: JSON.stringify(TEST_USER),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`POST /api/auth/sign-up/email -> ${r.status}: ${text}`);
  const body = JSON.parse(text);
  sessionToken = r.headers.get("set-auth-token") || body.token;
  userId = body.user?.id;
  if (!sessionToken) throw new Error(`sign-up returned no session token: ${text}`);
  if (!userId) throw new Error(`sign-up returned no user id: ${text}`);

  const token = await mintJwt();
  process.stdout.write(
    JSON.stringify({
      base_url: baseURL,
      jwks_url: `${baseURL}/api/auth/jwks`,
      token,
      user_id: userId,
      alg: ALG,
    }) + "\n",
  );
  console.error(`[better-auth-fixture] ready on ${baseURL} (alg=${ALG})`);
} catch (err) {
  console.error("[better-auth-fixture] startup failed:", err);
  shutdown("startup failure", 1);
}
