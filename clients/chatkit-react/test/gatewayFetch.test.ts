// createGatewayFetch against a real gateway: sessions, renewal before expiry, one renewal for
// concurrent callers, recovery from revocation and from a rotated signing secret, abort
// signals, and a streamed turn read through the module.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { createGatewayFetch, GatewaySessionError } from "../src/gatewayFetch.js";
import { readSse, recordingFetch, sleep, startGateway, type Gateway } from "./gateway.js";

// Short-lived secrets, no verification leeway (an expired secret is refused at once) and no
// refresh race window (refreshing one secret twice revokes its family at once): any slip of
// the module shows up on the wire as a 401 or a lost session.
const TTL_SECS = 4;
const STRICT = {
  CHATKIT_SESSION_TTL_SECS: String(TTL_SECS),
  GATEWAY__SESSION__LEEWAY_SECS: "0",
  GATEWAY__SESSION__REFRESH_RACE_WINDOW_SECS: "0",
};
// With a 4 s lifetime the module renews after 2.25 s (3 s usable, a quarter of it spare).
const PAST_RENEWAL_MS = 2_600;

const SESSION = "/api/chatkit/session";
const REFRESH = "/api/chatkit/refresh";
const THREADS = "/api/chatkit/threads";

let gw: Gateway;

before(async () => {
  gw = await startGateway({ env: STRICT });
});

after(async () => {
  await gw?.stop();
});

function kit(user: string, extra: { renewBeforeSecs?: number } = {}) {
  const rec = recordingFetch();
  let upstreamCalls = 0;
  const gf = createGatewayFetch({
    gatewayUrl: gw.url + "/",
    getUpstreamToken: () => {
      upstreamCalls += 1;
      return gw.devToken(user);
    },
    fetch: rec.fetch,
    ...extra,
  });
  return { gf, ...rec, upstreamCalls: () => upstreamCalls };
}

async function listThreads(gf: typeof fetch, init: RequestInit = {}): Promise<Response> {
  return gf(`${gw.url}${THREADS}`, init);
}

/** A request straight to the gateway with a given secret, bypassing the module. */
async function rawStatus(secret: string): Promise<{ status: number; code: string | undefined }> {
  const res = await fetch(`${gw.url}${THREADS}`, { headers: { Authorization: `Bearer ${secret}` } });
  const body = (await res.json()) as { error?: { code?: string } };
  return { status: res.status, code: body.error?.code };
}

