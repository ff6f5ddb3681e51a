// Swagger UI at /docs, used the way a person uses it: "Authorize" with a client_secret,
// then "Try it out" / "Execute" on the REST routes. The checks read what the page shows in
// its live response section, so a request the browser refuses, the gateway rejects (its
// origin check sees the Origin header browsers add to POSTs) or Swagger UI cannot display
// fails here even when the same call works from curl.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";

import { launchChromium, recordPageErrors, startGateway } from "./lib.mjs";

const STEP_TIMEOUT_MS = 60_000;

describe("Swagger UI Try it out against the live gateway", { timeout: 4 * STEP_TIMEOUT_MS }, () => {
  let gateway;
  let browser;
  let page;
  let errors;
  let clientSecret;
  let authorized = false;
  // Filled by the POST /threads step; the later steps use the thread the page created.
  let threadId;
  const title = `browser ${randomUUID()}`;

  before(async () => {
    gateway = await startGateway();
    const upstream = await gateway.devToken("alice");
    const res = await fetch(`${gateway.url}/api/chatkit/session`, {
      method: "POST",
      headers: { authorization: `Bearer ${upstream}` },
    });
    assert.equal(res.status, 200, `POST /api/chatkit/session from Node: ${await res.clone().text()}`);
    clientSecret = (await res.json()).client_secret;
    assert.match(clientSecret, /\S{20,}/);

    browser = await launchChromium();
    page = await browser.newPage();
    page.setDefaultTimeout(15_000);
    errors = recordPageErrors(page);
    await page.goto(`${gateway.url}/docs`);
  });

  after(async () => {
    await browser?.close();
    await gateway?.stop();
  });

  it("authorizes the ClientSecret scheme with the client_secret", { timeout: STEP_TIMEOUT_MS }, async () => {
    // The routes under test must name the scheme filled in here (and not UpstreamBearer,
    // the one for POST /session), or "Authorize" would send nothing to them.
    const doc = await (await fetch(`${gateway.url}/openapi.json`)).json();
    for (const [path, method] of [
      ["/api/chatkit/threads", "post"],
      ["/api/chatkit/threads", "get"],
      ["/api/chatkit/messages", "post"],
    ]) {
      assert.deepEqual(doc.paths[path][method].security, [{ ClientSecret: [] }], `${method} ${path}`);
    }
    assert.equal(doc.components.securitySchemes.ClientSecret.scheme, "bearer");

    await page.locator("button.authorize").first().click();
    const scheme = page
      .locator(".dialog-ux .auth-container")
      .filter({ has: page.locator("h4 code", { hasText: /^ClientSecret$/ }) });
    await scheme.locator("input").fill(clientSecret);
    await scheme.locator("button.authorize").click();
    // Swagger UI swaps the input for "Authorized" and a Logout button once it took the value.
    await scheme.locator("h6", { hasText: "Authorized" }).waitFor();
    await scheme.locator("button", { hasText: "Logout" }).waitFor();
    await page.locator(".dialog-ux button.close-modal").click();
    await page.locator(".dialog-ux").waitFor({ state: "detached" });
    // The lock icon on the top button shows the page holds a credential.
    await page.locator("button.authorize.locked").first().waitFor();
    authorized = true;
  });

  it("POST /threads: Execute shows 201 and the new thread", { timeout: STEP_TIMEOUT_MS }, async () => {
    const op = await tryItOut("Threads", "createThread");
    await op.locator("textarea.body-param__text").fill(JSON.stringify({ title, metadata: { from: "swagger-ui" } }));
    const { status, text } = await execute(op);
    assert.equal(status, 201, `the page shows ${status}: ${text}`);
    const thread = JSON.parse(text);
    assert.equal(thread.title, title);
    assert.deepEqual(thread.metadata, { from: "swagger-ui" });
    assert.match(thread.id, /^thr_/);
    threadId = thread.id;
  });

  it("GET /threads: Execute shows 200 and lists that thread", { timeout: STEP_TIMEOUT_MS }, async () => {
    const op = await tryItOut("Threads", "listThreads");
    const { status, text } = await execute(op);
    assert.equal(status, 200, `the page shows ${status}: ${text}`);
    const listed = JSON.parse(text).threads;
    assert.ok(threadId, "no thread id: the POST /threads step did not succeed");
    assert.deepEqual(
      listed.filter((t) => t.id === threadId).map((t) => t.title),
      [title],
      `the listed threads: ${text}`,
    );
  });

  it("POST /messages: Execute shows 200 and the assistant's reply", { timeout: STEP_TIMEOUT_MS }, async () => {
    const op = await tryItOut("Messages", "sendMessage");
    // null (a new thread) when the POST /threads step failed, so this step still shows what
    // the gateway answers to this POST; the thread check below then fails as it should.
    const body = { thread_id: threadId ?? null, message: "add a task to buy milk" };
    await op.locator("textarea.body-param__text").fill(JSON.stringify(body));
    const { status, text } = await execute(op);
    assert.equal(status, 200, `the page shows ${status}: ${text}`);
    const turn = JSON.parse(text);
    assert.equal(turn.response, "Added task 1: buy milk.");
    assert.deepEqual(turn.tool_calls.map((c) => c.tool), ["add_task"]);
    assert.ok(threadId, "no thread id: the POST /threads step did not succeed");
    assert.equal(turn.thread_id, threadId);

    // The gateway itself agrees the turn happened, in the thread the page created.
    const res = await fetch(`${gateway.url}/api/chatkit/threads/${threadId}`, {
      headers: { authorization: `Bearer ${clientSecret}` },
    });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).message_count, 2);
  });

  it("logged no script error during the whole run", () => {
    assert.deepEqual(errors, []);
  });

  /** Expands an operation (its DOM id is operations-<tag>-<operationId>) and clicks Try it out. */
  async function tryItOut(tag, operationId) {
    // Fail at once rather than time out behind a dialog that is still open.
    assert.ok(authorized, "the Authorize step failed");
    const op = page.locator(`#operations-${tag}-${operationId}`);
    await op.locator(".opblock-summary-control").click();
    await op.locator("button.try-out__btn", { hasText: "Try it out" }).click();
    await op.locator("button.execute").waitFor();
    return op;
  }

  /** Clicks Execute and reads the status and body from the page's live response row. */
  async function execute(op) {
    await op.locator("button.execute").click();
    const row = op.locator(".live-responses-table tr.response");
    const statusCell = row.locator(".response-col_status");
    await statusCell.waitFor();
    const statusText = (await statusCell.innerText()).trim();
    const status = Number(statusText.match(/^\d{3}/)?.[0]);
    assert.ok(status, `no status code in the live response: ${JSON.stringify(statusText)}`);
    // A request that never got an answer (network, CORS) shows a message and no body.
    const body = row.locator(".response-col_description .highlight-code code");
    const shown = (await body.count()) > 0 ? body : row.locator(".response-col_description");
    const text = (await shown.innerText()).trim();
    return { status, text };
  }
});
