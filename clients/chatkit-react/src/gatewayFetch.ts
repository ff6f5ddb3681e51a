/**
 * `createGatewayFetch`: a `fetch` for ChatKit's custom-backend mode (`api.fetch`) that
 * authenticates every request to chatkit-gateway with a client_secret it obtains and renews
 * itself.
 *
 * - The first request trades the user's Better Auth JWT (`getUpstreamToken`) for a
 *   client_secret at `POST /api/chatkit/session`.
 * - Shortly before that secret expires, the next request first rotates it at
 *   `POST /api/chatkit/refresh`. The gateway lets each client_secret refresh once: a second
 *   refresh of the same token more than 10 s later is taken for a stolen token and signs the
 *   whole session out. So one renewal runs at a time and every concurrent caller awaits it.
 * - A refresh refused with 401 (revoked, expired past the grace period, session too old,
 *   signing secret rotated) falls back to a new session from a fresh upstream token.
 * - A request answered 401 renews once and is sent again (unless its body is a stream, which
 *   cannot be replayed: then the 401 is returned as it is).
 *
 * No dependencies; works in browsers and Node >= 20 (global `fetch`, `Headers`, `Request`).
 */

/** The answer of `/session` and `/refresh`. */
export interface SessionResponse {
  client_secret: string;
  user_id: string;
  /** RFC 3339, by the gateway's clock. */
  expires_at: string;
  /** Seconds. */
  expires_in: number;
}

export interface GatewayFetchOptions {
  /** The gateway's base URL, e.g. `http://127.0.0.1:8000` (or `""` when it shares the page's origin). */
  gatewayUrl: string;
  /** The Better Auth JWT of the signed-in user (jwt plugin: `GET /api/auth/token`). */
  getUpstreamToken: () => string | Promise<string>;
  /**
   * Renew this long before the client_secret expires (default 60 s; at most a quarter of
   * its lifetime, so very short lifetimes still get some use out of each secret).
   */
  renewBeforeSecs?: number;
  /** The transport underneath (default: the global `fetch`). */
  fetch?: typeof fetch;
}

/** `/session` or `/refresh` refused: `code` is the gateway's stable error code. */
export class GatewaySessionError extends Error {
  readonly status: number;
  readonly code: string | undefined;

  constructor(message: string, status: number, code: string | undefined) {
    super(message);
    this.name = "GatewaySessionError";
    this.status = status;
    this.code = code;
  }
}

export interface GatewayFetch {
  (input: FetchInput, init?: RequestInit): Promise<Response>;
  /** The client_secret to use now (renewed first if due), for other calls to the gateway. */
  clientSecret(signal?: AbortSignal): Promise<string>;
  /**
   * Signs this session out (`DELETE /api/chatkit/session`, every session of the user with
   * `all`) and forgets the secret; the next request starts a new session.
   */
  signOut(options?: { all?: boolean }): Promise<void>;
}

/** What `fetch` takes first (a URL string, `URL` or `Request`); `RequestInfo` is a DOM-only name. */
export type FetchInput = Parameters<typeof fetch>[0];

const SESSION_PATH = "/api/chatkit/session";
const REFRESH_PATH = "/api/chatkit/refresh";

