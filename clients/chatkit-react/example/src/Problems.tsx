// What the page says instead of staying blank: the widget's script did not load, or nobody
// can be signed in. Each names the setting to change and how to check the gateway alone.

import type { ReactNode } from "react";

import { CHATKIT_SCRIPT_URL, type ChatKitScriptState } from "./chatkitScript";

export type SignInState =
  | { status: "checking" }
  | { status: "ok" }
  /** No VITE_DEV_UPSTREAM_TOKEN and no Better Auth session. */
  | { status: "not-signed-in"; detail: string }
  /** The gateway answered POST /api/chatkit/session with an error. */
  | { status: "refused"; httpStatus: number; code: string | undefined; detail: string }
  /** The gateway could not be reached (down, wrong URL, or CORS refused this origin). */
  | { status: "unreachable"; detail: string };

const box = {
  maxWidth: 640,
  border: "1px solid #d33",
  borderRadius: 8,
  padding: "12px 16px",
  background: "#fff6f6",
  color: "#222",
  fontFamily: "system-ui, sans-serif",
  lineHeight: 1.45,
} as const;

function Problem({ id, title, children }: { id: string; title: string; children: ReactNode }) {
  return (
    <section id={id} role="alert" style={box}>
      <h2 style={{ fontSize: 18, margin: "0 0 8px" }}>{title}</h2>
      {children}
    </section>
  );
}

/** How to see the gateway working without the widget. */
function CheckTheGateway({ gatewayUrl }: { gatewayUrl: string }) {
  return (
    <p>
      The gateway does not need the widget. Check it with <a href={`${gatewayUrl}/healthz`}>{gatewayUrl}/healthz</a>,
      try its REST API in Swagger UI at <a href={`${gatewayUrl}/docs`}>{gatewayUrl}/docs</a>, or run the kit's Node
      tests: <code>clients/chatkit-react/test.sh</code>.
    </p>
  );
}

export function ChatKitScriptProblem({
  state,
  gatewayUrl,
}: {
  state: Extract<ChatKitScriptState, { status: "failed" }>;
  gatewayUrl: string;
}) {
  const what =
    state.reason === "error"
      ? "its request failed"
      : `no <openai-chatkit> element was defined after ${(state.afterMs / 1000).toFixed(0)} s`;
  return (
    <Problem id="chatkit-script-problem" title="The ChatKit widget did not load">
      <p>
        The ChatKit script from OpenAI's CDN did not load (<code>{CHATKIT_SCRIPT_URL}</code>: {what}). It defines the{" "}
        <code>&lt;openai-chatkit&gt;</code> element, so without it there is no chat here.
      </p>
      <p>
        Check that this browser can reach <code>cdn.platform.openai.com</code> (network, proxy, content blocker), and
        the page's Content-Security-Policy: its <code>script-src</code> must allow{" "}
        <code>https://cdn.platform.openai.com</code>.
      </p>
      <CheckTheGateway gatewayUrl={gatewayUrl} />
    </Problem>
  );
}

export function SignInProblem({
  state,
  gatewayUrl,
  betterAuthUrl,
}: {
  state: SignInState;
  gatewayUrl: string;
  betterAuthUrl: string;
}) {
  switch (state.status) {
    case "checking":
    case "ok":
      return null;
    case "not-signed-in":
      return (
        <Problem id="sign-in-problem" title="This page cannot sign in">
          <p>
            <code>VITE_DEV_UPSTREAM_TOKEN</code> is not set and there is no Better Auth session ({state.detail}).
          </p>
          <p>Either, for local development without Better Auth, build or serve the page with a development token:</p>
          <pre style={{ whiteSpace: "pre-wrap" }}>
            {"cd clients/chatkit-react\n" +
              "VITE_DEV_UPSTREAM_TOKEN=$(chatkit-gateway dev-token --user alice --ttl 86400) npx vite example"}
          </pre>
          <p>
            or set <code>VITE_BETTER_AUTH_URL</code> to your Better Auth server
            {betterAuthUrl ? ` (now ${betterAuthUrl})` : ""} and sign in there first: the page reads the user's JWT
            from <code>&lt;VITE_BETTER_AUTH_URL&gt;/api/auth/token</code> with the session cookie.
          </p>
        </Problem>
      );
    case "refused":
      return (
        <Problem id="sign-in-problem" title="The gateway refused the sign-in">
          <p>
            <code>POST {gatewayUrl}/api/chatkit/session</code> answered {state.httpStatus}
            {state.code ? ` (${state.code})` : ""}: {state.detail}.
          </p>
          <p>
            A token from <code>chatkit-gateway dev-token</code> expires after its <code>--ttl</code> and is signed
            with the gateway's <code>BETTER_AUTH_SECRET</code>: make a new one with the gateway you are using.
          </p>
        </Problem>
      );
    case "unreachable":
      return (
        <Problem id="sign-in-problem" title="The gateway cannot be reached">
          <p>
            Signing in at <code>{gatewayUrl}/api/chatkit/session</code> failed: {state.detail}.
          </p>
          <p>
            Is the gateway running there? <code>VITE_GATEWAY_URL</code> sets its address. The page's origin (
            <code>{window.location.origin}</code>) must be in the gateway's <code>server.cors_allowed_origins</code>.
          </p>
          <CheckTheGateway gatewayUrl={gatewayUrl} />
        </Problem>
      );
  }
}