describe("createGatewayFetch against a real gateway", () => {
  test("opens a session once and sends its client_secret, not the upstream token", async () => {
    const { gf, wire, count, upstreamCalls } = kit("kit-first");
    const res = await listThreads(gf);
    assert.equal(res.status, 200);
    assert.deepEqual(((await res.json()) as { threads: unknown[] }).threads, []);
    const again = await listThreads(gf);
    assert.equal(again.status, 200);

    assert.equal(count(SESSION), 1);
    assert.equal(upstreamCalls(), 1);
    const upstream = wire[0]!.authorization;
    const secret = await gf.clientSecret();
    assert.match(upstream!, /^Bearer ey/);
    assert.deepEqual(
      wire.filter((e) => e.path === THREADS).map((e) => e.authorization),
      [`Bearer ${secret}`, `Bearer ${secret}`],
    );
    assert.notEqual(upstream, `Bearer ${secret}`);
  });

  test("renews through /refresh before expiry, so no request ever carries an expired secret", async () => {
    const { gf, wire, count } = kit("kit-expiry");
    const start = Date.now();
    assert.equal((await listThreads(gf)).status, 200);
    const first = await gf.clientSecret();

    await sleep(PAST_RENEWAL_MS - (Date.now() - start));
    assert.equal((await listThreads(gf)).status, 200);
    assert.equal(count(REFRESH), 1, "one rotation once the secret is due");
    const second = await gf.clientSecret();
    assert.notEqual(second, first);

    // Past the first secret's `exp` (whole seconds, strict comparison): the gateway refuses it…
    await sleep(TTL_SECS * 1000 + 1_100 - (Date.now() - start));
    assert.deepEqual(await rawStatus(first), { status: 401, code: "auth.expired" });
    // …while the module has moved on (and rotates again as the second one comes due).
    assert.equal((await listThreads(gf)).status, 200);
    assert.equal(count(REFRESH), 2);
    assert.equal(count(SESSION), 1, "rotations, never a new session");
    assert.deepEqual(
      wire.filter((e) => e.status === 401),
      [],
      "no 401 on the wire: every renewal happened before expiry",
    );
  });

  test("an early renewal lost on the network keeps the secret in use and is tried again", async () => {
    const rec = recordingFetch();
    let dropNextRefresh = true;
    const flaky: typeof fetch = async (input, init) => {
      if (dropNextRefresh && String(input).endsWith(REFRESH)) {
        dropNextRefresh = false;
        throw new TypeError("fetch failed");
      }
      return rec.fetch(input, init);
    };
    const gf = createGatewayFetch({
      gatewayUrl: gw.url,
      getUpstreamToken: () => gw.devToken("kit-flaky-refresh"),
      fetch: flaky,
    });
    const start = Date.now();
    assert.equal((await listThreads(gf)).status, 200);
    const first = await gf.clientSecret();

    await sleep(PAST_RENEWAL_MS - (Date.now() - start));
    assert.equal((await listThreads(gf)).status, 200, "the still-valid secret carries the request");
    assert.equal(dropNextRefresh, false, "a refresh was attempted");
    assert.equal(rec.wire.at(-1)!.authorization, `Bearer ${first}`);

    assert.equal((await listThreads(gf)).status, 200);
    assert.equal(rec.count(REFRESH), 1, "the next request renews");
    assert.notEqual(await gf.clientSecret(), first);
    assert.equal(rec.count(SESSION), 1);
  });

  test("concurrent callers share one session and one renewal", async () => {
    const { gf, wire, count, upstreamCalls } = kit("kit-concurrent");
    const start = Date.now();
    const firstWave = await Promise.all(Array.from({ length: 8 }, () => listThreads(gf)));
    assert.deepEqual(
      firstWave.map((r) => r.status),
      Array(8).fill(200),
    );
    assert.equal(count(SESSION), 1);
    assert.equal(upstreamCalls(), 1);

    await sleep(PAST_RENEWAL_MS - (Date.now() - start));
    const before = wire.length;
    const secondWave = await Promise.all(Array.from({ length: 8 }, () => listThreads(gf)));
    assert.deepEqual(
      secondWave.map((r) => r.status),
      Array(8).fill(200),
    );
    assert.equal(count(REFRESH), 1, "exactly one /refresh on the wire");
    const renewed = `Bearer ${await gf.clientSecret()}`;
    const sent = wire.slice(before).filter((e) => e.path === THREADS);
    assert.equal(sent.length, 8);
    for (const e of sent) assert.equal(e.authorization, renewed);

    // With no race window a second refresh of the old secret would have revoked the family:
    // the renewed secret still works, and no new session was needed.
    assert.equal((await rawStatus(await gf.clientSecret())).status, 200);
    assert.equal(count(SESSION), 1);
  });

  test("after the session is signed out elsewhere, recovers through a new /session", async () => {
    const { gf, wire, count } = kit("kit-revoked");
    assert.equal((await listThreads(gf)).status, 200);
    const revoked = await gf.clientSecret();

    // Another part of the app signs this session out.
    const del = await fetch(`${gw.url}${SESSION}`, {
      method: "DELETE",
      headers: { Authorization: `Bearer ${revoked}` },
    });
    assert.equal(del.status, 204);
    assert.deepEqual(await rawStatus(revoked), { status: 401, code: "auth.revoked" });

    const results = await Promise.all(Array.from({ length: 5 }, () => listThreads(gf)));
    assert.deepEqual(
      results.map((r) => r.status),
      Array(5).fill(200),
    );
    // Five 401s, then one refresh (refused: the family is revoked), one new session, five resends.
    assert.equal(wire.filter((e) => e.path === THREADS && e.status === 401).length, 5);
    assert.deepEqual(
      wire.filter((e) => e.path === REFRESH).map((e) => e.status),
      [401],
    );
    assert.equal(count(SESSION), 2);
    const fresh = await gf.clientSecret();
    assert.notEqual(fresh, revoked);
    assert.equal((await rawStatus(fresh)).status, 200);
  });

  test("a late 401 for a secret already replaced resends with the new one, without renewing again", async () => {
    const rec = recordingFetch();
    // Holds back the first answer of requests marked `x-hold` until `release()`.
    let release!: () => void;
    let gate: Promise<void> | null = new Promise<void>((resolve) => (release = resolve));
    const holding: typeof fetch = async (input, init) => {
      const res = await rec.fetch(input, init);
      if (gate !== null && new Headers(init?.headers).has("x-hold")) {
        const wait = gate;
        gate = null;
        await wait;
      }
      return res;
    };
    const gf = createGatewayFetch({
      gatewayUrl: gw.url,
      getUpstreamToken: () => gw.devToken("kit-late-401"),
      fetch: holding,
    });
    assert.equal((await listThreads(gf)).status, 200);
    const revoked = await gf.clientSecret();
    await fetch(`${gw.url}${SESSION}`, { method: "DELETE", headers: { Authorization: `Bearer ${revoked}` } });

    const late = listThreads(gf, { headers: { "x-hold": "1" } });
    // The other request meets the 401, renews (refresh refused, new session) and succeeds…
    assert.equal((await listThreads(gf)).status, 200);
    // …and only then does the held one see its 401 for the old secret.
    release();
    assert.equal((await late).status, 200);

    assert.equal(rec.count(REFRESH), 1);
    assert.equal(rec.count(SESSION), 2);
    const fresh = `Bearer ${await gf.clientSecret()}`;
    const resent = rec.wire.filter((e) => e.path === THREADS).at(-1)!;
    assert.equal(resent.authorization, fresh);
    assert.equal(resent.status, 200);
  });

  test("signOut revokes the secret and the next request starts a new session", async () => {
    const { gf, count } = kit("kit-signout");
    assert.equal((await listThreads(gf)).status, 200);
    const old = await gf.clientSecret();
    await gf.signOut();
    assert.deepEqual(await rawStatus(old), { status: 401, code: "auth.revoked" });

    assert.equal((await listThreads(gf)).status, 200);
    assert.equal(count(SESSION, "DELETE"), 1);
    assert.equal(count(REFRESH), 0, "a signed-out secret is not refreshed");
    assert.equal(count(SESSION), 2);
  });

  test("a Request with a body is resent whole after a 401", async () => {
    const { gf, wire } = kit("kit-request-input");
    assert.equal((await listThreads(gf)).status, 200);
    await fetch(`${gw.url}${SESSION}`, {
      method: "DELETE",
      headers: { Authorization: `Bearer ${await gf.clientSecret()}` },
    });
    const request = new Request(`${gw.url}${THREADS}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Request-Id": "kit-request-input" },
      body: JSON.stringify({ title: "sent twice" }),
    });
    const res = await gf(request);
    assert.equal(res.status, 201);
    assert.equal(res.headers.get("x-request-id"), "kit-request-input", "the Request's own headers are kept");
    assert.equal(((await res.json()) as { title: string }).title, "sent twice");
    assert.deepEqual(
      wire.filter((e) => e.path === THREADS && e.method === "POST").map((e) => e.status),
      [401, 201],
    );
  });

  test("a streamed body cannot be replayed: its 401 is returned as it is", async () => {
    const { gf, wire } = kit("kit-stream-body");
    assert.equal((await listThreads(gf)).status, 200);
    await fetch(`${gw.url}${SESSION}`, {
      method: "DELETE",
      headers: { Authorization: `Bearer ${await gf.clientSecret()}` },
    });
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode(JSON.stringify({ title: "never" })));
        c.close();
      },
    });
    const res = await gf(`${gw.url}${THREADS}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body,
      duplex: "half",
    } as RequestInit);
    assert.equal(res.status, 401);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, "auth.revoked");
    assert.equal(wire.filter((e) => e.path === THREADS && e.method === "POST").length, 1);
    assert.equal(wire.filter((e) => e.path === REFRESH).length, 0);
  });

  test("a session that cannot be opened rejects with the gateway's error code", async () => {
    const gf = createGatewayFetch({ gatewayUrl: gw.url, getUpstreamToken: () => "not-a-jwt" });
    await assert.rejects(listThreads(gf), (e: unknown) => {
      assert.ok(e instanceof GatewaySessionError);
      assert.equal(e.status, 401);
      assert.equal(e.code, "auth.invalid_token");
      return true;
    });
  });

  test("passes init.signal through, and an abort stops the wait for a secret", async () => {
    const { gf, wire, count } = kit("kit-signal");
    const controller = new AbortController();
    assert.equal((await listThreads(gf, { signal: controller.signal })).status, 200);
    const target = wire.find((e) => e.path === THREADS)!;
    assert.equal(target.signal, controller.signal);

    const aborted = new AbortController();
    aborted.abort();
    const sentBefore = wire.length;
    await assert.rejects(listThreads(gf, { signal: aborted.signal }), { name: "AbortError" });
    assert.equal(wire.length, sentBefore, "nothing sent for an aborted request");

    // A slow sign-in: one caller gives up, the other still gets the shared session.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slowWire = recordingFetch();
    const slow = createGatewayFetch({
      gatewayUrl: gw.url,
      getUpstreamToken: async () => {
        await gate;
        return gw.devToken("kit-signal-slow");
      },
      fetch: slowWire.fetch,
    });
    const impatient = new AbortController();
    const gaveUp = listThreads(slow, { signal: impatient.signal });
    const patient = listThreads(slow);
    impatient.abort();
    await assert.rejects(gaveUp, { name: "AbortError" });
    release();
    assert.equal((await patient).status, 200);
    assert.equal(slowWire.count(SESSION), 1);
    assert.equal(slowWire.count(THREADS, "GET"), 1, "the abandoned request was never sent");
    assert.equal(count(SESSION), 1);
  });

  test("never sends the client_secret to another origin", async () => {
    const seen: (string | undefined)[] = [];
    const other = createServer((req, res) => {
      seen.push(req.headers.authorization);
      res.end("ok");
    });
    await new Promise<void>((resolve) => other.listen(0, "127.0.0.1", resolve));
    try {
      const { gf, count } = kit("kit-origin");
      const port = (other.address() as AddressInfo).port;
      const res = await gf(`http://127.0.0.1:${port}/upload`, { method: "POST", body: "x" });
      assert.equal(await res.text(), "ok");
      assert.deepEqual(seen, [undefined]);
      assert.equal(count(SESSION), 0);
    } finally {
      await new Promise((resolve) => other.close(resolve));
    }
  });

  test("a streamed turn (REST server-sent events) reads through the module", async () => {
    const { gf } = kit("kit-stream");
    const res = await gf(`${gw.url}/api/chatkit/messages`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify({ thread_id: null, message: "add a task to buy milk" }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
    const events = await readSse(res);
    const names = events.map((e) => e.event);
    assert.equal(names[0], "message.recorded");
    assert.equal(names.at(-1), "done");
    assert.ok(names.includes("tool_call"));
    const done = JSON.parse(events.at(-1)!.data) as { response: string; thread_id: string };
    const deltas = events
      .filter((e) => e.event === "delta")
      .map((e) => (JSON.parse(e.data) as { text: string }).text)
      .join("");
    assert.equal(deltas, done.response);
    assert.match(done.response, /buy milk/);

    // The turn was recorded under the same user.
    const thread = await gf(`${gw.url}${THREADS}/${done.thread_id}`);
    assert.equal(thread.status, 200);
    const body = (await thread.json()) as { messages: { role: string }[] };
    assert.deepEqual(
      body.messages.map((m) => m.role),
      ["user", "assistant"],
    );
  });
});