export function createGatewayFetch(options: GatewayFetchOptions): GatewayFetch {
  const base = options.gatewayUrl.replace(/\/+$/, "");
  const transport = options.fetch ?? globalThis.fetch.bind(globalThis);
  const renewBeforeMs = Math.max(0, options.renewBeforeSecs ?? 60) * 1000;
  const gatewayOrigin = originOf(base === "" ? "/" : base);

  let secret: string | null = null;
  let renewAt = 0;
  let expiresAt = 0;
  let renewal: Promise<string> | null = null;

  async function install(res: Response, sentAt: number): Promise<string> {
    const body = (await res.json()) as Partial<SessionResponse>;
    if (typeof body.client_secret !== "string" || typeof body.expires_in !== "number") {
      throw new GatewaySessionError("the gateway answered without a client_secret", res.status, undefined);
    }
    // `exp` is whole seconds after a truncated `iat`, so up to a second of `expires_in` is
    // already gone; counting from when the request left avoids trusting the two clocks agree.
    const lifetimeMs = Math.max(0, body.expires_in * 1000 - 1000);
    secret = body.client_secret;
    expiresAt = sentAt + lifetimeMs;
    renewAt = expiresAt - Math.min(renewBeforeMs, lifetimeMs / 4);
    return body.client_secret;
  }

  async function newSession(): Promise<string> {
    const upstream = await options.getUpstreamToken();
    const sentAt = Date.now();
    const res = await transport(base + SESSION_PATH, {
      method: "POST",
      headers: { Authorization: `Bearer ${upstream}` },
    });
    if (!res.ok) throw await refused("session", res);
    return install(res, sentAt);
  }

  async function rotate(current: string | null): Promise<string> {
    if (current !== null) {
      const sentAt = Date.now();
      const res = await transport(base + REFRESH_PATH, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: current }),
      });
      // A transport failure leaves `secret` in place: the gateway may not have seen the
      // refresh, and if it did, a repeat within its race window is still accepted (later,
      // it answers 401 and we fall back to a new session below).
      if (res.ok) return install(res, sentAt);
      if (res.status !== 401) throw await refused("refresh", res);
      await discard(res);
      // Refused for good (revoked, too old, reused, unknown key): only a new session helps,
      // and retrying the same token could only make things worse.
      secret = null;
    }
    return newSession();
  }

  /**
   * Renews unless someone already replaced `stale` (the secret a caller saw fail or expire),
   * so a burst of 401s for one secret costs one renewal, and a secret is never refreshed twice.
   */
  function renew(stale: string | null): Promise<string> {
    if (renewal !== null) return renewal;
    if (secret !== null && secret !== stale && Date.now() < renewAt) return Promise.resolve(secret);
    const pending = rotate(secret).finally(() => {
      if (renewal === pending) renewal = null;
    });
    renewal = pending;
    return pending;
  }

  function current(): Promise<string> {
    const now = Date.now();
    if (renewal === null && secret !== null && now < renewAt) return Promise.resolve(secret);
    const pending = renewal ?? renew(secret);
    // Renewing early leaves a margin: if the renewal fails without the gateway refusing the
    // secret (network, 5xx), the secret is still good until it expires.
    const usable = secret !== null && now < expiresAt ? secret : null;
    if (usable === null) return pending;
    return pending.catch((error: unknown) => {
      if (secret === usable) return usable;
      throw error;
    });
  }

  async function send(input: FetchInput, init: RequestInit, token: string): Promise<Response> {
    const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
    headers.set("Authorization", `Bearer ${token}`);
    return transport(input, { ...init, headers });
  }

  const gatewayFetch = async (input: FetchInput, init: RequestInit = {}): Promise<Response> => {
    // The client_secret is for the gateway only: never hand it to another origin (e.g. a
    // direct-upload URL that ChatKit also fetches through `api.fetch`).
    if (originOf(urlOf(input)) !== gatewayOrigin) return transport(input, init);
    const signal = init.signal ?? (input instanceof Request ? input.signal : undefined) ?? undefined;
    const replayable = !(typeof ReadableStream !== "undefined" && init.body instanceof ReadableStream);
    // A Request's own body is consumed by the first send; keep a copy for the resend.
    const spare = replayable && input instanceof Request ? input.clone() : input;

    const first = await abortable(current(), signal);
    const res = await send(input, init, first);
    if (res.status !== 401 || !replayable) return res;
    await discard(res);
    const next = await abortable(renew(first), signal);
    return send(spare, init, next);
  };

  return Object.assign(gatewayFetch, {
    clientSecret: (signal?: AbortSignal) => abortable(current(), signal),
    async signOut(opts: { all?: boolean } = {}): Promise<void> {
      // Let a renewal in flight land first, so the secret signed out is the newest one.
      const token = await (renewal ?? Promise.resolve(secret)).catch(() => secret);
      secret = null;
      renewAt = 0;
      expiresAt = 0;
      if (token === null) return;
      const res = await transport(base + SESSION_PATH + (opts.all ? "?all=true" : ""), {
        method: "DELETE",
        headers: { Authorization: `Bearer ${token}` },
      });
      // 401: that secret no longer works anyway (expired, already signed out).
      if (!res.ok && res.status !== 401) throw await refused("sign-out", res);
      await discard(res);
    },
  });
}

function urlOf(input: FetchInput): string {
  if (typeof input === "string") return input;
  if (input instanceof URL) return input.href;
  return input.url;
}

/** The origin a URL resolves to from this page (`null` when it cannot be resolved). */
function originOf(url: string): string | null {
  const page = (globalThis as { location?: { href?: string } }).location?.href;
  try {
    return new URL(url, page).origin;
  } catch {
    return null;
  }
}

async function refused(what: string, res: Response): Promise<GatewaySessionError> {
  let code: string | undefined;
  let message = `${what} failed: HTTP ${res.status}`;
  try {
    const body = (await res.json()) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body.error?.code === "string") code = body.error.code;
    if (typeof body.error?.message === "string") message = `${what} failed: ${body.error.message}`;
  } catch {
    // Not the gateway's envelope (a proxy's error page): the status says enough.
  }
  return new GatewaySessionError(message, res.status, code);
}

/** Frees the connection of an answer we will not read. */
async function discard(res: Response): Promise<void> {
  try {
    await res.body?.cancel();
  } catch {
    // Already closed.
  }
}

/** Waits for `promise` unless `signal` aborts first; the shared promise itself runs on. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
