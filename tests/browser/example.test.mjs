// The built ChatKit React example (clients/chatkit-react/example/dist) in Chromium, with
// OpenAI's CDN out of reach as it is offline, behind a blocker or a strict CSP: the page
// must explain itself instead of staying blank. The CDN is never contacted: every request
// to it is aborted or answered here.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";

import { launchChromium, recordPageErrors, repoRoot, serveStatic } from "./lib.mjs";

const CDN_SCRIPT = "https://cdn.platform.openai.com/deployments/chatkit/chatkit.js";
// The gateway address the example is built with when VITE_GATEWAY_URL is unset.
const DEFAULT_GATEWAY = "http://127.0.0.1:8000";
const dist = resolve(process.env.EXAMPLE_DIST ?? join(repoRoot, "clients/chatkit-react/example/dist"));

describe("the ChatKit React example without OpenAI's CDN", { timeout: 120_000 }, () => {
  let site;
  let browser;

  before(async () => {
    assert.ok(
      existsSync(join(dist, "index.html")),
      `no built example at ${dist}: run \`npx vite build example\` in clients/chatkit-react (run.sh does)`,
    );
    site = await serveStatic(dist);
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await site?.close();
  });

  /** A page whose requests to OpenAI's CDN go to `cdn` (and are recorded) instead. */
  async function openPage(cdn) {
    const page = await browser.newPage();
    page.setDefaultTimeout(20_000);
    const cdnRequests = [];
    await page.route("https://cdn.platform.openai.com/**", (route) => {
      cdnRequests.push(route.request().url());
      return cdn(route);
    });
    return { page, cdnRequests };
  }

  it("offline: says the CDN script did not load, and that nobody is signed in", async () => {
    const { page, cdnRequests } = await openPage((route) => route.abort("internetdisconnected"));
    try {
      await page.goto(site.url);
      const problem = page.locator("#chatkit-script-problem");
      await problem.waitFor();
      const text = await problem.innerText();
      assert.ok(text.includes(`${CDN_SCRIPT}: its request failed`), `explains the failed script:\n${text}`);
      for (const hint of [
        "Content-Security-Policy",
        "script-src must allow https://cdn.platform.openai.com",
        `${DEFAULT_GATEWAY}/healthz`,
        `${DEFAULT_GATEWAY}/docs`,
        "clients/chatkit-react/test.sh",
      ]) {
        assert.ok(text.includes(hint), `names ${JSON.stringify(hint)}:\n${text}`);
      }
      // The links lead where the text says.
      assert.equal(await problem.getByRole("link", { name: `${DEFAULT_GATEWAY}/docs` }).getAttribute("href"), `${DEFAULT_GATEWAY}/docs`);
      assert.deepEqual(cdnRequests, [CDN_SCRIPT]);

      // Built without VITE_DEV_UPSTREAM_TOKEN, and this host has no Better Auth.
      const signIn = page.locator("#sign-in-problem");
      await signIn.waitFor();
      const signInText = await signIn.innerText();
      for (const hint of ["VITE_DEV_UPSTREAM_TOKEN", "chatkit-gateway dev-token --user", "VITE_BETTER_AUTH_URL"]) {
        assert.ok(signInText.includes(hint), `names ${JSON.stringify(hint)}:\n${signInText}`);
      }

      // The task panel beside the widget is there, empty: no effect has arrived.
      const panel = page.locator('#task-panel[data-task-count="0"]');
      await panel.waitFor();
      assert.ok((await panel.innerText()).includes("No task has changed yet"), await panel.innerText());

      const root = page.locator("#root");
      assert.ok(await root.isVisible());
      assert.ok((await root.innerText()).trim().length > 200, "the page shows text, not a blank page");
    } finally {
      await page.close();
    }
  });

  it("a script that defines no element is explained after the timeout", async () => {
    // What a CDN answer that is not the widget (a captive portal, an empty stub) looks like.
    const { page } = await openPage((route) =>
      route.fulfill({ status: 200, contentType: "text/javascript", body: "/* not ChatKit */" }),
    );
    try {
      await page.goto(site.url);
      // Still waiting at first: the explanation is not shown before the script had its chance.
      await page.locator('main[data-chatkit-script="loading"]').waitFor();
      assert.equal(await page.locator("#chatkit-script-problem").count(), 0);
      const problem = page.locator("#chatkit-script-problem");
      await problem.waitFor();
      const text = await problem.innerText();
      assert.match(text, /no <openai-chatkit> element was defined after \d+ s/);
      assert.ok(text.includes(CDN_SCRIPT), text);
    } finally {
      await page.close();
    }
  });

  // A stand-in for the real element: enough for @openai/chatkit-react to hand it options.
  const STUB_WIDGET = `customElements.define("openai-chatkit", class extends HTMLElement {
    setOptions(options) { window.chatkitOptions = options; }
  });`;

  /**
   * The example with the stand-in widget and a signed-in user: Better Auth on the page's own
   * origin (VITE_BETTER_AUTH_URL unset) with a session, and the gateway's /session answered
   * here (what is under test is the page, not the gateway). Returns the Authorization
   * headers /session received.
   */
  async function openSignedIn(page, upstream) {
    await page.route(`${site.url}/api/auth/token`, (route) => route.fulfill({ json: { token: upstream } }));
    const sessionAuth = [];
    await page.route(`${DEFAULT_GATEWAY}/api/chatkit/session`, (route) => {
      const cors = {
        "access-control-allow-origin": site.url,
        "access-control-allow-headers": "authorization, content-type",
        "access-control-allow-methods": "POST, DELETE",
      };
      if (route.request().method() === "OPTIONS") return route.fulfill({ status: 204, headers: cors });
      sessionAuth.push(route.request().headers().authorization);
      return route.fulfill({
        headers: cors,
        json: { client_secret: "cs", expires_at: new Date(Date.now() + 1_800_000).toISOString(), expires_in: 1800, user_id: "alice" },
      });
    });
    await page.goto(site.url);
    await page.locator('main[data-chatkit-script="ready"][data-sign-in="ok"]').waitFor();
    return sessionAuth;
  }

  it("with the widget defined and a signed-in user it explains nothing", async () => {
    const { page } = await openPage((route) => route.fulfill({ status: 200, contentType: "text/javascript", body: STUB_WIDGET }));
    try {
      const upstream = "upstream-jwt-from-better-auth";
      const sessionAuth = await openSignedIn(page, upstream);
      assert.deepEqual(sessionAuth, [`Bearer ${upstream}`]);
      assert.equal(await page.locator("[role=alert]").count(), 0);
      // The element got its options: the gateway's ChatKit endpoint.
      await page.waitForFunction(() => window.chatkitOptions !== undefined);
      assert.equal(await page.evaluate(() => window.chatkitOptions.api.url), `${DEFAULT_GATEWAY}/chatkit`);
    } finally {
      await page.close();
    }
  });

  it("the task panel follows tasks.changed effects and answers highlight_tasks", async () => {
    // The real widget raises an effect as a `chatkit.effect` event on its element and calls
    // the `onClientTool` option; the stand-in cannot stream, so this test does both itself.
    const { page } = await openPage((route) => route.fulfill({ status: 200, contentType: "text/javascript", body: STUB_WIDGET }));
    const errors = recordPageErrors(page);
    try {
      await openSignedIn(page, "upstream-jwt");
      await page.waitForFunction(() => window.chatkitOptions !== undefined);
      const effect = (name, data) =>
        page.evaluate(
          ([name, data]) =>
            document.querySelector("openai-chatkit").dispatchEvent(new CustomEvent("chatkit.effect", { detail: { name, data } })),
          [name, data],
        );
      const task = (id) => page.locator(`#task-panel li[data-task-id="${id}"]`);

      await effect("tasks.changed", { task_ids: [3], change: "added" });
      await effect("tasks.changed", { task_ids: [1, 3], change: "completed" });
      await effect("some.other.effect", { task_ids: [9], change: "added" });
      await page.locator('#task-panel[data-task-count="2"]').waitFor();
      assert.equal(await task(3).getAttribute("data-state"), "done");
      assert.equal(await task(3).getAttribute("data-mark"), "changed");
      assert.equal(await task(9).count(), 0, "other effects are not task changes");
      assert.deepEqual(await page.locator("#task-panel-log li").allInnerTexts(), ["Tasks 1, 3 completed", "Task 3 added"]);
      // The mark is brief.
      await page.locator('#task-panel li[data-task-id="3"][data-mark="none"]').waitFor();

      const result = await page.evaluate(() =>
        window.chatkitOptions.onClientTool({ name: "highlight_tasks", params: { task_ids: [3, 4] } }),
      );
      assert.deepEqual(result, { highlighted: 2 });
      await page.locator('#task-panel[data-task-count="3"]').waitFor();
      assert.equal(await task(3).getAttribute("data-mark"), "highlighted");
      assert.equal(await task(4).getAttribute("data-mark"), "highlighted");
      assert.equal(await task(4).getAttribute("data-state"), "unknown");
      assert.equal(await task(1).getAttribute("data-mark"), "none");
      assert.match(await task(4).innerText(), /Task 4[\s\S]*highlighted/);

      const unknown = await page.evaluate(() => window.chatkitOptions.onClientTool({ name: "nope", params: {} }));
      assert.match(unknown.error, /no client tool named "nope"/);
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });
});