describe("createGatewayFetch across a gateway restart with a new signing secret", () => {
  test("a 401 from the request renews once (refresh refused, new session) and resends", async () => {
    const secretA = "kit-test-session-secret-A-0123456789abcdef";
    const secretB = "kit-test-session-secret-B-0123456789abcdef";
    const dataDir = await mkdtemp(join(tmpdir(), "chatkit-kit-restart-"));
    let current = await startGateway({ dataDir, env: { CHATKIT_SESSION_SECRET: secretA } });
    try {
      const rec = recordingFetch();
      const gf = createGatewayFetch({
        gatewayUrl: current.url,
        getUpstreamToken: () => current.devToken("kit-rotated"),
        fetch: rec.fetch,
      });
      const created = await gf(`${current.url}${THREADS}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ title: "before the restart" }),
      });
      assert.equal(created.status, 201);
      const first = await gf.clientSecret();

      // Same port and database, a signing secret the old client_secrets do not match.
      const { port, url } = current;
      await current.stop();
      current = await startGateway({ port, dataDir, env: { CHATKIT_SESSION_SECRET: secretB } });
      assert.equal(current.url, url);

      const before = rec.wire.length;
      const res = await gf(`${current.url}${THREADS}`);
      assert.equal(res.status, 200);
      const listed = (await res.json()) as { threads: { title: string }[] };
      assert.deepEqual(
        listed.threads.map((t) => t.title),
        ["before the restart"],
      );
      assert.deepEqual(
        rec.wire.slice(before).map((e) => `${e.method} ${e.path} ${e.status}`),
        [`GET ${THREADS} 401`, `POST ${REFRESH} 401`, `POST ${SESSION} 200`, `GET ${THREADS} 200`],
      );
      assert.notEqual(await gf.clientSecret(), first);
    } finally {
      await current.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
